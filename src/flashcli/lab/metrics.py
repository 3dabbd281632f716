"""The benchmark's scores, as pure numpy functions (no torch, no flashcli).

Conventions: video = uint8 (F, H, W, 3); photo = uint8 (H, W, 3); joints = float (F, J, 2) pixel x, y;
`valid` = bool (F, J) marks joints that count (e.g. inside the picture); `scale` = the body height in
pixels, so joint errors read as % of body height whatever the resolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# ----- pixels --------------------------------------------------------------------------------------


def psnr(image: np.ndarray, reference: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; inf when the two are identical."""
    if image.shape != reference.shape:
        raise ValueError(f"psnr needs equal shapes, got {image.shape} and {reference.shape}")
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def first_frame_psnr(video: np.ndarray, photo: np.ndarray) -> float:
    """PSNR of frame 0 against the photo; flash promises inf (frame 0 is the photo)."""
    return psnr(video[0], photo)


def frame1_psnr(video: np.ndarray, photo: np.ndarray) -> float:
    """PSNR of frame 1 against the photo: how much of the photo's detail survives the first step."""
    if len(video) < 2:
        raise ValueError("frame1_psnr needs at least 2 frames")
    return psnr(video[1], photo)


def _mean_abs_steps(video: np.ndarray) -> np.ndarray:
    """Mean |f(t+1) - f(t)| per t, shape (F-1,)."""
    return np.abs(np.diff(video.astype(np.float64), axis=0)).mean(axis=tuple(range(1, video.ndim)))


def transition_jump(video: np.ndarray) -> float:
    """mean|f1 - f0| / mean over t >= 1 of mean|f(t+1) - f(t)|.

    1.0: the step out of the photo is as large as the video's other steps; much above 1: a visible
    jump. inf when only the first step moves; nan for a video that never moves.
    """
    if len(video) < 3:
        raise ValueError("transition_jump needs at least 3 frames")
    steps = _mean_abs_steps(video)
    later = float(steps[1:].mean())
    if later == 0:
        return math.inf if steps[0] > 0 else math.nan
    return float(steps[0] / later)


def temporal_roughness(video: np.ndarray) -> float:
    """mean|f(t+1) - 2 f(t) + f(t-1)| / mean|f(t+1) - f(t)| over frames 1.. (the generated ones).

    Scale-free: 0 for motion at constant speed, about 1.7 for independent per-frame flicker; lower is
    smoother. nan for a video whose generated frames never move.
    """
    if len(video) < 4:
        raise ValueError("temporal_roughness needs at least 4 frames")
    generated = video[1:].astype(np.float64)
    first = np.abs(np.diff(generated, axis=0)).mean()
    if first == 0:
        return math.nan
    second = np.abs(np.diff(generated, n=2, axis=0)).mean()
    return float(second / first)


# ----- joints --------------------------------------------------------------------------------------


def body_height(joints: np.ndarray, names: Sequence[str]) -> float:
    """Head centre to ankle along the body (head-neck-pelvis, then the mean leg), the clip's maximum.

    Bone lengths do not change when the body bends, so a squat or a bow keeps its height; the maximum
    over frames undoes foreshortening of a leg swung towards the camera.
    """
    index = {name: position for position, name in enumerate(names)}
    needed = ("head", "neck", "pelvis", "l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle")
    missing = [name for name in needed if name not in index]
    if missing:
        raise ValueError(f"body_height needs joints {missing}")
    poses = joints[None] if joints.ndim == 2 else joints

    def length(a: str, b: str) -> np.ndarray:
        return np.linalg.norm(poses[:, index[a]] - poses[:, index[b]], axis=-1)

    legs = [
        length(f"{side}_hip", f"{side}_knee") + length(f"{side}_knee", f"{side}_ankle") for side in ("l", "r")
    ]
    trunk = length("head", "neck") + length("neck", "pelvis")
    height = float(np.max(trunk + 0.5 * (legs[0] + legs[1])))
    if height <= 0:
        raise ValueError("body_height: the joints have no extent")
    return height


