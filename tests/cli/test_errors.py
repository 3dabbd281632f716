"""Every user mistake from the issue: exit 2, one clear sentence on stderr naming the thing and the fix,
no traceback, nothing on stdout, and nothing changed in the library or the output folder. Each case
runs through typer's runner and as a real subprocess."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import pytest
from cli_helpers import Workspace, run_cli, snapshot
from typer.testing import CliRunner

from flashcli.cli import app


@dataclass(frozen=True)
class Mistake:
    args: Callable[[Workspace, Path], list[str]]  # (workspace, scratch folder) -> command line
    message: str  # the sentence must contain this
    # The list runs as a subprocess too; extra cases that load torch run only in-process,
    # to keep the suite within minutes on two shared cores.
    in_subprocess: bool = True


def broken_clips(scratch: Path, name: str, content: bytes) -> Path:
    folder = scratch / "clips"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(content)
    return folder


def zero_frame_clips(scratch: Path) -> Path:
    folder = scratch / "clips"
    folder.mkdir(exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(folder / "empty.mp4"), (32, 32), fps=8, macro_block_size=2)
    writer.send(None)
    writer.close()  # a real mp4 container holding no frames
    return folder


def learn(ws: Workspace, clips: Path, *extra: str) -> list[str]:
    return [
        "learn",
        str(clips),
        "--action",
        "fresh",
        "--base",
        str(ws.base),
        "--preset",
        str(ws.preset),
        *extra,
    ]


MISTAKES = {
    "missing clip folder": Mistake(
        lambda ws, s: learn(ws, s / "nowhere"), "'{scratch}/nowhere' does not exist"
    ),
    "unreadable video": Mistake(
        lambda ws, s: learn(ws, broken_clips(s, "bad.mp4", b"not a video" * 64)), "Could not decode video"
    ),
    "zero-frame video": Mistake(lambda ws, s: learn(ws, zero_frame_clips(s)), "empty.mp4"),
    "action exists without --force": Mistake(
        lambda ws, s: ["learn", str(ws.clips), "--action", "slide", "--base", str(ws.base)], "pass --force"
    ),
    "resume with nothing to resume": Mistake(
        lambda ws, s: learn(ws, ws.clips, "--resume"), "Nothing to resume", in_subprocess=False
    ),
    "DED fine-tuning on a base without a DED": Mistake(
        lambda ws, s: learn(ws, ws.clips, "--ded-steps", "3"),
        "Base 'tiny-test' has no Detail Enhancement Decoder to fine-tune; drop --ded-steps.",
        in_subprocess=False,
    ),
    "frames that do not fit the base": Mistake(
        lambda ws, s: learn(ws, ws.clips, "--frames", "6"), "4k+1", in_subprocess=False
    ),
    "unknown action": Mistake(
        lambda ws, s: ["animate", str(ws.photo), "--action", "nope"], "No action 'nope'"
    ),
    "missing photo": Mistake(
        lambda ws, s: ["animate", str(s / "gone.png"), "--action", "slide"],
        "Photo '{scratch}/gone.png' does not exist",
    ),
    "photo that is not an image": Mistake(
        lambda ws, s: ["animate", str(broken_clips(s, "photo.png", b"text")), "--action", "slide"],
        "is a folder",
    ),
    "text file named like a photo": Mistake(
        lambda ws, s: [
            "animate",
            str(broken_clips(s, "photo.png", b"text") / "photo.png"),
            "--action",
            "slide",
        ],
        "is not an image",
    ),
    "adapter from another base": Mistake(
        lambda ws, s: ["animate", str(ws.photo), "--action", "slide", "--base", str(ws.other_base)],
        "was learned on base 'tiny-test'",
    ),
    "one -o for several photos": Mistake(
        lambda ws, s: [
            "animate",
            str(ws.photo),
            str(ws.photo),
            "--action",
            "slide",
            "-o",
            str(s / "out" / "x.mp4"),
        ],
        "use --out-dir DIR instead",
        in_subprocess=False,
    ),
    "-o suffix against --format": Mistake(
        lambda ws, s: [
            "animate",
            str(ws.photo),
            "--action",
            "slide",
            "-o",
            str(s / "out" / "x.gif"),
            "--format",
            "mp4",
        ],
        "make them agree",
        in_subprocess=False,
    ),
    "strength out of range": Mistake(
        lambda ws, s: ["animate", str(ws.photo), "--action", "slide:9"],
        "use a number from 0 to 2",
        in_subprocess=False,
    ),
    "strength that is not a number": Mistake(
        lambda ws, s: ["animate", str(ws.photo), "--action", "slide:lots"], "not a number"
    ),
}


def check_mistake(
    workspace: Workspace, scratch: Path, mistake: Mistake, invoke: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    out = scratch / "out"
    out.mkdir()
    args = mistake.args(workspace, scratch)
    args += ["--library", str(workspace.library), "--json"]
    if args[0] == "animate":
        args += ["--device", "cpu"] + ([] if "-o" in args else ["--out-dir", str(out)])
    before = snapshot(workspace.library)
    code, stdout, stderr = invoke(args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    assert lines and lines[-1].startswith("error: ")
    assert mistake.message.format(scratch=scratch) in lines[-1]
    assert lines[-1].rstrip().endswith(".")
    assert snapshot(workspace.library) == before
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", MISTAKES)
def test_mistake_through_the_runner(
    name: str, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    def invoke(args: list[str]) -> tuple[int, str, str]:
        result = runner.invoke(app, args)
        return result.exit_code, result.stdout, result.stderr

    check_mistake(workspace, tmp_path, MISTAKES[name], invoke)


@pytest.mark.parametrize("name", [name for name, mistake in MISTAKES.items() if mistake.in_subprocess])
def test_mistake_as_a_subprocess(name: str, workspace: Workspace, tmp_path: Path) -> None:
    def invoke(args: list[str]) -> tuple[int, str, str]:
        result = run_cli(*args)
        return result.returncode, result.stdout, result.stderr

    check_mistake(workspace, tmp_path, MISTAKES[name], invoke)


def test_usage_errors_exit_2(runner: CliRunner) -> None:
    assert runner.invoke(app, ["learn"]).exit_code == 2
    assert runner.invoke(app, ["animate", "photo.png"]).exit_code == 2
    assert runner.invoke(app, ["frobnicate"]).exit_code == 2
