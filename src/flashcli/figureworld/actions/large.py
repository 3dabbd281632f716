"""Large whole-body actions (exercise, sport, everyday gestures)."""

from __future__ import annotations

import math
from dataclasses import replace

from flashcli.figureworld.actions.base import (
    HALF_PI,
    TAU,
    ActionDef,
    Frame,
    Props,
    Variation,
    arm,
    leg,
    rest_pose,
    smoothstep,
    wave01,
)


def jumping_jack(c: float, t: float, v: Variation) -> Frame:
    s = smoothstep(wave01(c) * 1.15 - 0.07)
    a = v.amplitude
    up = v.arm_rest + s * (2.75 * a - v.arm_rest)
    pose = rest_pose(v)
    pose = replace(
        pose,
        left_arm=arm(0.1, up, elbow=0.15 + 0.2 * s),
        right_arm=arm(0.1, up, elbow=0.15 + 0.2 * s),
        left_leg=leg(0.0, v.stance + 0.3 * a * s, knee=0.08),
        right_leg=leg(0.0, v.stance + 0.3 * a * s, knee=0.08),
        lift=0.035 * abs(math.sin(TAU * c)),
    )
    return Frame(pose)


def squat(c: float, t: float, v: Variation) -> Frame:
    s = wave01(c) * v.amplitude
    pose = rest_pose(v)
    arms_up = 1.45 * s if v.extra[0] < 0.6 else 0.0  # some reach forward for balance, some hold hips
    arm_l = arm(arms_up + 0.02, v.arm_rest, elbow=0.15)
    if v.extra[0] >= 0.6:
        arm_l = arm(0.2, 0.75, elbow=0.0, fore_abduct=-0.9)
    pose = replace(
        pose,
        spine_pitch=v.lean + 0.5 * s,
        head_pitch=-0.3 * s,
        left_arm=arm_l,
        right_arm=arm_l,
        left_leg=leg(1.5 * s, v.stance + 0.1, knee=2.3 * s),
        right_leg=leg(1.5 * s, v.stance + 0.1, knee=2.3 * s),
    )
    return Frame(pose)


def bow(c: float, t: float, v: Variation) -> Frame:
    # down, hold, up, rest: a polite bow with hands at the sides or folded in front
    x = c % 1.0
    s = smoothstep(x / 0.35) if x < 0.5 else 1.0 - smoothstep((x - 0.5) / 0.35)
    depth = (0.8 + 0.5 * v.extra[0]) * v.amplitude * s
    pose = rest_pose(v)
    if v.extra[1] < 0.5:
        arms_l = arm(0.05, 0.06, elbow=0.1)
        arms_r = arms_l
    else:
        arms_l = arm(0.25, 0.05, elbow=0.7, fore_abduct=-0.55)
        arms_r = arms_l
    pose = replace(
        pose,
        spine_pitch=depth,
        head_pitch=0.25 * s,
        left_arm=arms_l,
        right_arm=arms_r,
        left_leg=leg(0.0, 0.03),
        right_leg=leg(0.0, 0.03),
    )
    return Frame(pose)


def kick(c: float, t: float, v: Variation) -> Frame:
    # chamber the knee, snap the shin forward, retract, set the foot down
    x = c % 1.0
    chamber = smoothstep(x / 0.3) if x < 0.7 else 1.0 - smoothstep((x - 0.7) / 0.25)
    snap = math.sin(math.pi * min(max((x - 0.3) / 0.35, 0.0), 1.0)) ** 2
    a = v.amplitude
    thigh = (1.1 + 0.4 * snap) * chamber * a
    knee = (1.7 * chamber) * (1.0 - snap) * a
    pose = rest_pose(v)
    pose = replace(
        pose,
        spine_pitch=-0.15 * chamber,
        right_leg=leg(thigh, 0.02, knee=knee, foot_flat=False, ankle=0.35 * snap),
        left_leg=leg(0.0, v.stance, knee=0.15 * chamber),
        left_arm=arm(0.6 * chamber, 0.35, elbow=1.6),
        right_arm=arm(-0.3 * chamber, 0.3, elbow=1.5),
    )
    return Frame(pose)


def arm_circles(c: float, t: float, v: Variation) -> Frame:
    # arms held out sideways drawing circles; the direction of rotation varies per clip
    direction = 1.0 if v.extra[0] < 0.5 else -1.0
    angle = TAU * c * direction
    r = 0.35 * v.amplitude
    pose = rest_pose(v)
    one = arm(r * math.sin(angle), HALF_PI + 0.05 + r * math.cos(angle), elbow=0.05)
    pose = replace(pose, left_arm=one, right_arm=one)
    return Frame(pose)


