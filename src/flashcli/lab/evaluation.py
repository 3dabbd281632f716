"""How well a base (with adapters) denoises a given clip: the number learning should lower."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from flashcli.core import flow
from flashcli.core.adapter import adapters_attached, conditioning_text
from flashcli.core.pixels import video_to_tensor


def fixed_denoising_error(
    spec: Any,
    clip: np.ndarray,
    adapters: list,
    *,
    sigmas: Sequence[float] = (0.2, 0.4, 0.6, 0.8),
    seed: int = 123,
    text: torch.Tensor | None = None,
) -> float:
    """Velocity MSE on frames 1.. of uint8 `clip` (F, H, W, 3), frame 0 held clean as in training and
    sampling, at fixed noise levels and a fixed noise: the same number for the same inputs, so two
    adapters (or none) compare on equal terms. The conditioning text is `text` when given, else what
    sampling uses: the adapters' learned action texts, or the base's null text."""
    x0 = spec.encode_video(video_to_tensor(clip)[None].to(spec.device, spec.dtype))
    x0 = x0.expand(len(sigmas), -1, -1, -1, -1)
    generator = torch.Generator().manual_seed(seed)
    sigma = torch.tensor(list(sigmas), dtype=x0.dtype)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    noisy = flow.noisy_with_clean_first_frame(x0, noise, sigma.to(x0.device))
    if text is None:
        text = conditioning_text(spec, adapters)
    with torch.no_grad(), adapters_attached(spec, adapters):
        velocity = spec.denoise(noisy, flow.sigma_to_timestep(sigma).to(x0.device), text)
    return torch.nn.functional.mse_loss(velocity[:, :, 1:], (noise - x0)[:, :, 1:]).item()
