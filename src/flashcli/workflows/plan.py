"""Settings resolved once: a preset and the flags (`flashcli.config`) fitted to the base.

`plan_learn` and `plan_animate` are the one place where a run's settings become complete: frames,
size and fps come from a flag, else the preset (or the action's stored table), else the action as it
was learned, else the base; frames and size are checked against the base here and nowhere else, with
one sentence per kind of mistake (out of range; not a shape the base takes, with the nearest that
fits). Everything else was checked by `flashcli.config` against the core's single rule per setting.

The base's shape is read from its config files without loading it (`base_shape`), so a bad --frames
fails in a second; a diffusers folder's defaults are its pipeline kind's (`flashcli.core.pipelines`:
Wan 2.2 TI2V-5B runs 121 frames at 24 fps, 1280x704). A base whose files do not tell its defaults is
planned from the loaded base instead (`BaseShape.of`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashcli.config import AnimateConfig, LearnConfig
from flashcli.core.pipelines import pipeline_kind
from flashcli.core.settings import SampleSettings, TrainSettings
from flashcli.errors import UserError, out_of_memory

if TYPE_CHECKING:
    from flashcli.core.memory_plan import MemoryChoice
    from flashcli.core.specs.wan import WanSpec
    from flashcli.core.time_plan import TimeEstimate
    from flashcli.library import ActionManifest

# The longest clip and the size range flash takes on any base (the base narrows them to its shapes).
MAX_FRAMES = 257
MIN_SIZE = 16
MAX_SIZE = 2048
# diffusers' Wan VAE encodes frame 0, then chunks of this many frames (core.specs.wan's
# ENCODER_CHUNK_FRAMES; a test keeps the two in step without importing torch here).
_ENCODER_CHUNK_FRAMES = 4


@dataclass(frozen=True)
class BaseShape:
    """The frame counts and sizes a base accepts, and its defaults (None: its files do not tell)."""

    base_id: str
    frame_step: int  # frames = frame_step * k + 1
    size_multiple: int
    default_frames: int | None
    default_size: int | tuple[int, int] | None  # N (square) or (width, height)
    default_fps: float | None = None
    # The fps training clips are retimed to (a diffusers folder's); None: sampled first to last, as the
    # small bases were pretrained.
    retime_fps: float | None = None
    # Gradient checkpointing unless a preset or flag says otherwise: on for real (diffusers) bases, whose
    # activations dwarf their weights (81x480x832 on TI2V-5B: ~94 GiB without, ~27 GiB with).
    checkpointing: bool = False

    @classmethod
    def of(cls, spec: WanSpec) -> BaseShape:
        """The shape of a loaded base: every default known."""
        return cls(
            spec.base_id,
            spec.frame_step,
            spec.size_multiple,
            spec.default_frames,
            spec.default_size,
            float(spec.fps),
            float(spec.fps) if "pipeline" in spec.meta else None,
            "pipeline" in spec.meta,
        )

    def supplies(self, *, frames: bool, size: bool, fps: bool = False) -> bool:
        """Whether the files told every default that is needed (True: the run leaves it to the base)."""
        unknown = (
            (frames and self.default_frames is None)
            or (size and self.default_size is None)
            or (fps and self.default_fps is None)
        )
        return not unknown


def _base_folder(source: str) -> Path:
    # The embedded base's folder, as core.specs.tiny_base_folder() has it (that module imports torch).
    here = Path(__file__).resolve().parents[1]
    return here / "weights" / "tiny" if source == "tiny" else Path(source).expanduser()


def base_shape(source: str) -> BaseShape | None:
    """What `source` ('tiny' or a base folder) accepts, from flash_base.json (or model_index.json) and
    the vae/ and transformer/ configs; None when they do not say, and loading the base will tell. A
    diffusers folder flash cannot drive (core.pipelines) is refused here, before any weight loads."""
    folder = _base_folder(source)
    try:
        vae = json.loads((folder / "vae" / "config.json").read_text())
        transformer = json.loads((folder / "transformer" / "config.json").read_text())
        frame_step = math.lcm(_ENCODER_CHUNK_FRAMES, int(vae["scale_factor_temporal"]))
        size_multiple = int(vae["scale_factor_spatial"]) * max(int(p) for p in transformer["patch_size"][1:])
        if (folder / "flash_base.json").is_file():
            meta = json.loads((folder / "flash_base.json").read_text())
            frames, size = (None if meta.get(key) is None else int(meta[key]) for key in ("frames", "size"))
            fps = None if meta.get("fps") is None else float(meta["fps"])
            return BaseShape(str(meta["base_id"]), frame_step, size_multiple, frames, size, fps)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    if (folder / "model_index.json").is_file():  # a diffusers folder: its pipeline kind's defaults
        try:
            kind = pipeline_kind(folder)
        except ValueError as error:
            raise UserError(f"Cannot use base '{source}': {error}.") from None
        return BaseShape(
            folder.name, frame_step, size_multiple, kind.frames, kind.size, kind.fps, kind.fps, True
        )
    return None


def gpu_capacity(device: str) -> int | None:
    """Bytes of GPU memory a run may fill: FLASH_GPU_MEMORY_GIB when set (tests, or to leave room for
    another program: the memory ladder then runs on any device), else the CUDA device's free memory
    (torch.cuda.mem_get_info); None off CUDA, where there is no card to fill."""
    from flashcli.core.devices import memory_limit_gib

    try:
        gib = memory_limit_gib()
    except ValueError as error:
        raise UserError(str(error)) from None
    if gib is not None:
        return int(gib * 2**30)
    from flashcli.core.devices import resolve_device

    try:
        resolved = resolve_device(device)
    except ValueError:  # no such device: open_base says so in its own sentence
        return None
    if resolved.type != "cuda":
        return None
    import torch

    return int(torch.cuda.mem_get_info(resolved)[0])


def _diffusers_folder(source: str) -> Path | None:
    """The base's folder when it is a diffusers folder (the only bases whose memory and time are planned)."""
    folder = _base_folder(source)
    return folder if source != "tiny" and (folder / "model_index.json").is_file() else None


