"""Rectified-flow (flow matching) scheme as Wan uses it.

x_sigma = (1 - sigma) * x0 + sigma * noise, the model predicts the velocity noise - x0, and the
model's timestep is sigma * 1000. `shift` moves sigmas towards the noisy end (Wan: 3 at 480p,
5 at 720p), which is where motion gets decided.
"""

from __future__ import annotations

from typing import Any

import torch

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's timestep shift: s -> shift*s / (1 + (shift-1)*s); keeps 0 and 1 fixed."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sampling_sigmas(steps: int, shift: float) -> torch.Tensor:
    """steps+1 decreasing sigmas from 1 to 0 (float64 on CPU), shifted as Wan does."""
    if steps < 1:
        raise ValueError(f"the number of sampling steps must be at least 1, got {steps}")
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def training_sigmas(batch: int, generator: torch.Generator, shift: float) -> torch.Tensor:
    """Uniform sigmas in (0, 1), shifted like sampling so training sees the noise levels sampling uses."""
    u = torch.rand(batch, generator=generator, dtype=torch.float32)
    # Keep away from exactly 0 (no signal to learn) and 1 (numerically identical to pure noise).
    u = u.clamp(1e-3, 1.0 - 1e-3)
    return shift_sigmas(u, shift)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Noisy latents at per-sample sigma (shape (B,))."""
    s = sigma.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def sigma_to_timestep(sigma: torch.Tensor) -> torch.Tensor:
    return sigma * NUM_TRAIN_TIMESTEPS


def noisy_with_clean_first_frame(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Noisy latents (B, z, T, h, w) whose latent frame 0 stays the clean photo latent (Wan 2.2 TI2V)."""
    noisy = add_noise(x0, noise, sigma)
    return torch.cat([x0[:, :, :1], noisy[:, :, 1:]], dim=2)


def flow_loss(
    predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Velocity MSE on the generated frames only: frame 0 is the given photo, nothing to learn there.

    weights (B, 1, T, h, w), when given, weigh each latent position (the mean is over the weights), e.g.
    to give the few positions where a clip moves more of the loss than the static rest."""
    if weights is None:
        return torch.nn.functional.mse_loss(predicted[:, :, 1:].float(), target[:, :, 1:].float())
    squared = (predicted[:, :, 1:].float() - target[:, :, 1:].float()) ** 2
    weights = weights[:, :, 1:].float().expand_as(squared)
    return (squared * weights).sum() / weights.sum()


def first_frame_flow_loss(
    spec: Any,
    x0: torch.Tensor,
    text: torch.Tensor,
    generator: torch.Generator,
    shift: float,
    noise_generator: torch.Generator | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The base's training loss on clean latents x0 (B, z, T, h, w): a shifted sigma and a noise per
    sample, latent frame 0 held clean (the photo), velocity MSE on frames 1..T-1 of `spec.denoise`
    (weighted per position by `weights` (B, 1, T, h, w) when given).

    The noise comes from `generator`, a CPU generator, so runs are seeded the same on any device, unless
    a `noise_generator` on x0's device is given: on a GPU, drawing a large batch's noise on the CPU and
    copying it over costs about as much as the step itself."""
    sigma = training_sigmas(x0.shape[0], generator, shift).to(x0.device)
    if noise_generator is None:
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    else:
        noise = torch.randn(x0.shape, generator=noise_generator, device=x0.device, dtype=x0.dtype)
    noisy = noisy_with_clean_first_frame(x0, noise, sigma)
    prediction = spec.denoise(noisy, sigma_to_timestep(sigma), text)
    return flow_loss(prediction, velocity_target(x0, noise), weights)
