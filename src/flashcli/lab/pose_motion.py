"""Motion scores for body landmarks of real footage, as pure numpy (no mediapipe, no torch).

`bench/real/score_real.py` fills these from mediapipe's 33 pose landmarks; this module only does the math, so
the main venv can test it. Conventions: `xy` = float (F, L, 2) pixel x, y per frame and landmark;
`visible` = bool (F, L), False where the landmark was not seen (or the frame had no person).

Normalisation: positions are moved so the clip's median hip midpoint is the origin and divided by
the clip's median torso length (shoulder midpoint to hip midpoint). One centre and one scale per
clip, not per frame: per-frame centring would erase a jump or a squat's descent, and per-frame
scaling would erase a bow. Where the person stands and how large they are then no longer matter.

Motion is compared as displacement from the first frame where the person is seen, after DTW time
alignment (the generated clip may be faster or slower than the reference). The DTW itself is the
benchmark's own `flashcli.lab.metrics.dtw_path`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import dtw_path

# mediapipe Pose landmark indices (BlazePose topology).
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
NUM_LANDMARKS = 33
# Left/right swapped: nose; eyes (inner, centre, outer); ears; mouth corners; then 11..32 in L/R pairs.
MIRROR = [0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9] + [i + 1 if i % 2 else i - 1 for i in range(11, NUM_LANDMARKS)]


@dataclass(frozen=True)
class Comparison:
    """One generated clip against one reference clip."""

    error: float  # mean displacement error along the DTW path, % of torso length
    correlation: float  # Pearson r of the matched displacement coordinates; nan if either is static
    matched_landmarks: float  # mean landmarks visible in both frames of a matched pair


def _torso_lengths(xy: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Per-frame shoulder-midpoint to hip-midpoint distance; nan where a shoulder or hip is unseen."""
    shoulders = 0.5 * (xy[:, LEFT_SHOULDER] + xy[:, RIGHT_SHOULDER])
    hips = 0.5 * (xy[:, LEFT_HIP] + xy[:, RIGHT_HIP])
    lengths = np.linalg.norm(shoulders - hips, axis=-1)
    seen = visible[:, [LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP]].all(axis=1)
    return np.where(seen, lengths, np.nan)


def normalise(xy: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(F, L, 2) pixels -> (F, L, 2) in torso lengths around the clip's median hip midpoint.

    Raises ValueError when no frame shows both shoulders and both hips (nothing to scale by).
    """
    xy = np.asarray(xy, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    if xy.ndim != 3 or xy.shape[2] != 2 or visible.shape != xy.shape[:2]:
        raise ValueError(f"need xy (F, L, 2) and visible (F, L), got {xy.shape} and {visible.shape}")
    lengths = _torso_lengths(xy, visible)
    good = np.isfinite(lengths) & (lengths > 0)
    if not good.any():
        raise ValueError("no frame shows both shoulders and both hips, so the body cannot be normalised")
    # Medians, so a few bad detections do not move the whole clip.
    scale = float(np.median(lengths[good]))
    hips = 0.5 * (xy[good, LEFT_HIP] + xy[good, RIGHT_HIP])
    centre = np.median(hips, axis=0)
    return (xy - centre) / scale


def displacements(positions: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Displacement of each landmark from its place in the first frame with a person in it.

    Returns (F', L, 2) and the matching visibility (F', L), keeping only frames with a person from
    that first frame on; a landmark counts only where it is seen both there and in frame 0.
    """
    person = visible.any(axis=1)
    if not person.any():
        raise ValueError("no frame has a person in it")
    frames = np.flatnonzero(person)
    kept, seen = positions[frames], visible[frames]
    return kept - kept[:1], seen & seen[:1]


def _pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, L, 2), (T, L, 2) -> (P, T, L) Euclidean distances."""
    return np.linalg.norm(a[:, None] - b[None], axis=-1)


def compare(
    generated: np.ndarray,
    generated_visible: np.ndarray,
    reference: np.ndarray,
    reference_visible: np.ndarray,
    mirror: Sequence[int] | None = None,
) -> Comparison:
    """Score one generated displacement trajectory against one reference trajectory.

    Both are outputs of `displacements`. With `mirror` (a left/right permutation), the generated
    clip is also scored as if done by the other side of the body, and the better of the two kept:
    a generated person may use the other hand.
    """
    best = _compare_once(generated, generated_visible, reference, reference_visible)
    if mirror is not None:
        flipped = generated[:, list(mirror)].copy()
        flipped[..., 0] *= -1
        other = _compare_once(flipped, generated_visible[:, list(mirror)], reference, reference_visible)
        if other.error < best.error:
            best = other
    return best


def _compare_once(a: np.ndarray, a_seen: np.ndarray, b: np.ndarray, b_seen: np.ndarray) -> Comparison:
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"landmark sets differ: {a.shape} vs {b.shape}")
    distances = _pair_distances(a, b)
    both = a_seen[:, None] & b_seen[None]  # (P, T, L)
    counts = both.sum(axis=-1)
    if not counts.any():
        raise ValueError("no landmark is seen in both clips")
    cost = np.where(counts > 0, (distances * both).sum(axis=-1) / np.maximum(counts, 1), np.nan)
    # Frame pairs with no landmark in common get the worst seen cost: DTW avoids them if it can.
    cost = np.where(np.isnan(cost), np.nanmax(cost), cost)
    rows, columns = dtw_path(cost)
    mask = both[rows, columns]  # (K, L)
    error = float(100.0 * distances[rows, columns][mask].mean())
    x = a[rows][mask].ravel()
    y = b[columns][mask].ravel()
    return Comparison(error, _pearson(x, y), float(mask.sum(axis=1).mean()))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; nan when either side does not vary (a clip with no motion)."""
    x = x - x.mean()
    y = y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / denominator) if denominator > 1e-12 else math.nan


def detection_rate(visible: np.ndarray) -> float:
    """Fraction of frames in which a person was found (any landmark seen)."""
    visible = np.asarray(visible, dtype=bool)
    return float(visible.any(axis=1).mean()) if len(visible) else 0.0


def nearest(scores: Mapping[str, Comparison]) -> str:
    """The reference (by name) with the smallest displacement error."""
    if not scores:
        raise ValueError("no references to choose from")
    return min(scores, key=lambda name: scores[name].error)
