"""Write the current weights as the shipped `tiny` base folder, through the core's save_base.

A Detail Enhancement Decoder already in the folder (trained by scripts/ on top of this VAE) is kept
when the VAE weights are unchanged, and dropped with a note when they changed (it would be stale).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from flashcli.core.specs import WanSpec, save_base


def _same_vae_weights(folder: Path, vae: torch.nn.Module) -> bool:
    files = sorted((folder / "vae").glob("*.safetensors"))
    if not files:
        return False
    shipped: dict[str, torch.Tensor] = {}
    for path in files:
        shipped.update(load_file(path))
    current = vae.state_dict()
    return shipped.keys() == current.keys() and all(
        torch.equal(shipped[k], current[k].cpu()) for k in current
    )


def existing_ded(folder: Path, spec: WanSpec) -> Any | None:
    if not (folder / "ded").is_dir():
        return None
    if not _same_vae_weights(folder, spec.vae):
        print(f"note: {folder / 'ded'} was trained on other VAE weights and is not carried over", flush=True)
        return None
    from flashcli.core.ded import DetailEnhancedDecoder

    return DetailEnhancedDecoder.from_folder(folder / "ded", spec.vae, device=spec.device)


def on_cpu(spec: WanSpec) -> WanSpec:
    """A CPU copy of a spec that trains on a GPU: the shipped base is fp32 on CPU, and the training
    models must stay where their optimizer state is."""
    if spec.device.type == "cpu":
        return spec
    return WanSpec(
        base_id=spec.base_id,
        transformer=copy.deepcopy(spec.transformer).to("cpu"),
        vae=copy.deepcopy(spec.vae).to("cpu"),
        meta=spec.meta,
        null_text=None if spec.null_text is None else spec.null_text.to("cpu"),
    )


def export_base(folder: Path, spec: WanSpec, text: torch.Tensor, meta: dict[str, Any]) -> Path:
    """`text` is the run's learned text: the null text (L, D), or a table whose rows after the first are
    the pretraining actions' embeddings (shipped as action_text.safetensors)."""
    from .dit_stage import action_text_of, as_text_table

    spec, text = on_cpu(spec), text.detach().to("cpu")
    ded = existing_ded(folder, spec)
    path = save_base(
        folder,
        spec.transformer,
        spec.vae,
        as_text_table(text)[0],
        meta,
        ded=ded,
        action_text=action_text_of(text),
    )
    print(f"exported base to {path} ({meta.get('pretraining', {})})", flush=True)
    return path