def _memory_inputs(source: str, device: str) -> tuple[int, Any, str] | None:
    """(capacity, the folder's configs, precision) when the ladder applies: a diffusers folder and a
    known capacity; else None."""
    folder = _diffusers_folder(source)
    if folder is None:
        return None
    capacity = gpu_capacity(device)
    if capacity is None:
        return None
    from flashcli.core import memory_plan
    from flashcli.core.devices import resolve_device

    try:
        on_cuda = resolve_device(device).type == "cuda"
    except ValueError:
        return None
    return capacity, memory_plan.BaseConfigs.from_folder(folder), "bf16" if on_cuda else "fp32"


def _chosen(choice: MemoryChoice) -> MemoryChoice:
    if choice.rung is None:
        raise UserError(choice.refusal())
    return choice


def learn_memory(source: str, device: str, train: TrainSettings) -> MemoryChoice | None:
    """The memory rung this learn run uses (`core.memory_plan.LADDER`), chosen from the base's configs and
    the GPU's capacity before any weight loads; None when there is nothing to choose (no diffusers folder,
    no GPU). No rung fits: UserError naming the estimate, the capacity and what to change."""
    inputs = _memory_inputs(source, device)
    if inputs is None:
        return None
    from functools import partial

    from flashcli.core import memory_plan

    capacity, configs, precision = inputs
    weights = memory_plan._Weights.of(configs, precision)
    planner = partial(memory_plan.plan_learn, configs, copies=train.augment_copies, weights=weights)
    run = memory_plan.learn_run(train, precision)
    steps = memory_plan.shape_steps(configs)
    return _chosen(memory_plan.choose_rung("learn", planner, run, capacity, steps))


def animate_memory(source: str, device: str, plan: AnimatePlan) -> MemoryChoice | None:
    """As `learn_memory`, for an animate run (its text encoder is freed once the prompts are encoded)."""
    inputs = _memory_inputs(source, device)
    if inputs is None:
        return None
    from functools import partial

    from flashcli.core import memory_plan

    capacity, configs, precision = inputs
    planner = partial(memory_plan.plan_animate, configs, weights=memory_plan._Weights.of(configs, precision))
    width, height = plan.size
    run = memory_plan.animate_run(plan.frames, width, height, plan.sample.guidance > 1.0, precision)
    steps = memory_plan.shape_steps(configs)
    return _chosen(memory_plan.choose_rung("animate", planner, run, capacity, steps))


def _time_inputs(source: str, device: str) -> tuple[Any, float] | None:
    """(the folder's configs, the GPU's TFLOP/s) when a time estimate applies: a diffusers folder and a
    known throughput (FLASH_GPU_TFLOPS, else measured on CUDA); else None."""
    folder = _diffusers_folder(source)
    if folder is None:
        return None
    from flashcli.core import memory_plan, time_plan
    from flashcli.core.devices import resolve_device

    try:
        tflops = time_plan.throughput_override()
    except ValueError as error:
        raise UserError(str(error)) from None
    if tflops is None:
        try:
            tflops = time_plan.gpu_tflops(resolve_device(device))
        except ValueError:  # no such device: open_base says so in its own sentence
            return None
    if tflops is None:
        return None
    return memory_plan.BaseConfigs.from_folder(folder), tflops


