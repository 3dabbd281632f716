"""The gate's keypoint scores: what a blurred figure cannot win."""

from __future__ import annotations

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
