"""Animating a photo: flow-matching sampling (the Euler ODE, or ancestral with fresh noise per step) with
the photo held as the clean frame 0."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from flashcli.core.adapter import adapters_attached, conditioning_text
from flashcli.core.devices import autocast_dtype
from flashcli.core.flow import sampling_sigmas, sigma_to_timestep
from flashcli.core.pixels import photo_to_tensor, tensor_to_video
from flashcli.core.settings import SampleSettings

if TYPE_CHECKING:
    from flashcli.core.specs.wan import WanSpec

ModelFn = Callable[[torch.Tensor, float], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor], None]
Adapter = tuple[Mapping[str, torch.Tensor], Mapping[str, str], float]


def sample(
    model_fn: ModelFn,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Euler integration of a flow-matching ODE from sigmas[0] down to sigmas[-1].

    model_fn(x, sigma) returns the velocity (noise - x0) at x. `callback(step, total, x)` runs
    after each step. Pure: no state, no randomness.
    """
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("sigmas must be a 1-D tensor of at least two noise levels")
    x = latents
    total = len(sigmas) - 1
    for step in range(total):
        sigma, sigma_next = float(sigmas[step]), float(sigmas[step + 1])
        velocity = model_fn(x, sigma)
        x = x + (sigma_next - sigma) * velocity
        if callback is not None:
            callback(step + 1, total, x)
    return x


def sample_ancestral(
    model_fn: ModelFn,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    eta: float,
    generator: torch.Generator,
    *,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Flow sampling that, each step, predicts the clean latent and re-noises it to the next sigma with a
    mix of the predicted noise and fresh noise: eta 0 is exactly the Euler ODE of `sample`, eta 1 draws
    all-fresh noise (ancestral). The fresh noise comes from `generator` (a CPU generator, so a seed gives
    the same video on every device). Pure apart from drawing from `generator`."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("sigmas must be a 1-D tensor of at least two noise levels")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be between 0 and 1, got {eta}")
    x = latents
    total = len(sigmas) - 1
    for step in range(total):
        sigma, sigma_next = float(sigmas[step]), float(sigmas[step + 1])
        velocity = model_fn(x, sigma)
        clean, noise = x - sigma * velocity, x + (1.0 - sigma) * velocity
        fresh = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
        noise = (1.0 - eta**2) ** 0.5 * noise + eta * fresh
        x = (1.0 - sigma_next) * clean + sigma_next * noise
        if callback is not None:
            callback(step + 1, total, x)
    return x


def initial_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise drawn on the CPU, so a seed gives the same start on every device."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def first_frame_velocity(
    spec: WanSpec, condition: torch.Tensor, text: torch.Tensor, *, guidance: float | None = None
) -> ModelFn:
    """The model_fn `sample` integrates when a clean latent (B, z, 1, h, w) is held as frame 0.

    Denoises as training does (`flow.noisy_with_clean_first_frame`): frame 0 is the condition at
    every step and its velocity is zero, so the Euler step leaves it where it is. With `guidance`,
    `text` holds the prompt's embedding then the negative prompt's (classifier-free guidance).
    """

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        x = torch.cat([condition, x[:, :, 1:]], dim=2)
        batch = torch.cat([x, x]) if guidance is not None else x
        timesteps = sigma_to_timestep(torch.full((batch.shape[0],), sigma, device=x.device))
        predicted = spec.denoise(batch, timesteps, text)
        if guidance is not None:
            conditional, unconditional = predicted.chunk(2)
            predicted = unconditional + guidance * (conditional - unconditional)
        predicted[:, :, 0] = 0
        return predicted

    return velocity


def sample_photo_latents(
    spec: WanSpec,
    reference: torch.Tensor,
    adapters: list[Adapter],
    settings: SampleSettings,
    *,
    frames: int,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The denoised latents (1, z, T, h, w) of a video that starts at `reference` (1, 3, H, W) in [-1, 1].

    Frame 0 is the photo's own clean latent. progress(done, total) counts the denoising steps plus
    one final unit that the caller reports after decoding.
    """
    height, width = reference.shape[-2:]
    spec.check_video_shape(frames, height, width)
    device = spec.device
    condition = spec.encode_photo(reference)  # (1, z, 1, h, w), normalised
    latent_shape = (1, condition.shape[1], spec.latent_frames(frames), condition.shape[3], condition.shape[4])
    latents = initial_noise(latent_shape, settings.seed).to(device)
    latents[:, :, :1] = condition

    text = conditioning_text(spec, adapters, settings.prompt)
    guidance = settings.guidance if spec.has_text and settings.guidance > 1.0 else None
    if guidance is not None:
        text = torch.cat([text, spec.encode_text(negative_prompt(spec, settings))])
    cast = autocast_dtype(device, settings.precision)
    autocast = torch.autocast(device.type, dtype=cast) if cast is not None else contextlib.nullcontext()
    velocity = first_frame_velocity(spec, condition, text, guidance=guidance)

    def report(step: int, total: int, _: torch.Tensor) -> None:
        if progress is not None:
            progress(step, total + 1)

    shift = settings.shift if settings.shift is not None else spec.flow_shift
    sigmas = sampling_sigmas(settings.steps, shift)
    eta = sampler_eta(spec, settings)
    # Autocast reaches the denoiser's matmuls; the sampler's updates stay in fp32 (type promotion).
    with torch.no_grad(), adapters_attached(spec, adapters), autocast:
        if eta > 0:
            # Its own stream, apart from the initial noise's, so eta 0 and eta > 0 start alike.
            fresh = torch.Generator(device="cpu").manual_seed(settings.seed + 1)
            final = sample_ancestral(velocity, latents, sigmas, eta, fresh, callback=report)
        else:
            final = sample(velocity, latents, sigmas, callback=report)
    final[:, :, :1] = condition
    return final


def sampler_eta(spec: WanSpec, settings: SampleSettings) -> float:
    """The fresh-noise share `sample_photo_latents` uses: the settings' eta, else the base's."""
    return settings.eta if settings.eta is not None else spec.sampler_eta


def negative_prompt(spec: WanSpec, settings: SampleSettings) -> str | None:
    """What `sample_photo_latents` guides away from: the settings' negative prompt, else the base's;
    None where it does not guide (a base without text, or guidance 1)."""
    if not spec.has_text or settings.guidance <= 1.0:
        return None
    return settings.negative_prompt if settings.negative_prompt is not None else spec.negative_prompt


def animate_photo(
    spec: WanSpec,
    photo: np.ndarray,
    adapters: list[Adapter],
    settings: SampleSettings,
    *,
    frames: int,
    progress: Callable[[int, int], None] | None = None,
    ded: Any | None = None,
) -> np.ndarray:
    """Animate `photo` (uint8 (H, W, 3)) with the adapters; returns uint8 (frames, H, W, 3), frame 0 == photo.

    adapters: (tensors, metadata, strength) each, strength 0..2. progress(done, total) counts the
    denoising steps plus one final unit for decoding (which is slow on CPU). ded: a Detail
    Enhancement Decoder to use instead of the base's (an action's fine-tuned one), when settings.use_ded.
    """
    reference = photo_to_tensor(photo).unsqueeze(0)
    final = sample_photo_latents(spec, reference, adapters, settings, frames=frames, progress=progress)
    video = spec.decode(final, reference_photo=reference, use_ded=settings.use_ded, ded=ded)
    if progress is not None:
        progress(settings.steps + 1, settings.steps + 1)
    result = tensor_to_video(video[0])
    result[0] = photo  # exact by construction already; this states the contract
    return result