def joint_distances(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(F, J, 2) x (F, J, 2) -> (F, J) Euclidean pixel distances."""
    if predicted.shape != true.shape:
        raise ValueError(f"joint arrays differ in shape: {predicted.shape} vs {true.shape}")
    return np.linalg.norm(predicted.astype(np.float64) - true.astype(np.float64), axis=-1)


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping over a (N, M) cost matrix: the cheapest monotone path from (0, 0) to
    (N-1, M-1) with steps (1, 0), (0, 1), (1, 1). Returns the matched index arrays (rows, columns)."""
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError(f"dtw_path needs a non-empty 2-D cost matrix, got shape {cost.shape}")
    rows, columns = cost.shape
    total = np.full((rows + 1, columns + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, rows + 1):
        for j in range(1, columns + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    path_i, path_j = [rows - 1], [columns - 1]
    i, j = rows, columns
    while (i, j) != (1, 1):
        moves = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(moves, key=lambda move: total[move])
        path_i.append(i - 1)
        path_j.append(j - 1)
    return np.asarray(path_i[::-1]), np.asarray(path_j[::-1])


def pose_cost(predicted: np.ndarray, true: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(P, J, 2), (T, J, 2) -> (P, T) mean distance over the joints valid in the true frame."""
    distances = np.linalg.norm(predicted[:, None].astype(np.float64) - true[None].astype(np.float64), axis=-1)
    weights = np.ones(true.shape[:2]) if valid is None else valid.astype(np.float64)
    counts = np.maximum(weights.sum(axis=1), 1.0)  # (T,)
    return (distances * weights[None]).sum(axis=-1) / counts[None]


def _matched_distances(
    predicted: np.ndarray, true: np.ndarray, valid: np.ndarray | None, align: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint distances over matched frame pairs (DTW or frame by frame), and their validity."""
    if predicted.ndim != 3 or true.ndim != 3 or predicted.shape[1:] != true.shape[1:]:
        raise ValueError(f"joints must be (F, J, 2) with equal J, got {predicted.shape} and {true.shape}")
    if valid is not None and valid.shape != true.shape[:2]:
        raise ValueError(f"valid must be {true.shape[:2]}, got {valid.shape}")
    if align:
        rows, columns = dtw_path(pose_cost(predicted, true, valid))
    else:
        if len(predicted) != len(true):
            raise ValueError("without time alignment both sequences need the same number of frames")
        rows = columns = np.arange(len(true))
    distances = joint_distances(predicted[rows], true[columns])
    mask = np.ones_like(distances, dtype=bool) if valid is None else valid[columns]
    if not mask.any():
        raise ValueError("no valid joints to score")
    return distances, mask


def mean_joint_error(
    predicted: np.ndarray,
    true: np.ndarray,
    scale: float,
    valid: np.ndarray | None = None,
    *,
    align: bool = True,
) -> float:
    """Mean joint distance in % of `scale` (body height), after DTW time alignment when `align`."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    distances, mask = _matched_distances(predicted, true, valid, align)
    return float(100.0 * distances[mask].mean() / scale)


def pck(
    predicted: np.ndarray,
    true: np.ndarray,
    scale: float,
    threshold: float = 0.1,
    valid: np.ndarray | None = None,
    *,
    align: bool = True,
) -> float:
    """Fraction of joints within threshold x scale of the truth (PCK), after DTW when `align`."""
    if scale <= 0 or threshold <= 0:
        raise ValueError("scale and threshold must be positive")
    distances, mask = _matched_distances(predicted, true, valid, align)
    return float((distances[mask] <= threshold * scale).mean())


def moving_joints(joints: np.ndarray, scale: float, threshold: float = 0.1) -> np.ndarray:
    """bool (J,): joints that get further than threshold x scale from their frame-0 place during the
    clip. Scoring only these keeps still joints (a welder's legs) from diluting the motion error."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    reach = np.linalg.norm(joints.astype(np.float64) - joints[:1].astype(np.float64), axis=-1).max(axis=0)
    return reach > threshold * scale


def joint_jitter(joints: np.ndarray, scale: float) -> float:
    """Mean |second difference| of joint positions over time, in % of scale per frame^2 (lower = steadier)."""
    if len(joints) < 3:
        raise ValueError("joint_jitter needs at least 3 frames")
    acceleration = np.linalg.norm(np.diff(joints.astype(np.float64), n=2, axis=0), axis=-1)
    return float(100.0 * acceleration.mean() / scale)


# ----- appearance ----------------------------------------------------------------------------------


def skeleton_mask(
    joints: np.ndarray, shape: tuple[int, int], bones: Sequence[tuple[int, int]], radius: float
) -> np.ndarray:
    """bool (H, W): pixels within `radius` of any bone segment of one pose (J, 2): the figure's region
    found from its joints, for frames where no true mask exists (generated ones)."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width]
    centres = np.stack([xs + 0.5, ys + 0.5], axis=-1).astype(np.float64)  # (H, W, 2)
    mask = np.zeros(shape, dtype=bool)
    for start, end in bones:
        a, b = joints[start].astype(np.float64), joints[end].astype(np.float64)
        segment = b - a
        length2 = float(segment @ segment)
        t = np.zeros(shape) if length2 == 0 else np.clip(((centres - a) @ segment) / length2, 0.0, 1.0)
        nearest = a + t[..., None] * segment
        mask |= np.linalg.norm(centres - nearest, axis=-1) <= radius
    return mask


def colour_histogram(pixels: np.ndarray, bins: int = 8) -> np.ndarray:
    """uint8 (N, 3) -> normalised joint RGB histogram with bins^3 cells (sums to 1)."""
    if pixels.ndim != 2 or pixels.shape[1] != 3 or len(pixels) == 0:
        raise ValueError(f"colour_histogram needs a non-empty (N, 3) pixel array, got {pixels.shape}")
    cells = (pixels.astype(np.int64) * bins) // 256
    flat = (cells[:, 0] * bins + cells[:, 1]) * bins + cells[:, 2]
    counts = np.bincount(flat, minlength=bins**3).astype(np.float64)
    return counts / counts.sum()


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance between two normalised histograms: 0 identical, 1 disjoint."""
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))


def appearance_drift(
    first: np.ndarray, first_mask: np.ndarray, last: np.ndarray, last_mask: np.ndarray, bins: int = 8
) -> float:
    """Hellinger distance between the colour histograms of the figure region in two frames (0 = same
    colours). A figure that keeps the photo's clothes and skin scores near 0 even while it moves."""
    if first_mask.shape != first.shape[:2] or last_mask.shape != last.shape[:2]:
        raise ValueError("each mask must match its frame's height and width")
    return hellinger(colour_histogram(first[first_mask], bins), colour_histogram(last[last_mask], bins))


# ----- action distinctness ---------------------------------------------------------------------------


def motion_signature(joints: np.ndarray, scale: float) -> np.ndarray:
    """(F, J, 2) -> (F, J, 2) displacement of every joint from its mean place over the clip, in body
    heights: the motion without the body's position, size or proportions.

    Anchored at the mean, not at frame 0: a detector's error on one frame would shift the whole
    signature (measured on FigureWorld: nearest-action accuracy of detected true clips 0.33 with a
    frame-0 anchor, 0.71 with the mean).
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    positions = joints.astype(np.float64)
    return (positions - positions.mean(axis=0, keepdims=True)) / scale


def mirror_signature(signature: np.ndarray, permutation: Sequence[int]) -> np.ndarray:
    """The same motion done by the mirrored body: x displacements negated, left and right swapped."""
    mirrored = signature[:, list(permutation)].copy()
    mirrored[..., 0] *= -1
    return mirrored


def trajectory_distance(a: np.ndarray, b: np.ndarray, mirror: Sequence[int] | None = None) -> float:
    """DTW distance between two motion signatures (mean joint distance along the path); with a
    `mirror` permutation, the smaller of the distances to b and to b done by the other hand."""

    def along_path(x: np.ndarray) -> float:
        cost = pose_cost(x, b)
        rows, columns = dtw_path(cost)
        return float(cost[rows, columns].mean())

    distance = along_path(a)
    if mirror is not None:
        distance = min(distance, along_path(mirror_signature(a, mirror)))
    return distance


def nearest_action(
    signature: np.ndarray, references: Mapping[str, Sequence[np.ndarray]], mirror: Sequence[int] | None = None
) -> str:
    """The action of the nearest reference signature (1-nearest neighbour).

    The nearest, not the mean: clips of one action differ in phase and speed, and a mean would
    favour actions with little motion, whose references sit close to everything.
    """
    if not references or any(len(items) == 0 for items in references.values()):
        raise ValueError("every action needs at least one reference signature")
    nearest = {
        action: min(trajectory_distance(signature, item, mirror) for item in items)
        for action, items in references.items()
    }
    return min(nearest, key=nearest.__getitem__)


def nearest_action_accuracy(
    queries: Sequence[tuple[str, np.ndarray]],
    references: Mapping[str, Sequence[np.ndarray]],
    mirror: Sequence[int] | None = None,
) -> float:
    """Fraction of (true action, signature) queries whose nearest action is their own."""
    if not queries:
        raise ValueError("no queries to classify")
    unknown = {label for label, _ in queries} - set(references)
    if unknown:
        raise ValueError(f"queries name actions without references: {sorted(unknown)}")
    hits = [nearest_action(signature, references, mirror) == label for label, signature in queries]
    return float(np.mean(hits))
