"""`flash animate` end to end: resolve the actions (with their integrity checks), plan the settings and
outputs, load the base and the adapters, choose the decoder, sample each photo and write it with its
sidecar. Every photo, action and output path is checked before the base loads."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashcli.errors import UserError
from flashcli.workflows.outputs import plan_outputs, requested_format, write_output
from flashcli.workflows.plan import (
    AnimatePlan,
    BaseShape,
    animate_memory,
    animate_time,
    base_shape,
    memory_advice,
    open_base,
    plan_animate,
)
from flashcli.workflows.report import QUIET, Reporter

if TYPE_CHECKING:
    import numpy as np

    from flashcli.config import AnimateConfig
    from flashcli.core.ded import DetailEnhancedDecoder
    from flashcli.core.specs.wan import WanSpec
    from flashcli.library import ActionManifest, Library

# One adapter as `animate_photo` takes it: tensors, header (plus the action's label), strength.
Adapter = tuple[dict[str, Any], dict[str, str], float]


@dataclass(frozen=True)
class AnimateRequest:
    """What the user asked `flash animate` for."""

    photos: list[Path]
    actions: list[str]  # NAME, NAME:STRENGTH or FILE.safetensors[:STRENGTH]
    output: Path | None = None
    out_dir: Path | None = None
    output_format: str | None = None
    base: str | None = None
    preset: str | None = None
    # Settings given as flags, by AnimateConfig's names (None: not given); `use_ded` for --ded/--no-ded.
    flags: Mapping[str, Any] = field(default_factory=dict)
    library: Path | None = None


@dataclass(frozen=True)
class ActionRef:
    """One `--action NAME[:STRENGTH]` (or a loose adapter file) resolved to its files."""

    label: str
    strength: float
    adapter_path: Path
    manifest: ActionManifest | None  # None: a loose adapter file


def animate(request: AnimateRequest, reporter: Reporter = QUIET) -> list[dict[str, Any]]:
    """Animate every photo with the actions; returns each output's sidecar record."""
    from flashcli.config import resolve_animate
    from flashcli.library import Library
    from flashcli.video import read_image

    lib = Library.open(request.library)
    refs = [parse_action(text, lib) for text in request.actions]
    images = [read_image(photo) for photo in request.photos]  # every photo checked before any work
    manifests = [ref.manifest for ref in refs if ref.manifest is not None]
    first = manifests[0] if manifests else None
    flags = _flags(request)
    preset, config = resolve_animate(request.preset, flags, first.animate_defaults if first else None)
    config, decoder_source = decoder_default(config, request.flags.get("use_ded"), first)
    outputs = plan_outputs(
        request.photos, [ref.label for ref in refs], request.output, request.out_dir, config.format
    )
    source = request.base or (first.base_source if first else "tiny")
    if len({m.base_hash for m in manifests}) > 1:
        names = ", ".join(f"'{name}'" for name in {m.base_hash: m.name for m in manifests}.values())
        raise UserError(f"Actions {names} were learned on different bases; animate them in separate calls.")
    check_strengths(refs)
    config, prompt = prompt_choice(config, manifests)
    shape = base_shape(source)
    unset = {key: getattr(config, key) is None and first is None for key in ("frames", "size", "fps")}
    plan = None
    if shape is not None and shape.supplies(**unset):
        plan = plan_animate(preset, config, shape, first, prompt, flags)  # a bad shape fails before loading
    memory = animate_memory(source, config.device, plan) if plan is not None else None
    if memory is not None:
        reporter.note(memory.note())  # before the weights load: a run that cannot fit is refused in seconds
    estimate = animate_time(source, config.device, plan, len(request.photos)) if plan is not None else None
    if estimate is not None:
        reporter.note(estimate.note())
    with memory_advice(memory, "animate"):
        spec = open_base(source, config.device, memory)
    plan = plan or plan_animate(preset, config, BaseShape.of(spec), first, prompt, flags)
    plan = negative_prompt_used(plan, spec)
    # Every prompt the photos need is encoded now; the text encoder's memory then goes to sampling.
    spec.release_text_encoder([plan.sample.prompt, plan.sample.negative_prompt])
    adapters = load_adapters(refs, spec)
    action_ded, decoder = choose_ded(refs, spec, use_ded=plan.sample.use_ded, reporter=reporter)
    decoder = {**decoder, "chosen_by": decoder_source}
    results = []
    for photo, image, out in zip(request.photos, images, outputs, strict=True):
        with memory_advice(memory, "animate"):
            video = animate_one(spec, image, adapters, plan, photo.name, action_ded, reporter)
        rung = None if memory is None else memory.as_dict()
        record = write_output(out, video, photo, refs, spec, source, plan, decoder, rung)
        results.append(record if estimate is None else {**record, "time": estimate.as_dict()})
    return results


def _flags(request: AnimateRequest) -> dict[str, Any]:
    """The flags as `resolve_animate` merges them: -o's suffix is a --format, --ded/--no-ded a core knob."""
    flags = {key: value for key, value in request.flags.items() if key != "use_ded"}
    flags["format"] = requested_format(request.output, request.output_format)
    if request.flags.get("use_ded") is not None:  # the flag overrides the table's use_ded
        flags["core"] = {"use_ded": request.flags["use_ded"]}
    return flags


