"""Conversions between the plain uint8 arrays crossing the core's boundary and model tensors."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float32 (3, F, H, W) in [-1, 1]."""
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(
            f"a video must be uint8 of shape (frames, height, width, 3), got {video.dtype} {video.shape}"
        )
    pixels = torch.from_numpy(np.ascontiguousarray(video)).float() / 127.5 - 1.0
    return rearrange(pixels, "f h w c -> c f h w")


def photo_to_tensor(photo: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(
            f"a photo must be uint8 of shape (height, width, 3), got {photo.dtype} {photo.shape}"
        )
    pixels = torch.from_numpy(np.ascontiguousarray(photo)).float() / 127.5 - 1.0
    return rearrange(pixels, "h w c -> c h w")


def tensor_to_video(video: torch.Tensor) -> np.ndarray:
    """float (3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3), rounded so that photo_to_tensor round-trips."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a (3, frames, height, width) tensor, got {tuple(video.shape)}")
    scaled = ((video.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return rearrange(scaled, "c f h w -> f h w c").numpy()
