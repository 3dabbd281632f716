"""Loading and saving base models. One spec class per architecture; today only Wan.

A flash base folder holds `flash_base.json`, `transformer/` and `vae/` (diffusers save_pretrained),
`null_text.safetensors` (when the base has no text encoder), optionally `action_text.safetensors` (one
learned text embedding per pretraining action, for a base pretrained class-conditionally) and `ded/`.
A diffusers Wan folder (model_index.json with transformer, vae, text_encoder, tokenizer) loads through
the same spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flashcli.core.pipelines import pipeline_kind
from flashcli.core.specs.wan import (
    BASE_META_DEFAULTS,
    MemoryRung,
    WanSpec,
    hash_weight_files,
    read_base_meta,
)
from flashcli.files import atomic_folder

__all__ = ["WanSpec", "load_base", "save_base", "tiny_base_folder", "BASE_META_DEFAULTS"]


def tiny_base_folder() -> Path:
    """Where the embedded `tiny` base lives inside the package."""
    return Path(__file__).resolve().parents[2] / "weights" / "tiny"


def load_base(
    base: str | Path = "tiny",
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    memory: MemoryRung | None = None,
) -> WanSpec:
    """Load a base by name ("tiny") or folder and return its spec, ready on `device`; a diffusers folder with
    the preflight's `memory` rung applied as its parts go to the device."""
    from flashcli.core.devices import default_dtype, resolve_device

    torch_device = resolve_device(device)
    torch_dtype = dtype or default_dtype(torch_device)
    if str(base) == "tiny":
        folder = tiny_base_folder()
        if not (folder / "flash_base.json").is_file():
            raise FileNotFoundError(
                f"the embedded tiny base is missing from {folder}; reinstall flashcli or pass --base FOLDER"
            )
    else:
        folder = _resolve_folder(str(base))
    if (folder / "flash_base.json").is_file():
        return _load_flash_folder(folder, torch_device, torch_dtype)
    if (folder / "model_index.json").is_file():
        return _load_diffusers_folder(folder, torch_device, torch_dtype, memory)
    raise FileNotFoundError(
        f"{folder} holds neither flash_base.json nor model_index.json, so it is not a base"
    )


def _resolve_folder(base: str) -> Path:
    """A folder path, or a hub id already in the local Hugging Face cache (nothing is downloaded)."""
    folder = Path(base).expanduser()
    if folder.is_dir():
        return folder
    looks_like_hub_id = base.count("/") == 1 and not base.startswith((".", "/", "~"))
    if looks_like_hub_id:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(base, local_files_only=True))
        except Exception:  # not in the cache: fall through to the message below
            pass
    raise FileNotFoundError(
        f"base {base!r} is neither 'tiny', a folder, nor a hub id in the local Hugging Face cache; "
        f"download it first (e.g. `huggingface-cli download {base if looks_like_hub_id else 'REPO'} "
        "--local-dir DIR`) and pass the folder"
    )


def _load_flash_folder(folder: Path, device: torch.device, dtype: torch.dtype) -> WanSpec:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from safetensors.torch import load_file

    meta = read_base_meta(folder)
    for part in ("transformer", "vae"):
        if not (folder / part / "config.json").is_file():
            raise FileNotFoundError(f"base folder {folder} has no {part}/config.json")
    transformer = WanTransformer3DModel.from_pretrained(folder / "transformer", torch_dtype=dtype)
    vae = AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    text_encoder = tokenizer = null_text = None
    action_text: dict[str, torch.Tensor] = {}
    if meta["text_mode"] == "null":
        null_path = folder / "null_text.safetensors"
        if not null_path.is_file():
            raise FileNotFoundError(f"base folder {folder} has text_mode 'null' but no null_text.safetensors")
        null_text = load_file(null_path)["null_text"]
        action_path = folder / "action_text.safetensors"
        if action_path.is_file():
            action_text = load_file(action_path)
    elif meta["text_mode"] == "umt5":
        text_encoder, tokenizer = _load_umt5(folder, dtype)
    else:
        raise ValueError(
            f"{folder}/flash_base.json: text_mode must be 'null' or 'umt5', not {meta['text_mode']!r}"
        )
    return _assemble_spec(
        folder,
        str(meta["base_id"]),
        meta,
        transformer,
        vae,
        device,
        dtype,
        null_text=null_text,
        action_text=action_text,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )


def _load_diffusers_folder(
    folder: Path, device: torch.device, dtype: torch.dtype, memory: MemoryRung | None = None
) -> WanSpec:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    for part in ("transformer", "vae", "text_encoder", "tokenizer"):
        if not (folder / part).is_dir():
            raise FileNotFoundError(f"diffusers folder {folder} has no {part}/ subfolder")
    kind = pipeline_kind(folder)  # a folder flash cannot drive is refused before any weight loads
    transformer = WanTransformer3DModel.from_pretrained(folder / "transformer", torch_dtype=dtype)
    vae = AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    text_encoder, tokenizer = _load_umt5(folder, dtype)
    base_id = folder.name
    if folder.parent.name == "snapshots":  # a Hugging Face cache entry: name it by its hub id
        base_id = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    meta: dict[str, Any] = {
        "base_id": base_id,
        "text_mode": "umt5",
        "frames": kind.frames,
        "size": list(kind.size),  # (width, height)
        "fps": kind.fps,
        "pipeline": kind.defaults(),
    }
    scheduler_config = folder / "scheduler" / "scheduler_config.json"
    if scheduler_config.is_file():
        shift = json.loads(scheduler_config.read_text()).get("flow_shift")
        if shift:
            meta["flow_shift"] = float(shift)
    return _assemble_spec(
        folder,
        base_id,
        meta,
        transformer,
        vae,
        device,
        dtype,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        memory=memory,
    )


