"""Every score of one generated video against its true FigureWorld clip, through the keypoint
detector, and their means over a row of videos: the motion protocol of bench/quality.py and
bench/base_prior.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flashcli.figureworld import JOINT_NAMES
from flashcli.lab import metrics
from flashcli.lab.keypoints.data import in_frame, mirror_permutation
from flashcli.lab.keypoints.detector import KeypointDetector

# Bones for the figure region (skeleton_mask): trunk, arms, legs.
BONE_NAMES = (
    ("head", "neck"),
    ("neck", "pelvis"),
    ("l_shoulder", "r_shoulder"),
    ("l_hip", "r_hip"),
    *((f"{s}_shoulder", f"{s}_elbow") for s in "lr"),
    *((f"{s}_elbow", f"{s}_wrist") for s in "lr"),
    *((f"{s}_hip", f"{s}_knee") for s in "lr"),
    *((f"{s}_knee", f"{s}_ankle") for s in "lr"),
)
FIGURE_RADIUS = 0.04  # of body height: stays inside the limbs, so the region is the figure's colours


def bone_indices() -> list[tuple[int, int]]:
    """BONE_NAMES as pairs of indices into JOINT_NAMES."""
    return [(JOINT_NAMES.index(a), JOINT_NAMES.index(b)) for a, b in BONE_NAMES]


def score_video(
    detector: KeypointDetector, video: np.ndarray, truth: Any, bones: list[tuple[int, int]]
) -> dict:
    """Every per-video score of one generated (or reference) video against its true clip."""
    photo = truth.frames[0]
    joints = detector.detect(video)
    scale = metrics.body_height(truth.joints, JOINT_NAMES)
    valid = np.asarray(in_frame(truth.joints, *video.shape[1:3]))
    generated, true, counted = joints[1:], truth.joints[1:], valid[1:]
    moving = counted & metrics.moving_joints(truth.joints, scale)[None]
    radius = FIGURE_RADIUS * scale
    regions = [metrics.skeleton_mask(joints[i], video.shape[1:3], bones, radius) for i in (0, -1)]
    return {
        "joint_error": metrics.mean_joint_error(generated, true, scale, counted),
        "pck10": metrics.pck(generated, true, scale, 0.1, counted),
        "moving_error": metrics.mean_joint_error(generated, true, scale, moving)
        if moving.any()
        else math.nan,
        "frame1_psnr": metrics.frame1_psnr(video, photo),
        "jump": metrics.transition_jump(video),
        "roughness": metrics.temporal_roughness(video),
        "joint_jitter": metrics.joint_jitter(generated, scale),
        "appearance_drift": metrics.appearance_drift(video[0], regions[0], video[-1], regions[1]),
        "signature": metrics.motion_signature(joints, scale),
    }


SCORES = (
    "joint_error",
    "moving_error",
    "pck10",
    "nearest_action",
    "frame1_psnr",
    "jump",
    "roughness",
    "joint_jitter",
    "appearance_drift",
)


def summarise(scored: list[dict], references: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """Means over all videos of one (row, N, seed); non-finite values (a still video's jump) left out."""
    mirror = mirror_permutation()
    queries = [(item["action"], item["signature"]) for item in scored]
    summary = {"nearest_action": metrics.nearest_action_accuracy(queries, references, mirror)}
    for name in SCORES:
        if name == "nearest_action":
            continue
        values = [item[name] for item in scored if math.isfinite(item[name])]
        summary[name] = float(np.mean(values)) if values else math.nan
    return summary


def finite_json(value: Any) -> Any:
    """inf/nan become null: the JSON stays strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value