def prompt_choice(config: AnimateConfig, learned: list[ActionManifest]) -> tuple[AnimateConfig, str | None]:
    """The prompt, and the config with its negative prompt: each as the actions recorded them (the first
    that did), so that animate samples as the preview did; --negative-prompt or the [animate] table's wins.
    No action recorded a negative prompt (older manifests): the base's, in the sampler."""
    prompt = next((m.prompt for m in learned if m.prompt), None)
    negative = next((m.negative_prompt for m in learned if m.negative_prompt is not None), None)
    chosen = config.negative_prompt is not None or "negative_prompt" in config.core
    if negative is None or chosen:
        return config, prompt
    return config.model_copy(update={"negative_prompt": negative}), prompt


def negative_prompt_used(plan: AnimatePlan, spec: WanSpec) -> AnimatePlan:
    """The plan with the negative prompt the sampler will use on this base spelled out (None: it does
    not guide), so the sidecar records it."""
    from flashcli.core.sampler import negative_prompt

    sample = plan.sample.model_copy(update={"negative_prompt": negative_prompt(spec, plan.sample)})
    return replace(plan, sample=sample)


def decoder_default(
    config: AnimateConfig, flag: bool | None, learned: ActionManifest | None
) -> tuple[AnimateConfig, str]:
    """Whether the DED decodes: --ded/--no-ded, else the [animate] table's use_ded, else how the first
    action was learned (detail_enhance = false: the plain decoder), else the DED. Returns the config
    with that choice and who made it, for the sidecar."""
    if flag is not None:
        return config, "--ded" if flag else "--no-ded"
    if "use_ded" in config.core:
        return config, "animate settings"
    if learned is not None and learned.decoder == "plain":
        plain = config.model_copy(update={"core": {**config.core, "use_ded": False}})
        return plain, f"action '{learned.name}' (learned without detail enhancement)"
    return config, "default"


def parse_action(text: str, lib: Library) -> ActionRef:
    """NAME, NAME:STRENGTH or FILE.safetensors[:STRENGTH]; the strength's range is checked by
    `check_strengths`, once every action is known to exist."""
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
        return ActionRef(path.stem, strength, path, None)
    manifest = lib.verified(name)  # its files' hashes, sizes and finite weights, before any work
    return ActionRef(name, strength, lib.action_dir(name) / ADAPTER_FILE, manifest)


def check_strengths(refs: list[ActionRef]) -> None:
    from flashcli.core.adapter import MAX_STRENGTH

    for ref in refs:
        if not 0.0 <= ref.strength <= MAX_STRENGTH:
            raise UserError(
                f"--action '{ref.label}' has strength {ref.strength:g}; "
                f"use a number from 0 to {MAX_STRENGTH:g} (1 = as learned)."
            )


def load_adapters(refs: list[ActionRef], spec: WanSpec) -> list[Adapter]:
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


def choose_ded(
    refs: list[ActionRef], spec: WanSpec, *, use_ded: bool, reporter: Reporter = QUIET
) -> tuple[DetailEnhancedDecoder | None, dict[str, Any]]:
    """Which Detail Enhancement Decoder decodes: the action's fine-tuned one when a single action with
    one is animated, else the base's (None: the spec's own). Returns it and the sidecar's record of it.

    Combined actions share one decoder, and a DED tuned on one action's clips has no claim over the
    others', so they get the base's DED (with a note)."""
    from flashcli.core.ded_finetune import DedMismatchError, load_finetuned_ded
    from flashcli.video import file_hash

    base_record = {"ded": "base" if use_ded and spec.ded is not None else "none"}
    tuned = [ref for ref in refs if ref.manifest is not None and ref.manifest.ded is not None]
    if not use_ded or not tuned:
        return None, base_record
    if len(refs) > 1:
        names = ", ".join(f"'{ref.label}'" for ref in tuned)
        reporter.note(
            f"note: actions are combined, so the base's Detail Enhancement Decoder decodes the video, "
            f"not the fine-tuned one of {names}."
        )
        return None, base_record
    ref = tuned[0]
    assert ref.manifest is not None and ref.manifest.ded is not None
    path = ref.adapter_path.with_name(ref.manifest.ded.file)
    digest = file_hash(path)
    if digest != ref.manifest.ded.sha256:  # changed since `parse_action` verified the action
        raise UserError(
            f"Action '{ref.label}' is broken: its DED weights '{path}' do not match its manifest; "
            f"re-learn it or delete it with `flash remove {ref.label}`."
        )
    try:
        ded = load_finetuned_ded(path, spec)
    except DedMismatchError as error:
        raise UserError(f"Cannot use the fine-tuned DED of action '{ref.label}': {error}.") from None
    return ded, {"ded": f"action '{ref.label}'", "file": str(path), "sha256": digest}


def animate_one(
    spec: WanSpec,
    image: np.ndarray,
    adapters: list[Adapter],
    plan: AnimatePlan,
    name: str,
    ded: DetailEnhancedDecoder | None = None,
    reporter: Reporter = QUIET,
) -> np.ndarray:
    """One photo, fitted to the plan's size, animated: uint8 (frames, size, size, 3), frame 0 = photo."""
    from flashcli.core import sampler
    from flashcli.core.adapter import AdapterMismatchError
    from flashcli.video import fit_image

    still = fit_image(image, plan.size, plan.config.crop)
    with reporter.steps(f"animate {name}", plan.sample.steps) as progress:
        try:
            return sampler.animate_photo(
                spec, still, adapters, plan.sample, frames=plan.frames, progress=progress.sample_step, ded=ded
            )
        except AdapterMismatchError as error:
            raise UserError(str(error)) from None
