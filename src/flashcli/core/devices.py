"""Device and dtype choice: CUDA when present, CPU otherwise."""

from __future__ import annotations

import math
import os
from typing import Literal

import torch

DeviceChoice = Literal["auto", "cuda", "cpu"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cuda", "cpu")
MEMORY_LIMIT_ENV = "FLASH_GPU_MEMORY_GIB"  # a GPU memory cap, to rehearse a smaller card on a larger one


def resolve_device(choice: str | torch.device = "auto") -> torch.device:
    """Turn a user's `--device` choice into a torch device; asking for CUDA without one is an error."""
    if isinstance(choice, torch.device):
        return choice
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, not {choice!r}")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU; use --device cpu or auto")
    device = torch.device(choice)
    if device.type == "cuda":
        apply_memory_limit(device)
    return device


def positive_number_from_env(name: str, unit: str, example: str) -> float | None:
    """$name as a positive number of `unit`, or None when unset; anything else is a ValueError whose
    sentence names the variable, the unit and an `example` value."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={text!r} is not a number of {unit}; set it to e.g. {example}, or unset it.")
    return value


def memory_limit_gib() -> float | None:
    """$FLASH_GPU_MEMORY_GIB as a number of GiB, or None when unset. One reader for both its uses: the
    preflight plans for it, and on CUDA it caps the process (`apply_memory_limit`)."""
    return positive_number_from_env(MEMORY_LIMIT_ENV, "GiB", "24")


def apply_memory_limit(device: torch.device) -> None:
    """Cap this process's GPU memory at $FLASH_GPU_MEMORY_GIB GiB, if set, so a large card behaves as a
    smaller one: past the cap torch raises its out-of-memory error, as the smaller card would."""
    limit = memory_limit_gib()
    if limit is None:
        return
    total = torch.cuda.get_device_properties(device).total_memory
    if limit * 2**30 > total:
        raise ValueError(
            f"{MEMORY_LIMIT_ENV}={limit:g} is over this GPU's {total / 2**30:.1f} GiB: give less or unset it"
        )
    torch.cuda.set_per_process_memory_fraction(limit * 2**30 / total, device)


def default_dtype(device: torch.device) -> torch.dtype:
    """Weights dtype for the denoiser: bf16 on CUDA (what Wan ships), fp32 on CPU (exact and portable)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for plain fp32.

    "auto" is bf16 on CUDA and fp32 on CPU: on CPU bf16 is only ~1.3x faster and changes results.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {precision!r}")
