"""Fixtures for the CLI tests: a tiny random base saved as a real base folder, small clips, a test
preset, and one action learned once per session through the real code path (no mocks of the core)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import Workspace, build_tiny_base, sliding_square
from PIL import Image
from typer.testing import CliRunner

from flashcli.video import write_video


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
