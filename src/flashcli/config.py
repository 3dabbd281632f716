"""User-facing settings for `learn` and `animate`, and the TOML presets that fill them.

A preset file (`presets/NAME.toml`) has a `description`, a `[learn]` table and an `[animate]`
table; each table is validated by the same models as the command-line flags, so a typo in a preset
fails the same way as a typo in a flag. Precedence: defaults < preset < flags.

One default and one rule per setting. A setting the core uses (steps, rank, learning rate, seed, ...)
is None here until a preset or flag chooses it, and falls through to the core's `TrainSettings` /
`SampleSettings` (torch-free), which hold its only default and limits: the core's models are what
runs, and benchmarks and tests build them directly, so they must carry the defaults; a second copy
here could only drift. frames, size and fps depend on the base and are fitted to it by
`flashcli.workflows.plan`. Only settings the core never sees (base, crop, device, preview steps,
format, fps) have their default and limits here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flashcli.core.settings import SampleSettings, TrainSettings  # pydantic only, no torch
from flashcli.errors import UserError

Device = Literal["auto", "cuda", "cpu"]
Crop = Literal["center", "pad", "stretch"]
Format = Literal["mp4", "gif", "webp", "png"]
DEFAULT_PRESET = "standard"
# LearnConfig fields that are TrainSettings fields of the same name.
_TRAIN_KEYS = ("steps", "rank", "learning_rate", "seed", "checkpoint_every", "gradient_checkpointing")
# A TrainSettings field whose flag has another name, for messages that name the flag.
_FLAG_NAMES = {"ded_finetune_steps": "ded_steps"}


class _TrainChoices(TrainSettings):
    """TrainSettings before the base is known: every field keeps TrainSettings' own default and rule
    (inherited, so they cannot drift); only frames and size, which the base supplies, may be absent."""

    frames: int | None = None  # type: ignore[assignment]
    size: int | None = None  # type: ignore[assignment]


class LearnConfig(BaseModel):
    """What a preset's [learn] table and `flash learn`'s flags chose (None: not chosen)."""

    model_config = ConfigDict(extra="forbid")

    base: str = "tiny"
    prompt: str | None = None
    # The preview's negative prompt (text bases), recorded with the action; None: the base's.
    negative_prompt: str | None = None
    crop: Crop = "center"
    device: Device = "auto"
    preview_steps: int = Field(default=8, ge=1, le=200)
    frames: int | None = None  # None: the base's
    size: int | str | None = None  # N (square) or 'WxH'; checked against the base by workflows.plan
    steps: int | None = None
    rank: int | None = None
    learning_rate: float | None = None
    seed: int | None = None
    checkpoint_every: int | None = None
    gradient_checkpointing: bool | None = None  # None: on for diffusers folders (workflows.plan)
    # `--ded-steps`: TrainSettings.ded_finetune_steps (fine-tune the base's DED on the clips after the
    # adapter); it wins over the same key in [learn.core].
    ded_steps: int | None = None
    # The Motion Alignment Module's switches (the paper's ablation axes): AlignSettings fields.
    align: dict[str, Any] = Field(default_factory=dict)
    # Further TrainSettings fields (warmup_steps, targets, precision, ...): knobs that presets tune
    # but flags do not expose. A [learn] key wins over the same key here.
    core: dict[str, Any] = Field(default_factory=dict)

    @field_validator("core")
    @classmethod
    def _shape_is_not_a_knob(cls, core: dict[str, Any]) -> dict[str, Any]:
        misplaced = sorted({"frames", "size"} & set(core))
        if misplaced:
            raise ValueError(f"set {' and '.join(misplaced)} in [learn], not in [learn.core]")
        return core

    def core_choices(self) -> dict[str, Any]:
        """The TrainSettings fields chosen, by TrainSettings' names (frames and size aside)."""
        chosen = {key: getattr(self, key) for key in _TRAIN_KEYS if getattr(self, key) is not None}
        if self.ded_steps is not None:
            chosen["ded_finetune_steps"] = self.ded_steps
        if self.align:
            chosen["align"] = self.align
        return {**self.core, **chosen}

    def check(self) -> None:
        """Apply TrainSettings' rules to every chosen value, before the base (and so frames and size)
        is known; raises pydantic's ValidationError."""
        _TrainChoices.model_validate(self.core_choices())

    def train_settings(self, frames: int, width: int, height: int | None = None) -> TrainSettings:
        """The core's complete TrainSettings, with frames and frame size (height None: square) as fitted
        to the base."""
        height = width if height is None else height
        shape = {"frames": frames, "size": height, "width": None if width == height else width}
        return TrainSettings.model_validate({**self.core_choices(), **shape})


