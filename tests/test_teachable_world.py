"""The first rung of the teachable-base ladder: the simple world and the oracle motion caption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flashcli.figureworld import render_clip
from flashcli.figureworld.appearance import in_split
from flashcli.lab.pretrain.caption import GLOBAL_TOKENS, MotionCaption, joint_motion


@pytest.mark.parametrize("split", ["seen", "unseen"])
def test_simple_world_is_flat_and_the_figure_fills_the_frame(split: str) -> None:
    for seed in range(4):
        clip = render_clip("squat", seed, size=64, frames=3, appearance=split, world="simple")
        look = clip.meta["appearance"]
        assert look["background"] == "flat" and look["top_pattern"] == "solid"
        assert clip.meta["framing"] == "full" and clip.meta["world"] == "simple"
        # frame 0 stands at rest: the figure's mask spans most of the frame's height
        rows = np.flatnonzero(clip.mask[0].any(axis=1))
        assert rows[-1] - rows[0] + 1 >= 0.68 * 64
        # the unseen split still holds for colour and build
        assert in_split("top_hue", look["top_hue"], split) and in_split("build", look["build"], split)


def test_the_standard_world_is_the_default_and_stays_as_it_was() -> None:
    standard = render_clip("weld", 3, size=64, frames=2)
    explicit = render_clip("weld", 3, size=64, frames=2, world="standard")
    simple = render_clip("weld", 3, size=64, frames=2, world="simple")
    assert np.array_equal(standard.frames, explicit.frames)
    assert not np.array_equal(standard.frames, simple.frames)
    with pytest.raises(ValueError, match="world"):
        render_clip("weld", 3, size=64, frames=2, world="busy")  # type: ignore[arg-type]


def test_joint_motion_is_displacement_from_frame_0_in_figure_heights() -> None:
    joints = np.zeros((3, 2, 2), dtype=np.float32)
    joints[:, 1] = [[10, 10], [10, 30], [10, 50]]  # the second joint drops 20 px a frame
    motion = joint_motion(joints, figure_height=40.0, frame_size=(64, 64))
    assert motion.shape == (3, 2, 4)
    assert np.allclose(motion[0, :, :2], 0)
    assert np.allclose(motion[:, 1, 1], [0, 0.5, 1.0])
    assert np.allclose(motion[:, 1, 2:], motion[0, 1, 2:])  # the start pose repeats on every frame


def test_per_frame_captions_carry_their_frame_and_global_captions_have_eight_tokens() -> None:
    torch.manual_seed(0)
    still = torch.zeros(2, 5, 19, 4)
    per_frame = MotionCaption(19, 17, 64, "per_frame")(still)
    assert per_frame.shape == (2, 5, 64)
    # the same joints on every frame still give tokens that tell the frames apart
    assert not torch.allclose(per_frame[0, 1], per_frame[0, 2])
    glob = MotionCaption(19, 17, 64, "global")(still)
    assert glob.shape == (2, GLOBAL_TOKENS, 64)
    with pytest.raises(ValueError, match="at most 17 frames"):
        MotionCaption(19, 17, 64, "per_frame")(torch.zeros(1, 18, 19, 4))
