"""Tiny random-initialised configs of the real diffusers Wan classes, shared by every test folder
(no downloads; a forward pass takes a few milliseconds). `tests/conftest.py` puts this folder on
the import path."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

LATENT_CHANNELS = 4
TEXT_DIM = 16


def random_wan_transformer(
    *, num_layers: int = 4, attention_head_dim: int = 8, seed: int | None = None
) -> WanTransformer3DModel:
    """A Wan denoiser over 4 latent channels, 2 heads, patch 1x2x2; `seed` seeds torch first."""
    if seed is not None:
        torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=attention_head_dim,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        text_dim=TEXT_DIM,
        freq_dim=16,
        ffn_dim=32,
        num_layers=num_layers,
        rope_max_seq_len=32,
    )


def random_wan_vae(*, wan22: bool = False, **overrides: Any) -> AutoencoderKLWan:
    """A Wan 2.1-shaped VAE (x8 space, x4 time, 4 latent channels); `wan22` adds Wan 2.2's residual
    blocks and 2x2 pixel patching. `overrides` replace any config entry."""
    config: dict[str, Any] = {
        "base_dim": 8,
        "z_dim": LATENT_CHANNELS,
        "dim_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "temperal_downsample": [False, True, True],
        "latents_mean": [0.0] * LATENT_CHANNELS,
        "latents_std": [1.0] * LATENT_CHANNELS,
    }
    if wan22:
        config.update(is_residual=True, patch_size=2, in_channels=12, out_channels=12)
    config.update(overrides)
    return AutoencoderKLWan(**config)


def random_wan_components(
    seed: int = 0, num_layers: int = 4
) -> tuple[WanTransformer3DModel, AutoencoderKLWan, torch.Tensor]:
    """Denoiser, VAE and a (4, 16) null text embedding, all drawn after `torch.manual_seed(seed)`."""
    torch.manual_seed(seed)
    transformer = random_wan_transformer(num_layers=num_layers)
    vae = random_wan_vae()
    return transformer, vae, torch.randn(4, TEXT_DIM)
