"""Helpers for the CLI tests: tiny random bases saved as real base folders, small clips, running
`flash` as a process, and snapshots of folders. A module of its own (not conftest) so its name is
unique across test folders."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAMES = 5  # 4k+1 for Wan's VAE, the fewest the core trains on
SIZE = 32  # a multiple of the tiny base's VAE x patch factor (16)


def build_tiny_base(folder: Path, *, seed: int, base_id: str) -> Path:
    from random_wan import random_wan_components

    from flashcli.core.specs import save_base

    transformer, vae, null_text = random_wan_components(seed, num_layers=2)
    meta = {"base_id": base_id, "frames": FRAMES, "size": SIZE, "fps": 8, "flow_shift": 2.0}
    return save_base(folder, transformer, vae, null_text, meta)


def base_with_ded(base: Path, folder: Path) -> Path:
    """A copy of `base` at `folder` with a random Detail Enhancement Decoder."""
    import shutil

    import torch
    from diffusers import AutoencoderKLWan

    from flashcli.core.ded import DetailEnhancedDecoder

    shutil.copytree(base, folder)
    ded = DetailEnhancedDecoder(AutoencoderKLWan.from_pretrained(folder / "vae"))
    torch.manual_seed(0)
    with torch.no_grad():  # a trained DED stand-in: non-zero outputs, so it changes what it decodes
        for parameter in ded.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    ded.save(folder / "ded")
    return folder


def sliding_square(seed: int, frames: int = 12, height: int = 40, width: int = 48) -> np.ndarray:
    """A coloured square crossing a plain background; not square frames, so fitting is exercised."""
    rng = np.random.default_rng(seed)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    video[:] = rng.integers(0, 255, size=3, dtype=np.uint8)
    colour = rng.integers(0, 255, size=3, dtype=np.uint8)
    for index in range(frames):
        x = index * (width - 10) // (frames - 1)
        video[index, 15:25, x : x + 10] = colour
    return video


@dataclass(frozen=True)
class Workspace:
    base: Path
    other_base: Path
    clips: Path
    photo: Path
    preset: Path
    library: Path  # holds the action 'slide', learned once; copy it before changing it


def learn_args(ws: Workspace, clips: Path, *extra: str) -> list[str]:
    """`flash learn` of `clips` as the new action 'fresh' on the test base and preset."""
    return [
        "learn",
        str(clips),
        "--action",
        "fresh",
        "--base",
        str(ws.base),
        "--preset",
        str(ws.preset),
        *extra,
    ]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`flash ARGS` as a separate process, exactly as a shell script would run it."""
    command = [sys.executable, "-c", "from flashcli.cli import main; main()", *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (lock files aside) with its bytes: proof a failed command changed nothing."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".locks" not in path.parts
    }
