"""The command line behaves like a well-made tool: --version and -h, global options before the command,
help without Python types, shape mistakes caught before the model loads, an honest ETA, readable
pictures, and an interrupt message that tells the truth."""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import typer.main
from cli_helpers import Workspace
from PIL import Image
from typer.testing import CliRunner

from flashcli.cli import app

COMMANDS = ("learn", "animate", "inspect", "remove", "rename", "export", "import")


def test_version_prints_the_installed_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"flash {version('flashcli')}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_short_help_works_on_the_app_and_every_command(command: str | None, runner: CliRunner) -> None:
    args = ["-h"] if command is None else [command, "-h"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: flash {command or ''}".rstrip())
    assert result.stdout == runner.invoke(app, [*args[:-1], "--help"]).stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_values_not_python_types(command: str, runner: CliRunner) -> None:
    text = runner.invoke(app, [command, "-h"]).stdout
    assert not re.search(r"<[^>\s]+>", text), text  # <str>, <int>, <path>, <list[Path]>
    assert "list[" not in text and "Path" not in text.replace("PATH", "")
    assert not re.search(r"\{[A-Z]", text.splitlines()[0])  # usage `{CLIPS}...` braces


def test_help_lists_choices_and_defaults(runner: CliRunner) -> None:
    learn = runner.invoke(app, ["learn", "-h"]).stdout
    animate = runner.invoke(app, ["animate", "-h"]).stdout
    assert "--crop center|pad|stretch" in learn and "--crop center|pad|stretch" in animate
    assert "--format mp4|gif|webp|png" in animate and "--device auto|cuda|cpu" in learn
    group = typer.main.get_command(app)
    for name, expected in {
        "learn": ("base", "preset", "steps", "rank", "frames", "size", "crop", "seed", "ded_steps", "device"),
        "animate": (
            "out_dir",
            "output_format",
            "frames",
            "fps",
            "size",
            "crop",
            "steps",
            "seed",
            "base",
            "device",
        ),
    }.items():
        params = {param.name: param for param in group.commands[name].params}  # type: ignore[attr-defined]
        missing = [key for key in expected if "default" not in (params[key].help or "")]
        assert not missing, f"`flash {name} -h` shows no default for {missing}"


def test_cli_choices_are_the_settings_choices() -> None:
    import flashcli.cli as cli
    import flashcli.config as config

    for name in ("Crop", "Format", "Device"):
        assert get_args(getattr(cli, name)) == get_args(getattr(config, name)), name


def test_global_options_work_before_the_command(
    workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["--library", str(workspace.library), "--json", "inspect"])
    assert result.exit_code == 0, result.output
    assert [row["action"] for row in json.loads(result.stdout)["actions"]] == ["slide"]
    # The command's own option wins over the global one.
    empty = tmp_path / "empty"
    result = runner.invoke(
        app, ["--library", str(empty), "inspect", "--library", str(workspace.library), "--json"]
    )
    assert [row["action"] for row in json.loads(result.stdout)["actions"]] == ["slide"]
    assert not empty.exists()


# -- shapes: checked before the model loads, with the nearest value that fits --------------------------


@pytest.fixture()
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import flashcli.core.specs as specs

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the base was loaded before the shape check")

    monkeypatch.setattr(specs, "load_base", refuse)


@pytest.mark.parametrize(
    ("flag", "value", "fix"),
    [
        ("--size", "63", "use --size 64"),
        ("--frames", "8", "use --frames 9"),
        ("--frames", "7", "use --frames 9"),
    ],
)
def test_learn_shape_mistakes_fail_before_loading_and_name_the_nearest_fit(
    flag: str,
    value: str,
    fix: str,
    workspace: Workspace,
    runner: CliRunner,
    tmp_path: Path,
    no_model_loading: None,
) -> None:
    # The embedded base takes multiples of 8 and 4k+1 frames: 63 is nearest 64 (not 56), 8 is nearest 9.
    args = [
        "learn",
        str(workspace.clips),
        "--action",
        "fresh",
        "--base",
        "tiny",
        "--preset",
        str(workspace.preset),
    ]
    result = runner.invoke(app, [*args, flag, value, "--library", str(tmp_path / "library")])
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: {flag} {value} does not fit base 'tiny'") and fix in line
    assert not (tmp_path / "library").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--frames", "3", "--frames 3 is not allowed; use 4k+1 frames from 5 to 257 for base 'tiny'."),
        (
            "--size",
            "4096",
            "--size 4096 is not allowed; use a multiple of 8 from 16 to 2048 for base 'tiny'.",
        ),
    ],
)
def test_learn_shape_out_of_range_is_one_sentence_before_loading(
    flag: str,
    value: str,
    message: str,
    workspace: Workspace,
    runner: CliRunner,
    tmp_path: Path,
    no_model_loading: None,
) -> None:
    # The frame count and size are checked once, against the base, whatever the kind of mistake.
    args = ["learn", str(workspace.clips), "--action", "fresh", "--base", "tiny", flag, value]
    result = runner.invoke(app, [*args, "--library", str(tmp_path / "library")])
    assert result.exit_code == 2, result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == [f"error: {message}"]
    assert not (tmp_path / "library").exists()


