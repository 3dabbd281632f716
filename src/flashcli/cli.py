"""The `flash` command: learn an action from a few clips, animate photos with it, look after the library.

Thin on purpose: parse, check the user's input, call the core, persist through the library, print.
torch and diffusers are imported inside the commands that need them, so `flash --help` stays fast.
Exit codes: 0 success, 2 bad usage, bad input or an environment that refused (a full disk, a read-only
or unreadable path; one sentence on stderr), 1 internal failure, 130 interrupted.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperCommand

from flashcli import __version__
from flashcli.errors import EXIT_INTERNAL, EXIT_USAGE, UserError, environment_problem

# The choices of --crop, --format and --device, spelled out here so `flash --help` need not import
# pydantic; tests/cli/test_conventions.py keeps them equal to flashcli.config's.
Crop = Literal["center", "pad", "stretch"]
Format = Literal["mp4", "gif", "webp", "png"]
Device = Literal["auto", "cuda", "cpu"]

# Help shows what a value is, never a Python type: `--steps N`, not `--steps <int>`.
_METAVARS = {"int": "N", "float": "NUMBER", "str": "TEXT", "dir": "DIR", "file": "FILE", "path": "PATH"}


class _PlainArgument(TyperArgument):
    """An argument shown by its name alone: `CLIPS...`, not `CLIPS <list[Path]>` or `{CLIPS}...`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class _FlashCommand(TyperCommand):
    """A command whose help names values (N, FILE, DIR, a|b|c) instead of Python types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _PlainArgument  # same object, a help-only override
            elif param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = _metavar(param)


def _metavar(param: Any) -> str | None:
    """N, NUMBER, TEXT, FILE, DIR, PATH or the choices a|b|c, from what typer knows of the option."""
    described = getattr(param, "type_descriptor", None)
    if described is None:  # another typer: keep its own display
        return None
    if described.choices:
        return "|".join(map(str, described.choices))
    if described.is_path:
        return _METAVARS.get(described.path_type, "PATH")
    annotation = described.annotation
    if get_origin(annotation) is list:  # a repeatable option: name one value
        annotation = get_args(annotation)[0]
    return _METAVARS.get(getattr(annotation, "__name__", ""))


class _FlashTyper(typer.Typer):
    """Every command of the app is a _FlashCommand."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _FlashCommand, **kwargs)


