"""The FigureWorld body: joint names, a pose made of angles, and 3-D forward kinematics.

Units are body heights (a standing figure is ~1.0 tall from sole to crown). The body frame has
x to the figure's left, y up and z forward (out of the chest), so a figure with yaw 0 faces the
camera. Limb directions are absolute angles in the torso frame (arms) or pelvis frame (legs),
which keeps the action library easy to write: an action says where each bone points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "head",
    "neck",
    "pelvis",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "l_hand",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "r_hand",
    "l_hip",
    "l_knee",
    "l_ankle",
    "l_foot",
    "r_hip",
    "r_knee",
    "r_ankle",
    "r_foot",
)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}
_LEG_IDS = {p: [JOINT_INDEX[f"{p}_{n}"] for n in ("hip", "knee", "ankle", "foot")] for p in ("l", "r")}

LEFT, RIGHT = 1.0, -1.0  # sign of x for the figure's left and right side


@dataclass(frozen=True)
class Body:
    """Bone lengths and limb radii of one figure, in body heights."""

    head_radius: float = 0.062
    neck_length: float = 0.035
    torso_length: float = 0.30
    shoulder_half_width: float = 0.105
    hip_half_width: float = 0.058
    upper_arm: float = 0.165
    forearm: float = 0.145
    hand: float = 0.045  # wrist to the middle of the hand (the 'hand' joint); the fingers go further
    thigh: float = 0.245
    shin: float = 0.235
    foot: float = 0.12
    # radii
    neck_radius: float = 0.024
    chest_radius: float = 0.095  # half width of the chest seen from the front
    chest_depth: float = 0.07  # half depth of the chest seen from the side
    waist_radius: float = 0.08
    shoulder_radius: float = 0.042
    hip_radius: float = 0.056
    upper_arm_radius: float = 0.03
    forearm_radius: float = 0.025
    hand_radius: float = 0.022
    thigh_radius: float = 0.047
    shin_radius: float = 0.035
    foot_radius: float = 0.022

    @staticmethod
    def build(build: float, leg_ratio: float, head_ratio: float, shoulder_ratio: float) -> Body:
        """A body whose girth, leg length, head size and shoulder width deviate from the default."""
        base = Body()
        girth_fields = {f.name for f in fields(Body) if f.name.endswith(("_radius", "_depth"))}
        girth_fields.discard("head_radius")
        changes: dict[str, float] = {name: getattr(base, name) * build for name in girth_fields}
        changes["thigh"] = base.thigh * leg_ratio
        changes["shin"] = base.shin * leg_ratio
        changes["head_radius"] = base.head_radius * head_ratio
        changes["shoulder_half_width"] = base.shoulder_half_width * shoulder_ratio * (0.75 + 0.25 * build)
        changes["hip_half_width"] = base.hip_half_width * (0.8 + 0.2 * build)
        return replace(base, **changes)


@dataclass
class ArmPose:
    """Absolute bone directions of one arm in the torso frame (radians).

    flex swings a bone from hanging down towards the front (pi/2 = straight ahead, pi = overhead);
    abduct swings it outwards to the figure's side (pi/2 = straight out sideways).
    """

    upper_flex: float = 0.0
    upper_abduct: float = 0.12
    fore_flex: float = 0.15
    fore_abduct: float = 0.1
    hand_flex: float = 0.15
    hand_abduct: float = 0.1


@dataclass
class LegPose:
    """Absolute bone directions of one leg in the pelvis frame (radians); see ArmPose.

    A bent knee is a shin with a smaller flex than its thigh (the shin points backwards).
    """

    thigh_flex: float = 0.0
    thigh_abduct: float = 0.04
    shin_flex: float = 0.0
    shin_abduct: float = 0.02
    foot_flex: float = math.pi / 2 - 0.1
    foot_abduct: float = 0.15


@dataclass
class Pose:
    """A full-body pose. The figure's feet are put on the ground after kinematics unless airborne."""

    spine_pitch: float = 0.0  # forward bend at the hips
    spine_roll: float = 0.0  # sideways bend, towards the figure's left when positive
    spine_twist: float = 0.0  # shoulders turned towards the figure's left when positive
    head_pitch: float = 0.0  # nod forward
    head_roll: float = 0.0
    head_yaw: float = 0.0
    yaw: float = 0.0  # whole body turn, added to the camera yaw
    root_x: float = 0.0  # sideways shift of the supporting feet (body frame)
    root_z: float = 0.0  # forward shift of the supporting feet
    lift: float = 0.0  # height of the lowest foot above the ground (jumps)
    # Where a wrist should be, in the stage frame (body-frame axes, origin on the floor at the
    # supporting feet); when set, the arm is solved by inverse kinematics instead of its angles.
    left_wrist_target: tuple[float, float, float] | None = None
    right_wrist_target: tuple[float, float, float] | None = None
    left_arm: ArmPose = field(default_factory=ArmPose)
    right_arm: ArmPose = field(default_factory=ArmPose)
    left_leg: LegPose = field(default_factory=LegPose)
    right_leg: LegPose = field(default_factory=LegPose)

    def mirrored(self) -> Pose:
        """The same pose with left and right exchanged (for left-handed clips)."""
        return replace(
            self,
            spine_roll=-self.spine_roll,
            spine_twist=-self.spine_twist,
            head_roll=-self.head_roll,
            head_yaw=-self.head_yaw,
            yaw=-self.yaw,
            root_x=-self.root_x,
            left_wrist_target=_mirror_point(self.right_wrist_target),
            right_wrist_target=_mirror_point(self.left_wrist_target),
            left_arm=self.right_arm,
            right_arm=self.left_arm,
            left_leg=self.right_leg,
            right_leg=self.left_leg,
        )


