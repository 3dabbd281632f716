"""Stage 2: encode the pretraining clips once with the trained VAE; measure the latent statistics.

The cache holds normalised latents ((raw - mean) / std per channel, as WanSpec normalises) and is
tied to the encoder it came from (a fingerprint of its weights): retraining the encoder invalidates
it, training the decoder alone does not. Asking for more clips than it holds encodes only the new
ones and keeps the statistics of the first build.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from flashcli.core.devices import resolve_device

from .configs import RunSettings
from .data import render_pool, render_stream_clip, to_model_range
from .vae_stage import encoder_fingerprint, load_trained_vae, same_encoder


def latent_cache_path(run: RunSettings) -> Path:
    return run.run_dir / "cache" / "latents.pt"


@torch.no_grad()
def encode_clip(vae: torch.nn.Module, clip: np.ndarray) -> torch.Tensor:
    video = rearrange(torch.from_numpy(to_model_range(clip)), "f h w c -> 1 c f h w")
    device = next(vae.parameters()).device
    return vae.encode(video.to(device)).latent_dist.mode()[0].cpu()


def channel_stats(latents: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over every position, as Wan's latents_mean / latents_std."""
    channels_first = rearrange(latents, "n c t h w -> c (n t h w)")
    return channels_first.mean(dim=1).tolist(), channels_first.std(dim=1).tolist()


def sample_latent_stats(
    run: RunSettings, vae: torch.nn.Module, clips: int
) -> tuple[list[float], list[float]]:
    """Latent statistics from the first `clips` clips of the denoiser's stream (a quick estimate)."""
    pool = render_pool(run.data, clips, run.run_dir / "cache" / "stats_pool.npy")
    return channel_stats(torch.stack([encode_clip(vae, clip) for clip in pool]))


def build_latent_cache(run: RunSettings) -> dict[str, Any]:
    vae, vae_state = load_trained_vae(run)
    vae.to(resolve_device(run.device))
    fingerprint = encoder_fingerprint(vae)
    path = latent_cache_path(run)
    if path.exists():
        cached = torch.load(path, map_location="cpu", weights_only=False)
        if same_encoder(cached, fingerprint, vae_state["step"]):
            if cached["clips"] >= run.encode.clips:
                return cached
            return _extend_cache(run, vae, cached, path)
    started = time.time()
    clips = render_pool(run.data, run.encode.clips, run.run_dir / "cache" / "dit_pool.npy")
    latents = _encode(vae, enumerate(clips), len(clips), run.encode.flip_copies, started)
    mean, std = channel_stats(latents)
    normalised = (latents - torch.tensor(mean).view(1, -1, 1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1, 1)
    cache = {
        "latents": normalised,
        "latents_mean": mean,
        "latents_std": std,
        "vae_step": vae_state["step"],
        "encoder": fingerprint,
        "clips": len(clips),
        "seconds": time.time() - started,
    }
    return _save(cache, path)


def _extend_cache(
    run: RunSettings, vae: torch.nn.Module, cached: dict[str, Any], path: Path
) -> dict[str, Any]:
    """Encode stream clips cached["clips"] .. run.encode.clips and append them. The latent statistics
    stay those of the first build, so a denoiser trained on the cache (and its exports) stays valid."""
    started = time.time()
    mean = torch.tensor(cached["latents_mean"]).view(1, -1, 1, 1, 1)
    std = torch.tensor(cached["latents_std"]).view(1, -1, 1, 1, 1)
    new_clips = ((i, render_stream_clip(run.data, i)) for i in range(cached["clips"], run.encode.clips))
    added = (_encode(vae, new_clips, run.encode.clips, run.encode.flip_copies, started) - mean) / std
    cache = {
        **cached,
        "latents": torch.cat([cached["latents"], added]),
        "clips": run.encode.clips,
        "seconds": cached["seconds"] + time.time() - started,
    }
    return _save(cache, path)


def _encode(
    vae: torch.nn.Module, clips: Iterable[tuple[int, np.ndarray]], total: int, flip: bool, started: float
) -> torch.Tensor:
    """Raw latents of (stream index, clip) pairs, each followed by its mirror image's when `flip`."""
    raw = []
    for index, clip in clips:
        raw.append(encode_clip(vae, clip))
        if flip:
            raw.append(encode_clip(vae, np.ascontiguousarray(clip[:, :, ::-1])))
        if index % 50 == 0:
            print(f"encoded {index}/{total} clips ({time.time() - started:.0f}s)", flush=True)
    return torch.stack(raw)


def _save(cache: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the cache whole or not at all (temp file, then rename)."""
    partial = path.with_suffix(".partial")
    torch.save(cache, partial)
    partial.replace(path)
    return cache
