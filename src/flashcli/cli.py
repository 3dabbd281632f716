"""The `flash` command: learn an action from a few clips, animate photos with it, look after the library.

Thin on purpose: Typer declarations, rendering and exit codes. Each command hands the user's input to
`flashcli.workflows` (which plans, checks, trains or samples, and saves) and renders what comes back:
results on stdout, tables and progress on stderr. Workflows and torch are imported inside the
commands, so `flash --help` stays fast.
Exit codes: 0 success, 2 bad usage, bad input or an environment that refused (a full disk, a read-only
or unreadable path; one sentence on stderr), 1 internal failure, 130 interrupted.
"""

from __future__ import annotations

import contextvars
import functools
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from flashcli import __version__
from flashcli.cli_help import EXPORT_DESTINATION_HELP, ExportFormatOption, FlashTyper
from flashcli.cli_prompts import NegativePromptOption, PreviewPhotoOption
from flashcli.errors import EXIT_INTERNAL, EXIT_USAGE, UserError, environment_problem, out_of_memory

# The choices of --crop, --format and --device, spelled out here so `flash --help` need not import
# pydantic; tests/cli/test_conventions.py keeps them equal to flashcli.config's.
Crop = Literal["center", "pad", "stretch"]
Format = Literal["mp4", "gif", "webp", "png"]
Device = Literal["auto", "cuda", "cpu"]

app = FlashTyper(
    name="flash",
    help="Teach a video model a human action from a few clips, then animate any photo with it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])

LibraryOption = Annotated[
    Path | None,
    typer.Option(
        "--library",
        metavar="DIR",
        help="Library folder (default: $FLASH_HOME, else the platform's user data dir).",
        file_okay=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (logs stay on stderr).")
]
DeviceOption = Annotated[
    Device | None,
    typer.Option("--device", help="Where to run (default: auto = cuda when available, else cpu)."),
]


def _print_version(value: bool) -> None:
    if value:
        print(f"flash {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    library: LibraryOption = None,
    json_output: JsonOption = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, expose_value=False, callback=_print_version, help="Show the version."
        ),
    ] = False,
) -> None:
    """Teach a video model a human action from a few clips, then animate any photo with it.

    --library and --json work before the command (flash --library DIR inspect) or after it."""
    given: dict[str, Any] = {"library": library} if library is not None else {}
    if json_output:
        given["json_output"] = True
    # click's default_map: the command's own --library / --json still win over these.
    ctx.default_map = {name: dict(given) for name in getattr(ctx.command, "commands", {})}


# What the running command has saved for good, so that an interrupt after a commit does not deny it.
_SAVED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("flash_saved", default=None)


def _note_saved(what: str) -> None:
    saved = _SAVED.get()
    if saved is not None:
        saved.append(what)


def _interrupt_message() -> str:
    saved = _SAVED.get()
    if saved:
        return f"Interrupted after {' and '.join(saved)} had been saved in full; nothing else was written."
    return "Interrupted; nothing was saved."


def _destination(arguments: dict[str, Any]) -> Path | None:
    """Where the command writes, named when an environment error does not say which file it hit."""
    for key in ("output", "destination", "plot", "contact_sheet", "out_dir"):
        if arguments.get(key) is not None:
            return Path(arguments[key])
    if "out_dir" in arguments or "destination" in arguments:  # their default: the current folder
        return Path.cwd()
    if "library" in arguments:
        from flashcli.library import default_root

        return arguments["library"] or default_root()
    return None


