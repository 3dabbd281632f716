"""Per-action LoRA adapters: attach to a base, read out, save, load, verify, mix.

An adapter file is safetensors whose header metadata names the base it was made for (id and
weight hash), the targets, rank and alpha. Attaching checks the base and that every key landed;
a mismatch is an error, never a silent no-op.

On a base without a text encoder that was pretrained with one learned text embedding per action
(`action_text.safetensors`), the adapter also learns the new action's own embedding and keeps it under
ACTION_TEXT_KEY: the tiny base's stand-in for the prompt a text base reads.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from flashcli.core.specs.wan import WanSpec

ADAPTER_FORMAT_VERSION = "1"
REQUIRED_METADATA = ("format_version", "base_id", "base_weight_hash", "targets", "rank", "alpha")
MAX_STRENGTH = 2.0
ACTION_TEXT_KEY = "flash.action_text"  # (tokens, text_dim): the action's learned text embedding


class AdapterMismatchError(ValueError):
    """An adapter does not fit the base it is being attached to."""


def adapter_metadata(
    spec: WanSpec,
    *,
    targets: list[str],
    rank: int,
    alpha: float,
    extra: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """The safetensors header for an adapter made on `spec`; `extra` values are JSON-encoded if not str."""
    metadata = {
        "format_version": ADAPTER_FORMAT_VERSION,
        "base_id": spec.base_id,
        "base_weight_hash": spec.weight_hash,
        "targets": json.dumps(list(targets)),
        "rank": str(int(rank)),
        "alpha": repr(float(alpha)),
    }
    for key, value in (extra or {}).items():
        if key in metadata:
            raise ValueError(f"extra adapter metadata may not override {key!r}")
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    return metadata


def _check_metadata(metadata: Mapping[str, str], source: str) -> None:
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise AdapterMismatchError(f"{source} is not a flash adapter: its header lacks {', '.join(missing)}")
    if metadata["format_version"] != ADAPTER_FORMAT_VERSION:
        raise AdapterMismatchError(
            f"{source} has adapter format {metadata['format_version']}, "
            f"but this flash reads format {ADAPTER_FORMAT_VERSION}"
        )


def save_adapter(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write adapter tensors and header atomically (temp file in the same folder, then rename)."""
    from flashcli.core.tensor_files import save_safetensors_atomic

    _check_metadata(metadata, "the adapter to save")
    if not tensors:
        raise ValueError("refusing to save an adapter without tensors")
    return save_safetensors_atomic(path, tensors, metadata)


def load_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read an adapter file: (tensors, metadata). Unreadable or foreign files raise with the file's name."""
    from safetensors import safe_open

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"adapter file {source} does not exist")
    try:
        with safe_open(str(source), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises several types for corrupt files
        raise AdapterMismatchError(f"{source} is not a readable safetensors adapter ({error})") from error
    _check_metadata(metadata, str(source))
    _check_weights(tensors, metadata, str(source))
    return tensors, metadata


def _check_weights(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], source: str) -> None:
    """Weights that agree with the header's rank and are finite: a wrong-rank or NaN adapter is refused
    when it is read, in one sentence, not when it is attached (a page of shapes) or sampled (black frames)."""
    try:
        rank = int(metadata["rank"])
    except ValueError:
        raise AdapterMismatchError(
            f"Adapter file '{source}' has rank {metadata['rank']!r} in its header, not a number; "
            "learn the action again"
        ) from None
    for key, value in tensors.items():
        # peft's LoRA pairs: A is (rank, in), B is (out, rank).
        axis = 0 if ".lora_A." in key else 1 if ".lora_B." in key else None
        if axis is not None and (value.dim() != 2 or value.shape[axis] != rank):
            raise AdapterMismatchError(
                f"Adapter file '{source}' does not match its own header: weight '{key}' has shape "
                f"{tuple(value.shape)} but the header says rank {rank}; learn the action again"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise AdapterMismatchError(
                f"Adapter file '{source}' holds non-finite (NaN or inf) weights in '{key}'; "
                "learn the action again"
            )


def lora_config(spec: WanSpec, targets: list[str], rank: int, alpha: float):
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=spec.lora_target_modules(targets),
        init_lora_weights=True,
    )


def attach_new_lora(
    spec: WanSpec, *, name: str, targets: list[str], rank: int, alpha: float
) -> list[torch.nn.Parameter]:
    """Add a fresh trainable LoRA to the base; returns its parameters (fp32 master weights)."""
    spec.transformer.add_adapter(lora_config(spec, targets, rank, alpha), adapter_name=name)
    parameters = lora_parameters(spec, name)
    for parameter in parameters:
        parameter.data = parameter.data.float()
        parameter.requires_grad_(True)
    return parameters


def lora_parameters(spec: WanSpec, name: str) -> list[torch.nn.Parameter]:
    marker = f".{name}."
    return [p for key, p in spec.transformer.named_parameters() if "lora_" in key and marker in key]


