"""A continuous family of motions for pretraining, and a joint-trajectory distance that keeps it apart
from the held-out actions.

A family motion (`MotionParams`) moves one or several limb groups (each arm, each leg, the torso,
the head) from the figure's rest pose through eased moves between key poses, with holds, an
optional return to rest and repetitions, at a drawn speed and amplitude. Key poses are drawn within
anatomical ranges of the skeleton's angles (`RANGES`). `family_action(params)` wraps a motion in an
`ActionDef`, so `render_clip(family_action(params), seed)` renders it like any named action and
records the parameters in `meta["motion"]`.

Step cap: `sample_motion` times every move so that no joint travels more than `STEP_CAP` = 0.12 body
heights between two of the clip's frames at its fps. Moves are timed on the canonical body in 3-D
(a projection never moves a joint further) for 0.8 of the cap, so that other bodies, rest poses and
the sway every clip has stay within it.

Held-out actions stay held out: `sample_family_motion` rejects every draw whose signature comes
within `HELDOUT_MARGIN` of a held-out action's (`nearest_heldout`). A signature is a clip's joint
displacements from frame 0 in body heights, rendered with a canonical body and a front camera so
body shape and framing do not count; `motion_distance` compares two of them with dynamic time
warping (so speed and timing count little), mirrored too (so handedness does not count), relative
to the larger motion's size (so one margin serves large and delicate actions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from flashcli.figureworld.actions import ACTIONS
from flashcli.figureworld.actions.base import ActionDef, Frame, Variation, arm, leg, rest_pose, smoothstep
from flashcli.figureworld.camera import Camera
from flashcli.figureworld.render import Clip, render_clip
from flashcli.figureworld.skeleton import JOINT_NAMES, Body, Pose, forward_kinematics
from flashcli.figureworld.splits import HELDOUT_ACTIONS

FAMILY_NAME = "family"  # the action name family clips are seeded and recorded under
STEP_CAP = 0.12  # the most a joint may move between two frames, in body heights
HELDOUT_MARGIN = 0.6  # a family clip's least distance to any held-out action (see motion_distance)
_STEP_SAFETY = 0.8  # moves are timed for this share of the cap: other bodies and rests move a bit more

GROUPS: tuple[str, ...] = ("left_arm", "right_arm", "left_leg", "right_leg", "torso", "head")
_KIND = {"left_arm": "arm", "right_arm": "arm", "left_leg": "leg", "right_leg": "leg"}
_KIND |= {"torso": "torso", "head": "head"}
# Angles (radians) each kind of group is keyed on; see actions.base.arm / leg and skeleton.Pose.
DOFS: dict[str, tuple[str, ...]] = {
    "arm": ("flex", "abduct", "elbow", "wrist", "fore"),  # fore: forearm swung further out than the arm
    "leg": ("flex", "abduct", "knee", "ankle"),
    "torso": ("pitch", "roll", "twist"),
    "head": ("pitch", "roll", "yaw"),
}
# Anatomical ranges of key poses (the rest pose lies inside them, so every eased pose does too).
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "arm": {
        "flex": (-0.7, 2.95),
        "abduct": (0.0, 2.9),
        "elbow": (0.0, 2.3),
        "wrist": (-0.7, 0.7),
        "fore": (-0.4, 1.4),
    },
    "leg": {"flex": (-0.6, 1.7), "abduct": (-0.05, 0.75), "knee": (0.0, 2.3), "ankle": (-0.3, 0.6)},
    "torso": {"pitch": (-0.3, 1.4), "roll": (-0.5, 0.5), "twist": (-0.7, 0.7)},
    "head": {"pitch": (-0.55, 0.65), "roll": (-0.4, 0.4), "yaw": (-1.1, 1.1)},
}

CANONICAL_BODY = Body()
CANONICAL_VARIATION = Variation(
    speed=1.0,
    amplitude=1.0,
    phase=0.0,
    handed=1.0,
    arm_rest=0.14,
    stance=0.06,
    lean=0.025,
    head_tilt=0.0,
    extra=(0.25, 0.25, 0.25, 0.0),
)
_FRONT = Camera(scale=1.0, origin_x=0.0, ground_y=0.0)  # one unit per body height
_MIRROR = np.array(
    [
        JOINT_NAMES.index(n.replace("l_", "r_", 1) if n.startswith("l_") else n.replace("r_", "l_", 1))
        for n in JOINT_NAMES
    ]
)
_FLOOR = 0.05  # body heights: motions smaller than this are compared as if this big
_BAND = 0.4  # DTW may shift a frame by at most this share of the clip
_COVER = 0.6  # DTW may stop one clip early, after this share of it


def kind(group: str) -> str:
    """'arm', 'leg', 'torso' or 'head'."""
    if group not in _KIND:
        raise ValueError(f"unknown limb group {group!r}; the groups are {', '.join(GROUPS)}")
    return _KIND[group]


@dataclass(frozen=True)
class MotionParams:
    """One family motion. Times are seconds at speed 1; the clip runs them `speed` times faster.

    The timeline: rest for `start_hold`, then `repeats` times: move to key 0, hold, move to key 1,
    hold, ... and, if `returns`, move back to rest. `keys[k][g]` holds the angles (DOFS of the
    group's kind) of `groups[g]` in key pose k; `amplitude` pulls every key towards the clip's rest
    pose (1 = as drawn). Groups not listed stay at rest.
    """

    groups: tuple[str, ...]
    keys: tuple[tuple[tuple[float, ...], ...], ...]
    moves: tuple[float, ...]  # duration of each move: to every key, then back to rest if returns
    holds: tuple[float, ...]  # how long each key is held
    start_hold: float
    returns: bool
    repeats: int
    speed: float
    amplitude: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: key angles by group and angle name."""
        keys = [
            {
                g: dict(zip(DOFS[kind(g)], values, strict=True))
                for g, values in zip(self.groups, key, strict=True)
            }
            for key in self.keys
        ]
        return {
            "family": FAMILY_NAME,
            "groups": list(self.groups),
            "keys": keys,
            "moves": list(self.moves),
            "holds": list(self.holds),
            "start_hold": self.start_hold,
            "returns": self.returns,
            "repeats": self.repeats,
            "speed": self.speed,
            "amplitude": self.amplitude,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> MotionParams:
        """The inverse of as_dict (a clip's sidecar "motion" entry)."""
        groups = tuple(str(g) for g in data["groups"])
        keys = tuple(
            tuple(tuple(float(key[g][name]) for name in DOFS[kind(g)]) for g in groups)
            for key in data["keys"]
        )
        return MotionParams(
            groups=groups,
            keys=keys,
            moves=tuple(float(m) for m in data["moves"]),
            holds=tuple(float(h) for h in data["holds"]),
            start_hold=float(data["start_hold"]),
            returns=bool(data["returns"]),
            repeats=int(data["repeats"]),
            speed=float(data["speed"]),
            amplitude=float(data["amplitude"]),
        )

    def duration(self) -> float:
        """Seconds from the first frame until the motion is over (at its speed)."""
        return (self.start_hold + self.repeats * (sum(self.moves) + sum(self.holds))) / self.speed


# ---------------------------------------------------------------- poses


def rest_values(group: str, v: Variation) -> tuple[float, ...]:
    """The group's angles in rest_pose(v), in DOFS order."""
    k = kind(group)
    if k == "arm":
        return (0.02, v.arm_rest, 0.18, 0.0, 0.0)
    if k == "leg":
        return (0.0, v.stance, 0.0, 0.0)
    if k == "torso":
        return (v.lean, 0.0, 0.0)
    return (0.0, v.head_tilt, 0.0)


def _apply(pose: Pose, group: str, values: tuple[float, ...] | np.ndarray) -> Pose:
    """The pose with one group set to these angles (built like rest_pose, so rest stays rest exactly)."""
    x = [float(a) for a in values]
    k = kind(group)
    if k == "arm":
        limb = arm(x[0], x[1], elbow=x[2], wrist=x[3], fore_abduct=x[1] + x[4])
        return replace(pose, left_arm=limb) if group == "left_arm" else replace(pose, right_arm=limb)
    if k == "leg":
        limb_leg = leg(x[0], x[1], knee=x[2], ankle=x[3])
        return replace(pose, left_leg=limb_leg) if group == "left_leg" else replace(pose, right_leg=limb_leg)
    if k == "torso":
        return replace(pose, spine_pitch=x[0], spine_roll=x[1], spine_twist=x[2])
    return replace(pose, head_pitch=x[0], head_roll=x[1], head_yaw=x[2])


def _pose_of(groups: tuple[str, ...], values: list[np.ndarray], v: Variation) -> Pose:
    pose = rest_pose(v)
    for group, vals in zip(groups, values, strict=True):
        pose = _apply(pose, group, vals)
    return pose


def _scaled_keys(params: MotionParams, v: Variation) -> list[list[np.ndarray]]:
    """Key angles pulled towards this clip's rest by the amplitude: [key][group] arrays."""
    rests = [np.array(rest_values(g, v)) for g in params.groups]
    return [
        [r + params.amplitude * (np.array(k) - r) for r, k in zip(rests, key, strict=True)]
        for key in params.keys
    ]


def _timeline(params: MotionParams) -> list[tuple[float, int, int, int]]:
    """(seconds at speed 1, from, to, move) segments; -1 is rest; a hold has from == to and move -1."""
    segments = [(params.start_hold, -1, -1, -1)]
    n = len(params.keys)
    for _ in range(params.repeats):
        previous = -1
        for k in range(n):
            segments += [(params.moves[k], previous, k, k), (params.holds[k], k, k, -1)]
            previous = k
        if params.returns:
            segments.append((params.moves[n], n - 1, -1, n))
    return segments


def _values_at(params: MotionParams, t: float, v: Variation) -> list[np.ndarray]:
    """Every moving group's angles t seconds into the clip."""
    rests = [np.array(rest_values(g, v)) for g in params.groups]
    keys = _scaled_keys(params, v)

    def at(index: int) -> list[np.ndarray]:
        return rests if index < 0 else keys[index]

    u = t * params.speed
    segments = _timeline(params)
    for seconds, a, b, _ in segments:
        if u < seconds:
            s = smoothstep(u / seconds)
            return [x + s * (y - x) for x, y in zip(at(a), at(b), strict=True)]
        u -= seconds
    return at(segments[-1][2])


def family_action(params: MotionParams) -> ActionDef:
    """An ActionDef that plays the motion (large scale, no props), for render_clip.

    The clip's Variation gives only the rest pose (arm angle, stance, lean, head tilt) and the
    small sway every action has; speed, amplitude, phase and sides are the motion's own, so the
    recorded parameters describe exactly what the clip shows.
    """

    def motion(cycle: float, t: float, v: Variation) -> Frame:
        pose = _pose_of(params.groups, _values_at(params, t, v), v)
        # ActionDef.frame mirrors left-handed clips; mirror first so the named limbs are the ones moving.
        return Frame(pose.mirrored() if v.handed < 0 else pose)

    return ActionDef(
        name=FAMILY_NAME,
        description="a generated motion: " + ", ".join(params.groups),
        scale="large",
        period=max(params.duration() * params.speed, 1e-3),
        motion=motion,
        motion_params=params.as_dict(),
    )


# ---------------------------------------------------------------- sampling


def _uniform(rng: np.random.Generator, k: str, name: str) -> float:
    low, high = RANGES[k][name]
    return float(rng.uniform(low, high))


def _clip_to_range(k: str, values: list[float]) -> tuple[float, ...]:
    return tuple(float(np.clip(x, *RANGES[k][n])) for n, x in zip(DOFS[k], values, strict=True))


def _arm_key(rng: np.random.Generator) -> tuple[float, ...]:
    """An arm pose: swung forward/up, out to the side/up, or diagonally (these angles read well)."""
    plane = rng.random()
    if plane < 0.4:
        flex, abduct = rng.uniform(-0.7, 2.95), rng.uniform(0.02, 0.35)
    elif plane < 0.8:
        flex, abduct = rng.uniform(-0.15, 0.45), rng.uniform(0.1, 2.9)
    else:
        flex, abduct = rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.3)
    elbow = rng.uniform(0.0, 2.3) if rng.random() < 0.6 else rng.uniform(0.0, 0.4)
    fore = rng.uniform(-0.4, 1.4) if rng.random() < 0.3 else 0.0
    return _clip_to_range("arm", [flex, abduct, elbow, _uniform(rng, "arm", "wrist"), fore])


def _leg_key(rng: np.random.Generator, support: bool) -> tuple[float, ...]:
    """A lifted leg, or (support) one that still carries the body: shin near upright, knee soft."""
    if support:
        flex = rng.uniform(0.0, 0.3)
        return _clip_to_range("leg", [flex, rng.uniform(0.0, 0.35), flex + rng.uniform(0.0, 0.3), 0.0])
    return _clip_to_range(
        "leg",
        [
            _uniform(rng, "leg", "flex"),
            _uniform(rng, "leg", "abduct"),
            _uniform(rng, "leg", "knee"),
            _uniform(rng, "leg", "ankle"),
        ],
    )


def _crouch_keys(rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Both legs bending together (squatting, a wide or narrow stance)."""
    depth = rng.uniform(0.15, 1.0)
    legs = []
    for _ in range(2):
        flex = 1.4 * depth + rng.normal(0.0, 0.08)
        legs.append(
            _clip_to_range("leg", [flex, rng.uniform(0.0, 0.6), 2.1 * depth + rng.normal(0.0, 0.12), 0.0])
        )
    return legs[0], legs[1]


def _axis_key(rng: np.random.Generator, k: str) -> tuple[float, ...]:
    """Torso or head: each angle moves with probability 0.6, else stays near upright."""
    return tuple(_uniform(rng, k, n) if rng.random() < 0.6 else 0.0 for n in DOFS[k])


def _draw_groups(rng: np.random.Generator) -> tuple[str, ...]:
    count = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.35, 0.17, 0.08]))
    picked = set(rng.choice(len(GROUPS), size=count, replace=False).tolist())
    return tuple(g for i, g in enumerate(GROUPS) if i in picked)


def _draw_key(
    rng: np.random.Generator, groups: tuple[str, ...], symmetric: bool
) -> tuple[tuple[float, ...], ...]:
    """One key pose of the moving groups. Symmetric: both arms (and both legs) mirror each other."""
    values: dict[str, tuple[float, ...]] = {}
    both_legs = "left_leg" in groups and "right_leg" in groups
    if both_legs and (symmetric or rng.random() < 0.5):
        values["left_leg"], values["right_leg"] = _crouch_keys(rng)
    elif both_legs:  # one lifts, the other carries the body
        lifted = "left_leg" if rng.random() < 0.5 else "right_leg"
        values["left_leg"] = _leg_key(rng, support=lifted != "left_leg")
        values["right_leg"] = _leg_key(rng, support=lifted != "right_leg")
    for g in groups:
        if g in values:
            continue
        if kind(g) == "arm":
            other = "right_arm" if g == "left_arm" else "left_arm"
            values[g] = values[other] if symmetric and other in values else _arm_key(rng)
        elif kind(g) == "leg":
            values[g] = _leg_key(rng, support=False)
        else:
            values[g] = _axis_key(rng, kind(g))
    return tuple(values[g] for g in groups)


def _move_windows(params: MotionParams) -> list[tuple[int, float, float]]:
    """(move index, start, end) in clip seconds of every move on the timeline."""
    windows = []
    clock = 0.0
    for seconds, _, _, move in _timeline(params):
        if move >= 0:
            windows.append((move, clock / params.speed, (clock + seconds) / params.speed))
        clock += seconds
    return windows


def _slowed(params: MotionParams, steps: np.ndarray, fps: float) -> MotionParams:
    """The motion with every move that breaks the (safe) cap somewhere in the clip made longer."""
    target = STEP_CAP * _STEP_SAFETY
    factors = [1.0] * len(params.moves)
    for move, start, end in _move_windows(params):
        first, last = int(start * fps), int(math.ceil(end * fps))  # frame intervals touching the move
        worst = float(steps[first:last].max()) if first < min(last, len(steps)) else 0.0
        factors[move] = max(factors[move], 1.15 * worst / target)  # a little extra: frames fall anew
    return replace(params, moves=tuple(m * f for m, f in zip(params.moves, factors, strict=True)))


def _shortest_moves(params: MotionParams, fps: float) -> tuple[float, ...]:
    """A first guess at each move's shortest duration (seconds at speed 1) within the safe cap, from
    how far joints travel between its two poses (smoothstep's steepest slope is 1.5 x the mean)."""
    rests = [np.array(rest_values(g, CANONICAL_VARIATION)) for g in params.groups]
    keys = _scaled_keys(params, CANONICAL_VARIATION)
    stops = [rests, *keys] + ([rests] if params.returns else [])
    joints = [
        forward_kinematics(_pose_of(params.groups, stop, CANONICAL_VARIATION), CANONICAL_BODY, 0.0).joints
        for stop in stops
    ]
    travel = [float(np.linalg.norm(b - a, axis=1).max()) for a, b in zip(joints, joints[1:], strict=False)]
    return tuple(1.5 * d * params.speed / (STEP_CAP * _STEP_SAFETY * fps) for d in travel)


def _timed_to_cap(draft: MotionParams, fps: float, frames: int) -> tuple[MotionParams, np.ndarray]:
    """The draft slowed until no joint of the canonical body moves more than the safe share of the
    cap between two of the clip's frames, and its (F, J, 3) track."""
    shortest = _shortest_moves(draft, fps)
    params = replace(draft, moves=tuple(max(m, s) for m, s in zip(draft.moves, shortest, strict=True)))
    for _ in range(20):
        track = canonical_track(family_action(params), CANONICAL_VARIATION, fps=fps, frames=frames)
        steps = np.linalg.norm(np.diff(track, axis=0), axis=2).max(axis=1)
        if steps.size == 0 or steps.max() <= STEP_CAP * _STEP_SAFETY:
            return params, track
        params = _slowed(params, steps, fps)
    raise RuntimeError(f"could not time the motion within the step cap: {draft}")


def _draw(rng: np.random.Generator, fps: float, frames: int) -> tuple[MotionParams, np.ndarray]:
    """sample_motion, with the draw's canonical (F, J, 3) track."""
    span = max((frames - 1) / fps, 0.5)
    groups = _draw_groups(rng)
    symmetric = rng.random() < 0.4
    n_keys = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    keys = tuple(_draw_key(rng, groups, symmetric) for _ in range(n_keys))
    returns = bool(rng.random() < 0.7)
    repeats = 2 if returns and rng.random() < 0.3 else 1
    n_moves = n_keys + int(returns)
    share = span / (n_moves * repeats)
    draft = MotionParams(
        groups=groups,
        keys=keys,
        moves=tuple(float(rng.uniform(0.35, 0.8) * share) for _ in range(n_moves)),
        holds=tuple(float(rng.uniform(0.0, 0.3) * share) for _ in range(n_keys)),
        start_hold=float(rng.uniform(0.0, 0.15) * span) if rng.random() < 0.5 else 0.0,
        returns=returns,
        repeats=repeats,
        speed=float(rng.uniform(0.8, 1.25)),
        amplitude=float(rng.uniform(0.35, 1.0)),
    )
    return _timed_to_cap(draft, fps, frames)


def sample_motion(rng: np.random.Generator, *, fps: float, frames: int) -> MotionParams:
    """A seeded draw from the family, from rest, timed to play within about `frames` frames at `fps`.

    Moves that would break the step cap within the clip's frames are slowed down (so a big move may
    run past the clip's end)."""
    return _draw(rng, fps, frames)[0]


# ---------------------------------------------------------------- signatures and distance


def canonical_track(definition: ActionDef, variation: Variation, *, fps: float, frames: int) -> np.ndarray:
    """(F, J, 3) world joints of the action on the canonical body, facing the camera, without the
    sway every clip has (body heights)."""
    out = np.empty((frames, len(JOINT_NAMES), 3))
    for i in range(frames):
        pose = definition.frame(i / fps, variation, sway=False).pose
        out[i] = forward_kinematics(pose, CANONICAL_BODY, 0.0).joints
    return out


def _front(track: np.ndarray) -> np.ndarray:
    """(F, J, 3) world joints -> (F, J, 2) as the front camera sees them, one unit per body height."""
    return _FRONT.project(track.reshape(-1, 3))[0].reshape(*track.shape[:-1], 2)


def canonical_joints(definition: ActionDef, variation: Variation, *, fps: float, frames: int) -> np.ndarray:
    """(F, J, 2) joints of the action on the canonical body, seen from the front, in body heights."""
    return _front(canonical_track(definition, variation, fps=fps, frames=frames))


def motion_signature(joints: np.ndarray, height: float | None = None) -> np.ndarray:
    """(F, J, 2) joint positions -> (F, J, 2) displacements from frame 0, in body heights.

    height: the body's height in the joints' units; None takes the span of frame 0's joints
    (head centre to toes, about 0.9 of a standing body's height)."""
    joints = np.asarray(joints, dtype=np.float64)
    if height is None:
        height = float(np.ptp(joints[0, :, 1]))
    return (joints - joints[0]) / max(height, 1e-9)


def mirror_signature(signature: np.ndarray) -> np.ndarray:
    """The same motion done with the other side: x flipped, left and right joints exchanged."""
    mirrored = signature[..., _MIRROR, :].copy()
    mirrored[..., 0] *= -1.0
    return mirrored


def _frame_norms(signature: np.ndarray) -> np.ndarray:
    """(..., F) how far the whole body is from its first frame (L2 over every joint), per frame."""
    return np.linalg.norm(signature.reshape(*signature.shape[:-2], -1), axis=-1)


@lru_cache(maxsize=32)
def _band_diagonals(frames_a: int, frames_b: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The cells DTW may use (near the straight line from first frames to last), by anti-diagonal."""
    i = np.arange(frames_a)[:, None] / max(frames_a - 1, 1)
    j = np.arange(frames_b)[None, :] / max(frames_b - 1, 1)
    width = max(_BAND, 1.5 / max(min(frames_a, frames_b) - 1, 1))
    rows, cols = np.nonzero(np.abs(i - j) <= width)
    order = rows + cols
    return tuple((rows[order == k], cols[order == k]) for k in range(1, frames_a + frames_b - 1))


def _dtw(cost: np.ndarray) -> np.ndarray:
    """Average cost of the best warped alignment, for a batch of (R, F, G) frame-to-frame costs.

    Symmetric steps (a diagonal step counts twice), so every frame on the path weighs the same and
    the result is a mean over the frames matched. Both clips start together; either may stop early,
    after at least _COVER of it (a clip up to 1 / _COVER times faster shows more of the motion).
    Computed one anti-diagonal at a time, on a table padded with an impossible row and column."""
    count, frames_a, frames_b = cost.shape
    total = np.full((count, frames_a + 1, frames_b + 1), np.inf)
    total[:, 1, 1] = 2.0 * cost[:, 0, 0]
    for rows, cols in _band_diagonals(frames_a, frames_b):
        here = cost[:, rows, cols]
        diagonal = total[:, rows, cols] + 2.0 * here
        down = total[:, rows, cols + 1] + here
        across = total[:, rows + 1, cols] + here
        total[:, rows + 1, cols + 1] = np.minimum(diagonal, np.minimum(down, across))
    first_b = math.ceil(_COVER * (frames_b - 1))
    first_a = math.ceil(_COVER * (frames_a - 1))
    last_row = total[:, -1, first_b + 1 :] / (frames_a + np.arange(first_b + 1, frames_b + 1))
    last_col = total[:, first_a + 1 :, -1] / (frames_b + np.arange(first_a + 1, frames_a + 1))
    return np.minimum(last_row.min(axis=1), last_col.min(axis=1))


def stillness(signatures: np.ndarray, frames: int) -> np.ndarray:
    """DTW distance of each signature (..., F, J, 2) from standing still for `frames` frames."""
    norms = _frame_norms(signatures).reshape(-1, signatures.shape[-3])
    cost = np.broadcast_to(norms[:, :, None], (norms.shape[0], norms.shape[1], frames))
    return _dtw(cost).reshape(signatures.shape[:-3])


def _distances(signature: np.ndarray, others: np.ndarray, others_still: np.ndarray) -> np.ndarray:
    """motion_distance without the mirror, from one signature (F, J, 2) to many (R, G, J, 2), given
    stillness(others, F)."""
    a = signature.reshape(signature.shape[0], -1)
    b = others.reshape(others.shape[0], others.shape[1], -1)
    # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y; many small products (single-threaded, fast on a busy machine)
    dots = np.matmul(a, b.transpose(0, 2, 1))
    squared = (a * a).sum(-1)[None, :, None] + (b * b).sum(-1)[:, None, :] - 2.0 * dots
    cost = np.sqrt(np.maximum(squared, 0.0))
    scale = np.maximum(np.maximum(stillness(signature, others.shape[1]), others_still), _FLOOR)
    return _dtw(cost) / scale


def motion_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How different two motions are: 0 the same, 1 as different as the larger is from standing still.

    The DTW mean of the whole-body displacement difference (body heights) between signatures a and
    b, divided by the larger one's DTW distance from a still clip (at least _FLOOR body heights); the
    smaller of b as it is and mirrored. Two motions of different joints are about 1 apart or more."""
    return float(motion_distances(a, b[None])[0])


def motion_distances(a: np.ndarray, others: np.ndarray) -> np.ndarray:
    """motion_distance from signature a (F, J, 2) to each of others (R, G, J, 2), in one batch."""
    both = np.concatenate([others, mirror_signature(others)])
    distances = _distances(a, both, stillness(both, a.shape[0]))
    return np.minimum(distances[: len(others)], distances[len(others) :])


# ---------------------------------------------------------------- held-out actions

# Their own speed range, and slower (a slow version is what a step-capped family motion could
# come near). Neighbours are at most 1.3x apart; DTW with an open end bridges up to 1 / _COVER.
HELDOUT_SPEEDS = (1.25, 1.05, 0.85, 0.65, 0.48, 0.35, 0.25, 0.17)
HELDOUT_AMPLITUDES = (0.8, 1.12)  # their own range's ends
# Action-specific choices (Variation.extra: hands on hips or not, which screw, typing rhythm, ...):
# a 3 x 3 grid over the first two, of which each action keeps the ones that change its motion.
HELDOUT_EXTRAS = tuple((a, b, a, 0.0) for a in (0.0, 1 / 3, 2 / 3) for b in (0.0, 1 / 3, 2 / 3))
_SAME = 0.005  # body heights: references no further apart than this anywhere are kept once


def _action_signature(name: str, variation: Variation, fps: float, frames: int) -> np.ndarray:
    return motion_signature(canonical_joints(ACTIONS[name], variation, fps=fps, frames=frames), 1.0)


def _is_new(sig: np.ndarray, kept: list[np.ndarray]) -> bool:
    return all(np.abs(sig - other).max() > _SAME for other in kept)


def _extras_that_matter(name: str, fps: float, frames: int) -> list[tuple[float, float, float, float]]:
    """The HELDOUT_EXTRAS that give the action motions of its own (most actions ignore them)."""
    kept: list[np.ndarray] = []
    extras = []
    for extra in HELDOUT_EXTRAS:
        sig = _action_signature(name, replace(CANONICAL_VARIATION, extra=extra), fps, frames)
        if _is_new(sig, kept):
            kept.append(sig)
            extras.append(extra)
    return extras


def heldout_variations(name: str, *, fps: float, frames: int) -> list[Variation]:
    """The variations a held-out action is rendered with: from rest (phase 0), right-handed. Slower
    than its own range, only the grid's diagonal of choices (still every style: arms, screw, ...)."""
    extras = _extras_that_matter(name, fps, frames)
    return [
        replace(CANONICAL_VARIATION, speed=s, amplitude=a, extra=e)
        for s in HELDOUT_SPEEDS
        for e in extras
        if s >= 0.8 or e[0] == e[1]
        for a in HELDOUT_AMPLITUDES
    ]


@lru_cache(maxsize=8)
def heldout_signatures(fps: float, frames: int) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Names, signatures (R, F, J, 2) and stillness of the held-out actions in every variation, as
    done and mirrored (near copies once)."""
    names: list[str] = []
    signatures: list[np.ndarray] = []
    for name in HELDOUT_ACTIONS:
        own: list[np.ndarray] = []
        for variation in heldout_variations(name, fps=fps, frames=frames):
            sig = _action_signature(name, variation, fps, frames)
            for candidate in (sig, mirror_signature(sig)):
                if _is_new(candidate, own):
                    own.append(candidate)
        signatures += own
        names += [name] * len(own)
    stacked = np.stack(signatures)
    return tuple(names), stacked, stillness(stacked, frames)


def nearest_heldout(signature: np.ndarray, *, fps: float) -> tuple[float, str]:
    """The least motion_distance from a signature to any held-out action rendered over as many
    frames at fps, and that action's name."""
    names, references, still = heldout_signatures(float(fps), int(signature.shape[0]))
    distances = _distances(signature, references, still)
    best = int(np.argmin(distances))
    return float(distances[best]), names[best]


def family_signature(params: MotionParams, *, fps: float, frames: int) -> np.ndarray:
    """The motion's signature on the canonical body, seen from the front."""
    joints = canonical_joints(family_action(params), CANONICAL_VARIATION, fps=fps, frames=frames)
    return motion_signature(joints, 1.0)


def sample_family_motion(
    rng: np.random.Generator, *, fps: float, frames: int, max_tries: int = 200
) -> MotionParams:
    """sample_motion, redrawn until the clip is at least HELDOUT_MARGIN from every held-out action."""
    for _ in range(max_tries):
        params, track = _draw(rng, fps, frames)
        distance, _ = nearest_heldout(motion_signature(_front(track), 1.0), fps=fps)
        if distance >= HELDOUT_MARGIN:
            return params
    raise RuntimeError(f"no family motion clear of the held-out actions in {max_tries} draws")


def render_family_clip(seed: int, *, fps: float = 8, frames: int = 17, **render_kwargs: Any) -> Clip:
    """The seed's family clip: its motion drawn from np.random.default_rng(seed) (clear of the held-out
    actions), its look from the seed as for any action; render_clip's other options pass through."""
    params = sample_family_motion(np.random.default_rng(seed), fps=fps, frames=frames)
    return render_clip(family_action(params), seed, fps=fps, frames=frames, **render_kwargs)


__all__ = [
    "FAMILY_NAME",
    "HELDOUT_MARGIN",
    "STEP_CAP",
    "MotionParams",
    "family_action",
    "family_signature",
    "motion_distance",
    "motion_distances",
    "motion_signature",
    "nearest_heldout",
    "render_family_clip",
    "sample_family_motion",
    "sample_motion",
]
