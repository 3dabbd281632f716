"""The skeleton ceiling's cue (issue 22, rung 1): limbs drawn where the joints are, read by the denoiser
only when shown."""

from __future__ import annotations

import numpy as np
import torch
from random_wan import LATENT_CHANNELS, TEXT_DIM, random_wan_transformer

from flashcli.figureworld import render_clip
from flashcli.lab.pretrain.caption import joint_motion
from flashcli.lab.pretrain.skeleton_cue import CHANNELS, SkeletonInput, draw_skeleton, joints_from_motion


def _motion(clip) -> np.ndarray:  # type: ignore[no-untyped-def]
    return joint_motion(clip.joints, float(clip.meta["camera"]["scale"]), clip.frames.shape[1:3])


def test_joints_come_back_from_the_caption_motion_within_two_pixels() -> None:
    clips = [
        render_clip(a, 3 + i, size=64, frames=9, phase=0.0, world="simple")
        for i, a in enumerate(["jumping_jack", "lunge"])
    ]
    motion = torch.from_numpy(np.stack([_motion(c) for c in clips]))
    joints = joints_from_motion(motion, 64)
    assert (joints - torch.from_numpy(np.stack([c.joints for c in clips]))).abs().max() < 2.0


def test_limb_maps_are_bright_on_the_wrist_and_dark_far_from_the_body() -> None:
    clip = render_clip("jumping_jack", 5, size=64, frames=9, phase=0.0, world="simple")
    maps = draw_skeleton(torch.from_numpy(_motion(clip))[None], 64, 16)[0]
    assert maps.shape == (CHANNELS, 9, 16, 16)
    x, y = (clip.joints[4, 5] / 4).astype(int)  # left wrist at frame 4, on the 16-cell grid
    assert maps[1, 4, y, x] > 0.5  # the left arm's channel
    assert maps[:, :, 0, 0].max() < 0.05


def test_the_denoiser_is_unchanged_until_shown_limbs_it_has_learned_to_read() -> None:
    transformer = random_wan_transformer(seed=0)
    skeleton = SkeletonInput(transformer)
    latents = torch.randn(2, LATENT_CHANNELS, 3, 8, 8)
    text = torch.randn(2, 4, TEXT_DIM)
    timestep = torch.tensor([500, 500])
    plain = transformer(latents, timestep, text, return_dict=False)[0]
    maps = torch.rand(2, CHANNELS, 3, 8, 8)
    with skeleton.showing(maps):
        assert torch.equal(transformer(latents, timestep, text, return_dict=False)[0], plain)  # zero start
    torch.nn.init.normal_(skeleton.embed.weight)
    with skeleton.showing(maps):
        shown = transformer(latents, timestep, text, return_dict=False)[0]
    assert not torch.allclose(shown, plain)
    assert torch.equal(transformer(latents, timestep, text, return_dict=False)[0], plain)  # hidden again
