"""User-facing settings for `learn` and `animate`, and the TOML presets that fill them.

A preset file (`presets/NAME.toml`) has a `description`, a `[learn]` table and an `[animate]`
table; each table is validated by the same pydantic model as the command-line flags, so a typo
in a preset fails the same way as a typo in a flag. Precedence: model defaults < preset < flags.
The models build the core's `TrainSettings` / `SampleSettings` (whose module is torch-free).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flashcli.core.settings import AlignSettings, SampleSettings, TrainSettings  # pydantic only, no torch
from flashcli.errors import UserError

Device = Literal["auto", "cuda", "cpu"]
Crop = Literal["center", "pad", "stretch"]
Format = Literal["mp4", "gif", "webp", "png"]
DEFAULT_PRESET = "standard"


class LearnConfig(BaseModel):
    """Everything `flash learn` lets a user choose."""

    model_config = ConfigDict(extra="forbid")

    base: str = "tiny"
    prompt: str | None = None
    steps: int = Field(default=300, ge=1)
    rank: int = Field(default=8, ge=1, le=256)
    # None: the base's native frame count / size (from its flash_base.json).
    frames: int | None = Field(default=None, ge=2, le=257)
    size: int | None = Field(default=None, ge=16, le=2048)
    seed: int = Field(default=0, ge=0)
    learning_rate: float = Field(default=1e-3, gt=0, le=1.0)
    crop: Crop = "center"
    device: Device = "auto"
    preview_steps: int = Field(default=8, ge=1, le=200)
    checkpoint_every: int = Field(default=50, ge=0)
    # Steps of fine-tuning the base's Detail Enhancement Decoder on the clips after the adapter
    # (`--ded-steps`); None = the core's ded_finetune_steps ([learn.core] or its default, 0 = off).
    ded_steps: int | None = Field(default=None, ge=0, le=100_000)
    # The Motion Alignment Module's switches (the paper's ablation axes), validated by the core.
    align: AlignSettings = Field(default_factory=AlignSettings)
    # Further TrainSettings fields (warmup_steps, targets, precision, ...) passed to the core as
    # is and validated there (extra="forbid"): knobs that presets tune but flags do not expose.
    core: dict[str, Any] = Field(default_factory=dict)

    def train_settings(self, frames: int | None = None, size: int | None = None) -> TrainSettings:
        """The core's TrainSettings for these choices; frames/size fill in what this config leaves to
        the base (without a base, the core's defaults stand in for validation)."""
        frames = self.frames or frames
        size = self.size or size
        core = dict(self.core)
        if self.ded_steps is not None:  # the flag (or [learn] key) wins over [learn.core]
            core["ded_finetune_steps"] = self.ded_steps
        return TrainSettings(
            **({"frames": frames} if frames else {}),
            **({"size": size} if size else {}),
            steps=self.steps,
            learning_rate=self.learning_rate,
            rank=self.rank,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
            align=self.align,
            **core,
        )


class AnimateConfig(BaseModel):
    """Everything `flash animate` lets a user choose. None means "as the action was learned"."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=20, ge=1, le=1000)
    frames: int | None = Field(default=None, ge=2, le=257)
    size: int | None = Field(default=None, ge=16, le=2048)
    fps: float | None = Field(default=None, gt=0, le=120)
    seed: int = Field(default=0, ge=0)
    crop: Crop = "center"
    format: Format = "mp4"
    device: Device = "auto"
    # Further SampleSettings fields (shift, eta, guidance, use_ded, precision), validated by the core.
    core: dict[str, Any] = Field(default_factory=dict)

    def sample_settings(self, prompt: str | None) -> SampleSettings:
        """The core's SampleSettings for these choices (prompt: the action's, for text bases)."""
        return SampleSettings(steps=self.steps, seed=self.seed, prompt=prompt, **self.core)


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


def _first_error(error: ValidationError | TypeError) -> str:
    if isinstance(error, TypeError):
        return f"'core': {error}"
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
    error: ValidationError | TypeError,
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
    first = error.errors()[0] if isinstance(error, ValidationError) else None
    key = str(first["loc"][0]) if first is not None and first["loc"] else None
    by_name = {model.__name__: model for model in models}
    model = by_name.get(error.title, models[0]) if isinstance(error, ValidationError) else models[0]
    allowed = allowed_values(model, key) if key is not None else None
    if first is not None and key is not None and flags.get(key) is not None and len(first["loc"]) == 1:
        hint = f"use {allowed}" if allowed else first["msg"][:1].lower() + first["msg"][1:]
        return UserError(f"--{key.replace('_', '-')} {_number(flags[key])} is not allowed; {hint}.")
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
        LearnConfig.model_validate(preset.learn).train_settings()
        AnimateConfig.model_validate(preset.animate).sample_settings(prompt=None)
    except (ValidationError, TypeError) as error:
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
        config.train_settings()  # the core's own checks, before any clip is read
        return name, config, dict(preset_file.animate)
    except (ValidationError, TypeError) as error:
        where = f"the [learn] table of preset '{name}'"
        fix = "fix the preset"
        raise _setting_error(error, (LearnConfig, TrainSettings), flags, where=where, fix=fix) from None


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
    except (ValidationError, TypeError) as error:
        raise _setting_error(error, (AnimateConfig, SampleSettings), flags, where=where, fix=fix) from None


# diffusers' Wan VAE encodes frame 0, then chunks of this many frames (core.specs.wan's
# ENCODER_CHUNK_FRAMES; a test keeps the two in step without importing torch here).
_ENCODER_CHUNK_FRAMES = 4


@dataclass(frozen=True)
class BaseShape:
    """The frame counts and sizes a base accepts, read from its config files without loading it, so
    a --frames or --size it cannot take fails at once rather than after the model has loaded."""

    base_id: str
    frame_step: int  # frames = frame_step * k + 1
    size_multiple: int
    default_frames: int | None  # None: not known without loading (the full check runs after loading)
    default_size: int | None


def _base_folder(source: str) -> Path:
    # The embedded base's folder, as core.specs.tiny_base_folder() has it (that module imports torch).
    return (
        Path(__file__).resolve().parent / "weights" / "tiny"
        if source == "tiny"
        else Path(source).expanduser()
    )


def base_shape(source: str) -> BaseShape | None:
    """What `source` ('tiny' or a base folder) accepts, from flash_base.json (or model_index.json) and
    the vae/ and transformer/ configs; None when they do not say, and loading the base will tell."""
    folder = _base_folder(source)
    try:
        vae = json.loads((folder / "vae" / "config.json").read_text())
        transformer = json.loads((folder / "transformer" / "config.json").read_text())
        frame_step = math.lcm(_ENCODER_CHUNK_FRAMES, int(vae["scale_factor_temporal"]))
        size_multiple = int(vae["scale_factor_spatial"]) * max(int(p) for p in transformer["patch_size"][1:])
        if (folder / "flash_base.json").is_file():
            meta = json.loads((folder / "flash_base.json").read_text())
            frames, size = (None if meta.get(key) is None else int(meta[key]) for key in ("frames", "size"))
            return BaseShape(str(meta["base_id"]), frame_step, size_multiple, frames, size)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    if (folder / "model_index.json").is_file():  # a diffusers folder: its own defaults need the loader
        return BaseShape(folder.name, frame_step, size_multiple, None, None)
    return None
