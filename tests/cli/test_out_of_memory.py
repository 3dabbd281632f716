"""The GPU running out of memory is the settings' fault, not a bug: `flash learn` and `flash animate` exit 2
with one sentence naming what to change, and leave nothing half-written (torch.OutOfMemoryError is injected
where the model runs; on CPU it cannot happen for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import Workspace, learn_args
from typer.testing import CliRunner

from flashcli.cli import app


def _out_of_memory(*args: object, **kwargs: object) -> None:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_learn_out_of_memory_exits_2_naming_what_to_change(
    workspace: Workspace, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flashcli.core.trainer.train_adapter", _out_of_memory)
    library = tmp_path / "library"
    result = runner.invoke(app, [*learn_args(workspace, workspace.clips), "--library", str(library)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert "The GPU ran out of memory during `flash learn`; nothing was saved." in message
    for change in ("smaller --size", "fewer --frames", "--preset low-vram", "--gradient-checkpointing"):
        assert change in message
    assert not (library / "fresh").exists()


def test_animate_out_of_memory_exits_2_and_writes_no_video(
    workspace: Workspace, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flashcli.core.sampler.animate_photo", _out_of_memory)
    out = tmp_path / "out.mp4"
    args = ["animate", str(workspace.photo), "--action", "slide", "--library", str(workspace.library)]
    result = runner.invoke(app, [*args, "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert "ran out of memory during `flash animate`" in message and "--preset low-vram" in message
    assert list(tmp_path.iterdir()) == []
