"""The training data as the VAE and the text encoder made it, kept beside a run's checkpoint.

Encoding every clip and its augmented copies is minutes of GPU time on a real base; `--resume` loads
this file instead. It is keyed by a fingerprint of everything that shaped the encoding, so a file made
from other clips, masks, settings, prompt or base is never used: the trainer encodes again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from flashcli.core.settings import TrainSettings
from flashcli.core.tensor_files import save_safetensors_atomic

CACHE_NAME = "encoded.safetensors"
CACHE_FORMAT = "2"  # 2: tensors stored in their own dtypes


def encoding_fingerprint(
    clips: list[np.ndarray],
    masks: list[np.ndarray] | None,
    settings: TrainSettings,
    prompt: str | None,
    base_weight_hash: str,
) -> str:
    """A hex digest of what the encoded data depends on, and of nothing else (not the step count or
    learning rate, which the checkpoint already guards)."""
    described = {
        "format": CACHE_FORMAT,
        "clips": [_array_digest(clip) for clip in clips],
        "masks": None if masks is None else [_array_digest(mask) for mask in masks],
        "frames": settings.frames,
        "frame_size": list(settings.frame_size),
        "strong_augment": settings.align.strong_augment,
        "augment_copies": settings.augment_copies,
        "seed": settings.seed,
        "prompt": prompt or "",
        "base_weight_hash": base_weight_hash,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _array_digest(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def save_encoded(folder: Path, fingerprint: str, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write `tensors` (atomically, each in its own dtype) with their fingerprint."""
    return save_safetensors_atomic(
        folder / CACHE_NAME, tensors, {"fingerprint": fingerprint}, keep_dtype=True
    )


def load_encoded(folder: Path, fingerprint: str, device: torch.device) -> dict[str, torch.Tensor] | None:
    """The tensors saved with this very fingerprint, in their own dtypes on `device`; None when there is
    no such file, it was made from something else, or it cannot be read (the caller encodes again)."""
    from safetensors import SafetensorError, safe_open

    path = folder / CACHE_NAME
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("fingerprint") != fingerprint:
                return None
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (OSError, SafetensorError):
        return None
    return {name: t.to(device) for name, t in tensors.items()}
