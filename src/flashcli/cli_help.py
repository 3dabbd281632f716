"""How `flash -h` shows options: each value named for what it is (`--steps N`, `--crop a|b|c`, `CLIPS...`),
never a Python type (`<int>`, `<list[Path]>`). Help rendering only; the commands live in `flashcli.cli`."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperCommand

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


class FlashTyper(typer.Typer):
    """Every command of the app is a _FlashCommand."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _FlashCommand, **kwargs)


# `flash export`'s destination and --format, declared here so that cli.py stays short.
EXPORT_DESTINATION_HELP = (
    "File to write (default: NAME.flash, or NAME.safetensors with --format diffusers, in the current folder)."
)
ExportFormatOption = Annotated[
    Literal["flash", "diffusers"],
    typer.Option(
        "--format",
        help="flash: the whole action, for `flash import`; diffusers: its LoRA alone, one safetensors "
        "file for diffusers' WanPipeline.load_lora_weights.",
    ),
]