class AnimateConfig(BaseModel):
    """What an [animate] table (a preset's, or the one the action stored) and `flash animate`'s flags
    chose. None: as the action was learned (frames, size, fps), else the core's or the base's."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = None  # SampleSettings.steps
    seed: int | None = None  # SampleSettings.seed
    negative_prompt: str | None = None  # SampleSettings.negative_prompt; None: the action's, else the base's
    frames: int | None = None
    size: int | str | None = None  # N (square) or 'WxH'
    fps: float | None = Field(default=None, gt=0, le=120)
    crop: Crop = "center"
    format: Format = "mp4"
    device: Device = "auto"
    # Further SampleSettings fields (shift, eta, guidance, use_ded, precision), validated by the core.
    core: dict[str, Any] = Field(default_factory=dict)

    def sample_settings(self, prompt: str | None) -> SampleSettings:
        """The core's SampleSettings for these choices (prompt: the action's, for text bases)."""
        keys = ("steps", "seed", "negative_prompt")
        chosen = {key: getattr(self, key) for key in keys if getattr(self, key) is not None}
        return SampleSettings.model_validate({**self.core, **chosen, "prompt": prompt})


class PresetFile(BaseModel):
    """One `presets/*.toml` file."""

    model_config = ConfigDict(extra="forbid")

    description: str
    learn: dict[str, Any] = Field(default_factory=dict)
    animate: dict[str, Any] = Field(default_factory=dict)


def preset_dirs() -> list[Path]:
    """Where presets live: packaged beside this module if shipped so, else the repository's presets/."""
    here = Path(__file__).resolve().parent
    return [here / "presets", here.parents[1] / "presets"]


def available_presets() -> list[str]:
    names: set[str] = set()
    for folder in preset_dirs():
        if folder.is_dir():
            names.update(path.stem for path in folder.glob("*.toml"))
    return sorted(names)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"'{where}': {first['msg']}"


def _choices(annotation: Any) -> list[str]:
    """The allowed values of a Literal annotation (also inside `X | None`), else []."""
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return [choice for part in get_args(annotation) for choice in _choices(part)]


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def allowed_values(model: type[BaseModel], key: str) -> str | None:
    """What a field accepts, in words: 'one of mp4, gif, webp, png', 'a whole number from 1 to 1000',
    'a number that is above 0 and at most 120'; None when the field has no such limits."""
    field = model.model_fields.get(key)
    if field is None:
        return None
    choices = _choices(field.annotation)
    if choices:
        return f"one of {', '.join(choices)}"
    bounds = {
        name: getattr(item, name)
        for item in field.metadata
        for name in ("ge", "gt", "le", "lt")
        if getattr(item, name, None) is not None
    }
    if not bounds:
        return None
    kind = "a whole number" if int in (field.annotation, *get_args(field.annotation)) else "a number"
    if "ge" in bounds and "le" in bounds:
        return f"{kind} from {_number(bounds['ge'])} to {_number(bounds['le'])}"
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    limits = " and ".join(f"{words[name]} {_number(value)}" for name, value in bounds.items())
    return f"{kind} that is {limits}"


