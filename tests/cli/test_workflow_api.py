"""bench and scripts call the same workflows as the CLI: they run the whole command, report through
the Reporter they pass (progress, clips, what was saved) and print nothing themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Workspace

from flashcli.library import Library
from flashcli.workflows.animate import AnimateRequest, animate
from flashcli.workflows.learn import LearnRequest, learn


class Recorder:
    """A Reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def steps(self, title: str, total: int) -> Any:
        import contextlib

        self.events.append(("steps", title))
        return contextlib.nullcontext(self)

    def train_step(self, report: Any) -> None:
        self.events.append(("train_step", report.phase))

    def sample_step(self, step: int, total: int) -> None:
        self.events.append(("sample_step", step))

    def clips(self, report: Any, frames: int, size: tuple[int, int], crop: str) -> None:
        self.events.append(("clips", (len(report.clips), frames, size, crop)))

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def saved(self, what: str) -> None:
        self.events.append(("saved", what))

    def told(self, kind: str) -> list[Any]:
        return [value for event, value in self.events if event == kind]


@pytest.mark.slow
def test_learn_and_animate_workflows_report_and_print_nothing(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    library, recorder = tmp_path / "library", Recorder()
    flags = {"base": str(workspace.base), "device": "cpu"}
    request = LearnRequest([workspace.clips], "fresh", str(workspace.preset), flags, library=library)
    learned = learn(request, recorder)
    assert capsys.readouterr() == ("", "")
    assert recorder.told("clips") == [(3, 5, (32, 32), "center")]  # the base's frames and size: none chosen
    assert recorder.told("steps") == ["learn", "preview"]
    assert set(recorder.told("train_step")) == {"encode", "train"}
    assert recorder.told("saved") == [f"action 'fresh' ({library / 'fresh'})"]
    assert Library(library).names() == ["fresh"] and learned.summary()["manifest"]["steps"] == 2

    out = tmp_path / "out"
    results = animate(
        AnimateRequest([workspace.photo], ["fresh"], out_dir=out, flags={"device": "cpu"}, library=library),
        recorder,
    )
    assert capsys.readouterr() == ("", "")
    assert recorder.told("steps")[-1] == f"animate {workspace.photo.name}"
    assert [Path(result["video"]) for result in results] == [out / f"{workspace.photo.stem}_fresh.mp4"]
    assert Path(results[0]["video"]).is_file() and results[0]["frames"] == 5