def wave(c: float, t: float, v: Variation) -> Frame:
    # a big hello: the hand raised above the shoulder, forearm swinging side to side
    swing = math.sin(TAU * c) * 0.45 * v.amplitude
    pose = rest_pose(v)
    pose = replace(
        pose,
        right_arm=arm(0.35, 1.5, elbow=0.2, fore_abduct=2.8 + swing),
        head_roll=v.head_tilt - 0.08,
    )
    return Frame(pose)


def march(c: float, t: float, v: Variation) -> Frame:
    # marching on the spot: knees up in turn, arms swinging opposite
    s = math.sin(TAU * c)
    a = v.amplitude
    up_r = max(s, 0.0) * 1.3 * a
    up_l = max(-s, 0.0) * 1.3 * a
    pose = rest_pose(v)
    pose = replace(
        pose,
        right_leg=leg(up_r, v.stance, knee=1.6 * up_r / 1.3),
        left_leg=leg(up_l, v.stance, knee=1.6 * up_l / 1.3),
        right_arm=arm(-0.5 * s * a, v.arm_rest, elbow=0.6 + 0.4 * max(-s, 0)),
        left_arm=arm(0.5 * s * a, v.arm_rest, elbow=0.6 + 0.4 * max(s, 0)),
        spine_twist=0.06 * s,
    )
    return Frame(pose)


def idle(c: float, t: float, v: Variation) -> Frame:
    # standing, breathing, shifting weight a little: the quietest action
    s = math.sin(TAU * c)
    pose = rest_pose(v)
    pose = replace(
        pose,
        spine_roll=0.03 * s,
        head_roll=v.head_tilt + 0.03 * math.sin(TAU * 0.5 * c + 1.0),
        root_x=0.01 * s,
        left_arm=arm(0.02 + 0.03 * s, v.arm_rest, elbow=0.18),
        right_arm=arm(0.02 - 0.03 * s, v.arm_rest, elbow=0.18),
    )
    return Frame(pose)


def lunge(c: float, t: float, v: Variation) -> Frame:
    # step forward into a deep lunge with the right leg, back knee towards the floor, return
    s = wave01(c) * v.amplitude
    pose = rest_pose(v)
    hands_on_hips = v.extra[0] < 0.5
    arms = (
        arm(0.2, 0.75, elbow=0.0, fore_abduct=-0.9) if hands_on_hips else arm(0.3 * s, v.arm_rest, elbow=0.3)
    )
    pose = replace(
        pose,
        spine_pitch=0.05 * s,
        right_leg=leg(1.25 * s, 0.04, knee=1.35 * s),
        left_leg=leg(-0.55 * s, 0.04, knee=1.35 * s, foot_flat=False, ankle=0.6 * s),
        left_arm=arms,
        right_arm=arms,
        root_z=0.12 * s,
    )
    return Frame(pose)


def punch(c: float, t: float, v: Variation) -> Frame:
    # boxing: alternate straight punches from a guard, the torso turning into each
    a = v.amplitude
    right = max(math.sin(TAU * c), 0.0) ** 2
    left = max(-math.sin(TAU * c), 0.0) ** 2
    pose = rest_pose(v)

    def fist(extend: float) -> object:
        return arm(0.7 + 0.85 * extend * a, 0.3 - 0.2 * extend, elbow=1.9 * (1.0 - extend), wrist=0.0)

    pose = replace(
        pose,
        spine_twist=0.3 * (left - right),
        head_pitch=0.1,
        right_arm=fist(right),
        left_arm=fist(left),
        right_leg=leg(-0.12, v.stance + 0.06, knee=0.2),
        left_leg=leg(0.18, v.stance + 0.06, knee=0.25),
    )
    return Frame(pose)


def clap(c: float, t: float, v: Variation) -> Frame:
    open_ = wave01(c)
    x = 0.02 + 0.26 * open_ * v.amplitude
    pose = rest_pose(v)
    pose = replace(
        pose,
        left_wrist_target=(x, 0.78, 0.22 - 0.08 * open_),
        right_wrist_target=(-x, 0.78, 0.22 - 0.08 * open_),
        left_arm=replace(pose.left_arm, hand_flex=1.5, hand_abduct=-0.6 + 1.0 * open_),
        right_arm=replace(pose.right_arm, hand_flex=1.5, hand_abduct=-0.6 + 1.0 * open_),
    )
    return Frame(pose)


def side_bend(c: float, t: float, v: Variation) -> Frame:
    # lean to one side with the opposite arm over the head, then the other side
    s = math.sin(TAU * c) * v.amplitude
    pose = rest_pose(v)
    over = 2.7
    pose = replace(
        pose,
        spine_roll=0.45 * s,
        head_roll=0.2 * s,
        right_arm=arm(0.1, v.arm_rest + (over - v.arm_rest) * max(s, 0.0), elbow=0.2 + 0.3 * max(s, 0.0)),
        left_arm=arm(0.1, v.arm_rest + (over - v.arm_rest) * max(-s, 0.0), elbow=0.2 + 0.3 * max(-s, 0.0)),
        left_leg=leg(0.0, v.stance + 0.08),
        right_leg=leg(0.0, v.stance + 0.08),
    )
    return Frame(pose)


