"""Delicate hand actions, mostly at a workbench, with tools. Wrists follow targets (inverse kinematics).

Stage frame (body heights): x to the figure's left, y up from the floor, z forward. The bench top is
at y = 0.45 between z = 0.14 and 0.34 (see props.py). Poses are right-handed; left-handed clips
are mirrors.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

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
)
from flashcli.figureworld.skeleton import Pose, direction_angles, rot_x

BENCH_TOP = 0.45


def _at_bench(v: Variation, lean: float = 0.22) -> Pose:
    """Standing at the bench: leaning in, looking down at the work, knees soft."""
    pose = rest_pose(v)
    return replace(
        pose,
        spine_pitch=lean + 0.5 * v.lean,
        head_pitch=0.4,
        left_leg=leg(0.05, v.stance + 0.03, knee=0.12),
        right_leg=leg(0.05, v.stance + 0.03, knee=0.12),
    )


def _hand_towards(world_dir: tuple[float, float, float], pitch: float, side: float) -> tuple[float, float]:
    """(flex, abduct) in the torso frame of a hand that points along world_dir (body-frame axes)."""
    d = rot_x(-pitch) @ np.asarray(world_dir, dtype=np.float64)
    return direction_angles(d / np.linalg.norm(d), side)


def _progress(t: float, v: Variation, period: float) -> float:
    """Cycles since the clip started, plus a little per-clip offset (no wrap-around inside a clip)."""
    return t * v.speed / period + 0.15 * v.phase


def weld(c: float, t: float, v: Variation) -> Frame:
    period = 3.2
    p = min(_progress(t, v, period), 1.0)
    start_x, end_x = 0.12, -0.16
    x = start_x + (end_x - start_x) * p
    weave = 0.012 * math.sin(TAU * 3.0 * t) * v.amplitude  # welders weave the torch across the seam
    pose = _at_bench(v, lean=0.3)
    hand_flex, hand_abduct = _hand_towards((0.0, -0.75, 0.66), pose.spine_pitch, -1.0)
    left_flex, left_abduct = _hand_towards((0.1, -0.6, 0.8), pose.spine_pitch, 1.0)
    pose = replace(
        pose,
        head_pitch=0.55,
        right_wrist_target=(x + 0.01, BENCH_TOP + 0.17, 0.1 + weave),
        left_wrist_target=(0.2, BENCH_TOP + 0.05, 0.2),
        right_arm=replace(pose.right_arm, hand_flex=hand_flex, hand_abduct=hand_abduct),
        left_arm=replace(pose.left_arm, hand_flex=left_flex, hand_abduct=left_abduct),
    )
    flicker = 0.65 + 0.35 * math.sin(t * 41.0 + 3.0 * math.sin(t * 17.0))
    seam_start = start_x + (end_x - start_x) * min(0.15 * v.phase, 1.0)
    props = Props(
        tool="torch",
        tool_flex=0.45 - pose.spine_pitch + 0.6,
        tool_abduct=0.0,
        bench=True,
        workpiece="plate_seam",
        spark=flicker,
        seam_start=seam_start + 0.02,
    )
    return Frame(pose, props)


def tighten_screw(c: float, t: float, v: Variation) -> Frame:
    screw_x = (-0.08, 0.0, 0.08)[int(v.extra[0] * 3)]
    x = c % 1.0
    # turn the handle for most of the cycle, then a quick regrip back
    turn = smoothstep(x / 0.7) if x < 0.7 else 1.0 - smoothstep((x - 0.7) / 0.3)
    theta = (1.6 * turn - 0.8) * v.amplitude
    regrip = 0.015 * math.sin(math.pi * min(max((x - 0.7) / 0.3, 0.0), 1.0))
    sink = 0.012 * min(t * v.speed / 2.0, 1.0)
    pose = _at_bench(v, lean=0.25)
    fist = (0.45 * math.sin(theta), -0.9, 0.45 * math.cos(theta))
    hand_flex, hand_abduct = _hand_towards(fist, pose.spine_pitch, -1.0)
    left_flex, left_abduct = _hand_towards((0.1, -0.6, 0.8), pose.spine_pitch, 1.0)
    pose = replace(
        pose,
        head_pitch=0.55,
        right_wrist_target=(screw_x + 0.01, BENCH_TOP + 0.2 + regrip - sink, 0.22),
        left_wrist_target=(screw_x + 0.16, BENCH_TOP + 0.05, 0.21),
        right_arm=replace(pose.right_arm, hand_flex=hand_flex, hand_abduct=hand_abduct),
        left_arm=replace(pose.left_arm, hand_flex=left_flex, hand_abduct=left_abduct),
    )
    props = Props(
        tool="screwdriver",
        tool_flex=-pose.spine_pitch,
        tool_abduct=0.0,
        bench=True,
        workpiece="screw_plate",
        twist=theta,
    )
    return Frame(pose, props)


def typing(c: float, t: float, v: Variation) -> Frame:
    pose = _at_bench(v, lean=0.18)
    drift = 0.025 * math.sin(TAU * 0.3 * t + TAU * v.phase)
    taps = []
    for k, offset in enumerate((0.0, 0.37)):
        # quick, irregular key presses: two incommensurate rhythms per hand
        a = math.sin(TAU * (c + offset)) + 0.6 * math.sin(TAU * (1.7 * c + 0.3 * k + v.extra[k]))
        taps.append(max(a, 0.0) ** 2 * 0.012 * v.amplitude)
    flex_l, abd_l = _hand_towards((0.05, -0.45, 0.9), pose.spine_pitch, 1.0)
    flex_r, abd_r = _hand_towards((-0.05, -0.45, 0.9), pose.spine_pitch, -1.0)
    pose = replace(
        pose,
        head_pitch=0.35,
        left_wrist_target=(0.075 + drift, BENCH_TOP + 0.04 + taps[0], 0.15),
        right_wrist_target=(-0.075 + drift, BENCH_TOP + 0.04 + taps[1], 0.15),
        left_arm=replace(pose.left_arm, hand_flex=flex_l - 4.0 * taps[0], hand_abduct=abd_l),
        right_arm=replace(pose.right_arm, hand_flex=flex_r - 4.0 * taps[1], hand_abduct=abd_r),
    )
    return Frame(pose, Props(bench=True, workpiece="keyboard"))


def wave_wrist(c: float, t: float, v: Variation) -> Frame:
    # a small, friendly wave: forearm up beside the chest, only the hand swings
    swing = math.sin(TAU * c) * 0.55 * v.amplitude
    pose = rest_pose(v)
    pose = replace(
        pose,
        right_arm=arm(0.35, 0.3, elbow=0.25, fore_abduct=2.7, hand_abduct=2.7 + swing),
        head_roll=v.head_tilt + 0.05,
    )
    return Frame(pose)


def saw(c: float, t: float, v: Variation) -> Frame:
    stroke = math.sin(TAU * c) * 0.09 * v.amplitude
    pose = _at_bench(v, lean=0.3 + 0.06 * math.sin(TAU * c))
    hand_flex, hand_abduct = _hand_towards((0.0, -0.3, 0.95), pose.spine_pitch, -1.0)
    left_flex, left_abduct = _hand_towards((0.1, -0.6, 0.8), pose.spine_pitch, 1.0)
    pose = replace(
        pose,
        right_wrist_target=(-0.1, BENCH_TOP + 0.12, 0.14 + stroke),
        left_wrist_target=(0.14, BENCH_TOP + 0.05, 0.23),
        right_arm=replace(pose.right_arm, hand_flex=hand_flex, hand_abduct=hand_abduct),
        left_arm=replace(pose.left_arm, hand_flex=left_flex, hand_abduct=left_abduct),
    )
    props = Props(
        tool="saw", tool_flex=1.45 - pose.spine_pitch, tool_abduct=0.0, bench=True, workpiece="board"
    )
    return Frame(pose, props)


def hammer(c: float, t: float, v: Variation) -> Frame:
    x = c % 1.0
    # fast strike, short rest on the nail, slow lift
    if x < 0.22:
        up = 1.0 - smoothstep(x / 0.22)
    elif x < 0.35:
        up = 0.0
    else:
        up = smoothstep((x - 0.35) / 0.65)
    up *= v.amplitude
    pose = _at_bench(v, lean=0.2)
    left_flex, left_abduct = _hand_towards((0.1, -0.6, 0.8), pose.spine_pitch, 1.0)
    hand_flex, hand_abduct = _hand_towards((0.0, -0.2 + 0.9 * up, 1.0 - 0.4 * up), pose.spine_pitch, -1.0)
    pose = replace(
        pose,
        right_wrist_target=(-0.09, BENCH_TOP + 0.14 + 0.28 * up, 0.14 - 0.04 * up),
        left_wrist_target=(0.12, BENCH_TOP + 0.05, 0.22),
        right_arm=replace(pose.right_arm, hand_flex=hand_flex, hand_abduct=hand_abduct),
        left_arm=replace(pose.left_arm, hand_flex=left_flex, hand_abduct=left_abduct),
    )
    props = Props(
        tool="hammer", tool_flex=hand_flex + HALF_PI - 0.2, tool_abduct=0.0, bench=True, workpiece="board"
    )
    return Frame(pose, props)


def pick_and_place(c: float, t: float, v: Variation) -> Frame:
    p = _progress(t, v, 2.6)
    k, x = int(p), p % 1.0
    a, b = (0.2, -0.16) if k % 2 == 0 else (-0.16, 0.2)
    rest = (-0.11, BENCH_TOP + 0.13, 0.12)
    held = 0.3 <= x < 0.68
    if x < 0.25:
        s = smoothstep(x / 0.25)
        wrist = (rest[0] + (a - rest[0]) * s, rest[1] - 0.06 * s, rest[2] + 0.1 * s)
    elif x < 0.3:
        wrist = (a, rest[1] - 0.06, rest[2] + 0.1)
    elif x < 0.68:
        s = smoothstep((x - 0.3) / 0.38)
        lift = 0.08 * math.sin(math.pi * s)
        wrist = (a + (b - a) * s, rest[1] - 0.06 + lift, rest[2] + 0.1)
    else:
        s = smoothstep((x - 0.68) / 0.32)
        wrist = (b + (rest[0] - b) * s, rest[1] - 0.06 * (1 - s), rest[2] + 0.1 * (1 - s))
    pose = _at_bench(v, lean=0.22)
    hand_flex, hand_abduct = _hand_towards((0.0, -0.8, 0.6), pose.spine_pitch, -1.0)
    left_flex, left_abduct = _hand_towards((0.1, -0.6, 0.8), pose.spine_pitch, 1.0)
    pose = replace(
        pose,
        right_wrist_target=wrist,
        left_wrist_target=(0.22, BENCH_TOP + 0.05, 0.16),
        right_arm=replace(pose.right_arm, hand_flex=hand_flex, hand_abduct=hand_abduct),
        left_arm=replace(pose.left_arm, hand_flex=left_flex, hand_abduct=left_abduct),
        spine_twist=-0.25 * wrist[0],
    )
    props = Props(tool="crate" if held else None, bench=True, held=held, object_x=a if x < 0.3 else b)
    return Frame(pose, props)


def wipe(c: float, t: float, v: Variation) -> Frame:
    angle = TAU * c
    r = 0.07 * v.amplitude
    pose = _at_bench(v, lean=0.3)
    hand_flex, hand_abduct = _hand_towards((0.0, -0.9, 0.45), pose.spine_pitch, -1.0)
    pose = replace(
        pose,
        right_wrist_target=(-0.05 + r * math.cos(angle), BENCH_TOP + 0.06, 0.22 + 0.6 * r * math.sin(angle)),
        left_arm=arm(0.6, 0.2, elbow=0.9),
        right_arm=replace(pose.right_arm, hand_flex=hand_flex, hand_abduct=hand_abduct),
        spine_twist=0.5 * r * math.cos(angle),
    )
    return Frame(pose, Props(tool="rag", bench=True))


def drink(c: float, t: float, v: Variation) -> Frame:
    x = c % 1.0
    up = smoothstep(x / 0.3) if x < 0.6 else 1.0 - smoothstep((x - 0.6) / 0.3)
    pose = rest_pose(v)
    mouth = (-0.02, 0.87, 0.09)
    low = (-0.11, 0.58, 0.16)
    wrist = tuple(lo + (hi - lo) * up for lo, hi in zip(low, mouth, strict=True))
    flex, abduct = _hand_towards((0.2 * up, 0.6, 0.3), 0.0, -1.0)
    pose = replace(
        pose,
        head_pitch=-0.35 * up,
        right_wrist_target=wrist,  # type: ignore[arg-type]
        right_arm=replace(pose.right_arm, hand_flex=flex, hand_abduct=abduct),
    )
    return Frame(pose, Props(tool="cup"))


def phone_call(c: float, t: float, v: Variation) -> Frame:
    x = c % 1.0
    up = smoothstep(x / 0.25) if x < 0.75 else 1.0 - smoothstep((x - 0.75) / 0.25)
    pose = rest_pose(v)
    ear = (-0.07, 0.88, 0.0)
    low = (-0.1, 0.6, 0.12)
    wrist = tuple(lo + (hi - lo) * up for lo, hi in zip(low, ear, strict=True))
    flex, abduct = _hand_towards((0.1, 0.9, 0.1), 0.0, -1.0)
    pose = replace(
        pose,
        head_roll=v.head_tilt - 0.15 * up,
        head_pitch=0.08 * math.sin(TAU * 2.0 * t) * up,
        right_wrist_target=wrist,  # type: ignore[arg-type]
        right_arm=replace(pose.right_arm, hand_flex=flex, hand_abduct=abduct),
    )
    return Frame(pose, Props(tool="phone"))


def point(c: float, t: float, v: Variation) -> Frame:
    # raise a straight arm to point out to the side, hold it, lower it again
    x = c % 1.0
    s = smoothstep(x / 0.3) if x < 0.6 else 1.0 - smoothstep((x - 0.6) / 0.3)
    aim = v.extra[0]
    pose = rest_pose(v)
    pose = replace(
        pose,
        # abduct only swings the arm sideways while it is not pointing far forward, so keep flex low
        right_arm=arm((0.15 + 0.55 * aim) * s, 0.15 + (1.15 + 0.3 * v.extra[1]) * s, elbow=0.05),
        head_yaw=-0.5 * s,
    )
    return Frame(pose)


def salute(c: float, t: float, v: Variation) -> Frame:
    x = c % 1.0
    up = smoothstep(x / 0.25) if x < 0.7 else 1.0 - smoothstep((x - 0.7) / 0.25)
    pose = rest_pose(v)
    flex, abduct = _hand_towards((0.95, 0.25, 0.1), 0.0, -1.0)
    rest_wrist = (-0.14, 0.5, 0.02)
    brow = (-0.1, 0.92, 0.06)
    wrist = tuple(lo + (hi - lo) * up for lo, hi in zip(rest_wrist, brow, strict=True))
    pose = replace(
        pose,
        spine_pitch=-0.04 * up,
        right_wrist_target=wrist,  # type: ignore[arg-type]
        right_arm=replace(pose.right_arm, hand_flex=flex * up, hand_abduct=abduct * up),
    )
    return Frame(pose)


DELICATE_ACTIONS: tuple[ActionDef, ...] = (
    ActionDef(
        "weld",
        "run a welding torch slowly along a seam on the bench",
        "delicate",
        3.2,
        weld,
        ("torch",),
        close_up=True,
    ),
    ActionDef(
        "tighten_screw",
        "turn a screwdriver on a screw in small twists",
        "delicate",
        1.1,
        tighten_screw,
        ("screwdriver",),
        close_up=True,
    ),
    ActionDef("typing", "type on a keyboard on the bench", "delicate", 0.45, typing, close_up=True),
    ActionDef(
        "wave_wrist",
        "a small wave from the wrist, forearm up",
        "delicate",
        0.5,
        wave_wrist,
        close_up=True,
        view="front",
    ),
    ActionDef(
        "saw",
        "saw a board with back-and-forth strokes",
        "delicate",
        0.9,
        saw,
        ("saw",),
        close_up=True,
        view="side",
    ),
    ActionDef("hammer", "hammer a nail into a board", "delicate", 1.0, hammer, ("hammer",), close_up=True),
    ActionDef(
        "pick_and_place",
        "pick up a small crate and put it down further along the bench",
        "delicate",
        2.6,
        pick_and_place,
        ("crate",),
        close_up=True,
    ),
    ActionDef(
        "wipe", "wipe the bench with a cloth in circles", "delicate", 0.9, wipe, ("rag",), close_up=True
    ),
    ActionDef(
        "drink", "lift a cup to the mouth, sip, lower it", "delicate", 2.4, drink, ("cup",), close_up=True
    ),
    ActionDef(
        "phone_call",
        "lift a phone to the ear and talk",
        "delicate",
        3.0,
        phone_call,
        ("phone",),
        close_up=True,
    ),
    ActionDef("point", "point at something with an outstretched arm", "delicate", 2.4, point, view="front"),
    ActionDef(
        "salute",
        "raise the hand to the brow in a salute, then lower it",
        "delicate",
        2.4,
        salute,
        close_up=True,
        view="front",
    ),
)
