"""Several processes through Accelerate (`accelerate launch -m flashcli learn ...`): data parallel over
the batch, so two processes learn the adapter one process would, and only rank 0 writes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import Workspace, run_cli
from safetensors.torch import load_file
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.library import ADAPTER_FILE, Library


def _preset(folder: Path, batch_size: int, steps: int = 3) -> Path:
    """The test preset (few steps, tiny rank) with a batch that two processes can share."""
    path = folder / f"batch{batch_size}.toml"
    path.write_text(
        'description = "two processes share its batch"\n'
        f"[learn]\nsteps = {steps}\nrank = 2\npreview_steps = 1\ncheckpoint_every = 1\nlearning_rate = 0.01\n"
        f"[learn.core]\nwarmup_steps = 0\naugment_copies = 1\nbatch_size = {batch_size}\n"
        "[animate]\nsteps = 1\n"
    )
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _quiet_env(home: Path) -> dict[str, str]:
    """No user's Accelerate config is read, and each process keeps to one thread (shared CPUs)."""
    return {"HOME": str(home), "HF_HOME": str(home / "hf"), "OMP_NUM_THREADS": "1"}


def _two_processes(*args: str) -> list[str]:
    """`accelerate launch --multi_gpu --num_processes 2 -m flashcli ARGS`, every choice given as a flag.

    --multi_gpu is Accelerate's torchrun launcher, which also runs on CPUs (the flash run says
    --device cpu: gloo); its --cpu launcher starts one process unless MPI is set up."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*launcher, "--main_process_port", str(_free_port()), "-m", "flashcli", *args]


def _launch_two(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **_quiet_env(home)}
    return subprocess.run(_two_processes(*args), capture_output=True, text=True, env=env, timeout=600)


def _learn_args(ws: Workspace, preset: Path, library: Path, action: str) -> list[str]:
    return [
        "learn",
        str(ws.clips),
        "--action",
        action,
        "--base",
        str(ws.base),
        "--preset",
        str(preset),
        "--library",
        str(library),
        "--device",
        "cpu",
        "--json",
    ]


def _entries(library: Path) -> list[str]:
    return sorted(path.name for path in library.iterdir() if not path.name.startswith("."))


@pytest.mark.slow
def test_two_processes_learn_the_adapter_one_process_learns(workspace: Workspace, tmp_path: Path) -> None:
    preset, library = _preset(tmp_path, 2), tmp_path / "library"

    two = _launch_two(*_learn_args(workspace, preset, library, "a2"), home=tmp_path)
    assert two.returncode == 0, two.stderr
    summary = json.loads(two.stdout)  # exactly one JSON document: rank 1 prints nothing
    assert summary["action"] == "a2"
    assert _entries(library) == ["a2"]  # one action, no staging or checkpoint left behind
    assert "rank 1" not in two.stderr

    one = run_cli(*_learn_args(workspace, preset, library, "a1"), env=_quiet_env(tmp_path))
    assert one.returncode == 0, one.stderr

    parallel, single = (load_file(library / name / ADAPTER_FILE) for name in ("a2", "a1"))
    assert parallel.keys() == single.keys()
    assert any(tensor.abs().max() > 0 for tensor in single.values())  # trained: not a trivial match
    worst = max(float((parallel[key] - single[key]).abs().max()) for key in single)
    assert worst < 1e-5, f"largest difference {worst:.2e}"
    # The losses rank 0 records are the whole batch's, as one process records them.
    two_losses, one_losses = (
        torch.tensor([step["total"] for step in Library.open(library).manifest(name).losses])
        for name in ("a2", "a1")
    )
    assert torch.allclose(two_losses, one_losses, atol=1e-6), (two_losses, one_losses)


@pytest.mark.slow  # a few seconds: the full suite runs it, the quick subset does not
def test_a_batch_that_does_not_split_over_the_processes_is_refused(
    workspace: Workspace, tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # as a launcher of two processes sets it; checked before loading
    preset, library = _preset(tmp_path, 3), tmp_path / "library"

    result = runner.invoke(app, _learn_args(workspace, preset, library, "odd")[:-1])

    assert result.exit_code == 2, result.output
    assert "Batch size 3 does not split over the 2 processes" in result.output
    assert "set batch_size in the [learn.core] table of preset" in result.output
    assert not library.exists() or _entries(library) == []


@pytest.mark.slow
def test_a_process_that_dies_mid_training_leaves_no_action(workspace: Workspace, tmp_path: Path) -> None:
    preset, library = _preset(tmp_path, 2, steps=2000), tmp_path / "library"
    checkpoint = library / ".checkpoints" / "a2" / "checkpoint.pt"
    command = _two_processes(*_learn_args(workspace, preset, library, "a2"))
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    env = {**os.environ, **_quiet_env(tmp_path)}
    with out.open("w") as stdout, err.open("w") as stderr:
        launch = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=env)
    try:
        _wait_for(checkpoint, launch)
        _kill_rank_one(launch)  # a crash: it has no chance to clean up
        launch.wait(timeout=300)
    finally:
        _kill_tree(launch)

    assert launch.returncode != 0
    assert out.read_text() == ""  # no JSON document for an action that was not saved
    # Rank 0 says why (or, when the launcher stops it first, that nothing was saved).
    said = err.read_text()
    assert "Another process of this launch stopped" in said or "Interrupted; nothing was saved." in said
    assert _entries(library) == []  # no action, no staging folder
    assert checkpoint.is_file()  # what `--resume` continues from


def _wait_for(path: Path, launch: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not path.exists() and time.monotonic() < deadline and launch.poll() is None:
        time.sleep(0.5)
    assert path.exists(), "training never reached its first checkpoint"


def _kill_rank_one(launch: subprocess.Popen) -> None:
    import psutil

    workers = psutil.Process(launch.pid).children(recursive=True)
    rank_one = [worker for worker in workers if worker.environ().get("RANK") == "1"]
    assert len(rank_one) == 1
    rank_one[0].kill()


def _kill_tree(launch: subprocess.Popen) -> None:
    """Whatever the test's outcome, no process of it outlives it."""
    import psutil

    if launch.poll() is not None:
        return
    for process in [*psutil.Process(launch.pid).children(recursive=True), psutil.Process(launch.pid)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    launch.wait(timeout=60)
