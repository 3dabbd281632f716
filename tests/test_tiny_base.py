"""The shipped `tiny` base: it loads through the ordinary base path, has the documented shape, stays
small, and its VAE reproduces a FigureWorld clip it never saw during pretraining."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from flashcli.figureworld import PRETRAIN_ACTIONS, render_clip

# Documented in src/flashcli/weights/README.md.
TINY_SIZE = 64
TINY_FRAMES = 17
SHIPPED_LIMIT_BYTES = 50 * 1024 * 1024
# Held-out clips come from seeds the pretraining stream never uses (it starts at 0 and stays far below).
UNSEEN_SEED = 7_777_777
# Issue 5 asks for 28 dB on average over held-out clips (the model card measures 28.2 on its bar group);
# one clip varies, so this floor guards against a regression or broken weights (an untrained VAE gives
# about 11 dB, the previous base's VAE 24.7 on average).
PSNR_FLOOR_DB = 25.0
# On moving pixels a VAE that keeps motion beats a still average of the clip by this much at least.
MOVING_MARGIN_DB = 2.0


@pytest.fixture(scope="module")
def tiny_spec():
    from flashcli.core.specs import load_base

    torch.set_num_threads(1)
    return load_base("tiny", device="cpu")


def _psnr(reference: np.ndarray, other: np.ndarray) -> float:
    error = np.mean((reference.astype(np.float64) - other.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * math.log10(255.0**2 / error)


def _to_model(frames: np.ndarray) -> torch.Tensor:
    video = torch.from_numpy(frames).float() / 127.5 - 1.0
    return video.permute(3, 0, 1, 2).unsqueeze(0)  # (F, H, W, C) -> (1, C, F, H, W)


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    pixels = ((video[0].permute(1, 2, 3, 0) + 1.0) * 127.5).round().clamp(0, 255)
    return pixels.to(torch.uint8).numpy()


def test_tiny_base_loads_with_the_documented_shape(tiny_spec) -> None:
    assert tiny_spec.base_id == "tiny"
    assert tiny_spec.default_size == TINY_SIZE
    assert tiny_spec.default_frames == TINY_FRAMES
    assert tiny_spec.frames_ok(TINY_FRAMES) and tiny_spec.frames_ok(9)
    # No time compression: every frame its own latent, so moving limbs survive the VAE.
    assert tiny_spec.temporal_factor == 1 and tiny_spec.latent_frames(TINY_FRAMES) == TINY_FRAMES
    assert tiny_spec.frames_ok(5) and not tiny_spec.frames_ok(8)
    assert TINY_SIZE % tiny_spec.size_multiple == 0
    assert not tiny_spec.has_text and tiny_spec.null_text is not None
    # Class-conditional: one learned text per pretraining action, so adapters learn their action's own.
    assert sorted(tiny_spec.action_text) == sorted(PRETRAIN_ACTIONS)
    # Its Euler samples break bodies into specks; ancestral sampling keeps them whole (model card).
    assert tiny_spec.sampler_eta == 1.0 and tiny_spec.photo_channels
    assert tiny_spec.describe()["blocks"] == tiny_spec.num_blocks >= 4


def test_tiny_base_is_well_under_the_size_limit() -> None:
    from flashcli.core.specs import tiny_base_folder

    shipped = sum(path.stat().st_size for path in Path(tiny_base_folder()).rglob("*") if path.is_file())
    assert 0 < shipped < SHIPPED_LIMIT_BYTES


def test_tiny_vae_reconstructs_an_unseen_figureworld_clip(tiny_spec) -> None:
    clip = render_clip(PRETRAIN_ACTIONS[0], UNSEEN_SEED, size=TINY_SIZE, frames=9).frames
    latents = tiny_spec.encode_video(_to_model(clip))
    assert latents.shape == (
        1,
        16,
        9,
        TINY_SIZE // tiny_spec.spatial_factor,
        TINY_SIZE // tiny_spec.spatial_factor,
    )
    reconstruction = _to_uint8(tiny_spec.decode(latents))
    assert reconstruction.shape == clip.shape
    assert _psnr(clip, reconstruction) >= PSNR_FLOOR_DB


def test_tiny_latents_are_normalised(tiny_spec) -> None:
    # The shipped latents_mean/std were measured on pretraining clips, so a fresh clip lands near the
    # unit scale of the sampler's starting noise (measured 1.6-1.8 per clip; the raw latents are ~3.5).
    clip = render_clip(PRETRAIN_ACTIONS[-1], UNSEEN_SEED + 1, size=TINY_SIZE, frames=5).frames
    latents = tiny_spec.encode_video(_to_model(clip))
    assert abs(float(latents.mean())) < 0.5
    assert 0.5 < float(latents.std()) < 2.5


def test_tiny_denoiser_predicts_a_finite_velocity_for_every_latent(tiny_spec) -> None:
    latents = torch.randn(
        1, 16, 9, TINY_SIZE // 4, TINY_SIZE // 4, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        velocity = tiny_spec.denoise(latents, torch.tensor([500.0]), tiny_spec.encode_text(None))
    assert velocity.shape == latents.shape
    assert torch.isfinite(velocity).all()


def test_tiny_vae_keeps_the_motion_of_an_unseen_clip(tiny_spec) -> None:
    """On the pixels that move, the reconstruction must beat one static picture of the clip.

    A VAE can score well over all pixels while it draws every moving limb as a still blur; then no
    action can ever show. Moving pixels: frames 1.., more than 0.2 (in [-1, 1]) from the temporal
    median.
    """
    clip = render_clip("squat", UNSEEN_SEED + 2, size=TINY_SIZE, frames=TINY_FRAMES).frames
    with torch.no_grad():
        reconstruction = _to_uint8(tiny_spec.decode(tiny_spec.encode_video(_to_model(clip))))
    frames = clip.astype(np.float64)
    moving = (np.abs(frames - np.median(frames, axis=0)).mean(-1) > 0.2 * 127.5)[1:]
    static = np.broadcast_to(frames.mean(axis=0), frames.shape)

    def moving_psnr(other: np.ndarray) -> float:
        error = np.mean((frames[1:][moving] - other.astype(np.float64)[1:][moving]) ** 2)
        return 10 * math.log10(255.0**2 / error)

    assert moving.mean() > 0.005  # the clip does move
    assert moving_psnr(reconstruction) >= moving_psnr(static) + MOVING_MARGIN_DB
