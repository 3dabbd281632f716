"""A learn killed mid-training leaves no half-written action, and the next writer cleans up after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import Workspace
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.library import Library


def start_learn(workspace: Workspace, library: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "from flashcli.cli import main; main()", "learn", str(workspace.clips)]
    command += ["--action", "victim", "--base", str(workspace.base), "--preset", str(workspace.preset)]
    command += ["--steps", "100000", "--library", str(library), "--device", "cpu"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_training(process: subprocess.Popen, library: Path, timeout: float = 240) -> None:
    """Until a checkpoint exists: the process is deep inside training with a staging folder open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"learn ended early: {process.stderr.read() if process.stderr else ''}")
        if list(library.glob(".checkpoints/victim/checkpoint.pt")) and list(
            library.glob(".staging-victim-*")
        ):
            return
        time.sleep(0.5)
    process.kill()
    pytest.fail("learn did not reach its first checkpoint in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_learn_leaves_no_action(
    sig: signal.Signals, workspace: Workspace, tmp_path: Path, runner: CliRunner
) -> None:
    library = tmp_path / "library"
    process = start_learn(workspace, library)
    wait_for_training(process, library)
    os.kill(process.pid, sig)
    process.wait(timeout=60)

    assert Library(library).names() == []
    assert not (library / "victim").exists()
    listing = runner.invoke(app, ["inspect", "--library", str(library), "--json"])
    assert '"actions": []' in listing.stdout
    if sig == signal.SIGTERM:  # a polite kill unwinds: the staging folder goes at once, exit 130
        assert process.returncode == 130
        assert not list(library.glob(".staging-*"))
    else:  # SIGKILL cannot be caught: the leftover is swept by the next writer
        assert list(library.glob(".staging-*"))
        learn = ["learn", str(workspace.clips), "--action", "victim", "--base", str(workspace.base)]
        learn += ["--preset", str(workspace.preset), "--library", str(library), "--device", "cpu"]
        mismatch = runner.invoke(app, [*learn, "--steps", "1", "--resume"])  # not the killed run's settings
        assert mismatch.exit_code == 2 and "other clips, settings or base" in mismatch.stderr
        result = runner.invoke(app, [*learn, "--steps", "1"])
        assert result.exit_code == 0, result.output
        assert Library(library).names() == ["victim"]
        assert not list(library.glob(".staging-*"))
