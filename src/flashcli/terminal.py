"""What the user sees: results on stdout (one JSON document with --json), everything else on stderr:
progress, notes and the tables of clips, the library and an action (`TerminalReporter` is how the
workflows reach it).

Progress is a rich bar when stderr is a terminal and one plain line per ~10% of the steps when it is
a pipe or a log file, so scripts and CI logs stay readable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from flashcli.library import ActionManifest
    from flashcli.preflight import Preflight

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


class TerminalReporter:
    """How the workflows reach the terminal (a `flashcli.workflows.report.Reporter`): progress bars,
    tables and notes on stderr; `on_saved` hears what has been saved for good."""

    def __init__(self, on_saved: Callable[[str], None]) -> None:
        self.on_saved = on_saved

    def steps(self, title: str, total: int) -> StepProgress:
        return StepProgress(title, total)

    def clips(self, report: Preflight, frames: int, size: tuple[int, int], crop: str) -> None:
        show_clips(report, frames, size, crop)

    def note(self, message: str) -> None:
        say(message)

    def saved(self, what: str) -> None:
        self.on_saved(what)


# -- tables (stderr) -------------------------------------------------------------------------------------


def show_clips(report: Preflight, frames: int, size: tuple[int, int], crop: str) -> None:
    """The clips as training will use them, then the warnings about them."""
    width, height = size
    table = Table(title=f"Clips: {frames} frames each, {width}x{height} ({crop})", title_justify="left")
    for column in ("clip", "duration", "fps", "resolution", "frames", "used", "sampling", "motion"):
        table.add_column(column, justify="left" if column in ("clip", "sampling") else "right")
    for clip in report.clips:
        record = clip.record
        table.add_row(
            escape(Path(record.path).name),  # a clip named `a[/b].mp4` is text, not markup
            f"{record.duration:.2f} s",
            f"{record.fps:g}",
            f"{record.width}x{record.height}",
            str(record.frames_total),
            str(record.frames_used),
            record.sampling,
            f"{clip.motion:.1f}",
        )
    stderr_console().print(table)
    for message in report.warnings:
        warn(message)


def human_bytes(count: int) -> str:
    """A size in binary units, labelled as such (1 KiB = 1024 bytes)."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def show_library(document: dict[str, Any], *, deep: bool) -> None:
    """`inspect`'s table of every action, then each broken one's problem."""
    from flashcli.library import printable

    rows, root = document["actions"], document["library"]
    table = Table(title=escape(f"Library {root}"), title_justify="left")
    for column in ("action", "status", "base", "clips", "steps", "created", "size"):
        table.add_column(column, justify="right" if column in ("clips", "steps", "size") else "left")
    for row in rows:
        cells = [row["base"], row["clips"], row["steps"], row["created"]]
        size = human_bytes(row["size_bytes"]) if row["size_bytes"] is not None else ""
        table.add_row(
            escape(printable(row["action"])),
            row["status"] if row["status"] == "ok" else "[red]broken[/red]",
            *(escape(str(cell)) if cell is not None else "" for cell in cells),
            size,
        )
    console = stderr_console()
    console.print(table if rows else escape(f"No actions in {root} yet; make one with `flash learn`."))
    for row in rows:
        if row["problem"] is not None:
            console.print(f"broken: {row['problem']}", markup=False)
    if deep and rows and not any(row["problem"] for row in rows):
        console.print(f"All {len(rows)} actions are intact.")


def _preview_words(manifest: ActionManifest) -> str:
    # Learn records the still's source as 'figureworld:<clip it came from>:seed=N:appearance=unseen'
    # (frame 0 of an unseen figure; the clip's own action plays no part), '--preview-photo', or, for a
    # diffusers folder, 'clip:<file>:frame0:mirrored' (a real frame, flipped, so no clip contains it).
    source = manifest.preview_source
    seed = next((part[5:] for part in source.split(":") if part.startswith("seed=")), None)
    if source == "--preview-photo":
        return f"'{manifest.name}' animated from the photo given with --preview-photo"
    if source.startswith("figureworld:") and seed is not None:
        return f"'{manifest.name}' animated from a still of a FigureWorld figure it never saw (seed {seed})"
    if source.startswith("clip:") and source.endswith(":frame0:mirrored"):
        clip = source.removeprefix("clip:").removesuffix(":frame0:mirrored")
        return f"'{manifest.name}' animated from frame 0 of clip '{clip}', mirrored left-right"
    return source


