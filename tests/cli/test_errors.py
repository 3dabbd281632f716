"""Every user mistake from the issue: exit 2, one clear sentence on stderr naming the thing and the fix,
no traceback, nothing on stdout, and nothing changed in the library or the output folder. Each case
runs through typer's runner and as a real subprocess."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import pytest
from cli_helpers import Workspace, learn_args, run_cli, snapshot
from typer.testing import CliRunner, Result

from flashcli.cli import app
from flashcli.library import Library


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
    return learn_args(ws, clips, *extra)


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


@pytest.mark.slow
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


# -- the environment refuses: full disk, read-only, permission denied, a path through a file ------------

ENVIRONMENT_ERRNOS = {
    "disk full": errno.ENOSPC,
    "quota": errno.EDQUOT,
    "file too large": errno.EFBIG,
    "read-only": errno.EROFS,
    "permission denied": errno.EACCES,
    "not permitted": errno.EPERM,
    "path under a file": errno.ENOTDIR,
}


def refuse_temp_files(monkeypatch: pytest.MonkeyPatch, code: int, *, named: bool) -> None:
    """Every write in flash starts with a temp file or folder beside its target (atomic writes,
    staging folders); make the file system refuse it with `code`, naming the folder (as mkdir,
    open and rename do) or not (as a write() on a full disk does)."""

    def refuse(*args: object, dir: object = None, **kwargs: object) -> None:  # noqa: A002 - tempfile's name
        if named:
            raise OSError(code, os.strerror(code), str(dir))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)


def check_environment_error(result: Result, folder: Path, before: dict[str, bytes], library: Path) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    assert result.stdout == ""
    assert lines[-1].startswith("error: ") and str(folder) in lines[-1] and lines[-1].endswith(".")
    assert sum(line.startswith("error") for line in lines) == 1
    assert snapshot(library) == before


@pytest.mark.parametrize("named", [True, False], ids=["path given", "no path"])
@pytest.mark.parametrize("name", ENVIRONMENT_ERRNOS)
def test_export_and_import_turn_environment_errors_into_exit_2(
    name: str,
    named: bool,
    library_copy: Path,
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = tmp_path / "ok.flash"
    assert (
        runner.invoke(app, ["export", "slide", str(exported), "--library", str(library_copy)]).exit_code == 0
    )
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(library_copy)
    refuse_temp_files(monkeypatch, ENVIRONMENT_ERRNOS[name], named=named)

    result = runner.invoke(
        app, ["export", "slide", str(out / "slide.flash"), "--library", str(library_copy), "--json"]
    )
    check_environment_error(result, out, before, library_copy)
    assert list(out.iterdir()) == []
    result = runner.invoke(
        app, ["import", str(exported), "--as", "copy", "--library", str(library_copy), "--json"]
    )
    check_environment_error(result, library_copy, before, library_copy)


@pytest.mark.parametrize(
    ("name", "named"), [("disk full", False), ("disk full", True), ("read-only", True)], ids=str
)
def test_learn_turns_environment_errors_into_exit_2(
    name: str,
    named: bool,
    workspace: Workspace,
    library_copy: Path,
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = snapshot(library_copy)
    refuse_temp_files(monkeypatch, ENVIRONMENT_ERRNOS[name], named=named)
    result = runner.invoke(
        app, [*learn(workspace, workspace.clips), "--library", str(library_copy), "--device", "cpu", "--json"]
    )
    check_environment_error(result, library_copy, before, library_copy)
    assert Library(library_copy).names() == ["slide"]


@pytest.mark.parametrize(("name", "named"), [("disk full", False), ("read-only", True)], ids=str)
def test_animate_to_a_png_turns_environment_errors_into_exit_2(
    name: str,
    named: bool,
    workspace: Workspace,
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(workspace.library)
    refuse_temp_files(monkeypatch, ENVIRONMENT_ERRNOS[name], named=named)
    args = ["animate", str(workspace.photo), "--action", "slide", "-o", str(out / "x.png"), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--library", str(workspace.library), "--json"])
    check_environment_error(result, out, before, workspace.library)
    assert list(out.iterdir()) == []


def test_an_error_raised_from_an_environment_error_is_one_too() -> None:
    from flashcli.errors import environment_problem

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    except RuntimeError as wrapped:  # torch.save into a Python file on a full disk raises this
        sentence = environment_problem(wrapped, Path("/lib"))
    assert sentence is not None and "'/lib'" in sentence and "disk is full" in sentence
    rust = RuntimeError(
        'Error while serializing: IoError(Os { code: 30, kind: ReadOnlyFilesystem, message: "x" })'
    )
    assert environment_problem(rust, None) is None  # no "(os error N)": not recognised
    rust = RuntimeError("failed to write: Read-only file system (os error 30)")
    assert "read-only" in (environment_problem(rust, Path("/lib")) or "")
    assert environment_problem(FileNotFoundError(errno.ENOENT, "gone", "/x"), None) is None  # a bug's
    assert environment_problem(ValueError("no"), None) is None


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--format", "mov", "'mov' is not one of 'mp4', 'gif', 'webp', 'png'"),
        ("--steps", "0", "error: --steps 0 is not allowed; use a whole number from 1 to 1000."),
        ("--fps", "0", "error: --fps 0 is not allowed; use a number that is above 0 and at most 120."),
    ],
)
def test_a_bad_flag_value_is_blamed_on_the_flag_with_what_it_takes(
    flag: str, value: str, message: str, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    # These ended with "check the flag or preset 'as learned'": neither the flag nor what it takes.
    args = ["animate", str(workspace.photo), "--action", "slide", "--library", str(workspace.library)]
    result = runner.invoke(app, [*args, "--out-dir", str(tmp_path), flag, value])
    assert result.exit_code == 2
    assert message in result.stderr and flag in result.stderr and "as learned" not in result.stderr
    assert list(tmp_path.iterdir()) == []
