"""Training and evaluation data for the keypoint detector: FigureWorld renders with joint labels.

Training uses only pretraining actions with seen-range looks; evaluation uses held-out actions with
unseen-range looks (new shirt hues, skin tones, heavier builds, patterns and backgrounds), so the
detector's reported error is measured on figures and motions it never saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from flashcli.figureworld import JOINT_NAMES, render_clip

# Disjoint seed ranges so no evaluation clip is ever a training clip.
TRAIN_SEED_START = 5_000_000
EVAL_SEED_START = 6_000_000


@dataclass(frozen=True)
class FramePool:
    """Labelled frames: images uint8 (N, H, W, 3), joints float32 (N, J, 2), visible bool (N, J)."""

    images: np.ndarray
    joints: np.ndarray
    visible: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def render_pool(
    actions: Sequence[str],
    clips: int,
    *,
    seed_start: int,
    appearance: str,
    size: int = 64,
    frames: int = 17,
    framing: str | None = None,
) -> FramePool:
    """Every frame of `clips` clips, actions taken in turn; seeds from seed_start. Deterministic."""
    if clips < 1:
        raise ValueError("clips must be at least 1")
    images, joints, visible = [], [], []
    for index in range(clips):
        seed = seed_start + index
        clip = render_clip(
            actions[index % len(actions)],
            seed,
            size=size,
            frames=frames,
            appearance=appearance,  # type: ignore[arg-type]
            camera_shake=bool(seed % 3 == 0),
            framing=framing,  # type: ignore[arg-type]
        )
        images.append(clip.frames)
        joints.append(clip.joints)
        visible.append(clip.visible)
    return FramePool(
        images=np.concatenate(images), joints=np.concatenate(joints), visible=np.concatenate(visible)
    )


def in_frame(joints: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor | np.ndarray:
    """(..., J, 2) -> (..., J) bool: the joint's position lies inside the picture."""
    x, y = joints[..., 0], joints[..., 1]
    return (x >= 0) & (x < width) & (y >= 0) & (y < height)


def mirror_permutation(names: Sequence[str] = JOINT_NAMES) -> list[int]:
    """Index map that swaps every l_ joint with its r_ twin (a mirrored figure swaps its sides)."""
    index = {name: position for position, name in enumerate(names)}
    swapped = []
    for name in names:
        if name.startswith("l_"):
            swapped.append(index["r_" + name[2:]])
        elif name.startswith("r_"):
            swapped.append(index["l_" + name[2:]])
        else:
            swapped.append(index[name])
    return swapped


def _hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B,) radians -> (B, 3, 3) RGB rotations about the grey axis (hue turns, lightness kept)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    third, root = 1.0 / 3.0, math.sqrt(1.0 / 3.0)
    a = cos + (1 - cos) * third
    b = third * (1 - cos) - root * sin
    c = third * (1 - cos) + root * sin
    rows = [torch.stack([a, b, c], -1), torch.stack([c, a, b], -1), torch.stack([b, c, a], -1)]
    return torch.stack(rows, dim=1)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur; sigma (B,) in pixels (0 = unchanged)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    safe = sigma.clamp(min=1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / safe) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, 7)
    batch, channels, height, width = images.shape
    flat = rearrange(images, "b c h w -> 1 (b c) h w")
    weights = kernel.repeat_interleave(channels, dim=0)  # (B*C, 7)
    padded = torch.nn.functional.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = torch.nn.functional.conv2d(padded, weights[:, None, None, :], groups=batch * channels)
    padded = torch.nn.functional.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = torch.nn.functional.conv2d(padded, weights[:, None, :, None], groups=batch * channels)
    return rearrange(flat, "1 (b c) h w -> b c h w", b=batch)


def augment_batch(
    images: torch.Tensor, joints: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random mirror (labels swapped), hue turn, saturation, brightness, contrast, blur and noise.

    images (B, 3, H, W) float in [0, 1]; joints (B, J, 2) pixels. Colour changes widen the looks the
    detector knows; blur and noise imitate the softness of decoded, generated frames.
    """
    batch, _, _, width = images.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    flip = torch.rand(batch, generator=generator) < 0.5
    if flip.any():
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        mirrored = joints[:, mirror_permutation()].clone()
        mirrored[..., 0] = width - mirrored[..., 0]
        joints = torch.where(flip[:, None, None], mirrored, joints)

    rotation = _hue_rotation(uniform(-math.pi, math.pi))
    images = torch.einsum("bij,bjhw->bihw", rotation, images)
    grey = images.mean(dim=1, keepdim=True)
    images = grey + uniform(0.5, 1.4)[:, None, None, None] * (images - grey)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = mean + uniform(0.7, 1.3)[:, None, None, None] * (images - mean)
    images = images + uniform(-0.15, 0.15)[:, None, None, None]
    blur = torch.where(torch.rand(batch, generator=generator) < 0.6, uniform(0.3, 1.4), torch.zeros(batch))
    images = _gaussian_blur(images, blur)
    noise = uniform(0.0, 0.05)[:, None, None, None]
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images.clamp(0, 1), joints


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0, "b h w c -> b c h w")
