"""Seeded FigureWorld clips for pretraining: pretrain actions and seen appearances only.

Clip i of the training stream and clip i of the held-out stream come from disjoint seed ranges, so
held-out frames were never shown to the VAE or the denoiser.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from flashcli.figureworld import PRETRAIN_ACTIONS, render_clip
from flashcli.files import atomic_path, write_json_atomic

from .configs import DataSettings


def clip_action(index: int, base_seed: int) -> str:
    """The action of stream clip `index`: a seeded draw, so every action appears about equally often."""
    rng = np.random.default_rng([base_seed, index, 7])
    return PRETRAIN_ACTIONS[int(rng.integers(len(PRETRAIN_ACTIONS)))]


def render_stream_clip(
    data: DataSettings, index: int, *, heldout: bool = False, appearance: str = "seen"
) -> np.ndarray:
    """uint8 (F, H, W, 3) clip `index` of the training (or held-out) stream."""
    start = data.heldout_seed_start if heldout else data.train_seed_start
    seed = start + index
    clip = render_clip(
        clip_action(index, start),
        seed,
        size=data.size,
        frames=data.frames,
        fps=data.fps,
        appearance=appearance,  # type: ignore[arg-type]
        phase=data.phase,
    )
    return clip.frames


def render_stream_clips(
    data: DataSettings, indices: Sequence[int], *, heldout: bool = False, workers: int = 1
) -> Iterator[np.ndarray]:
    """Stream clips `indices`, in order. With workers > 1 they render in that many processes: each clip
    is seeded by its index alone, so the clips are the same either way. The workers are spawned, not
    forked, because the parent may already hold a CUDA context."""
    render = partial(render_stream_clip, data, heldout=heldout)
    if workers <= 1:
        yield from map(render, indices)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(render, indices, chunksize=8)


def render_pool(
    data: DataSettings, count: int, cache_path: Path, *, heldout: bool = False, workers: int = 1
) -> np.ndarray:
    """(N, F, H, W, 3) uint8 clips, rendered once and cached as .npy (a rerun reuses the cache when it
    was rendered from the same data settings, which a JSON file beside it records)."""
    record_path = cache_path.with_suffix(".json")
    record = data.model_dump(mode="json")
    if cache_path.exists() and record_path.exists() and json.loads(record_path.read_text()) == record:
        pool = np.load(cache_path, mmap_mode="r")
        if pool.shape[0] >= count:
            return np.asarray(pool[:count])
    clips = np.stack(list(render_stream_clips(data, range(count), heldout=heldout, workers=workers)))
    with atomic_path(cache_path) as temp:  # its name ends in .npy, so np.save adds no suffix
        np.save(temp, clips)
    write_json_atomic(record_path, record)
    return clips


def to_model_range(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 3) -> float32 in [-1, 1]."""
    return frames.astype(np.float32) / 127.5 - 1.0
