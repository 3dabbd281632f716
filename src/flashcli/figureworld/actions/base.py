"""What an action is: a pose as a function of time, plus per-clip variation and what it holds."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from flashcli.figureworld.skeleton import ArmPose, LegPose, Pose

TAU = 2.0 * math.pi
HALF_PI = 0.5 * math.pi


@dataclass(frozen=True)
class Variation:
    """Per-clip variation shared by all actions, so 16 clips of one action are not copies."""

    speed: float  # cycles run this much faster than the action's nominal period
    amplitude: float  # scales the size of the movement
    phase: float  # where in its cycle the clip starts (0..1)
    handed: float  # +1 right-handed, -1 left-handed (the pose is mirrored)
    arm_rest: float  # outward angle of resting arms
    stance: float  # outward angle of the legs (feet apart)
    lean: float  # forward lean of the torso at rest
    head_tilt: float  # sideways head tilt at rest
    extra: tuple[float, float, float, float]  # uniform numbers in [0, 1) for action-specific choices

    @staticmethod
    def sample(rng: np.random.Generator) -> Variation:
        return Variation(
            speed=float(rng.uniform(0.8, 1.25)),
            amplitude=float(rng.uniform(0.8, 1.12)),
            phase=float(rng.uniform(0.0, 1.0)),
            handed=1.0 if rng.random() < 0.7 else -1.0,
            arm_rest=float(rng.uniform(0.06, 0.22)),
            stance=float(rng.uniform(0.02, 0.1)),
            lean=float(rng.uniform(-0.03, 0.08)),
            head_tilt=float(rng.uniform(-0.08, 0.08)),
            extra=(float(rng.random()), float(rng.random()), float(rng.random()), float(rng.random())),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "speed": self.speed,
            "amplitude": self.amplitude,
            "phase": self.phase,
            "handedness": "right" if self.handed > 0 else "left",
            "arm_rest": self.arm_rest,
            "stance": self.stance,
            "lean": self.lean,
            "head_tilt": self.head_tilt,
            "extra": list(self.extra),
        }


@dataclass
class Props:
    """Per-frame state of what the figure holds or works on, read by the prop renderer."""

    tool: str | None = None  # hammer | torch | screwdriver | saw | box | cup | phone | rag | crate | ball
    tool_hand: str = "r"  # which hand holds a one-handed tool (after mirroring)
    tool_flex: float | None = None  # tool direction in the torso frame; None = across the fist
    tool_abduct: float | None = None
    bench: bool = False  # a workbench in front of the figure
    workpiece: str | None = None  # on the bench: plate_seam | screw_plate | keyboard | board
    spark: float = 0.0  # welding arc brightness 0..1
    seam_start: float = 0.0  # stage-frame x where the weld bead starts
    held: bool = False  # whether a pick-and-place object is in the hand
    object_x: float = 0.0  # where a put-down object rests on the bench, body frame (x sideways)
    twist: float = 0.0  # screwdriver handle rotation, radians


@dataclass
class Frame:
    pose: Pose
    props: Props = field(default_factory=Props)


PoseFunction = Callable[[float, float, Variation], Frame]


@dataclass(frozen=True)
class ActionDef:
    """One action of the library.

    motion(cycle, t, v) gives the frame at time t seconds, where cycle = t * speed / period + phase
    counts cycles of the action. Poses are written right-handed and mirrored for left-handed clips.
    """

    name: str
    description: str
    scale: Literal["large", "delicate"]
    period: float
    motion: PoseFunction
    tools: tuple[str, ...] = ()  # what may be held (for documentation and tests)
    view: Literal["front", "any", "side"] = "any"  # the camera angles that show this action best
    close_up: bool = False  # whether clips may be framed from the waist up (hand work)
    # A generated motion's JSON description (figureworld.family), recorded as a clip's meta["motion"].
    motion_params: Mapping[str, object] | None = field(default=None, compare=False)

    def camera_yaw(self, sampled_yaw: float) -> float:
        """The clip's camera yaw: the sampled one, narrowed towards the view that reads best."""
        if self.view == "front":
            return 0.4 * sampled_yaw
        if self.view == "side":
            magnitude = 0.9 + 0.5 * (abs(sampled_yaw) - 0.2) / 0.65 * 0.7
            return math.copysign(magnitude, sampled_yaw)
        return sampled_yaw

    def frame(self, t: float, variation: Variation, *, sway: bool = True) -> Frame:
        """The frame at t seconds; sway=False leaves out the sway (motion signatures compare actions)."""
        cycle = t * variation.speed / self.period + variation.phase
        frame = self.motion(cycle, t, variation)
        if sway:
            # People are never perfectly still: a slow, small sway of the head and upper body (its own
            # rhythm per clip) on top of every action keeps the parts the action does not use alive.
            angle = TAU * (0.35 * t + variation.extra[3])
            pose = frame.pose
            pose.head_pitch += 0.03 * math.sin(angle)
            pose.head_roll += 0.025 * math.sin(0.7 * angle + 1.3)
            pose.spine_roll += 0.012 * math.sin(0.5 * angle + 2.1)
        if variation.handed < 0:
            frame.pose = frame.pose.mirrored()
            frame.props.tool_hand = "l" if frame.props.tool_hand == "r" else "r"
            frame.props.object_x = -frame.props.object_x
            frame.props.seam_start = -frame.props.seam_start
        return frame


def wave01(cycle: float) -> float:
    """0 at the start of a cycle, 1 half way, smooth (a raised cosine)."""
    return 0.5 - 0.5 * math.cos(TAU * cycle)


def smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def arm(
    flex: float,
    abduct: float,
    elbow: float = 0.15,
    wrist: float = 0.0,
    fore_abduct: float | None = None,
    hand_abduct: float | None = None,
) -> ArmPose:
    """An arm from its upper-arm direction; elbow and wrist bend further forward/up (radians)."""
    fore_ab = abduct if fore_abduct is None else fore_abduct
    return ArmPose(
        upper_flex=flex,
        upper_abduct=abduct,
        fore_flex=flex + elbow,
        fore_abduct=fore_ab,
        hand_flex=flex + elbow + wrist,
        hand_abduct=fore_ab if hand_abduct is None else hand_abduct,
    )


def leg(flex: float, abduct: float, knee: float = 0.0, foot_flat: bool = True, ankle: float = 0.0) -> LegPose:
    """A leg from its thigh direction; knee bends the shin backwards. Feet stay level unless told."""
    shin = flex - knee
    foot = (HALF_PI - 0.08 if foot_flat else shin + HALF_PI - 0.1) + ankle
    return LegPose(
        thigh_flex=flex,
        thigh_abduct=abduct,
        shin_flex=shin,
        shin_abduct=abduct * 0.6,
        foot_flex=foot,
        foot_abduct=0.12,
    )


def rest_pose(v: Variation) -> Pose:
    """A relaxed standing pose with this clip's small personal differences."""
    return Pose(
        spine_pitch=v.lean,
        head_roll=v.head_tilt,
        left_arm=arm(0.02, v.arm_rest, elbow=0.18),
        right_arm=arm(0.02, v.arm_rest, elbow=0.18),
        left_leg=leg(0.0, v.stance),
        right_leg=leg(0.0, v.stance),
    )