def handles_errors(command: F) -> F:
    """Turn a UserError or an environment error (full disk, read-only or unreadable path, a path
    through a file) into one sentence + exit 2, anything unexpected into a short report + exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flashcli.terminal import say

        token = _SAVED.set([])
        try:
            return command(*args, **kwargs)
        except UserError as error:
            say(f"error: {error}")
            raise typer.Exit(EXIT_USAGE) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            say(_interrupt_message())
            raise typer.Exit(130) from None
        except Exception as error:  # noqa: BLE001 - the last line of defence: report, never a raw traceback
            sentence = out_of_memory(error, command.__name__) or environment_problem(
                error, _destination(kwargs)
            )
            if sentence is not None:
                say(f"error: {sentence}")
                raise typer.Exit(EXIT_USAGE) from None
            if os.environ.get("FLASH_DEBUG"):
                traceback.print_exc()
            say(
                f"internal error: {type(error).__name__}: {error}. This is a bug in flash; "
                "rerun with FLASH_DEBUG=1 for the traceback and report it."
            )
            raise typer.Exit(EXIT_INTERNAL) from None
        finally:
            _SAVED.reset(token)

    return wrapper  # type: ignore[return-value]


# -- learn ------------------------------------------------------------------------------------------


@app.command()
@handles_errors
def learn(
    clips: Annotated[
        list[Path],
        typer.Argument(metavar="CLIPS", help="A folder of clips, or several video files / frame folders."),
    ],
    action: Annotated[
        str, typer.Option("--action", "-a", metavar="NAME", help="Name of the action to create.")
    ],
    base: Annotated[
        str | None,
        typer.Option(
            metavar="tiny|FOLDER", help="Base model: the embedded 'tiny' or a folder (default: tiny)."
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|FILE.toml", help="quick, standard, best, or a .toml file (default: standard)."
        ),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Text describing the action (for text bases).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(metavar="N", help="Training steps (default: the preset's).")
    ] = None,
    rank: Annotated[int | None, typer.Option(metavar="N", help="LoRA rank (default: the preset's).")] = None,
    frames: Annotated[
        int | None,
        typer.Option(metavar="N", help="Frames per clip: 4k+1 (5, 9, 17, ...) (default: the base's)."),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(metavar="WxH", help="Frame size: WxH (832x480) or N for N x N (default: the base's)."),
    ] = None,
    crop: Annotated[
        Crop | None,
        typer.Option(help="Fit frames by centre crop, pad (black bars) or stretch (default: center)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed (default: 0).")] = None,
    ded_steps: Annotated[
        int | None,
        typer.Option(
            "--ded-steps",
            metavar="N",
            help="After the adapter, fine-tune the base's Detail Enhancement Decoder on the clips "
            "for N steps (default: 0 = off).",
        ),
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Recompute activations in the backward pass: much less GPU memory, ~30% slower "
            "(default: on for diffusers folders, off for tiny).",
        ),
    ] = None,
    device: DeviceOption = None,
    preview_photo: PreviewPhotoOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run of the same action.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the action if it exists.")] = False,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Learn an action from 3-16 short clips and save it to the library."""
    from flashcli.terminal import TerminalReporter, print_json, say
    from flashcli.workflows.learn import LearnRequest
    from flashcli.workflows.learn import learn as learn_action

    flags = {
        "base": base,
        "prompt": prompt,
        "steps": steps,
        "rank": rank,
        "frames": frames,
        "size": size,
        "crop": crop,
        "seed": seed,
        "device": device,
        "ded_steps": ded_steps,
        "gradient_checkpointing": gradient_checkpointing,
    }
    request = LearnRequest(clips, action, preset, flags, preview_photo, resume, force, library)
    learned = learn_action(request, TerminalReporter(_note_saved))
    if json_output:
        print_json(learned.summary())
    else:
        seconds = learned.manifest.train_seconds
        say(f"Learned '{action}' in {seconds:.0f} s; preview: {learned.path / 'preview.gif'}")
        print(learned.path)


# -- animate ----------------------------------------------------------------------------------------