def test_animate_shape_mistake_fails_before_loading(
    workspace: Workspace, runner: CliRunner, tmp_path: Path, no_model_loading: None
) -> None:
    args = ["animate", str(workspace.photo), "--action", "slide", "--library", str(workspace.library)]
    result = runner.invoke(app, [*args, "--size", "40", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--size 40 does not fit base 'tiny-test'" in result.stderr and "use --size 48" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "step", "offset", "nearest"),
    [
        (63, 8, 0, 64),
        (60, 8, 0, 64),
        (57, 8, 0, 56),
        (4, 8, 0, 8),
        (8, 4, 1, 9),
        (7, 4, 1, 9),
        (6, 4, 1, 5),
        (2, 4, 1, 5),
    ],
)
def test_the_nearest_fit_rounds_to_the_closer_value_and_halfway_up(
    value: int, step: int, offset: int, nearest: int
) -> None:
    from flashcli.workflows.plan import nearest as nearest_fit

    assert nearest_fit(value, step, offset) == nearest


# -- the ETA -------------------------------------------------------------------------------------------


@dataclass
class Report:
    step: int
    total: int
    seconds_per_step: float
    eta_seconds: float
    losses: dict[str, float] = field(default_factory=lambda: {"loss": 0.5})
    phase: str = "train"


def test_eta_leaves_out_the_warm_up_steps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import flashcli.terminal as terminal

    clock = [0.0]
    monkeypatch.setattr(terminal.time, "monotonic", lambda: clock[0])
    durations = [30.0] + [1.0] * 99  # the first step pays for allocation and kernel choice
    progress = terminal.StepProgress("learn", 100)
    with progress:
        for step, seconds in enumerate(durations, start=1):
            clock[0] += seconds
            recent = durations[max(0, step - 20) : step]  # the trainer's own mean, warm-up included
            mean = sum(recent) / len(recent)
            progress.train_step(Report(step, 100, mean, mean * (100 - step)))
    lines = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"learn (\d+)/100 .*ETA (\S+)", capsys.readouterr().err)
    }
    assert lines[1] == "…"  # no guess from the first step alone (it once said 6:42 for a 2-minute run)
    assert lines[10] == "1:30" and lines[50] == "0:50" and lines[100] == "0:00"


# -- pictures a person can read ------------------------------------------------------------------------


def _frame_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """The plot's data rectangle: the rows and columns that are mostly black (its outline)."""
    black = (image < 40).all(axis=2)
    rows = np.flatnonzero(black.mean(axis=1) > 0.5)
    cols = np.flatnonzero(black.mean(axis=0) > 0.5)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_loss_plot_legend_stays_off_the_curves(tmp_path: Path) -> None:
    from flashcli.views import write_loss_plot

    curve = [1.0 - 0.004 * step for step in range(200)]  # runs through the top right, where legends go

    def render(names: tuple[str, str]) -> np.ndarray:
        losses = [{names[0]: value, names[1]: value / 2} for value in curve]
        return np.asarray(
            Image.open(write_loss_plot(tmp_path / f"{names[0]}.png", losses, "t")).convert("RGB")
        )

    short, long = render(("a", "b")), render(("a_much_longer_loss_name", "another_long_loss_name"))
    box = _frame_box(short)
    assert box == _frame_box(long)
    top, bottom, left, right = box
    # Only the legend differs between the two, so the data area must be the same pixel for pixel.
    assert np.array_equal(short[top : bottom + 1, left : right + 1], long[top : bottom + 1, left : right + 1])


