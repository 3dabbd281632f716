"""`flash export NAME --format diffusers`: an action's LoRA as one safetensors file that diffusers' own
loader reads (`WanPipeline.load_lora_weights(path)`).

The layout is the one diffusers itself saves for Wan (`save_lora_weights`): peft keys under the
pipeline component's name (`transformer.blocks.0.attn1.to_q.lora_A.weight`) and the LoRA config in the
header's `lora_adapter_metadata`, its keys under the same prefix. diffusers' Wan loader passes no
network alphas, so without that config it would take alpha = rank; with it, diffusers scales the LoRA by
alpha / rank exactly as flash does at strength 1.

Only the LoRA travels: an action's own Detail Enhancement Decoder, or a learned action text, has no place
in a diffusers pipeline and is named in the notes. An action learned on one of flash's own bases (the
embedded `tiny`, or a flash base folder) is refused: no diffusers pipeline exists to load it into.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashcli.errors import UserError

if TYPE_CHECKING:
    import torch

    from flashcli.library import ActionManifest

DIFFUSERS_SUFFIX = ".safetensors"
COMPONENT = "transformer"  # the pipeline component the LoRA belongs to (WanLoraLoaderMixin's name)
METADATA_KEY = "lora_adapter_metadata"  # where diffusers looks for the LoRA config in the header


def export_diffusers(name: str, destination: Path | None, library: Path | None = None) -> dict[str, Any]:
    """Write action `name`'s LoRA for diffusers (default: NAME.safetensors in the current folder)."""
    from flashcli.core.adapter import ACTION_TEXT_KEY
    from flashcli.core.tensor_files import save_safetensors_atomic
    from flashcli.library import ADAPTER_FILE, Library, environment_refusals

    lib = Library.open(library)
    manifest = lib.verified(name)
    check_diffusers_base(manifest)
    target = diffusers_destination(name, destination)
    tensors, adapter_header = _read_adapter(lib.action_dir(name) / ADAPTER_FILE, name)
    weights = {key: value for key, value in tensors.items() if key != ACTION_TEXT_KEY}
    rank, alpha = int(adapter_header["rank"]), float(adapter_header["alpha"])
    with environment_refusals(target):
        save_safetensors_atomic(
            target, diffusers_state_dict(weights), diffusers_header(weights, rank, alpha, manifest)
        )
    left_out = left_out_parts(manifest, has_action_text=ACTION_TEXT_KEY in tensors)
    return {
        "exported": name,
        "file": str(target),
        "format": "diffusers",
        "rank": rank,
        "alpha": alpha,
        "prompt": manifest.prompt,  # what the LoRA was learned with: the prompt to give the pipeline
        "left_out": left_out,
        "notes": [left_out_note(name, left_out)] if left_out else [],
    }


def left_out_parts(manifest: ActionManifest, *, has_action_text: bool) -> list[str]:
    """What the action has that a diffusers LoRA file cannot carry: "action_text", "ded"."""
    present = {"action_text": has_action_text, "ded": manifest.ded is not None}
    return [part for part, there in present.items() if there]


def is_diffusers_base(manifest: ActionManifest) -> bool:
    """True when the action was learned on a diffusers pipeline folder (learn records its pipeline kind;
    manifests from before that record it are judged by the folder, if it is still there)."""
    if manifest.base_defaults is not None:
        return True
    source = Path(manifest.base_source)
    return manifest.base_source != "tiny" and (source / "model_index.json").is_file()


def check_diffusers_base(manifest: ActionManifest) -> None:
    if is_diffusers_base(manifest):
        return
    base = "the embedded 'tiny' base" if manifest.base_source == "tiny" else f"base '{manifest.base}'"
    raise UserError(
        f"Action '{manifest.name}' was learned on {base}, one of flash's own bases that no diffusers "
        f"pipeline loads, so its LoRA cannot be exported for diffusers; use `flash export {manifest.name}` "
        "for a .flash file, or learn it on a diffusers Wan folder (--base FOLDER)."
    )


def diffusers_destination(name: str, destination: Path | None) -> Path:
    """NAME.safetensors here, in a folder given as destination, or the file given."""
    if destination is None:
        return Path(f"{name}{DIFFUSERS_SUFFIX}")
    if destination.is_dir():
        return destination / f"{name}{DIFFUSERS_SUFFIX}"
    if destination.suffix != DIFFUSERS_SUFFIX:
        raise UserError(
            f"--format diffusers writes a safetensors file, but '{destination}' does not end in "
            f"{DIFFUSERS_SUFFIX}; name it '{destination.with_suffix(DIFFUSERS_SUFFIX).name}'."
        )
    return destination


def _read_adapter(path: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from flashcli.core.adapter import AdapterMismatchError, load_adapter

    try:
        return load_adapter(path)
    except AdapterMismatchError as error:  # verified() checked size and hash; this is a foreign header
        raise UserError(
            f"Action '{name}' has an adapter '{path}' flash cannot read ({error}); re-learn it."
        ) from None


def diffusers_state_dict(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """flash's peft keys (`blocks.0.attn1.to_q.lora_A.weight`) under the pipeline component's name."""
    return {f"{COMPONENT}.{key}": value for key, value in weights.items()}


def lora_modules(weights: dict[str, torch.Tensor]) -> list[str]:
    """The transformer's module names that carry a LoRA pair (`blocks.0.attn1.to_q`)."""
    return sorted({key.split(".lora_")[0] for key in weights if ".lora_" in key})


def diffusers_header(
    weights: dict[str, torch.Tensor], rank: int, alpha: float, manifest: ActionManifest
) -> dict[str, str]:
    """The LoRA config diffusers builds its peft LoraConfig from, plus where the action came from."""
    config = {"r": rank, "lora_alpha": alpha, "target_modules": lora_modules(weights)}
    prefixed = {f"{COMPONENT}.{key}": value for key, value in config.items()}  # as diffusers saves it
    header = {
        METADATA_KEY: json.dumps(prefixed, sort_keys=True),
        "flash_action": manifest.name,
        "base_id": manifest.base,
        "base_weight_hash": manifest.base_hash,
    }
    if manifest.prompt is not None:
        header["prompt"] = manifest.prompt
    return header


def left_out_note(name: str, left_out: list[str]) -> str:
    """One sentence naming what the diffusers file does not carry."""
    parts = {
        "action_text": "its learned action text (diffusers reads a prompt instead)",
        "ded": "its own Detail Enhancement Decoder (diffusers decodes with the base's VAE)",
    }
    missing = " and ".join(parts[item] for item in left_out)
    return (
        f"The diffusers file holds the LoRA of action '{name}' only, not {missing}; "
        f"`flash export {name}` keeps everything."
    )
