"""Strong appearance augmentation for the Motion Alignment Module.

`strong_augment` turns a clip x into x': the same motion with a very different look. Every random
choice is drawn once per clip and applied identically to every frame, and no operation moves a
pixel (no crop, flip, warp), so x and x' stay pixel-aligned and a pixel that is still in x is still
in x'. That is what lets the trainer swap hidden states and attention maps between the two passes
at matching token positions.

The look changes come from: a random colour matrix (hue rotation, saturation, channel permutation,
contrast, brightness), inversion, posterisation, a static procedural texture overlay, a different
treatment of the background (replaced by a procedural background where the figure mask is known;
recoloured with its own colour matrix where the mask is estimated from the clip's temporal median)
and a light Gaussian blur (which softens edges but never shifts them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field

# Luminance-preserving grey axis of RGB space; hue rotates around it, saturation scales away from it.
_GREY_AXIS = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)


class StrongAugmentConfig(BaseModel):
    """Probabilities and ranges of the appearance changes (defaults: strong, as FLASH needs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hue_degrees: tuple[float, float] = (60.0, 300.0)
    saturation: tuple[float, float] = (0.3, 1.8)
    contrast: tuple[float, float] = (0.6, 1.4)
    brightness: tuple[float, float] = (-0.2, 0.2)
    p_channel_permute: float = Field(default=0.5, ge=0, le=1)
    p_invert: float = Field(default=0.5, ge=0, le=1)
    p_posterize: float = Field(default=0.3, ge=0, le=1)
    posterize_levels: tuple[int, int] = (3, 6)
    p_texture: float = Field(default=0.5, ge=0, le=1)
    texture_alpha: tuple[float, float] = (0.15, 0.35)
    p_background: float = Field(default=0.8, ge=0, le=1)
    p_blur: float = Field(default=0.3, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.5, 1.2)
    # A pixel whose colour is this far (in [0, 1] units) from its temporal median counts as moving
    # figure when no mask is given.
    motion_threshold: float = Field(default=0.1, gt=0, le=1)
    # If a clip changed less than this on average ([0, 1] units), it is inverted as well: x' must look
    # different even for clips the colour matrix barely touches (e.g. grey ones).
    min_change: float = Field(default=0.15, ge=0, le=1)


DEFAULT_AUGMENT = StrongAugmentConfig()


def strong_augment(
    video: torch.Tensor,
    generator: torch.Generator,
    mask: torch.Tensor | None = None,
    *,
    config: StrongAugmentConfig = DEFAULT_AUGMENT,
) -> torch.Tensor:
    """Return x': same motion and geometry as `video`, different appearance.

    video: (B, 3, F, H, W) float in [-1, 1]. mask: (B, 1, F, H, W) with values in {0, 1} (1 = figure),
    or None to estimate the moving figure from each clip's temporal median. The result has the same
    shape, dtype and device; the same generator state gives the same output.
    """
    _check_inputs(video, mask)
    clips = []
    for index in range(video.shape[0]):
        clip_mask = None if mask is None else mask[index].float()
        clips.append(_augment_clip(video[index].float(), generator, clip_mask, config))
    return torch.stack(clips).to(video.dtype)


def _check_inputs(video: torch.Tensor, mask: torch.Tensor | None) -> None:
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video must have shape (B, 3, F, H, W), got {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"video must be a float tensor in [-1, 1], got dtype {video.dtype}")
    low, high = video.min().item(), video.max().item()
    if low < -1.001 or high > 1.001:
        raise ValueError(f"video values must lie in [-1, 1], got [{low:.3f}, {high:.3f}]")
    if mask is None:
        return
    expected = (video.shape[0], 1, *video.shape[2:])
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask must have shape {expected} to match the video, got {tuple(mask.shape)}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask values must be 0 (background) or 1 (figure)")


class _Draw:
    """Random numbers from the caller's generator, as plain Python values."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def uniform(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return (
            low + (high - low) * torch.rand(1, generator=self.generator, device=self.generator.device).item()
        )

    def chance(self, probability: float) -> bool:
        return self.uniform((0.0, 1.0)) < probability

    def integer(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]."""
        return int(torch.randint(low, high + 1, (1,), generator=self.generator, device=self.generator.device))

    def tensor(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.generator.device).cpu()


def _augment_clip(
    clip: torch.Tensor, generator: torch.Generator, mask: torch.Tensor | None, config: StrongAugmentConfig
) -> torch.Tensor:
    """clip (3, F, H, W) in [-1, 1] -> augmented clip, float32."""
    draw = _Draw(generator)
    device = clip.device
    height, width = clip.shape[-2:]
    original = (clip + 1) / 2  # work in [0, 1]

    figure_matrix, figure_bias = _random_colour_transform(draw, config)
    out = _apply_colour(original, figure_matrix.to(device), figure_bias.to(device))

    if draw.chance(config.p_background):
        if mask is not None:
            # The figure mask is known: a new procedural background behind the unchanged silhouette.
            background = _procedural_pattern(draw, height, width).to(device)
            out = mask * out + (1 - mask) * rearrange(background, "c h w -> c 1 h w")
        else:
            # Estimated mask: recolour instead of replace, so a figure part that stays still (and so
            # looks like background) keeps its edges; only its colour follows the background's.
            moving = _moving_pixels(original, config.motion_threshold)
            background_matrix, background_bias = _random_colour_transform(draw, config)
            background = _apply_colour(original, background_matrix.to(device), background_bias.to(device))
            out = moving * out + (1 - moving) * background

    if draw.chance(config.p_texture):
        texture = _procedural_pattern(draw, height, width).to(device)
        alpha = draw.uniform(config.texture_alpha)
        overlay = (1 - alpha) * out + alpha * rearrange(texture, "c h w -> c 1 h w")
        out = overlay if mask is None else mask * overlay + (1 - mask) * out  # known mask: "clothing" only

    if draw.chance(config.p_posterize):
        out = _posterize(out, draw.integer(*config.posterize_levels))

    if draw.chance(config.p_blur):
        out = _gaussian_blur(out, draw.uniform(config.blur_sigma))

    out = out.clamp(0, 1)
    if (out - original).abs().mean().item() < config.min_change:
        out = 1 - out
    return out * 2 - 1


def _random_colour_transform(draw: _Draw, config: StrongAugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3x3 colour matrix and a bias for pixels in [0, 1]: hue, saturation, permutation, contrast,
    brightness, inversion, composed into one affine map."""
    axis = _GREY_AXIS
    grey_projection = torch.outer(axis, axis)
    angle = math.radians(draw.uniform(config.hue_degrees))
    cross = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    hue = math.cos(angle) * torch.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * grey_projection
    saturation = grey_projection + draw.uniform(config.saturation) * (torch.eye(3) - grey_projection)
    matrix = saturation @ hue
    if draw.chance(config.p_channel_permute):
        shift = draw.integer(1, 2)  # a cyclic shift by 1 or 2: never the identity
        matrix = torch.roll(torch.eye(3), shifts=shift, dims=0) @ matrix
    contrast = draw.uniform(config.contrast)
    brightness = draw.uniform(config.brightness)
    # Contrast scales around mid-grey: c * (M u - 0.5) + 0.5 + brightness.
    matrix = contrast * matrix
    bias = torch.full((3,), 0.5 * (1 - contrast) + brightness)
    if draw.chance(config.p_invert):
        matrix, bias = -matrix, 1 - bias
    return matrix, bias


def _apply_colour(pixels: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """pixels (3, F, H, W) -> matrix @ pixel + bias at every position and frame."""
    mixed = torch.einsum("oc,cfhw->ofhw", matrix, pixels)
    return (mixed + rearrange(bias, "c -> c 1 1 1")).clamp(0, 1)


def _moving_pixels(pixels: torch.Tensor, threshold: float) -> torch.Tensor:
    """(1, F, H, W) in {0, 1}: where a pixel differs from its temporal median (the estimated figure)."""
    median = pixels.median(dim=1, keepdim=True).values
    distance = (pixels - median).abs().amax(dim=0, keepdim=True)
    return (distance > threshold).float()


def _procedural_pattern(draw: _Draw, height: int, width: int) -> torch.Tensor:
    """A static (3, H, W) texture in [0, 1]: two random colours mixed by a sum of oriented waves,
    over a random linear gradient."""
    rows = torch.linspace(0, 1, height).view(height, 1)
    cols = torch.linspace(0, 1, width).view(1, width)
    waves = torch.zeros(height, width)
    for _ in range(3):
        angle = draw.uniform((0.0, math.pi))
        cycles = draw.uniform((2.0, 10.0))
        phase = draw.uniform((0.0, 2 * math.pi))
        waves = waves + torch.sin(
            2 * math.pi * cycles * (math.cos(angle) * cols + math.sin(angle) * rows) + phase
        )
    weight = (waves / 3 + 1) / 2  # roughly [0, 1]
    gradient_angle = draw.uniform((0.0, 2 * math.pi))
    gradient = (math.cos(gradient_angle) * cols + math.sin(gradient_angle) * rows + 1) / 2
    first, second, tint = draw.tensor(3, 1, 1), draw.tensor(3, 1, 1), draw.tensor(3, 1, 1)
    pattern = weight * first + (1 - weight) * second
    return (0.75 * pattern + 0.25 * gradient * tint).clamp(0, 1)


def _posterize(pixels: torch.Tensor, levels: int) -> torch.Tensor:
    """Quantise to `levels` values per channel after stretching the clip to the full range (one
    stretch for the whole clip), so a low-contrast clip is not flattened to a single level."""
    low, high = pixels.min(), pixels.max()
    if (high - low).item() < 1e-3:
        return pixels
    stretched = (pixels - low) / (high - low)
    return torch.round(stretched * (levels - 1)) / (levels - 1)


def _gaussian_blur(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each frame of (3, F, H, W) with the same separable Gaussian kernel (reflect padding)."""
    radius = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=pixels.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    frames = rearrange(pixels, "c f h w -> f c h w")
    horizontal = rearrange(kernel, "k -> 1 1 1 k").expand(3, 1, 1, -1)
    vertical = rearrange(kernel, "k -> 1 1 k 1").expand(3, 1, -1, 1)
    frames = F.conv2d(F.pad(frames, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=3)
    frames = F.conv2d(F.pad(frames, (0, 0, radius, radius), mode="reflect"), vertical, groups=3)
    return rearrange(frames, "f c h w -> c f h w")
