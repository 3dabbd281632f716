"""The real-footage motion math (flashcli.lab.pose_motion) on synthetic landmarks whose answer is known.

No mediapipe here: the module is numpy only, so this runs in the project's venv.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from flashcli.lab import pose_motion as pm

L = pm.NUM_LANDMARKS


def _body(rng: np.random.Generator) -> np.ndarray:
    """A rest pose (33, 2) in pixels: shoulders 100 px above the hips, other landmarks scattered."""
    pose = rng.normal(0.0, 60.0, size=(L, 2)) + [320.0, 240.0]
    pose[pm.LEFT_HIP], pose[pm.RIGHT_HIP] = [300.0, 300.0], [340.0, 300.0]
    pose[pm.LEFT_SHOULDER], pose[pm.RIGHT_SHOULDER] = [290.0, 200.0], [350.0, 200.0]
    return pose


def _clip(phase: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """(F, 33, 2): the rest pose plus a motion driven by phase in [0, 1]; 'wave' moves the right arm
    (landmarks 12..22 even), 'squat' moves everything but the feet up and down."""
    base = _body(np.random.default_rng(0))
    frames = np.repeat(base[None], len(phase), axis=0)
    swing = np.sin(2 * np.pi * phase)
    if kind == "wave":
        arm = [14, 16, 18, 20, 22]
        frames[:, arm, 0] += 60.0 * swing[:, None]
        frames[:, arm, 1] -= 30.0 * (1 - np.cos(2 * np.pi * phase))[:, None]
    elif kind == "squat":
        frames[:, :27, 1] += 50.0 * (1 - np.cos(2 * np.pi * phase))[:, None] / 2
    else:
        raise ValueError(kind)
    return frames + rng.normal(0.0, 0.5, size=frames.shape)  # a little detector noise


def _trajectory(xy: np.ndarray, visible: np.ndarray | None = None):
    visible = np.ones(xy.shape[:2], dtype=bool) if visible is None else visible
    return pm.displacements(pm.normalise(xy, visible), visible)


def test_identical_clips_score_zero_error_and_correlation_one() -> None:
    xy = _clip(np.linspace(0, 1, 24), "wave", np.random.default_rng(1))
    score = pm.compare(*_trajectory(xy), *_trajectory(xy))
    assert score.error == pytest.approx(0.0, abs=1e-9)
    assert score.correlation == pytest.approx(1.0)
    assert score.matched_landmarks == L


def test_time_stretched_copy_scores_near_zero_after_dtw() -> None:
    rng = np.random.default_rng(2)
    short = _clip(np.linspace(0, 1, 16), "wave", rng)
    # The same motion at half speed: every frame of the short clip reappears (plus midpoints).
    long = _clip(np.linspace(0, 1, 31), "wave", rng)
    stretched = pm.compare(*_trajectory(long), *_trajectory(short))
    other = pm.compare(*_trajectory(_clip(np.linspace(0, 1, 31), "squat", rng)), *_trajectory(short))
    # % of torso length: 0.5 px noise on a 100 px torso is already ~1 %; the squat is ~23.
    assert stretched.error < 3.0
    assert stretched.correlation > 0.98
    assert other.error > 5 * stretched.error


def test_normalisation_ignores_position_and_size() -> None:
    xy = _clip(np.linspace(0, 1, 12), "squat", np.random.default_rng(3))
    visible = np.ones(xy.shape[:2], dtype=bool)
    moved = 2.5 * xy + np.array([-400.0, 75.0])
    np.testing.assert_allclose(pm.normalise(moved, visible), pm.normalise(xy, visible), atol=1e-9)
    score = pm.compare(*_trajectory(moved), *_trajectory(xy))
    assert score.error == pytest.approx(0.0, abs=1e-9)


def test_normalisation_units_are_torso_lengths() -> None:
    xy = np.repeat(_body(np.random.default_rng(0))[None], 3, axis=0)
    normal = pm.normalise(xy, np.ones(xy.shape[:2], dtype=bool))
    hips = 0.5 * (normal[:, pm.LEFT_HIP] + normal[:, pm.RIGHT_HIP])
    shoulders = 0.5 * (normal[:, pm.LEFT_SHOULDER] + normal[:, pm.RIGHT_SHOULDER])
    np.testing.assert_allclose(hips, 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(shoulders - hips, axis=-1), 1.0)


def test_unseen_landmarks_and_empty_frames_are_left_out() -> None:
    rng = np.random.default_rng(4)
    xy = _clip(np.linspace(0, 1, 20), "wave", rng)
    visible = np.ones(xy.shape[:2], dtype=bool)
    broken, broken_visible = xy.copy(), visible.copy()
    broken[:3] = 1e6  # no person in the first 3 frames: garbage positions must not count
    broken_visible[:3] = False
    broken[:, 30:] = -1e6  # the feet are never seen
    broken_visible[:, 30:] = False
    assert pm.detection_rate(broken_visible) == pytest.approx(17 / 20)
    score = pm.compare(*_trajectory(broken, broken_visible), *_trajectory(xy))
    assert math.isfinite(score.error) and score.error < 15.0  # it only lost its first 3 frames
    assert score.matched_landmarks == L - 3


def test_no_torso_cannot_be_normalised() -> None:
    xy = _clip(np.linspace(0, 1, 5), "wave", np.random.default_rng(5))
    visible = np.ones(xy.shape[:2], dtype=bool)
    visible[:, pm.LEFT_HIP] = False
    with pytest.raises(ValueError, match="shoulders and both hips"):
        pm.normalise(xy, visible)


def test_static_clip_has_no_correlation() -> None:
    still = np.repeat(_body(np.random.default_rng(0))[None], 10, axis=0)
    moving = _clip(np.linspace(0, 1, 10), "wave", np.random.default_rng(6))
    score = pm.compare(*_trajectory(still), *_trajectory(moving))
    assert math.isnan(score.correlation)
    assert score.error > 0


def test_nearest_reference_picks_the_same_action() -> None:
    rng = np.random.default_rng(7)
    query = _trajectory(_clip(np.linspace(0.1, 0.9, 20), "wave", rng))
    references = {
        "squat": _trajectory(_clip(np.linspace(0, 1, 25), "squat", rng)),
        "wave": _trajectory(_clip(np.linspace(0, 1, 14), "wave", rng)),
    }
    scores = {name: pm.compare(*query, *ref) for name, ref in references.items()}
    assert pm.nearest(scores) == "wave"
    assert scores["wave"].correlation > scores["squat"].correlation


def test_mirror_finds_the_other_hand() -> None:
    rng = np.random.default_rng(8)
    right = _clip(np.linspace(0, 1, 16), "wave", rng)
    # The mirrored body doing the same wave: x negated, left and right swapped.
    left = right[:, pm.MIRROR].copy()
    left[..., 0] = 640.0 - left[..., 0]
    plain = pm.compare(*_trajectory(left), *_trajectory(right))
    mirrored = pm.compare(*_trajectory(left), *_trajectory(right), mirror=pm.MIRROR)
    assert mirrored.error < 2.0 < plain.error
    assert sorted(pm.MIRROR) == list(range(L)) and pm.MIRROR[pm.MIRROR[15]] == 15


def test_module_does_not_import_mediapipe() -> None:
    assert "mediapipe" not in sys.modules
