"""Stage 2: encode the pretraining clips once with the trained VAE; measure the latent statistics.

The cache holds normalised latents ((raw - mean) / std per channel, as WanSpec normalises) and is
tied to the encoder it came from (a fingerprint of its weights) and to the data settings its clips
were rendered with: retraining the encoder or changing the clips invalidates it, training the decoder
alone does not. Asking for more clips than it holds encodes only the new
ones and keeps the statistics of the first build.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from flashcli.core.devices import resolve_device
from flashcli.files import atomic_path

from .configs import EncodeStageSettings, RunSettings
from .data import render_pool, render_stream_clips, to_model_range
from .vae_stage import encoder_fingerprint, load_trained_vae, same_encoder

# A latent position counts as moved where its pixels differ from frame 0 by more than this (in [-1, 1],
# averaged over colour): 0.1 is about 13 grey levels, above the VAE's and the renderer's noise.
MOVED_THRESHOLD = 0.1


def latent_cache_path(run: RunSettings) -> Path:
    return run.run_dir / "cache" / "latents.pt"


@torch.no_grad()
def encode_clips(vae: torch.nn.Module, clips: list[np.ndarray]) -> torch.Tensor:
    """(N, z, T, h, w) latents (the posterior's mode) of N uint8 clips, encoded as one batch."""
    video = rearrange(torch.from_numpy(to_model_range(np.stack(clips))), "n f h w c -> n c f h w")
    device = next(vae.parameters()).device
    return vae.encode(video.to(device)).latent_dist.mode().cpu()


def encode_clip(vae: torch.nn.Module, clip: np.ndarray) -> torch.Tensor:
    return encode_clips(vae, [clip])[0]


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
        same_data = cached.get("data") == run.data.model_dump(mode="json")
        if same_data and same_encoder(cached, fingerprint, vae_state["step"]):
            if cached["clips"] >= run.encode.clips:
                return cached
            return _extend_cache(run, vae, cached, path)
    started = time.time()
    clips = render_pool(
        run.data, run.encode.clips, run.run_dir / "cache" / "dit_pool.npy", workers=run.encode.workers
    )
    latents = _encode(vae, enumerate(clips), len(clips), run.encode, started)
    mean, std = channel_stats(latents)
    normalised = (latents - torch.tensor(mean).view(1, -1, 1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1, 1)
    cache = {
        "latents": normalised,
        "latents_mean": mean,
        "latents_std": std,
        "vae_step": vae_state["step"],
        "encoder": fingerprint,
        "data": run.data.model_dump(mode="json"),
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
    indices = range(cached["clips"], run.encode.clips)
    new_clips = zip(indices, render_stream_clips(run.data, indices, workers=run.encode.workers), strict=True)
    added = (_encode(vae, new_clips, run.encode.clips, run.encode, started) - mean) / std
    cache = {
        **cached,
        "latents": torch.cat([cached["latents"], added]),
        "clips": run.encode.clips,
        "seconds": cached["seconds"] + time.time() - started,
    }
    return _save(cache, path)


def _encode(
    vae: torch.nn.Module,
    clips: Iterable[tuple[int, np.ndarray]],
    total: int,
    settings: EncodeStageSettings,
    started: float,
) -> torch.Tensor:
    """Raw latents of (stream index, clip) pairs, each followed by its mirror image's when the settings
    ask for flip copies; `settings.batch` clips go through the encoder at once."""
    raw, pairs, reported = [], iter(clips), -1
    while batch := list(itertools.islice(pairs, settings.batch)):
        videos = []
        for _, clip in batch:
            videos.append(clip)
            if settings.flip_copies:
                videos.append(np.ascontiguousarray(clip[:, :, ::-1]))
        raw.extend(encode_clips(vae, videos))
        index = batch[-1][0]
        if index // 50 > reported // 50:
            reported = index
            print(f"encoded {index + 1}/{total} clips ({time.time() - started:.0f}s)", flush=True)
    return torch.stack(raw)


def moved_positions(clip: np.ndarray, factor: int) -> torch.Tensor:
    """(F, H / factor, W / factor) bool: the latent positions of a uint8 clip (F, H, W, 3) whose pixels
    differ from frame 0 in that frame: where a limb is, or where it was (frame 0 is all False)."""
    video = torch.from_numpy(to_model_range(clip))
    changed = (video - video[:1]).abs().mean(dim=-1) > MOVED_THRESHOLD
    pooled = torch.nn.functional.max_pool2d(changed[:, None].float(), factor)
    return pooled[:, 0] > 0


def with_moved_masks(run: RunSettings, cache: dict[str, Any]) -> dict[str, Any]:
    """The cache with `moved` (N, T, h, w) bool for each latent, in the latents' order (each clip, then
    its mirror image when the cache holds those), rendering the stream clips again when it lacks them."""
    latents, clips = cache["latents"], cache["clips"]
    if "moved" in cache and cache["moved"].shape[0] == latents.shape[0]:
        return cache
    frames, height = latents.shape[2], latents.shape[3]
    if frames != run.data.frames:
        raise ValueError(
            f"moved-position weights need a latent frame per clip frame ({run.data.frames} frames, "
            f"{frames} latent frames): use a VAE without time compression (--vae-temporal-factor 1)"
        )
    copies = latents.shape[0] // clips
    masks = []
    for clip in render_stream_clips(run.data, range(clips), workers=run.encode.workers):
        moved = moved_positions(clip, run.data.size // height)
        masks += [moved, moved.flip(-1)][:copies]
    cache = {**cache, "moved": torch.stack(masks)}
    return _save(cache, latent_cache_path(run))


def _save(cache: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the cache whole or not at all (temp file, then rename)."""
    with atomic_path(path) as temp:
        torch.save(cache, temp)
    return cache