def _decoder_words(manifest: ActionManifest) -> str:
    """How `animate` decodes the action unless --ded/--no-ded says otherwise."""
    if manifest.decoder == "plain":
        return "plain by default (learned with detail_enhance = false; --ded overrides)"
    return "the Detail Enhancement Decoder by default, where the base has one (--no-ded overrides)"


def _facts(manifest: ActionManifest) -> Table:
    facts = Table(show_header=False, box=None)
    keys = ("prompt", "negative_prompt", "preset", "frames", "size", "fps", "crop", "steps", "rank", "seed")
    for key in (*keys, "train_seconds"):
        value = "{}x{}".format(*manifest.frame_size) if key == "size" else getattr(manifest, key)
        facts.add_row(key.replace("_", " "), "—" if value is None else escape(str(value)))
    facts.add_row("base hash", manifest.base_hash[:16])
    facts.add_row("final losses", ", ".join(f"{k} {v:.4f}" for k, v in manifest.final_losses.items()))
    if manifest.ded is not None:
        ded, final = manifest.ded, manifest.ded.final_losses.get("loss", float("nan"))
        facts.add_row(
            "DED", f"fine-tuned on the clips: {ded.steps} steps, lr {ded.learning_rate:g}, loss {final:.4f}"
        )
    else:
        facts.add_row("DED", "the base's (not fine-tuned)")
    facts.add_row("decoder", _decoder_words(manifest))
    if manifest.memory is not None:
        facts.add_row("memory", escape(str(manifest.memory.get("name", manifest.memory))))
    facts.add_row("preview", escape(_preview_words(manifest)))
    return facts


def show_action(manifest: ActionManifest, files: dict[str, Any], written: dict[str, str]) -> None:
    """`inspect NAME`: facts, clips, loss curves and files of one action."""
    from flashcli.views import loss_series, sparkline

    console = stderr_console()
    console.print(
        f"[bold]{escape(manifest.name)}[/bold]  learned {escape(manifest.created)} on base "
        f"{escape(manifest.base)}"
    )
    console.print(_facts(manifest))
    clips = Table(title="Clips", title_justify="left")
    for column in ("clip", "duration", "fps", "resolution", "frames", "sampling", "sha256"):
        clips.add_column(column)
    for clip in manifest.clips:
        clips.add_row(
            escape(clip.path),
            f"{clip.duration:.2f} s",
            f"{clip.fps:g}",
            f"{clip.width}x{clip.height}",
            f"{clip.frames_used}/{clip.frames_total}",
            escape(clip.sampling),
            escape(clip.sha256[:12]),
        )
    console.print(clips)
    curves = {term: sparkline(values) for term, values in loss_series(manifest.losses).items()}
    if manifest.ded is not None and manifest.ded.losses:
        curves["DED loss"] = sparkline([step["loss"] for step in manifest.ded.losses if "loss" in step])
    if curves:
        console.print("Losses (first step to last):")
        for term, line in curves.items():
            console.print(f"  {term:>12} {line}", markup=False)
    for key, value in {**files, **written}.items():
        if value:
            console.print(f"{key:>13}: {value}", markup=False)


def show_adapter(document: dict[str, Any]) -> None:
    """`inspect FILE.safetensors`: the adapter's header and size."""
    table = Table(title=escape(f"Adapter {document['path']}"), show_header=False, title_justify="left")
    for key, value in sorted(document["metadata"].items()):
        table.add_row(escape(key), escape(value))
    table.add_row("tensors", str(document["tensors"]))
    table.add_row("parameters", f"{document['parameters']:,}")
    stderr_console().print(table)