def _assemble_spec(
    folder: Path,
    base_id: str,
    meta: dict[str, Any],
    transformer: torch.nn.Module,
    vae: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    *,
    null_text: torch.Tensor | None = None,
    action_text: Mapping[str, torch.Tensor] | None = None,
    text_encoder: Any = None,
    tokenizer: Any = None,
    memory: MemoryRung | None = None,
) -> WanSpec:
    """A spec for loaded parts: named by its transformer's weight hash, with the DED if one ships."""
    spec = WanSpec(
        base_id=base_id,
        transformer=transformer,
        vae=vae,
        meta=meta,
        null_text=null_text,
        action_text=action_text,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        weight_hash=hash_weight_files(folder / "transformer"),
        folder=folder,
        device=device,
        dtype=dtype,
        memory=memory,
    )
    spec.ded = _load_ded(folder, spec)
    return spec


def _load_umt5(folder: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, UMT5EncoderModel

    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        raise FileNotFoundError(
            f"base folder {folder} uses a text encoder but lacks text_encoder/ or tokenizer/"
        )
    # Same dtype as the denoiser: UMT5-XXL is ~11 GB in bf16, twice that in fp32.
    text_encoder = UMT5EncoderModel.from_pretrained(
        folder / "text_encoder", local_files_only=True, torch_dtype=dtype
    )
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    return text_encoder, tokenizer


def _load_ded(folder: Path, spec: WanSpec) -> Any | None:
    """The Detail Enhancement Decoder, when the base ships one and the module is installed."""
    if not (folder / "ded").is_dir():
        return None
    try:
        from flashcli.core.ded import DetailEnhancedDecoder
    except ImportError:
        return None
    ded = DetailEnhancedDecoder.from_folder(folder / "ded", spec.vae, device=spec.device)
    ded.eval()
    return ded


def save_base(
    folder: str | Path,
    transformer: torch.nn.Module,
    vae: torch.nn.Module,
    null_text_embedding: torch.Tensor | None,
    meta: Mapping[str, Any],
    *,
    text_encoder: torch.nn.Module | None = None,
    tokenizer: Any | None = None,
    ded: Any | None = None,
    action_text: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write a flash base folder atomically (a temp folder renamed into place; an old one is replaced).

    `meta` needs at least base_id; frames, size, fps, flow_shift, text_mode default as in
    BASE_META_DEFAULTS. A base without a text encoder needs `null_text_embedding` (tokens, text_dim).
    `ded`, when given, is a `flashcli.core.ded.DetailEnhancedDecoder` (saved into `ded/`).
    `action_text` maps pretraining action names to learned embeddings shaped like the null text.
    """
    from safetensors.torch import save_file

    target = Path(folder)
    if "base_id" not in meta:
        raise ValueError("save_base needs meta['base_id']")
    text_mode = "umt5" if text_encoder is not None else "null"
    full_meta = {**BASE_META_DEFAULTS, **dict(meta), "text_mode": text_mode}
    if text_mode == "null":
        if null_text_embedding is None:
            raise ValueError(
                "a base without a text encoder needs a null_text_embedding of shape (tokens, text_dim)"
            )
        text_dim = transformer.config.text_dim
        if null_text_embedding.ndim != 2 or null_text_embedding.shape[1] != text_dim:
            raise ValueError(
                f"null_text_embedding must be (tokens, {text_dim}), got {tuple(null_text_embedding.shape)}"
            )
        for name, embedding in (action_text or {}).items():
            if embedding.shape != null_text_embedding.shape:
                raise ValueError(
                    f"action_text[{name!r}] must be shaped like the null text "
                    f"{tuple(null_text_embedding.shape)}, got {tuple(embedding.shape)}"
                )
    elif tokenizer is None:
        raise ValueError("a base with a text encoder needs its tokenizer too")
    elif action_text:
        raise ValueError("action_text is for bases without a text encoder; a text base reads prompts")

    # Filled beside the target and swapped in whole: a failed or killed save keeps the old base.
    with atomic_folder(target) as staging:
        transformer.save_pretrained(staging / "transformer")
        vae.save_pretrained(staging / "vae")
        if text_mode == "null":
            embedding = null_text_embedding.detach().to("cpu").contiguous()
            save_file({"null_text": embedding}, str(staging / "null_text.safetensors"))
            if action_text:
                actions = {name: value.detach().to("cpu").contiguous() for name, value in action_text.items()}
                save_file(actions, str(staging / "action_text.safetensors"))
        else:
            text_encoder.save_pretrained(staging / "text_encoder")
            tokenizer.save_pretrained(staging / "tokenizer")
        if ded is not None:
            ded.save(staging / "ded")
        (staging / "flash_base.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True) + "\n")
    return target
