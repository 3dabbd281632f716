"""The gate's keypoint scores: what a blurred figure cannot win."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tiny_gate import keypoint_scores

from flashcli.figureworld import render_clip
from flashcli.lab.keypoints.detector import load_detector

# bench and script tests run in the full suite, not the fast subset (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow


def test_true_clips_score_better_than_the_still_photo_and_know_their_action() -> None:
    clips = [
        render_clip(action, 40 + i, size=64, frames=9, appearance="unseen", phase=0.0)
        for i, action in enumerate(["jumping_jack", "lunge", "bow", "squat"])
    ]
    detector = load_detector()
    truth = keypoint_scores(detector, [c.frames for c in clips], clips)
    still = keypoint_scores(detector, [np.repeat(c.frames[:1], len(c.frames), 0) for c in clips], clips)
    assert truth["moving_error"] < 0.8 * still["moving_error"]  # measured 12.3 against 19.6
    assert truth["joint_error"] < still["joint_error"]
    assert truth["nearest_action"] == 1.0  # each true clip is its own nearest reference


def test_the_cue_learn_computes_keeps_one_side_and_starts_at_the_photos_pose() -> None:
    import torch
    from tiny_gate import (
        _mirrored,
        clip_motion,
        judge_clip,
        learn_clips,
        learned_displacement,
        retargeted_motion,
    )

    detector = load_detector()
    clips = learn_clips("jumping_jack", 3, "simple")
    plain = learned_displacement(detector, clips)
    # The same clips done with the other side: mirrored frames. Averaged as they are, a left-handed and a
    # right-handed wave would cancel; aligned onto one side, the mirrored copies agree with the originals.
    flipped = [dataclasses.replace(c, frames=np.ascontiguousarray(c.frames[:, :, ::-1])) for c in clips]
    both = learned_displacement(detector, clips + flipped[:2])
    mirrored_plain = _mirrored(torch.from_numpy(plain)).numpy()
    assert min(np.abs(both - plain).mean(), np.abs(both - mirrored_plain).mean()) < 0.3 * np.abs(plain).mean()
    assert np.abs(plain).max() > 0.1  # a jumping jack moves its limbs by more than a tenth of the body

    photo_clip = judge_clip("lunge", 7, "simple")
    cue = retargeted_motion(detector, photo_clip.frames[0], plain)
    assert cue.shape == (9, plain.shape[1], 4)
    assert np.allclose(cue[0, :, :2], 0.0)  # frame 0 is the photo: no displacement
    true_start = clip_motion(photo_clip)[0, :, 2:]
    assert np.sqrt(((cue[0, :, 2:] - true_start) ** 2).mean()) < 0.05  # detected pose: measured 0.026 rms


def test_one_real_performance_as_the_cue_is_one_of_the_clips_and_keeps_its_amplitude() -> None:
    from tiny_gate import barycenter_displacement, learn_clips, medoid_displacement, side_aligned_moves

    detector = load_detector()
    clips = learn_clips("jumping_jack", 4, "simple")
    moves = side_aligned_moves(detector, clips)
    medoid = medoid_displacement(detector, clips)
    assert any(np.array_equal(medoid, move) for move in moves)  # a real clip's motion, not a blend
    barycenter = barycenter_displacement(detector, clips)
    assert barycenter.shape == medoid.shape and np.allclose(barycenter[0], 0.0)
    # Averaged along the medoid's timing, the clips' speed differences do not cancel the arms' rise.
    frame_mean = np.mean(moves, axis=0)
    assert np.abs(barycenter).max() >= 0.9 * np.abs(frame_mean).max()