def toe_touch(c: float, t: float, v: Variation) -> Frame:
    s = wave01(c)
    bend = 1.45 * s * v.amplitude
    pose = rest_pose(v)
    hang = arm(bend * 1.05, 0.1, elbow=0.05)
    pose = replace(
        pose,
        spine_pitch=bend,
        head_pitch=-0.2 * s,
        left_arm=hang,
        right_arm=hang,
        left_leg=leg(0.0, v.stance, knee=0.1 * s),
        right_leg=leg(0.0, v.stance, knee=0.1 * s),
    )
    return Frame(pose)


def reach_up(c: float, t: float, v: Variation) -> Frame:
    # reach high with one arm then the other, rising onto the toes
    right = 0.5 + 0.5 * math.sin(TAU * c)
    left = 1.0 - right
    pose = rest_pose(v)
    toes = 0.03 * abs(math.sin(TAU * c))
    pose = replace(
        pose,
        right_arm=arm(0.3 + 2.65 * right * v.amplitude, 0.15, elbow=0.4 * (1 - right)),
        left_arm=arm(0.3 + 2.65 * left * v.amplitude, 0.15, elbow=0.4 * (1 - left)),
        spine_roll=0.08 * (left - right),
        head_pitch=-0.3,
        lift=toes,
        left_leg=leg(0.0, v.stance, ankle=0.4 * abs(math.sin(TAU * c))),
        right_leg=leg(0.0, v.stance, ankle=0.4 * abs(math.sin(TAU * c))),
    )
    return Frame(pose)


def throw(c: float, t: float, v: Variation) -> Frame:
    # wind up with the ball behind the head, step and throw overarm, follow through
    x = c % 1.0
    wind = smoothstep(x / 0.4) if x < 0.4 else 1.0 - smoothstep((x - 0.4) / 0.15)
    follow = smoothstep((x - 0.45) / 0.2) if x < 0.75 else 1.0 - smoothstep((x - 0.75) / 0.25)
    a = v.amplitude
    flex = 1.0 + 1.6 * wind * a - 0.2 * follow if x < 0.45 else 2.6 - 2.4 * follow * a
    pose = rest_pose(v)
    pose = replace(
        pose,
        right_arm=arm(flex, 0.5, elbow=1.2 * wind, wrist=0.3 * wind),
        left_arm=arm(1.2 * wind + 0.2, 0.35, elbow=0.4),
        spine_twist=-0.45 * wind + 0.35 * follow,
        spine_pitch=-0.1 * wind + 0.35 * follow,
        left_leg=leg(0.35 * wind, v.stance + 0.04, knee=0.3 * wind),
        right_leg=leg(-0.1 * follow, v.stance + 0.04, knee=0.2 * follow),
    )
    holding = x < 0.52
    return Frame(pose, Props(tool="ball" if holding else None))


def lift_box(c: float, t: float, v: Variation) -> Frame:
    # squat down with a box, set it on the floor, lift it back to the waist
    s = wave01(c) * v.amplitude
    pose = rest_pose(v)
    pose = replace(
        pose,
        spine_pitch=0.15 + 0.55 * s,
        head_pitch=-0.2 * s,
        left_leg=leg(1.35 * s, v.stance + 0.12, knee=2.0 * s),
        right_leg=leg(1.35 * s, v.stance + 0.12, knee=2.0 * s),
        left_wrist_target=(0.13, 0.62 - 0.42 * s, 0.2 + 0.05 * s),
        right_wrist_target=(-0.13, 0.62 - 0.42 * s, 0.2 + 0.05 * s),
        left_arm=replace(pose.left_arm, hand_flex=1.2, hand_abduct=-0.4),
        right_arm=replace(pose.right_arm, hand_flex=1.2, hand_abduct=-0.4),
    )
    return Frame(pose, Props(tool="box"))