def _setting_error(
    error: ValidationError,
    models: tuple[type[BaseModel], ...],
    flags: dict[str, Any],
    *,
    where: str,
    fix: str,
) -> UserError:
    """One sentence for a bad setting. A flag's mistake names the flag and what it accepts; anything
    else names `where` the setting came from (a preset's table, the action's stored one) and `fix`.

    `models` are the pydantic models the settings pass through (the config's, then the core's); the
    one that refused names the limits."""
    first = error.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else None
    flag = _FLAG_NAMES.get(key, key) if key is not None else None
    model = {model.__name__: model for model in models}.get(error.title, models[0])
    allowed = allowed_values(model, key) if key is not None else None
    if flag is not None and flags.get(flag) is not None and len(first["loc"]) == 1:
        hint = f"use {allowed}" if allowed else first["msg"][:1].lower() + first["msg"][1:]
        return UserError(f"--{flag.replace('_', '-')} {_number(flags[flag])} is not allowed; {hint}.")
    hint = f"use {allowed}, or {fix}" if allowed else fix
    return UserError(f"Invalid setting {_first_error(error)} in {where}; {hint}.")


def load_preset(name_or_path: str) -> tuple[str, PresetFile]:
    """Find and parse a preset by name (quick, standard, best) or by a path to a .toml file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        path = candidate
        if not path.is_file():
            raise UserError(
                f"Preset file '{path}' does not exist; pass a preset name or an existing .toml file."
            )
    else:
        found = [
            folder / f"{name_or_path}.toml"
            for folder in preset_dirs()
            if (folder / f"{name_or_path}.toml").is_file()
        ]
        if not found:
            known = ", ".join(available_presets()) or "none found"
            raise UserError(
                f"Unknown preset '{name_or_path}'; use one of: {known} (or a path to a .toml file)."
            )
        path = found[0]
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"Preset '{path}' is not valid TOML ({error}); fix the file.") from None
    try:
        preset = PresetFile.model_validate(raw)
        LearnConfig.model_validate(preset.learn).check()
        AnimateConfig.model_validate(preset.animate).sample_settings(prompt=None)
    except ValidationError as error:
        raise UserError(f"Preset '{path}' is invalid at {_first_error(error)}; fix the file.") from None
    return path.stem, preset


def _merge(defaults: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in flags.items():
        if value is None:
            continue  # flag not given: the preset (or model default) stands
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_learn(preset: str | None, flags: dict[str, Any]) -> tuple[str, LearnConfig, dict[str, Any]]:
    """Preset (default 'standard') overridden by the flags that were given (non-None).

    Returns the preset's name, the learn settings and the preset's [animate] table, which the action
    keeps so that `animate` samples it the way its preset intended.
    """
    name, preset_file = load_preset(preset or DEFAULT_PRESET)
    try:
        config = LearnConfig.model_validate(_merge(preset_file.learn, flags))
        config.check()  # the core's rules, before any clip is read; frames and size wait for the base
        return name, config, dict(preset_file.animate)
    except ValidationError as error:
        where = f"the [learn] table of preset '{name}'"
        fix = "fix the preset"
        raise _setting_error(error, (LearnConfig, _TrainChoices), flags, where=where, fix=fix) from None


def resolve_animate(
    preset: str | None, flags: dict[str, Any], stored: dict[str, Any] | None = None
) -> tuple[str, AnimateConfig]:
    """Animate settings: the --preset's [animate] table if given, else the one the action stored at
    learn time (else the default preset's), overridden by the flags that were given."""
    if preset is None and stored is not None:
        name, table = "as learned", stored
        where, fix = "the animate settings stored with the action", "pass --preset NAME to use a preset's"
    else:
        name, preset_file = load_preset(preset or DEFAULT_PRESET)
        table = preset_file.animate
        where, fix = f"the [animate] table of preset '{name}'", "fix the preset"
    try:
        config = AnimateConfig.model_validate(_merge(table, flags))
        config.sample_settings(prompt=None)
        return name, config
    except ValidationError as error:
        raise _setting_error(error, (AnimateConfig, SampleSettings), flags, where=where, fix=fix) from None