def _mirror_point(point: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
    return None if point is None else (-point[0], point[1], point[2])


def bone_direction(flex: float, abduct: float, side: float) -> np.ndarray:
    """Unit vector of a bone that hangs down, swung forward by flex, then outwards by abduct."""
    a = side * abduct
    return np.array(
        [math.sin(a) * math.cos(flex), -math.cos(a) * math.cos(flex), math.sin(flex)], dtype=np.float64
    )


def bone_directions(flex: list[float], abduct: list[float], side: list[float] | np.ndarray) -> np.ndarray:
    """bone_direction for many bones at once: (N, 3)."""
    f = np.asarray(flex)
    a = np.asarray(side) * np.asarray(abduct)
    cos_f = np.cos(f)
    return np.stack([np.sin(a) * cos_f, -np.cos(a) * cos_f, np.sin(f)], axis=1)


def rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    """Turn about the vertical axis; positive turns the figure's front towards its left (+x)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Kinematics:
    """World-space result of forward kinematics for one pose."""

    joints: np.ndarray  # (J, 3) world positions, feet on the ground (y = 0 is the floor)
    torso_frame: np.ndarray  # (3, 3) columns: torso left, up, forward in world space
    head_frame: np.ndarray  # (3, 3) columns: head left, up, forward in world space
    body_frame: np.ndarray  # (3, 3) columns: body left, up, forward (turn only, no bend)
    stage_origin: np.ndarray  # (3,) the floor point the stage frame (wrist targets, bench) starts at


def direction_angles(direction: np.ndarray, side: float) -> tuple[float, float]:
    """Inverse of bone_direction: (flex, abduct) of a unit vector for an arm or leg on `side`."""
    flex = math.asin(max(-1.0, min(1.0, float(direction[2]))))
    outward = math.atan2(float(direction[0]), -float(direction[1]))
    return flex, side * outward


def two_bone_ik(
    root: np.ndarray, target: np.ndarray, upper: float, lower: float, pole: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions of the two bones reaching from root towards target, bending towards pole."""
    offset = target - root
    distance = float(np.linalg.norm(offset))
    distance = min(max(distance, abs(upper - lower) + 1e-4), upper + lower - 1e-4)
    axis = offset / max(float(np.linalg.norm(offset)), 1e-9)
    bend = pole - axis * float(np.dot(pole, axis))
    norm = float(np.linalg.norm(bend))
    if norm < 1e-6:  # pole parallel to the reach: pick any perpendicular
        bend = np.cross(axis, np.array([1.0, 0.0, 0.0]))
        norm = float(np.linalg.norm(bend))
    bend /= norm
    along = (upper * upper - lower * lower + distance * distance) / (2.0 * distance)
    height = math.sqrt(max(upper * upper - along * along, 0.0))
    elbow = root + axis * along + bend * height
    upper_dir = (elbow - root) / upper
    end = root + axis * distance
    lower_dir = (end - elbow) / max(float(np.linalg.norm(end - elbow)), 1e-9)
    return upper_dir, lower_dir


_SIDES6 = np.array([LEFT] * 3 + [RIGHT] * 3)
_ARM_IDS = {p: [JOINT_INDEX[f"{p}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")] for p in ("l", "r")}
_ANKLES = [JOINT_INDEX["l_ankle"], JOINT_INDEX["r_ankle"]]
_FEET = [JOINT_INDEX[n] for n in ("l_ankle", "l_foot", "r_ankle", "r_foot")]


def _limb_directions(
    flex: list[float], abduct: list[float], lengths: np.ndarray, rot: np.ndarray
) -> np.ndarray:
    """World-space bone vectors (6, 3) for three bones of each side (left first), scaled by length."""
    return (bone_directions(flex, abduct, _SIDES6) * lengths[:, None]) @ rot.T


def forward_kinematics(pose: Pose, body: Body, view_yaw: float) -> Kinematics:
    """World joint positions for a pose seen from a camera turned by view_yaw around the figure."""
    body_rot = rot_y(view_yaw + pose.yaw)
    torso_rot = body_rot @ rot_y(pose.spine_twist) @ rot_x(pose.spine_pitch) @ rot_z(-pose.spine_roll)
    head_rot = torso_rot @ rot_y(pose.head_yaw) @ rot_x(pose.head_pitch) @ rot_z(-pose.head_roll)

    joints = np.zeros((len(JOINT_NAMES), 3))
    neck = torso_rot[:, 1] * body.torso_length  # the pelvis is the origin
    joints[JOINT_INDEX["neck"]] = neck
    joints[JOINT_INDEX["head"]] = neck + head_rot[:, 1] * (body.neck_length + body.head_radius * 1.1)

    # Both legs at once: one vectorised direction computation instead of six small ones.
    legs = (pose.left_leg, pose.right_leg)
    leg_dirs = _limb_directions(
        [a for leg in legs for a in (leg.thigh_flex, leg.shin_flex, leg.foot_flex)],
        [a for leg in legs for a in (leg.thigh_abduct, leg.shin_abduct, leg.foot_abduct)],
        np.array([body.thigh, body.shin, body.foot] * 2),
        body_rot,
    )
    hips = np.array([[LEFT * body.hip_half_width, -0.02, 0.0], [RIGHT * body.hip_half_width, -0.02, 0.0]])
    hips = hips @ body_rot.T
    for k, prefix in enumerate(("l", "r")):
        joints[_LEG_IDS[prefix]] = np.cumsum(
            np.vstack([hips[k : k + 1], leg_dirs[3 * k : 3 * k + 3]]), axis=0
        )

    # Feet on the floor: the lowest point of either foot touches y = 0, then the pose may lift off.
    # The supporting foot (the lower one, or both equally) is anchored so feet do not slide as the
    # body bends; root_x / root_z place that support in the body frame.
    sole = joints[_FEET, 1].min() - body.foot_radius
    heights = joints[_ANKLES, 1]
    weights = np.exp(-(heights - heights.min()) / 0.015)
    anchor = (weights[:, None] * joints[_ANKLES]).sum(axis=0) / weights.sum()
    stage_origin = body_rot @ np.array([pose.root_x, 0.0, pose.root_z])
    shift = np.array([stage_origin[0] - anchor[0], pose.lift - sole, stage_origin[2] - anchor[2]])

    arms = (pose.left_arm, pose.right_arm)
    arm_dirs = _limb_directions(
        [a for arm in arms for a in (arm.upper_flex, arm.fore_flex, arm.hand_flex)],
        [a for arm in arms for a in (arm.upper_abduct, arm.fore_abduct, arm.hand_abduct)],
        np.array([body.upper_arm, body.forearm, body.hand] * 2),
        torso_rot,
    )
    shoulders = np.array(
        [[LEFT * body.shoulder_half_width, -0.035, 0.0], [RIGHT * body.shoulder_half_width, -0.035, 0.0]]
    )
    shoulders = neck + shoulders @ torso_rot.T
    for k, (prefix, side, target) in enumerate(
        (("l", LEFT, pose.left_wrist_target), ("r", RIGHT, pose.right_wrist_target))
    ):
        if target is not None:
            # the target is in the stage frame; elbows bend outwards and down
            goal = stage_origin + body_rot @ np.asarray(target) - shift
            pole = torso_rot @ np.array([side * 0.8, -1.0, -0.25])
            upper_dir, fore_dir = two_bone_ik(shoulders[k], goal, body.upper_arm, body.forearm, pole)
            arm_dirs[3 * k] = upper_dir * body.upper_arm
            arm_dirs[3 * k + 1] = fore_dir * body.forearm
        joints[_ARM_IDS[prefix]] = np.cumsum(
            np.vstack([shoulders[k : k + 1], arm_dirs[3 * k : 3 * k + 3]]), axis=0
        )

    joints += shift
    return Kinematics(
        joints=joints,
        torso_frame=torso_rot,
        head_frame=head_rot,
        body_frame=body_rot,
        stage_origin=stage_origin,
    )
