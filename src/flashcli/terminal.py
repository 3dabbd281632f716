"""What the user sees: results on stdout (one JSON document with --json), everything else on stderr.

Progress is a rich bar when stderr is a terminal and one plain line per ~10% of the steps when it is
a pipe or a log file, so scripts and CI logs stay readable.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

# Pipes and log files get wide tables instead of rich's 80-column default for non-terminals.
_PIPE_WIDTH = 140


def _width(stream: object) -> int | None:
    isatty = getattr(stream, "isatty", None)
    return None if isatty is not None and isatty() else _PIPE_WIDTH


def stderr_console() -> Console:
    # Built per call: sys.stderr is swapped by test runners.
    return Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))


def say(message: str) -> None:
    """A message for the user (stderr), printed as is: a path with [brackets] is text, not markup."""
    stderr_console().print(Text(message))


def warn(message: str) -> None:
    stderr_console().print(Text.assemble(("warning:", "yellow"), " ", message))


def print_json(document: Any) -> None:
    """The single JSON document of a --json run, on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def format_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    seconds = max(0, int(round(seconds)))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class StepReport(Protocol):
    step: int
    total: int
    losses: dict[str, float]
    seconds_per_step: float
    eta_seconds: float


# Steps of each phase left out of the pace: the first ones pay for memory allocation, kernel choice
# and caches, and would make the first ETA several times too long.
WARMUP_STEPS = 2


class _Pace:
    """Seconds per step and time left, measured over the steps after the warm-up."""

    def __init__(self) -> None:
        self._reports = 0
        self._mark: tuple[int, float] | None = None  # (step, time) when the warm-up ended

    def tick(self, step: int, total: int, now: float) -> tuple[float | None, float | None]:
        """(seconds per step, seconds left) after `step` finished at `now`; None while warming up."""
        self._reports += 1
        if self._reports == WARMUP_STEPS:
            self._mark = (step, now)
        if self._mark is None or step <= self._mark[0]:
            return None, 0.0 if step >= total else None
        per_step = (now - self._mark[1]) / (step - self._mark[0])
        return per_step, per_step * max(total - step, 0)


def _describe_pace(per_step: float | None, left: float | None) -> str:
    pace = "…" if per_step is None else f"{per_step:.2f}"
    return f"{pace} s/step  ETA {'…' if left is None else format_seconds(left)}"


class StepProgress:
    """Shows training (or sampling) progress on stderr: step/total, loss terms, s/step, ETA."""

    def __init__(self, title: str, total: int) -> None:
        self.title = title
        self.total = total
        self.console = stderr_console()
        self._live = self.console.is_terminal
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_line = -1
        self._phase = title
        self._paces: dict[str, _Pace] = {}

    def __enter__(self) -> StepProgress:
        if self._live:
            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}", markup=False),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, total: int, info: str, title: str | None = None) -> None:
        title = title or self.title
        if self._progress is not None:
            self._progress.update(self._task, completed=step, total=total, info=info, description=title)
            return
        if title != self._phase:
            self._phase, self._last_line = title, -1
        every = max(1, total // 10)
        if step == total or step == 1 or step // every != self._last_line:
            self._last_line = step // every
            self.console.print(Text(f"{title} {step}/{total} {info}"))

    def _timing(self, phase: str, step: int, total: int) -> str:
        pace = self._paces.setdefault(phase, _Pace())
        return _describe_pace(*pace.tick(step, total, time.monotonic()))

    def train_step(self, report: StepReport) -> None:
        phase = getattr(report, "phase", "train")
        timing = self._timing(phase, report.step, report.total)
        # Other phases ("encode": the clips go through the VAE once, no losses yet; "ded": the DED
        # fine-tuning after the adapter) get their own title, so the bar says what it is counting.
        title = None if phase == "train" else f"{self.title}: {phase}"
        losses = " ".join(f"{name} {value:.4f}" for name, value in report.losses.items())
        self.update(report.step, report.total, f"{losses}  {timing}" if losses else timing, title=title)

    def sample_step(self, step: int, total: int) -> None:
        self.update(step, total, self._timing("sample", step, total))
