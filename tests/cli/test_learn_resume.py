"""`flash learn --resume` after an interrupted run takes the clips as that run encoded them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import Workspace, learn_args, run_cli
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.library import Library
from flashcli.terminal import StepProgress


@pytest.mark.slow
def test_resume_after_an_interrupt_does_not_encode_the_clips_again(
    workspace: Workspace, tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = tmp_path / "library"
    args = learn_args(
        workspace, workspace.clips, "--steps", "3", "--library", str(library), "--device", "cpu"
    )
    show = StepProgress.train_step

    def interrupted_at_step_two(self: StepProgress, report) -> None:  # Ctrl-C after the step-2 checkpoint
        show(self, report)
        if report.phase == "train" and report.step == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(StepProgress, "train_step", interrupted_at_step_two)
        first = runner.invoke(app, args)
    assert first.exit_code == 130, first.output
    assert "learn: encode" in first.stderr
    assert (library / ".checkpoints" / "fresh" / "encoded.safetensors").is_file()

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "encode" not in resumed.stderr and "learn 3/3" in resumed.stderr
    assert Library(library).names() == ["fresh"]
    assert not (library / ".checkpoints" / "fresh").exists()
