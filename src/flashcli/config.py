"""User-facing settings for `learn` and `animate`, and the TOML presets that fill them.

A preset file (`presets/NAME.toml`) has a `description`, a `[learn]` table and an `[animate]`
table; each table is validated by the same pydantic model as the command-line flags, so a typo
in a preset fails the same way as a typo in a flag. Precedence: model defaults < preset < flags.
The models build the core's `TrainSettings` / `SampleSettings` (whose module is torch-free).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
        raise UserError(
            f"Invalid learn setting {_first_error(error)}; check the flag or preset '{name}'."
        ) from None


def resolve_animate(
    preset: str | None, flags: dict[str, Any], stored: dict[str, Any] | None = None
) -> tuple[str, AnimateConfig]:
    """Animate settings: the --preset's [animate] table if given, else the one the action stored at
    learn time (else the default preset's), overridden by the flags that were given."""
    if preset is None and stored is not None:
        name, table = "as learned", stored
    else:
        name, preset_file = load_preset(preset or DEFAULT_PRESET)
        table = preset_file.animate
    try:
        config = AnimateConfig.model_validate(_merge(table, flags))
        config.sample_settings(prompt=None)
        return name, config
    except (ValidationError, TypeError) as error:
        raise UserError(
            f"Invalid animate setting {_first_error(error)}; check the flag or preset '{name}'."
        ) from None
