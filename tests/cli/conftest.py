"""Fixtures for the CLI tests: a tiny random base saved as a real base folder, small clips, a test
preset, and one action learned once per session through the real code path (no mocks of the core)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from flashcli.video import write_video

FRAMES = 5  # 4k+1 for Wan's VAE, the fewest the core trains on
SIZE = 32  # a multiple of the tiny base's VAE x patch factor (16)


def build_tiny_base(folder: Path, *, seed: int, base_id: str) -> Path:
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from flashcli.core.specs import save_base

    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    )
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    meta = {"base_id": base_id, "frames": FRAMES, "size": SIZE, "fps": 8, "flow_shift": 2.0}
    return save_base(folder, transformer, vae, torch.randn(4, 16), meta)


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


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`flash ARGS` as a separate process, exactly as a shell script would run it."""
    command = [sys.executable, "-c", "from flashcli.cli import main; main()", *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, runner: CliRunner) -> Workspace:
    from flashcli.cli import app

    root = tmp_path_factory.mktemp("cli")
    base = build_tiny_base(root / "base", seed=0, base_id="tiny-test")
    other = build_tiny_base(root / "other-base", seed=1, base_id="other-test")
    clips = root / "clips"
    for index in range(3):
        write_video(clips / f"clip{index}.mp4", sliding_square(index), fps=8)
    photo = root / "photo.png"
    Image.fromarray(sliding_square(7, frames=2, height=48, width=40)[0]).save(photo)
    preset = root / "test.toml"
    preset.write_text(
        'description = "tiny and fast, for tests"\n'
        "[learn]\nsteps = 2\nrank = 2\npreview_steps = 1\ncheckpoint_every = 1\n"
        "[learn.core]\nwarmup_steps = 0\naugment_copies = 1\n"
        "[animate]\nsteps = 2\n"
    )
    library = root / "library"
    result = runner.invoke(
        app,
        [
            "learn",
            str(clips),
            "--action",
            "slide",
            "--base",
            str(base),
            "--preset",
            str(preset),
            "--library",
            str(library),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    return Workspace(base=base, other_base=other, clips=clips, photo=photo, preset=preset, library=library)


@pytest.fixture()
def library_copy(workspace: Workspace, tmp_path: Path) -> Path:
    """A private copy of the session library, for tests that change it."""
    target = tmp_path / "library"
    shutil.copytree(workspace.library, target)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (lock files aside) with its bytes: proof a failed command changed nothing."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".locks" not in path.parts
    }
