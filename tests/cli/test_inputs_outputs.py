"""Odd inputs and hostile environments at the command line: full disks, FIFOs and devices given as
photos or clips, output paths under a file, folders that hold no clips, skipped folder entries and
16-bit photos. Each ends as a user would want: exit 2 with one sentence naming the path (and nothing
changed), or, where the input is fine, the right result."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import SIZE, Workspace, run_cli, snapshot
from cli_helpers import learn_args as shared_learn_args
from PIL import Image
from test_video import file_size_limit, moving_square
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.video import fit_image, read_image, read_output, write_video


def animate_args(ws: Workspace, photo: Path, *extra: str) -> list[str]:
    library = ["--library", str(ws.library), "--device", "cpu"]
    return ["animate", str(photo), "--action", "slide", *library, *extra]


def learn_args(ws: Workspace, clips: Path, library: Path, *extra: str) -> list[str]:
    return shared_learn_args(ws, clips, "--library", str(library), "--device", "cpu", *extra)


def refused(result, *words: str) -> str:
    """The checks every refusal shares: exit 2, nothing on stdout, one sentence that names `words`."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert lines[-1].startswith("error: ") and lines[-1].rstrip().endswith("."), lines[-1]
    for word in words:
        assert word in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture()
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe; if something blocks opening it (the old behaviour), it is freed after 20 s so
    the test fails instead of hanging."""
    path = tmp_path / "pipe.png"
    os.mkfifo(path)

    def free_readers() -> None:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # nobody was waiting

    timer = threading.Timer(20, free_readers)
    timer.start()
    yield path
    timer.cancel()


@pytest.mark.parametrize("fmt", [pytest.param(f, marks=pytest.mark.slow) for f in ("mp4", "png", "gif")])
def test_full_disk_during_animate_keeps_the_earlier_output_and_exits_2(
    workspace: Workspace, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"x.{fmt}"
    write_video(out, moving_square(), fps=8)  # an earlier, good output of the same name
    (tmp_path / f"x.{fmt}.json").write_text('{"earlier": true}\n')
    before = snapshot(tmp_path)
    with file_size_limit(1024):  # the new video cannot be written whole
        result = run_cli(*animate_args(workspace, workspace.photo, "-o", str(out)))
    refused(result, str(out), "disk is full")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"x.{fmt}", f"x.{fmt}.json"]


def test_fifo_photo_is_refused_not_waited_for(workspace: Workspace, fifo: Path) -> None:
    refused(run_cli(*animate_args(workspace, fifo, "-o", str(fifo.parent / "x.mp4"))), str(fifo), "FIFO")


def test_fifo_preview_photo_is_refused_before_learning(
    workspace: Workspace, fifo: Path, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    result = run_cli(*learn_args(workspace, workspace.clips, library, "--preview-photo", str(fifo)))
    refused(result, str(fifo), "FIFO")
    assert snapshot(library) == {}


@pytest.mark.parametrize("special", ["/dev/null", "fifo"])
def test_a_device_or_fifo_as_a_clip_exits_2(workspace: Workspace, tmp_path: Path, special: str) -> None:
    clip = Path(special)
    if special == "fifo":
        clip = tmp_path / "clip.mp4"
        os.mkfifo(clip)
    result = run_cli(*learn_args(workspace, clip, tmp_path / "library"))
    refused(result, str(clip), "device" if special == "/dev/null" else "FIFO")


def test_output_paths_under_a_file_exit_2(workspace: Workspace, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    result = run_cli(*animate_args(workspace, workspace.photo, "-o", str(notes / "out.mp4")))
    refused(result, str(notes))
    library = ["--library", str(workspace.library)]
    for option in ("--plot", "--contact-sheet"):
        result = run_cli("inspect", "slide", *library, option, str(notes / "deeper" / "x.png"))
        refused(result, str(notes), "is a file")
    assert notes.read_text() == "mine"


def test_an_output_name_held_by_a_fifo_is_refused_not_replaced(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    os.mkfifo(out)
    refused(run_cli(*animate_args(workspace, workspace.photo, "-o", str(out))), str(out), "FIFO")
    assert stat.S_ISFIFO(out.lstat().st_mode)


def test_learn_on_a_folder_of_stills_and_a_clips_subfolder_names_the_subfolder(
    workspace: Workspace, tmp_path: Path
) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(workspace.clips, examples / "clips")
    shutil.copy(workspace.photo, examples / "photo.png")
    Image.open(workspace.photo).save(examples / "portrait.jpg")
    result = run_cli(*learn_args(workspace, examples, tmp_path / "library"))
    refused(result, "holds no clips", f"'{examples / 'clips'}'")
    assert snapshot(tmp_path / "library") == {}


@pytest.mark.slow
def test_learn_lists_every_skipped_entry_in_the_preflight_and_the_json(
    workspace: Workspace, tmp_path: Path
) -> None:
    clips = tmp_path / "clips"
    shutil.copytree(workspace.clips, clips)
    (clips / "clip3.mp4").symlink_to(tmp_path / "moved-away.mp4")
    os.mkfifo(clips / "clip4.mp4")
    result = run_cli(*learn_args(workspace, clips, tmp_path / "library", "--json"))
    assert result.returncode == 0, result.stderr
    expected = [
        f"Skipped '{clips / 'clip3.mp4'}': a broken link.",
        f"Skipped '{clips / 'clip4.mp4'}': a FIFO (named pipe), not a file.",
    ]
    warnings = json.loads(result.stdout)["warnings"]
    assert [w for w in warnings if w.startswith("Skipped")] == expected
    stderr = " ".join(result.stderr.split())  # the terminal may wrap long lines
    assert all(line in stderr for line in expected)
    assert [Path(c["path"]).name for c in json.loads(result.stdout)["manifest"]["clips"]] == [
        "clip0.mp4",
        "clip1.mp4",
        "clip2.mp4",
    ]


def test_a_16_bit_photo_animates_from_its_own_pixels_not_white(
    workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    ramp = np.linspace(0, 65535, 48 * 40).reshape(48, 40).astype(np.uint16)  # dark to light
    photo = tmp_path / "scan16.png"
    Image.fromarray(ramp).save(photo)
    out = tmp_path / "x.png"
    result = runner.invoke(app, animate_args(workspace, photo, "-o", str(out), "--json"))
    assert result.exit_code == 0, result.output
    first = read_output(out)[0]
    assert np.array_equal(first, fit_image(read_image(photo), SIZE, "center"))
    assert (first == 255).mean() < 0.1 and 100 < first.mean() < 155


@pytest.mark.slow
def test_a_clip_name_with_brackets_is_shown_as_written_in_the_preflight(
    workspace: Workspace, tmp_path: Path
) -> None:
    clips = tmp_path / "clips"
    shutil.copytree(workspace.clips, clips)
    (clips / "clip0.mp4").rename(clips / "[bold]take.mp4")  # rich markup, if not escaped
    result = run_cli(*learn_args(workspace, clips, tmp_path / "library"))
    assert result.returncode == 0, result.stderr
    assert "[bold]take.mp4" in result.stderr