def test_loss_plot_draws_a_smoothed_curve_over_a_noisy_one(tmp_path: Path) -> None:
    from flashcli.views import _COLOURS, write_loss_plot

    noisy = [0.4 if step % 2 else 0.8 for step in range(400)]  # noise around a flat 0.6
    losses = [{"loss": value} for value in [1.2, *noisy, 0.0]]  # the extremes only at the ends
    image = np.asarray(Image.open(write_loss_plot(tmp_path / "p.png", losses, "t")).convert("RGB"))
    top, bottom, left, right = _frame_box(image)
    strong = (image[top + 1 : bottom, left + 1 : right] == _COLOURS[0]).all(axis=2)
    extents = [np.ptp(np.flatnonzero(column)) for column in strong.T[10:-10] if column.any()]
    assert extents and np.median(extents) < 0.1 * (bottom - top)  # a band, not a zigzag over the whole range


def test_contact_sheet_enlarges_small_frames_pixel_for_pixel(tmp_path: Path) -> None:
    from flashcli.views import write_contact_sheet

    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)
    rng = np.random.default_rng(0)
    frames = colours[rng.integers(0, 4, size=(5, 32, 32))]  # 5 frames of 32 px, 4 pure colours
    sheet = np.asarray(Image.open(write_contact_sheet(tmp_path / "s.png", frames)).convert("RGB"))
    assert sheet.shape[1] >= 5 * 128 and sheet.shape[0] >= 128  # tiles large enough to look at
    pixels = sheet.reshape(-1, 3).astype(int)
    grey = (pixels.max(axis=1) - pixels.min(axis=1)) < 8  # labels and background
    found = {tuple(p) for p in pixels[~grey]}
    assert found <= {tuple(c) for c in colours.tolist()}  # nearest neighbour: no blended colours


# -- an interrupt tells the truth about what was saved ---------------------------------------------------


def _learn_args(workspace: Workspace, library: Path) -> list[str]:
    return [
        "learn",
        str(workspace.clips),
        "--action",
        "fresh",
        "--base",
        str(workspace.base),
        "--preset",
        str(workspace.preset),
        "--library",
        str(library),
        "--device",
        "cpu",
    ]


@pytest.mark.slow
def test_ctrl_c_during_the_commit_is_held_until_the_action_is_saved_and_then_says_so(
    workspace: Workspace, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flashcli.library import Library, Staging

    real_commit = Staging.commit

    def commit_with_ctrl_c(self: Staging, *, force: bool) -> Path:
        signal.raise_signal(signal.SIGINT)
        return real_commit(self, force=force)

    monkeypatch.setattr(Staging, "commit", commit_with_ctrl_c)
    library = tmp_path / "library"
    result = runner.invoke(app, _learn_args(workspace, library))
    assert result.exit_code == 130, result.output
    assert Library(library).names() == ["fresh"]
    last = result.stderr.strip().splitlines()[-1]
    assert "Interrupted after action 'fresh'" in last and "saved in full" in last


@pytest.mark.slow
def test_ctrl_c_just_after_the_commit_does_not_claim_nothing_was_saved(
    workspace: Workspace, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from flashcli.library import Library

    library = tmp_path / "library"
    real_rmtree = shutil.rmtree

    def rmtree(path: object, *args: object, **kwargs: object) -> None:
        if Path(str(path)).parent.name == ".checkpoints" and (library / "fresh").is_dir():
            raise KeyboardInterrupt  # Ctrl-C while the finished run's checkpoints are removed
        real_rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    result = runner.invoke(app, _learn_args(workspace, library))
    assert result.exit_code == 130, result.output
    assert Library(library).names() == ["fresh"]
    last = result.stderr.strip().splitlines()[-1]
    assert "nothing was saved" not in last and "action 'fresh'" in last