def adapter_tensors(spec: WanSpec, name: str) -> dict[str, torch.Tensor]:
    """The adapter's weights as a plain dict (CPU, fp32), keys without the adapter name."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(spec.transformer, adapter_name=name)
    return {key: value.detach().to("cpu", torch.float32).clone() for key, value in state.items()}


def check_adapter_matches(spec: WanSpec, metadata: Mapping[str, str], source: str = "the adapter") -> None:
    _check_metadata(metadata, source)
    if metadata["base_weight_hash"] != spec.weight_hash:
        if metadata["base_id"] == spec.base_id:
            # Same name, new weights: an upgraded base (the embedded tiny is retrained between releases).
            raise AdapterMismatchError(
                f"{source} was learned on an earlier version of base {spec.base_id!r} (weights "
                f"{metadata['base_weight_hash']}, now {spec.weight_hash}); learn the action again with "
                f"`flash learn --force` to use it with this one"
            )
        raise AdapterMismatchError(
            f"{source} was learned on base {metadata['base_id']!r} (weights {metadata['base_weight_hash']}) "
            f"but the loaded base is {spec.base_id!r} (weights {spec.weight_hash}); "
            f"learn the action again on this base or load base {metadata['base_id']!r}"
        )


def attach_adapter(
    spec: WanSpec,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    *,
    name: str,
    source: str = "the adapter",
) -> None:
    """Attach a saved adapter to the base under `name`, verifying that it fits and every key landed."""
    from peft import set_peft_model_state_dict

    check_adapter_matches(spec, metadata, source)
    targets = json.loads(metadata["targets"])
    config = lora_config(spec, targets, int(metadata["rank"]), float(metadata["alpha"]))
    transformer = spec.transformer
    with warnings.catch_warnings():
        # peft warns whenever a second adapter joins a model; several adapters is what we want here.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        transformer.add_adapter(config, adapter_name=name)
    text = tensors.get(ACTION_TEXT_KEY)
    if text is not None and (spec.null_text is None or tuple(text.shape) != tuple(spec.null_text.shape)):
        raise AdapterMismatchError(
            f"{source} carries a learned action text of shape {tuple(text.shape)} that base "
            f"{spec.base_id!r} cannot read"
        )
    try:
        weights = {
            key: value.to(spec.device, torch.float32)
            for key, value in tensors.items()
            if key != ACTION_TEXT_KEY
        }
        result = set_peft_model_state_dict(transformer, weights, adapter_name=name)
    except RuntimeError as error:  # shape mismatch, e.g. weights made for a wider base
        transformer.delete_adapters(name)
        detail = _shapes(error)
        raise AdapterMismatchError(f"{source} does not fit base {spec.base_id!r}: {detail}") from error
    unexpected = [key for key in result.unexpected_keys if "lora_" in key]
    expected = {key for key, _ in transformer.named_parameters() if "lora_" in key and f".{name}." in key}
    missing = sorted(key for key in result.missing_keys if key in expected)
    if unexpected or missing:
        transformer.delete_adapters(name)
        detail = (
            f"{len(unexpected)} keys found no layer"
            if unexpected
            else f"{len(missing)} layers got no weights"
        )
        raise AdapterMismatchError(f"{source} does not fit base {spec.base_id!r}: {detail}")


def _shapes(error: RuntimeError) -> str:
    """torch's page of 'size mismatch for KEY: ...' lines, as one clause: how many, and the first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip().startswith("size mismatch")]
    if not lines:
        return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    first = lines[0].removeprefix("size mismatch for ").rstrip(".")
    return f"{len(lines)} weights have the wrong shape (first: {first})"


def mixed_action_text(
    spec: WanSpec, adapters: list[tuple[Mapping[str, torch.Tensor], Mapping[str, str], float]]
) -> torch.Tensor | None:
    """(1, L, D): the null text moved toward each adapter's learned action text by its strength
    (null + sum of strength * (text - null)); None when no adapter carries one, or on a text base
    (which reads prompts instead)."""
    texts = [
        (tensors[ACTION_TEXT_KEY], strength)
        for tensors, _, strength in adapters
        if ACTION_TEXT_KEY in tensors
    ]
    if not texts or spec.has_text or spec.null_text is None:
        return None
    null = spec.null_text.float()
    mixed = null + sum(strength * (text.to(null.device, torch.float32) - null) for text, strength in texts)
    return mixed.to(spec.dtype).unsqueeze(0)


def conditioning_text(
    spec: WanSpec,
    adapters: list[tuple[Mapping[str, torch.Tensor], Mapping[str, str], float]],
    prompt: str | None = None,
) -> torch.Tensor:
    """(1, L, D): what the denoiser is conditioned on with these adapters: their learned action texts
    when they carry any, else the prompt's embedding (a text base) or the null text."""
    learned = mixed_action_text(spec, adapters)
    return learned if learned is not None else spec.encode_text(prompt)


@contextmanager
def adapters_attached(
    spec: WanSpec,
    adapters: list[tuple[Mapping[str, torch.Tensor], Mapping[str, str], float]],
) -> Iterator[list[str]]:
    """Attach several adapters with strengths (LoRA scale, 0..2) for the duration of the block."""
    for index, (_, _, strength) in enumerate(adapters):
        if not 0.0 <= strength <= MAX_STRENGTH:
            raise ValueError(
                f"adapter strength must be between 0 and {MAX_STRENGTH}, got {strength} (adapter {index})"
            )
    names: list[str] = []
    try:
        for index, (tensors, metadata, _) in enumerate(adapters):
            name = f"flash_sample_{index}"
            label = metadata.get("action", f"adapter {index + 1}") if isinstance(metadata, Mapping) else ""
            attach_adapter(spec, tensors, metadata, name=name, source=f"adapter {label!r}")
            names.append(name)
        if names:
            spec.transformer.set_adapters(names, weights=[float(s) for _, _, s in adapters])
        yield names
    finally:
        if names:
            spec.transformer.delete_adapters(names)