def learn_time(source: str, device: str, plan: LearnPlan) -> TimeEstimate | None:
    """How long this learn run's steps and preview take (`core.time_plan`), planned before any weight
    loads; None off CUDA without FLASH_GPU_TFLOPS, or for a base that is not a diffusers folder."""
    inputs = _time_inputs(source, device)
    if inputs is None:
        return None
    from flashcli.core import time_plan

    configs, tflops = inputs
    return time_plan.learn_estimate(
        configs.transformer,
        configs.vae,
        configs.text_tokens,
        plan.train,
        tflops,
        preview_steps=plan.preview.steps,
        preview_guidance=plan.preview.guidance > 1.0,
    )


def animate_time(source: str, device: str, plan: AnimatePlan, videos: int) -> TimeEstimate | None:
    """As `learn_time`, for `videos` videos of an animate run."""
    inputs = _time_inputs(source, device)
    if inputs is None:
        return None
    from flashcli.core import time_plan

    configs, tflops = inputs
    sample = plan.sample
    return time_plan.animate_estimate(
        configs.transformer,
        configs.vae,
        configs.text_tokens,
        tflops,
        frames=plan.frames,
        size=plan.size,
        steps=sample.steps,
        guidance=sample.guidance > 1.0,
        videos=videos,
    )


@contextmanager
def memory_advice(choice: MemoryChoice | None, command: str) -> Iterator[None]:
    """Out of GPU memory in here: exit 2 naming the smaller settings the plan says fit (UserError)."""
    try:
        yield
    except Exception as error:
        sentence = out_of_memory(error, command, choice.fitting if choice is not None else None)
        if sentence is None:
            raise
        raise UserError(sentence) from None


def open_base(source: str, device: str, memory: MemoryChoice | None = None) -> WanSpec:
    """Load a base ('tiny' or a folder) on `device`, with the preflight's memory rung; a bad choice is the
    user's to fix."""
    from flashcli.core import specs

    try:
        return specs.load_base(source, device=device, memory=None if memory is None else memory.rung)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(f"Cannot use base '{source}' on device '{device}': {error}.") from None


def base_source(base: str) -> str:
    """How a manifest records a base so `animate` can load it again: 'tiny' or an absolute folder."""
    return base if base == "tiny" else str(Path(base).expanduser().resolve())


# -- frames and size: the one check ---------------------------------------------------------------------


def nearest(value: int, step: int, offset: int) -> int:
    """The number offset + step * k (k >= 1) nearest to `value`; halfway goes up (63 -> 64, 7 -> 9)."""
    return offset + step * max(1, math.floor((value - offset) / step + 0.5))


@dataclass(frozen=True)
class _Chosen:
    """A frame count or size, and who chose it: its flag, else where it came from."""

    value: Any  # frames: int; size: N, 'WxH' or (width, height)
    flag: str | None
    source: str

    def subject(self, noun: str) -> str:
        shown = format_size(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.flag} {shown}" if self.flag else f"The {noun} {shown} of {self.source}"


def _pick(
    name: str, flags: Mapping[str, Any], candidates: list[tuple[Any, str]]
) -> tuple[Any, str | None, str]:
    """The first value that is set, with its flag (when the flag chose it) and where it came from."""
    value, source = next((value, source) for value, source in candidates if value is not None)
    flag = f"--{name}" if flags.get(name) is not None else None
    return value, flag, source


def fit_frames(chosen: _Chosen, shape: BaseShape) -> int:
    step = shape.frame_step
    low, high = step + 1, MAX_FRAMES - (MAX_FRAMES - 1) % step
    if not low <= chosen.value <= high:
        raise UserError(
            f"{chosen.subject('frame count')} is not allowed; use {step}k+1 frames from {low} to {high} "
            f"for base '{shape.base_id}'."
        )
    if (chosen.value - 1) % step:
        raise UserError(
            f"{chosen.subject('frame count')} does not fit base '{shape.base_id}', which takes {step}k+1 "
            f"frames; use --frames {nearest(chosen.value, step, 1)}, the nearest that fits."
        )
    return chosen.value


