"""Decoded frames against the true ones: the scores of bench/ded_quality.py and bench/ded_finetune.py."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from flashcli.core.ded import moved_mask, psnr, ssim


def to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> a (1, 3, F, H, W) video in [-1, 1]."""
    return rearrange(torch.from_numpy(frames).float() / 127.5 - 1, "f h w c -> 1 c f h w")


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """The first video of a (B, 3, F, H, W) batch in [-1, 1] -> uint8 (F, H, W, 3)."""
    frames = rearrange(video[0], "c f h w -> f h w c")
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def frame_metrics(output: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """output/truth uint8 (F, H, W, 3); output frame 0 is already the photo."""
    out = torch.from_numpy(output).float() / 127.5 - 1
    true = torch.from_numpy(truth).float() / 127.5 - 1
    later_out = rearrange(out[1:], "f h w c -> f c h w")
    later_true = rearrange(true[1:], "f h w c -> f c h w")
    # Pixels that moved away from the photo: there, copying the photo cannot score well.
    clip_out = rearrange(out[1:], "f h w c -> 1 c f h w")
    clip_true = rearrange(true[1:], "f h w c -> 1 c f h w")
    moving = moved_mask(clip_true, rearrange(true[0], "h w c -> 1 c h w"))
    return {
        "psnr": float(np.mean([float(psnr(o, t)) for o, t in zip(later_out, later_true, strict=True)])),
        "ssim": float(ssim(later_out, later_true)),
        "jump": transition_jump(output),
        "psnr_moving": float(psnr(clip_out, clip_true, mask=moving)),
    }


def transition_jump(video: np.ndarray) -> float:
    """mean |f1 - f0| / mean over t >= 1 of mean |f(t+1) - f(t)|; 1.0 = no jump out of the photo."""
    steps = np.abs(np.diff(video.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    return float(steps[0] / max(steps[1:].mean(), 1e-9))