@app.command()
@handles_errors
def animate(
    photos: Annotated[
        list[Path], typer.Argument(metavar="PHOTO", help="Photos to animate (frame 0 of each video).")
    ],
    action: Annotated[
        list[str],
        typer.Option(
            "--action",
            "-a",
            metavar="NAME[:STRENGTH]",
            help="An action, with a strength from 0 to 2 (1 = as learned); repeatable. "
            "An adapter .safetensors file also works.",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Output file (one photo).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Folder for the outputs (default: the current folder).")
    ] = None,
    output_format: Annotated[
        Format | None,
        typer.Option("--format", help="mp4, gif, or lossless animated webp / png (default: as learned)."),
    ] = None,
    frames: Annotated[
        int | None, typer.Option(metavar="N", help="Frames to generate (default: as learned).")
    ] = None,
    fps: Annotated[
        float | None, typer.Option(metavar="N", help="Frames per second of the output (default: as learned).")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(metavar="WxH", help="Output size: WxH (832x480) or N for N x N (default: as learned)."),
    ] = None,
    crop: Annotated[
        Crop | None,
        typer.Option(help="Fit the photo by centre crop, pad (black bars) or stretch (default: center)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(metavar="N", help="Sampling steps (default: as learned).")
    ] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed (default: 0).")] = None,
    base: Annotated[
        str | None, typer.Option(metavar="tiny|FOLDER", help="Base to use (default: the action's own).")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|FILE.toml",
            help="Take the sampling settings from this preset (default: the action's).",
        ),
    ] = None,
    ded: Annotated[
        bool | None,
        typer.Option(
            "--ded/--no-ded",
            help="Decode with the Detail Enhancement Decoder (default: on when the base has one).",
        ),
    ] = None,
    negative_prompt: NegativePromptOption = None,
    device: DeviceOption = None,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Animate photos with learned actions; writes one video and one .json sidecar per photo."""
    from flashcli.terminal import TerminalReporter, print_json
    from flashcli.workflows.animate import AnimateRequest
    from flashcli.workflows.animate import animate as animate_photos

    flags = {
        "steps": steps,
        "frames": frames,
        "size": size,
        "fps": fps,
        "seed": seed,
        "crop": crop,
        "device": device,
        "use_ded": ded,
        "negative_prompt": negative_prompt,
    }
    request = AnimateRequest(photos, action, output, out_dir, output_format, base, preset, flags, library)
    results = animate_photos(request, TerminalReporter(_note_saved))
    if json_output:
        print_json({"outputs": results})
    else:
        for result in results:
            print(result["video"])


# -- inspect ----------------------------------------------------------------------------------------


@app.command()
@handles_errors
def inspect(
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME|FILE.safetensors",
            help="An action name, or an adapter .safetensors file; none = the library.",
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the loss curves to this PNG.")] = None,
    contact_sheet: Annotated[
        Path | None, typer.Option(help="Write the preview's frames as a grid PNG.")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check every action's files against its manifest (sha256, size, finite weights); "
            "exit 2 if any is broken.",
        ),
    ] = False,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the library, one action in depth, or a loose adapter file; tables go to stderr."""
    from flashcli.terminal import print_json, show_action, show_adapter, show_library
    from flashcli.workflows.actions import inspect as inspect_library

    found = inspect_library(target, plot=plot, contact_sheet=contact_sheet, verify=verify, library=library)
    document = found.document
    if json_output:
        print_json(document)
    elif found.kind == "library":
        show_library(document, deep=verify)
    elif found.kind == "adapter":
        show_adapter(document)
    elif found.manifest is not None:
        show_action(found.manifest, document["files"], document["written"])
    refusal = found.refusal()
    if refusal is not None:
        raise refusal


# -- library housekeeping ---------------------------------------------------------------------------


def _done(document: dict[str, Any], json_output: bool, message: str, *, stdout: bool = False) -> None:
    """A command's result: its JSON document, or one line (on stdout when it is a path to use)."""
    from flashcli.terminal import print_json, say

    if json_output:
        print_json(document)
    elif stdout:
        print(message)
    else:
        say(message)


@app.command()
@handles_errors
def remove(
    name: Annotated[str, typer.Argument(help="Action to delete from the library.")],
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete an action (its adapter, manifest and preview) from the library."""
    from flashcli.workflows import actions

    document = actions.remove(name, library)
    _done(document, json_output, f"Removed '{name}' from {document['library']}.")


@app.command()
@handles_errors
def rename(
    old: Annotated[str, typer.Argument(help="Current action name.")],
    new: Annotated[str, typer.Argument(help="New action name.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing action called NEW.")] = False,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rename an action in the library."""
    from flashcli.workflows import actions

    document = actions.rename(old, new, force=force, library=library)
    _done(document, json_output, f"Renamed '{old}' to '{new}'.")


@app.command("export")
@handles_errors
def export_action(
    name: Annotated[str, typer.Argument(help="Action to export.")],
    destination: Annotated[Path | None, typer.Argument(help=EXPORT_DESTINATION_HELP)] = None,
    export_format: ExportFormatOption = "flash",
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Pack an action into one .flash file (a zip), or its LoRA into a safetensors file for diffusers."""
    from flashcli.workflows import actions

    document = actions.export(name, destination, library, export_format=export_format)
    for note in document.get("notes", []):  # what the diffusers file could not carry
        typer.echo(note, err=True)
    _done(document, json_output, document["file"], stdout=True)


@app.command("import")
@handles_errors
def import_action(
    source: Annotated[Path, typer.Argument(help="A .flash file made by `flash export`.")],
    name: Annotated[
        str | None, typer.Option("--as", help="Name to give the action (default: its own).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing action of that name.")] = False,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add an action from a .flash file to the library."""
    from flashcli.workflows import actions

    document = actions.import_(source, name=name, force=force, library=library)
    _done(document, json_output, f"Imported '{document['imported']}' into {Path(document['path']).parent}.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    # A polite kill (SIGTERM) unwinds like Ctrl-C, so staging folders and temp files are removed.
    signal.signal(signal.SIGTERM, _interrupt)
    app()


if __name__ == "__main__":
    main()