app = _FlashTyper(
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


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while something must finish whole (a commit and its record), then
    deliver them as KeyboardInterrupt. Python runs signal handlers in the main thread only, so this
    works whichever thread the signal arrives on; elsewhere it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


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
            sentence = environment_problem(error, _destination(kwargs))
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


def _load_base(source: str, device: str) -> Any:
    """Load a base ('tiny' or a folder) on `device`; a bad choice is the user's to fix."""
    from flashcli.core.specs import load_base

    try:
        return load_base(source, device=device)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(f"Cannot use base '{source}' on device '{device}': {error}.") from None


def _nearest(value: int, step: int, offset: int) -> int:
    """The number offset + step * k (k >= 1) nearest to `value`; halfway goes up (63 -> 64, 7 -> 9)."""
    return offset + step * max(1, math.floor((value - offset) / step + 0.5))


def _check_fits(spec: Any, frames: int, size: int, *, flags: dict[str, Any], source: str) -> None:
    """Frame count and size the base can take, or a sentence naming the nearest that would.

    `spec` is a loaded base or its BaseShape; a value not given by its flag came from `source`."""

    def subject(flag: str, noun: str, value: int) -> str:
        return (
            f"{flag} {value}"
            if flags.get(flag.removeprefix("--")) is not None
            else f"The {noun} {value} of {source}"
        )

    step, multiple = spec.frame_step, spec.size_multiple
    if frames < 2 or (frames - 1) % step:
        nearest = _nearest(frames, step, 1)
        raise UserError(
            f"{subject('--frames', 'frame count', frames)} does not fit base '{spec.base_id}', which takes "
            f"{step}k+1 frames; use --frames {nearest}, the nearest that fits."
        )
    if size < multiple or size % multiple:
        nearest = _nearest(size, multiple, 0)
        raise UserError(
            f"{subject('--size', 'size', size)} does not fit base '{spec.base_id}', which takes multiples "
            f"of {multiple}; use --size {nearest}, the nearest that fits."
        )


def _check_fits_early(
    source: str, frames: int | None, size: int | None, *, flags: dict[str, Any], origin: str
) -> None:
    """The same check before the base loads, from its config files alone (when they tell)."""
    from flashcli.config import base_shape

    shape = base_shape(source)
    if shape is None:
        return
    frames, size = frames or shape.default_frames, size or shape.default_size
    if frames is not None and size is not None:
        _check_fits(shape, frames, size, flags=flags, source=origin)


def _base_source(base: str) -> str:
    """How the manifest records a base so `animate` can load it again: 'tiny' or an absolute folder."""
    return base if base == "tiny" else str(Path(base).expanduser().resolve())


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for package in ("flashcli", "torch", "diffusers", "peft", "numpy", "safetensors"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


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
        int | None, typer.Option(metavar="N", help="Square frame size in pixels (default: the base's).")
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
    device: DeviceOption = None,
    preview_photo: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Photo for the preview GIF (default: a held-out FigureWorld figure)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run of the same action.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the action if it exists.")] = False,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Learn an action from 3-16 short clips and save it to the library."""
    from flashcli.config import resolve_learn
    from flashcli.library import Library, check_action_name
    from flashcli.preflight import run_preflight
    from flashcli.terminal import print_json, say
    from flashcli.video import check_writable_folder, discover_clips, probe_clip

    check_action_name(action)
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
    }
    preset_name, config, animate_defaults = resolve_learn(preset, flags)
    origin = f"preset '{preset_name}'"
    _check_fits_early(config.base, config.frames, config.size, flags=flags, origin=origin)
    lib = Library.open(library)
    if lib.exists(action) and not force:
        raise UserError(
            f"Action '{action}' already exists in '{lib.root}'; "
            "pass --force to replace it or choose another name."
        )
    check_writable_folder(lib.root, "Library")
    clip_paths = discover_clips(clips)
    for path in clip_paths:
        probe_clip(path)  # a broken clip fails in a second, not after the base has loaded
    preview_still = _read_preview_photo(preview_photo) if preview_photo is not None else None

    spec = _load_base(config.base, config.device)
    frame_count = config.frames or spec.default_frames
    frame_size = config.size or spec.default_size
    _check_fits(spec, frame_count, frame_size, flags=flags, source=origin)
    settings = config.train_settings(frame_count, frame_size)
    _check_ded_finetune(spec, settings, from_flag=ded_steps is not None)

    report = run_preflight(clip_paths, frame_count, frame_size, config.crop)
    _show_preflight(report, frame_count, frame_size, config.crop)

    checkpoints = lib.checkpoint_dir(action)
    fingerprint = _run_fingerprint(report, settings, spec)
    with lib.writing(action, force=force) as staging:  # holds the action's lock: checkpoints are ours
        _check_resume(checkpoints, fingerprint, resume)
        checkpoints.mkdir(parents=True, exist_ok=True)
        (checkpoints / "run.json").write_text(fingerprint)
        result = _train(spec, report, settings, config.prompt, checkpoints, resume)
        manifest = _stage_action(
            staging.path,
            action,
            spec,
            report,
            config,
            preset_name,
            animate_defaults,
            settings,
            result,
            preview_still,
        )
        with _interrupts_held():  # an interrupt now is told whether the action was saved
            target = staging.commit(force=force)
            _note_saved(f"action '{action}' ({target})")
        shutil.rmtree(checkpoints, ignore_errors=True)

    summary = {
        "action": action,
        "path": str(target),
        "library": str(lib.root),
        "adapter": str(target / "adapter.safetensors"),
        "ded": str(target / manifest.ded.file) if manifest.ded is not None else None,
        "preview": str(target / "preview.gif"),
        "manifest": manifest.model_dump(mode="json", exclude={"losses"}),
        "warnings": report.warnings,
    }
    if json_output:
        print_json(summary)
    else:
        say(f"Learned '{action}' in {manifest.train_seconds:.0f} s; preview: {target / 'preview.gif'}")
        print(target)


def _check_ded_finetune(spec: Any, settings: Any, *, from_flag: bool) -> None:
    """DED fine-tuning needs a base that has a DED to start from."""
    if settings.ded_finetune_steps and spec.ded is None:
        where = "drop --ded-steps" if from_flag else "remove the DED fine-tuning steps from the preset"
        raise UserError(f"Base '{spec.base_id}' has no Detail Enhancement Decoder to fine-tune; {where}.")


def _read_preview_photo(path: Path) -> Any:
    from flashcli.video import read_image

    return read_image(path)


def _show_preflight(report: Any, frames: int, size: int, crop: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from flashcli.terminal import stderr_console, warn

    table = Table(title=f"Clips: {frames} frames each, {size}x{size} ({crop})", title_justify="left")
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


def _run_fingerprint(report: Any, settings: Any, spec: Any) -> str:
    import json

    from flashcli.core.settings import DED_FINETUNE_FIELDS

    return json.dumps(
        {
            "clips": [record.sha256 for record in report.records],
            # The DED fine-tuning runs after the adapter and is not checkpointed: --resume may change it.
            "settings": settings.model_dump(mode="json", exclude=set(DED_FINETUNE_FIELDS)),
            "base_hash": spec.weight_hash,
        },
        sort_keys=True,
    )


def _check_resume(checkpoints: Path, fingerprint: str, resume: bool) -> None:
    """--resume needs a checkpoint of this very run (same clips, settings, base).

    A fresh run drops old checkpoints."""
    from flashcli.core.trainer import CHECKPOINT_NAME

    if not resume:
        shutil.rmtree(checkpoints, ignore_errors=True)  # a fresh run must not pick up an old one
        return
    run_file = checkpoints / "run.json"
    if not run_file.is_file() or not (checkpoints / CHECKPOINT_NAME).is_file():
        raise UserError(f"Nothing to resume at '{checkpoints}'; run the same command without --resume.")
    if run_file.read_text() != fingerprint:
        raise UserError(
            "The interrupted run used other clips, settings or base; rerun with exactly the same "
            "arguments, or without --resume to start over."
        )


def _train(spec: Any, report: Any, settings: Any, prompt: str | None, checkpoints: Path, resume: bool) -> Any:
    from flashcli.core.trainer import train_adapter
    from flashcli.terminal import StepProgress

    with StepProgress("learn", settings.steps) as progress:
        return train_adapter(
            spec,
            report.videos,
            settings,
            prompt=prompt,
            progress=progress.train_step,
            checkpoint_dir=checkpoints,
            resume=resume,
        )


def _held_out_still(size: int, seed: int) -> tuple[Any, str]:
    """A photo no training clip contains: frame 0 of a FigureWorld figure with an unseen appearance."""
    from flashcli.figureworld import HELDOUT_ACTIONS, render_clip

    action = HELDOUT_ACTIONS[0]
    clip = render_clip(action, 10_000 + seed, size=size, frames=5, appearance="unseen")
    return clip.frames[0], f"figureworld:{action}:seed={10_000 + seed}:appearance=unseen"


def _stage_action(
    folder: Path,
    action: str,
    spec: Any,
    report: Any,
    config: Any,
    preset_name: str,
    animate_defaults: dict[str, Any],
    settings: Any,
    result: Any,
    preview_still: Any,
) -> Any:
    """Write adapter, DED weights (if fine-tuned), preview and manifest into the staging folder;
    returns the manifest."""
    from flashcli.core.adapter import save_adapter
    from flashcli.core.sampler import animate_photo
    from flashcli.core.settings import SampleSettings
    from flashcli.library import ADAPTER_FILE, MANIFEST_FILE, PREVIEW_FILE, ActionManifest, write_manifest
    from flashcli.terminal import StepProgress
    from flashcli.video import file_hash, fit_image, write_video

    frames, size = settings.frames, settings.size
    save_adapter(folder / ADAPTER_FILE, result.adapter, result.metadata)
    ded_record, ded = _stage_ded(folder, spec, result.ded)
    if preview_still is None:
        still, preview_source = _held_out_still(size, config.seed)
    else:
        still, preview_source = fit_image(preview_still, size, config.crop), "--preview-photo"
    sample = SampleSettings(steps=config.preview_steps, seed=config.seed, prompt=config.prompt)
    with StepProgress("preview", config.preview_steps) as progress:
        video = animate_photo(
            spec,
            still,
            [(result.adapter, result.metadata, 1.0)],
            sample,
            frames=frames,
            progress=progress.sample_step,
            ded=ded,  # the preview shows the action as `animate` will: with its own DED
        )
    fps = report.median_fps
    write_video(folder / PREVIEW_FILE, video, fps, "gif")
    final = result.losses[-1] if result.losses else {}
    manifest = ActionManifest(
        name=action,
        prompt=config.prompt,
        base=spec.base_id,
        base_source=_base_source(config.base),
        base_hash=spec.weight_hash,
        preset=preset_name,
        clips=report.records,
        frames=frames,
        size=size,
        fps=round(fps, 3),
        crop=config.crop,
        seed=config.seed,
        steps=settings.steps,
        rank=settings.rank,
        settings=settings.model_dump(mode="json"),
        train_seconds=round(float(result.train_seconds), 2),
        final_losses={name: float(value) for name, value in final.items()},
        losses=[{name: float(value) for name, value in step.items()} for step in result.losses],
        animate_defaults=animate_defaults,
        adapter_sha256=file_hash(folder / ADAPTER_FILE),
        ded=ded_record,
        preview_source=preview_source,
        versions=_versions(),
    )
    write_manifest(folder / MANIFEST_FILE, manifest)
    return manifest


def _stage_ded(folder: Path, spec: Any, finetuned: Any | None) -> tuple[Any | None, Any | None]:
    """Save the fine-tuned DED beside the adapter; returns its manifest record and the DED itself
    (read back from the file, so the preview uses exactly what `animate` will load)."""
    if finetuned is None:
        return None, None
    from flashcli.core.ded_finetune import load_finetuned_ded, save_finetuned_ded
    from flashcli.library import DED_FILE, DedRecord
    from flashcli.video import file_hash

    path = save_finetuned_ded(folder / DED_FILE, finetuned.tensors, finetuned.metadata)
    final = finetuned.losses[-1] if finetuned.losses else {}
    record = DedRecord(
        sha256=file_hash(path),
        steps=len(finetuned.losses),
        learning_rate=float(finetuned.metadata["learning_rate"]),
        seconds=round(float(finetuned.seconds), 2),
        final_losses={name: float(value) for name, value in final.items()},
        losses=[{name: float(value) for name, value in step.items()} for step in finetuned.losses],
    )
    return record, load_finetuned_ded(path, spec)


# -- animate ----------------------------------------------------------------------------------------


class _ActionRef:
    """One `--action NAME[:STRENGTH]` (or a loose adapter file) resolved to its files."""

    def __init__(self, label: str, strength: float, adapter_path: Path, manifest: Any | None) -> None:
        self.label = label
        self.strength = strength
        self.adapter_path = adapter_path
        self.manifest = manifest


def _parse_action(text: str, lib: Any) -> _ActionRef:
    """NAME, NAME:STRENGTH or FILE.safetensors[:STRENGTH]; the strength's range is checked later by
    `_check_strengths` (it needs the core, and this runs before anything heavy is imported)."""
    import math

    from flashcli.library import ADAPTER_FILE

    name, strength = text, 1.0
    if ":" in text:
        name, _, raw = text.rpartition(":")
        try:
            strength = float(raw)
        except ValueError:
            raise UserError(
                f"--action '{text}' has a strength '{raw}' that is not a number; use NAME:0.8."
            ) from None
        if not math.isfinite(strength):
            raise UserError(f"--action '{text}' has strength {raw}; use a finite number like NAME:0.8.")
    if name.endswith(".safetensors"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserError(
                f"Adapter file '{path}' does not exist; pass a library action name or an adapter file."
            )
        return _ActionRef(path.stem, strength, path, None)
    manifest = lib.verified(name)  # its files' hashes, sizes and finite weights, before any work
    return _ActionRef(name, strength, lib.action_dir(name) / ADAPTER_FILE, manifest)


def _plan_outputs(
    photos: list[Path], labels: list[str], output: Path | None, out_dir: Path | None, fmt: str
) -> list[Path]:
    """Where each photo's video goes; clashes, unwritable folders and names held by a FIFO or device
    are the user's to resolve."""
    from flashcli.video import check_output_file, check_writable_folder

    if output is not None and out_dir is not None:
        raise UserError("Pass either -o/--output (one photo) or --out-dir (any number of photos), not both.")
    if output is not None and len(photos) > 1:
        raise UserError(
            f"-o/--output names one file but {len(photos)} photos were given; use --out-dir DIR instead."
        )
    if output is not None:
        if output.is_dir():
            raise UserError(f"Output '{output}' is a folder; use --out-dir for folders.")
        check_writable_folder(output.parent, "Output folder")
        check_output_file(output)
        return [output]
    folder = out_dir if out_dir is not None else Path.cwd()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out-dir '{folder}' is a file; pass a folder.")
    check_writable_folder(folder, "Output folder")
    suffix = "+".join(labels)
    outputs = [folder / f"{photo.stem}_{suffix}.{fmt}" for photo in photos]
    seen: dict[Path, Path] = {}
    for photo, out in zip(photos, outputs, strict=True):
        check_output_file(out)
        if out in seen:
            raise UserError(
                f"Photos '{seen[out]}' and '{photo}' would both write '{out}'; "
                "rename one or animate them separately."
            )
        seen[out] = photo
    return outputs


def _requested_format(output: Path | None, output_format: str | None) -> str | None:
    """The format the user asked for: -o's suffix or --format (they must agree); None = preset's."""
    from flashcli.video import OUTPUT_FORMATS

    if output is None:
        return output_format
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise UserError(f"Output '{output}' must end in one of .{', .'.join(OUTPUT_FORMATS)}.")
    if output_format is not None and output_format != suffix:
        raise UserError(f"Output '{output}' is .{suffix} but --format is {output_format}; make them agree.")
    return suffix


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
        int | None, typer.Option(metavar="N", help="Square output size in pixels (default: as learned).")
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
    device: DeviceOption = None,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Animate photos with learned actions; writes one video and one .json sidecar per photo."""
    from flashcli.config import resolve_animate
    from flashcli.library import Library
    from flashcli.terminal import print_json
    from flashcli.video import read_image

    lib = Library.open(library)
    refs = [_parse_action(text, lib) for text in action]
    images = [read_image(photo) for photo in photos]  # every photo checked before any work
    manifests = [ref.manifest for ref in refs if ref.manifest is not None]
    first = manifests[0] if manifests else None
    flags = {
        "steps": steps,
        "frames": frames,
        "size": size,
        "fps": fps,
        "seed": seed,
        "crop": crop,
        "format": _requested_format(output, output_format),
        "device": device,
    }
    preset_name, config = resolve_animate(preset, flags, first.animate_defaults if first else None)
    fmt = config.format
    outputs = _plan_outputs(photos, [ref.label for ref in refs], output, out_dir, fmt)
    base_source = base or (first.base_source if first else "tiny")
    sources = {m.base_hash: m.name for m in manifests}
    if len(sources) > 1:
        names = ", ".join(f"'{name}'" for name in sources.values())
        raise UserError(f"Actions {names} were learned on different bases; animate them in separate calls.")

    _check_strengths(refs)
    origin = f"action '{first.name}'" if first else f"base '{base_source}'"
    learned_frames, learned_size = (first.frames, first.size) if first else (None, None)
    _check_fits_early(
        base_source, config.frames or learned_frames, config.size or learned_size, flags=flags, origin=origin
    )
    spec = _load_base(base_source, config.device)
    frame_count = config.frames or (first.frames if first else spec.default_frames)
    frame_size = config.size or (first.size if first else spec.default_size)
    out_fps = config.fps or (first.fps if first else float(spec.fps))
    _check_fits(spec, frame_count, frame_size, flags=flags, source=origin)
    prompt = next((m.prompt for m in manifests if m.prompt), None)
    sample = config.sample_settings(prompt)
    if ded is not None:  # the flag overrides the preset's use_ded
        sample = sample.model_copy(update={"use_ded": ded})
    adapters = _load_adapters(refs, spec)
    action_ded, decoder = _choose_ded(refs, spec, use_ded=sample.use_ded)

    results = []
    for photo, image, out in zip(photos, images, outputs, strict=True):
        video = _animate_one(
            spec, image, adapters, sample, frame_count, frame_size, config.crop, photo, action_ded
        )
        record = _write_output(
            out, fmt, video, out_fps, photo, refs, spec, base_source, config, preset_name, sample, decoder
        )
        results.append(record)
    if json_output:
        print_json({"outputs": results})
    else:
        for result in results:
            print(result["video"])


def _check_strengths(refs: list[_ActionRef]) -> None:
    from flashcli.core.adapter import MAX_STRENGTH

    for ref in refs:
        if not 0.0 <= ref.strength <= MAX_STRENGTH:
            raise UserError(
                f"--action '{ref.label}' has strength {ref.strength:g}; "
                f"use a number from 0 to {MAX_STRENGTH:g} (1 = as learned)."
            )


def _load_adapters(refs: list[_ActionRef], spec: Any) -> list[tuple[Any, Any, float]]:
    """Read every adapter and check it fits the loaded base, before anything is generated."""
    from flashcli.core.adapter import AdapterMismatchError, check_adapter_matches, load_adapter

    loaded = []
    for ref in refs:
        try:
            tensors, metadata = load_adapter(ref.adapter_path)
            check_adapter_matches(spec, metadata, source=f"action '{ref.label}'")
        except AdapterMismatchError as error:
            raise UserError(f"{str(error)[:1].upper()}{str(error)[1:]}.") from None
        except OSError as error:
            raise UserError(
                f"Cannot read adapter '{ref.adapter_path}' ({error}); re-learn or re-import the action."
            ) from None
        loaded.append((tensors, {**metadata, "action": ref.label}, ref.strength))
    return loaded


def _choose_ded(refs: list[_ActionRef], spec: Any, *, use_ded: bool) -> tuple[Any | None, dict[str, Any]]:
    """Which Detail Enhancement Decoder decodes: the action's fine-tuned one when a single action with
    one is animated, else the base's (None: the spec's own). Returns it and the sidecar's record of it.

    Combined actions share one decoder, and a DED tuned on one action's clips has no claim over the
    others', so they get the base's DED (with a note on stderr)."""
    from flashcli.core.ded_finetune import DedMismatchError, load_finetuned_ded
    from flashcli.terminal import say
    from flashcli.video import file_hash

    base_record = {"ded": "base" if use_ded and spec.ded is not None else "none"}
    tuned = [ref for ref in refs if ref.manifest is not None and ref.manifest.ded is not None]
    if not use_ded or not tuned:
        return None, base_record
    if len(refs) > 1:
        names = ", ".join(f"'{ref.label}'" for ref in tuned)
        say(
            f"note: actions are combined, so the base's Detail Enhancement Decoder decodes the video, "
            f"not the fine-tuned one of {names}."
        )
        return None, base_record
    ref = tuned[0]
    path = ref.adapter_path.with_name(ref.manifest.ded.file)
    digest = file_hash(path)
    if digest != ref.manifest.ded.sha256:  # changed since `_parse_action` verified the action
        raise UserError(
            f"Action '{ref.label}' is broken: its DED weights '{path}' do not match its manifest; "
            f"re-learn it or delete it with `flash remove {ref.label}`."
        )
    try:
        ded = load_finetuned_ded(path, spec)
    except DedMismatchError as error:
        raise UserError(f"Cannot use the fine-tuned DED of action '{ref.label}': {error}.") from None
    return ded, {"ded": f"action '{ref.label}'", "file": str(path), "sha256": digest}


def _animate_one(
    spec: Any,
    image: Any,
    adapters: list[Any],
    sample: Any,
    frames: int,
    size: int,
    crop: str,
    photo: Path,
    ded: Any | None = None,
) -> Any:
    from flashcli.core.adapter import AdapterMismatchError
    from flashcli.core.sampler import animate_photo
    from flashcli.terminal import StepProgress
    from flashcli.video import fit_image

    still = fit_image(image, size, crop)  # type: ignore[arg-type]
    with StepProgress(f"animate {photo.name}", sample.steps) as progress:
        try:
            return animate_photo(
                spec, still, adapters, sample, frames=frames, progress=progress.sample_step, ded=ded
            )
        except AdapterMismatchError as error:
            raise UserError(str(error)) from None


def _write_output(
    out: Path,
    fmt: str,
    video: Any,
    fps: float,
    photo: Path,
    refs: list[_ActionRef],
    spec: Any,
    base_source: str,
    config: Any,
    preset_name: str,
    sample: Any,
    decoder: dict[str, Any],
) -> dict[str, Any]:
    import json
    from datetime import datetime, timezone

    from flashcli.core.sampler import sampler_eta
    from flashcli.video import atomic_path, encode_video, file_hash

    sidecar = out.with_name(out.name + ".json")
    record = {
        "video": str(out),
        "sidecar": str(sidecar),
        "photo": {"path": str(photo), "sha256": file_hash(photo)},
        "actions": [
            {
                "name": ref.label,
                "strength": ref.strength,
                "adapter": str(ref.adapter_path),
                "adapter_sha256": file_hash(ref.adapter_path),
            }
            for ref in refs
        ],
        "base": {"id": spec.base_id, "source": base_source, "weight_hash": spec.weight_hash},
        "decoder": decoder,  # which Detail Enhancement Decoder decoded: none, the base's, or an action's
        "frames": int(video.shape[0]),
        "size": int(video.shape[1]),
        "fps": fps,
        "format": fmt,
        "seed": sample.seed,
        "preset": preset_name,
        "settings": config.model_dump(mode="json"),
        "sample_settings": sample.model_dump(mode="json"),
        "sampler_eta": sampler_eta(spec, sample),  # the settings' eta, else the base's
        "device": str(spec.device),
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # Both files are written in full before either replaces an earlier one: a full disk keeps both.
    with atomic_path(out) as video_temp, atomic_path(sidecar) as sidecar_temp:
        encode_video(video_temp, video, fps, fmt)  # type: ignore[arg-type]
        sidecar_temp.write_text(json.dumps(record, indent=2) + "\n")
    return record


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
    from flashcli.library import Library
    from flashcli.terminal import print_json

    lib = Library.open(library)
    if target is not None and verify:
        raise UserError(
            "--verify checks the whole library; leave out NAME (`flash inspect NAME` always checks it)."
        )
    if target is None:
        if plot is not None or contact_sheet is not None:
            raise UserError(
                "--plot and --contact-sheet need an action name: flash inspect NAME --plot loss.png."
            )
        document = _library_table(lib, show=not json_output, deep=verify)
    elif target.endswith(".safetensors") or Path(target).is_file():
        if plot is not None or contact_sheet is not None:
            raise UserError("--plot and --contact-sheet need a library action, not a loose adapter file.")
        document = _loose_adapter(Path(target), show=not json_output)
    else:
        document = _action_details(lib, target, plot, contact_sheet, show=not json_output)
    if json_output:
        print_json(document)
    broken = [row["action"] for row in document.get("actions", []) if row["status"] == "broken"]
    if verify and broken:
        names = ", ".join(f"'{name}'" for name in broken)
        raise UserError(
            f"{len(broken)} of {len(document['actions'])} actions in '{lib.root}' are broken ({names}); "
            "re-learn or re-import them, or delete them with `flash remove NAME`."
        )


def _library_table(lib: Any, *, show: bool, deep: bool = False) -> dict[str, Any]:
    """Every action with its status: 'ok', or 'broken' with the problem (a manifest that cannot be read,
    files that do not match it; with `deep` also the preview and non-finite weights)."""
    from rich.markup import escape
    from rich.table import Table

    from flashcli.library import printable
    from flashcli.terminal import stderr_console

    rows = []
    for name in lib.names():
        row: dict[str, Any] = dict.fromkeys(("base", "clips", "steps", "created", "size_bytes", "problem"))
        try:
            manifest = lib.verified(name, deep=deep)
        except UserError as error:  # one broken action must not hide the others
            rows.append({"action": name, "status": "broken", **row, "problem": str(error)})
            continue
        row.update(
            base=manifest.base,
            clips=len(manifest.clips),
            steps=manifest.steps,
            created=manifest.created,
            size_bytes=lib.size_bytes(name),
        )
        rows.append({"action": name, "status": "ok", **row})
    table = Table(title=escape(f"Library {lib.root}"), title_justify="left")
    for column in ("action", "status", "base", "clips", "steps", "created", "size"):
        table.add_column(column, justify="right" if column in ("clips", "steps", "size") else "left")
    for row in rows:
        cells = [row["base"], row["clips"], row["steps"], row["created"]]
        size = _human_bytes(row["size_bytes"]) if row["size_bytes"] is not None else ""
        table.add_row(
            escape(printable(row["action"])),
            row["status"] if row["status"] == "ok" else "[red]broken[/red]",
            *(escape(str(cell)) if cell is not None else "" for cell in cells),
            size,
        )
    if show:
        console = stderr_console()
        console.print(
            table if rows else escape(f"No actions in {lib.root} yet; make one with `flash learn`.")
        )
        for row in rows:
            if row["problem"] is not None:
                console.print(f"broken: {row['problem']}", markup=False)
        if deep and rows and not any(row["problem"] for row in rows):
            console.print(f"All {len(rows)} actions are intact.")
    return {"library": str(lib.root), "actions": rows}


def _human_bytes(count: int) -> str:
    """A size in binary units, labelled as such (1 KiB = 1024 bytes)."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def _action_details(
    lib: Any, name: str, plot: Path | None, contact_sheet: Path | None, *, show: bool
) -> dict[str, Any]:
    from flashcli.library import ADAPTER_FILE, MANIFEST_FILE, PREVIEW_FILE
    from flashcli.views import loss_series, sparkline, write_contact_sheet, write_loss_plot

    manifest = lib.verified(name)  # its files' hashes, sizes and weights, so a broken action says so
    folder = lib.action_dir(name)
    files = {
        "folder": str(folder),
        "adapter": str(folder / ADAPTER_FILE),
        "manifest": str(folder / MANIFEST_FILE),
        "preview": str(folder / PREVIEW_FILE) if (folder / PREVIEW_FILE).is_file() else None,
        "ded": str(folder / manifest.ded.file) if manifest.ded is not None else None,
    }
    written: dict[str, str] = {}
    if plot is not None:
        if not manifest.losses:
            raise UserError(f"Action '{name}' has no recorded losses to plot; re-learn it to get them.")
        written["plot"] = str(write_loss_plot(plot, manifest.losses, f"{name}: training losses"))
    if contact_sheet is not None:
        if files["preview"] is None:
            raise UserError(f"Action '{name}' has no preview.gif; re-learn it to get one.")
        from flashcli.video import read_output

        written["contact_sheet"] = str(write_contact_sheet(contact_sheet, read_output(folder / PREVIEW_FILE)))
    curves = {term: sparkline(values) for term, values in loss_series(manifest.losses).items()}
    if manifest.ded is not None and manifest.ded.losses:
        curves["DED loss"] = sparkline([step["loss"] for step in manifest.ded.losses if "loss" in step])
    if show:
        _print_action(manifest, files, curves, written)
    return {"manifest": manifest.model_dump(mode="json"), "files": files, "written": written}


def _print_action(
    manifest: Any, files: dict[str, Any], curves: dict[str, str], written: dict[str, str]
) -> None:
    from rich.markup import escape
    from rich.table import Table

    from flashcli.terminal import stderr_console

    console = stderr_console()
    console.print(
        f"[bold]{escape(manifest.name)}[/bold]  learned {escape(manifest.created)} on base "
        f"{escape(manifest.base)}"
    )
    facts = Table(show_header=False, box=None)
    for key in (
        "prompt",
        "preset",
        "frames",
        "size",
        "fps",
        "crop",
        "steps",
        "rank",
        "seed",
        "train_seconds",
    ):
        value = getattr(manifest, key)
        facts.add_row(key, "—" if value is None else escape(str(value)))
    facts.add_row("base hash", manifest.base_hash[:16])
    facts.add_row("final losses", ", ".join(f"{k} {v:.4f}" for k, v in manifest.final_losses.items()))
    if manifest.ded is not None:
        ded = manifest.ded
        final = ded.final_losses.get("loss", float("nan"))
        facts.add_row(
            "DED", f"fine-tuned on the clips: {ded.steps} steps, lr {ded.learning_rate:g}, loss {final:.4f}"
        )
    else:
        facts.add_row("DED", "the base's (not fine-tuned)")
    # What the preview shows: this action, animated from a still. Learn records the still's source as
    # 'figureworld:<clip it came from>:seed=N:appearance=unseen' (frame 0 of an unseen figure; the
    # clip's own action plays no part) or '--preview-photo'.
    source = manifest.preview_source
    seed = next((part[5:] for part in source.split(":") if part.startswith("seed=")), None)
    if source == "--preview-photo":
        preview = f"'{manifest.name}' animated from the photo given with --preview-photo"
    elif source.startswith("figureworld:") and seed is not None:
        preview = (
            f"'{manifest.name}' animated from a still of a FigureWorld figure it never saw (seed {seed})"
        )
    else:
        preview = source
    facts.add_row("preview", escape(preview))
    console.print(facts)
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
    if curves:
        console.print("Losses (first step to last):")
        for term, line in curves.items():
            console.print(f"  {term:>12} {line}", markup=False)
    for key, value in {**files, **written}.items():
        if value:
            console.print(f"{key:>13}: {value}", markup=False)


def _loose_adapter(path: Path, *, show: bool) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"Adapter file '{path}' does not exist; check the path.")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            shapes = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(
            f"'{path}' is not a readable safetensors file ({error}); pass an adapter file."
        ) from None
    import math

    parameters = sum(math.prod(shape) for shape in shapes.values())
    document = {"path": str(path), "metadata": metadata, "tensors": len(shapes), "parameters": parameters}
    if show:
        from rich.markup import escape
        from rich.table import Table

        from flashcli.terminal import stderr_console

        table = Table(title=escape(f"Adapter {path}"), show_header=False, title_justify="left")
        for key, value in sorted(metadata.items()):
            table.add_row(escape(key), escape(value))
        table.add_row("tensors", str(len(shapes)))
        table.add_row("parameters", f"{parameters:,}")
        stderr_console().print(table)
    return document