def jump(c: float, t: float, v: Variation) -> Frame:
    # crouch, spring up with the arms swinging, land softly
    x = c % 1.0
    crouch = (
        smoothstep(x / 0.3)
        if x < 0.4
        else (smoothstep((x - 0.75) / 0.12) if x < 0.87 else 1.0 - smoothstep((x - 0.87) / 0.13))
    )
    if x < 0.3:
        crouch = smoothstep(x / 0.3)
    elif x < 0.4:
        crouch = 1.0 - smoothstep((x - 0.3) / 0.1)
    air = math.sin(math.pi * (x - 0.4) / 0.35) if 0.4 <= x < 0.75 else 0.0
    a = v.amplitude
    pose = rest_pose(v)
    pose = replace(
        pose,
        spine_pitch=0.45 * crouch,
        left_leg=leg(1.1 * crouch, v.stance, knee=1.8 * crouch, foot_flat=air <= 0, ankle=0.3 * air),
        right_leg=leg(1.1 * crouch, v.stance, knee=1.8 * crouch, foot_flat=air <= 0, ankle=0.3 * air),
        left_arm=arm(-0.6 * crouch + 2.4 * air, 0.2, elbow=0.2),
        right_arm=arm(-0.6 * crouch + 2.4 * air, 0.2, elbow=0.2),
        lift=0.16 * air * a,
    )
    return Frame(pose)


def run(c: float, t: float, v: Variation) -> Frame:
    # jogging on the spot: heels kick up behind, bent arms pump, a small bounce
    s = math.sin(TAU * c)
    a = v.amplitude
    pose = rest_pose(v)
    r_up, l_up = max(s, 0.0), max(-s, 0.0)
    pose = replace(
        pose,
        spine_pitch=0.12,
        right_leg=leg(0.5 * r_up * a, v.stance, knee=1.7 * r_up * a, foot_flat=False),
        left_leg=leg(0.5 * l_up * a, v.stance, knee=1.7 * l_up * a, foot_flat=False),
        right_arm=arm(-0.6 * s * a, 0.15, elbow=1.5),
        left_arm=arm(0.6 * s * a, 0.15, elbow=1.5),
        lift=0.03 * abs(math.sin(TAU * c)),
    )
    return Frame(pose)


def push(c: float, t: float, v: Variation) -> Frame:
    # push something heavy away with both hands, leaning in from a staggered stance
    s = wave01(c) * v.amplitude
    pose = rest_pose(v)
    upper = 0.2 + 1.2 * s
    both = arm(upper, 0.2, elbow=1.45 - upper, wrist=0.6 * (1.0 - s) + 0.3)
    pose = replace(
        pose,
        spine_pitch=0.2 + 0.2 * s,
        left_arm=both,
        right_arm=both,
        right_leg=leg(-0.35 - 0.1 * s, v.stance, knee=0.05),
        left_leg=leg(0.3, v.stance, knee=0.35 + 0.1 * s),
    )
    return Frame(pose)


LARGE_ACTIONS: tuple[ActionDef, ...] = (
    ActionDef(
        "jumping_jack",
        "jump feet apart while swinging straight arms overhead",
        "large",
        0.9,
        jumping_jack,
        view="front",
    ),
    ActionDef("squat", "bend the knees and hips to sit low, then stand up", "large", 1.6, squat, view="side"),
    ActionDef(
        "bow", "bend forward from the hips in a polite bow and come back up", "large", 2.2, bow, view="side"
    ),
    ActionDef("kick", "raise the knee and snap a front kick", "large", 1.5, kick, view="side"),
    ActionDef(
        "arm_circles", "arms out to the sides drawing circles", "large", 0.8, arm_circles, view="front"
    ),
    ActionDef(
        "wave", "raise one hand above the shoulder and wave the forearm", "large", 0.7, wave, view="front"
    ),
    ActionDef("march", "march on the spot with high knees and swinging arms", "large", 1.1, march),
    ActionDef("idle", "stand relaxed, breathing and shifting weight", "large", 3.0, idle),
    ActionDef("lunge", "step forward into a deep lunge and back", "large", 2.0, lunge, view="side"),
    ActionDef("punch", "alternate straight punches from a boxing guard", "large", 0.8, punch, view="any"),
    ActionDef("clap", "clap the hands in front of the chest", "large", 0.5, clap, view="front"),
    ActionDef(
        "side_bend", "bend to each side with the other arm overhead", "large", 2.4, side_bend, view="front"
    ),
    ActionDef(
        "toe_touch", "bend down to touch the toes and come back up", "large", 2.2, toe_touch, view="side"
    ),
    ActionDef("reach_up", "reach high with one arm then the other, on the toes", "large", 1.4, reach_up),
    ActionDef("throw", "throw a ball overarm", "large", 1.6, throw, ("ball",), view="side"),
    ActionDef(
        "lift_box",
        "squat to set a box on the floor and lift it again",
        "large",
        2.4,
        lift_box,
        ("box",),
        view="side",
    ),
    ActionDef("jump", "crouch and jump straight up", "large", 1.3, jump, view="any"),
    ActionDef("run", "jog on the spot, arms pumping", "large", 0.6, run),
    ActionDef("push", "push something heavy away with both hands", "large", 1.4, push, view="side"),
)