def parse_size(value: object, chosen_by: str) -> tuple[int, int]:
    """(width, height) from N (square), 'N', 'WxH' or (width, height); `chosen_by` names the value and
    who chose it ('--size 64by32'), for the message."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    text = str(value).strip().lower().replace("×", "x")
    parts = text.split("x")
    if 1 <= len(parts) <= 2 and all(part.strip().isdigit() for part in parts):
        width, height = (int(part) for part in (parts * 2)[:2])
        return width, height
    raise UserError(
        f"{chosen_by} is not a frame size; use WxH (width x height, e.g. 832x480) or N for N x N."
    )


def format_size(size: tuple[int, int]) -> str:
    """'832x480' for (832, 480); a square as its side, '64', so square sizes read as they always did."""
    width, height = size
    return str(width) if width == height else f"{width}x{height}"


def fit_size(chosen: _Chosen, shape: BaseShape) -> tuple[int, int]:
    """The chosen (width, height), each side checked against the base: in range, a multiple of its step."""
    multiple = shape.size_multiple
    low, high = multiple * math.ceil(MIN_SIZE / multiple), multiple * (MAX_SIZE // multiple)
    subject = chosen.subject("size")
    width, height = parse_size(chosen.value, subject)
    if not (low <= width <= high and low <= height <= high):
        raise UserError(
            f"{subject} is not allowed; use a multiple of {multiple} from {low} to {high} "
            f"for base '{shape.base_id}'."
        )
    if width % multiple or height % multiple:
        fitted = format_size((nearest(width, multiple, 0), nearest(height, multiple, 0)))
        raise UserError(
            f"{subject} does not fit base '{shape.base_id}', which takes multiples of {multiple}; "
            f"use --size {fitted}, the nearest that fits."
        )
    return width, height


def _fit(
    shape: BaseShape, flags: Mapping[str, Any], frames: list[tuple[Any, str]], size: list[tuple[Any, str]]
) -> tuple[int, tuple[int, int]]:
    """Frames and (width, height) from the first of their candidates that is set (the base's last)."""
    base = f"base '{shape.base_id}'"
    frame_count = _Chosen(*_pick("frames", flags, [*frames, (shape.default_frames, base)]))
    frame_size = _Chosen(*_pick("size", flags, [*size, (shape.default_size, base)]))
    return fit_frames(frame_count, shape), fit_size(frame_size, shape)


# -- the plans --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnPlan:
    """Everything `learn` runs with, complete and checked."""

    preset: str
    config: LearnConfig  # what the preset and flags chose: base, prompt, crop, device, preview steps
    train: TrainSettings  # complete, frames and size fitted to the base
    preview: SampleSettings  # how the preview GIF is sampled
    animate_defaults: dict[str, Any]  # the preset's [animate] table, kept with the action
    retime_fps: float | None = None  # clips sampled at this fps (the base's); None: first to last

    @property
    def frames(self) -> int:
        return self.train.frames

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        return self.train.frame_size


def plan_learn(
    preset: str,
    config: LearnConfig,
    animate_table: dict[str, Any],
    shape: BaseShape,
    flags: Mapping[str, Any],
) -> LearnPlan:
    """The learn settings for this base: `config` (from `resolve_learn`) with frames and size fitted."""
    origin = f"preset '{preset}'"
    frames, (width, height) = _fit(shape, flags, [(config.frames, origin)], [(config.size, origin)])
    if config.gradient_checkpointing is None and "gradient_checkpointing" not in config.core:
        config = config.model_copy(update={"gradient_checkpointing": shape.checkpointing})
    train = config.train_settings(frames, width, height)
    prompts = {"prompt": config.prompt, "negative_prompt": config.negative_prompt}
    preview = SampleSettings(steps=config.preview_steps, seed=train.seed, **prompts)
    return LearnPlan(preset, config, train, preview, animate_table, shape.retime_fps)


@dataclass(frozen=True)
class AnimatePlan:
    """Everything `animate` runs with, complete and checked."""

    preset: str  # the preset's name, or 'as learned' (the action's stored table)
    config: AnimateConfig  # as chosen, with frames, size, fps, steps and seed filled in
    sample: SampleSettings
    frames: int
    size: tuple[int, int]  # (width, height)
    fps: float


def plan_animate(
    preset: str,
    config: AnimateConfig,
    shape: BaseShape,
    learned: ActionManifest | None,
    prompt: str | None,
    flags: Mapping[str, Any],
) -> AnimatePlan:
    """The animate settings for this base: `config` (from `resolve_animate`), then what the first
    action was learned with (`learned`), then the base's defaults."""
    table = f"preset '{preset}'" if learned is None or preset != "as learned" else f"action '{learned.name}'"
    action = f"action '{learned.name}'" if learned is not None else table
    as_learned = (None, None, None) if learned is None else (learned.frames, learned.frame_size, learned.fps)
    frames, size = _fit(
        shape,
        flags,
        [(config.frames, table), (as_learned[0], action)],
        [(config.size, table), (as_learned[1], action)],
    )
    fps = float(
        _pick("fps", flags, [(config.fps, table), (as_learned[2], action), (shape.default_fps, "")])[0]
    )
    sample = config.sample_settings(prompt)
    filled = config.model_copy(
        update={
            "frames": frames,
            "size": format_size(size),
            "fps": fps,
            "steps": sample.steps,
            "seed": sample.seed,
        }
    )
    return AnimatePlan(preset, filled, sample, frames, size, fps)