# -- library housekeeping ---------------------------------------------------------------------------


@app.command()
@handles_errors
def remove(
    name: Annotated[str, typer.Argument(help="Action to delete from the library.")],
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete an action (its adapter, manifest and preview) from the library."""
    from flashcli.library import Library
    from flashcli.terminal import print_json, say

    lib = Library.open(library)
    lib.remove(name)
    if json_output:
        print_json({"removed": name, "library": str(lib.root)})
    else:
        say(f"Removed '{name}' from {lib.root}.")


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
    from flashcli.library import Library
    from flashcli.terminal import print_json, say

    lib = Library.open(library)
    target = lib.rename(old, new, force=force)
    if json_output:
        print_json({"renamed": old, "to": new, "path": str(target)})
    else:
        say(f"Renamed '{old}' to '{new}'.")


@app.command("export")
@handles_errors
def export_action(
    name: Annotated[str, typer.Argument(help="Action to export.")],
    destination: Annotated[
        Path | None, typer.Argument(help="File to write (default: NAME.flash in the current folder).")
    ] = None,
    library: LibraryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Pack an action into one .flash file (a zip of its manifest, adapter and preview)."""
    from flashcli.library import EXPORT_SUFFIX, Library
    from flashcli.terminal import print_json

    lib = Library.open(library)
    written = lib.export(name, destination or Path(f"{name}{EXPORT_SUFFIX}"))
    if json_output:
        print_json({"exported": name, "file": str(written)})
    else:
        print(written)


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
    from flashcli.library import Library
    from flashcli.terminal import print_json, say

    lib = Library.open(library)
    imported = lib.import_(source, name=name, force=force)
    if json_output:
        print_json({"imported": imported, "path": str(lib.action_dir(imported))})
    else:
        say(f"Imported '{imported}' into {lib.root}.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    # A polite kill (SIGTERM) unwinds like Ctrl-C, so staging folders and temp files are removed.
    signal.signal(signal.SIGTERM, _interrupt)
    app()


if __name__ == "__main__":
    main()
