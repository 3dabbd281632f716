"""A VAE stage checkpoint made from an exported base folder's VAE (the shipped `tiny` included).

The GPU recipe (`scripts/device/`) trains a denoiser on the latents of a VAE it receives as a stage
checkpoint. Pretraining runs live under the git-ignored `runs/`, so a fresh checkout holds no such
checkpoint; it does hold the shipped base, whose VAE this turns into one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKLWan

from .vae_stage import build_vae


def vae_checkpoint_from_base(folder: Path) -> dict[str, Any]:
    """The stage-checkpoint record of `folder`'s VAE: its weights, its pretraining step and check, and
    the layout setting the pretraining script reads back. Raises when the folder holds no base VAE."""
    meta_path, vae_folder = folder / "flash_base.json", folder / "vae"
    if not meta_path.is_file() or not (vae_folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a base folder with a VAE (flash_base.json and vae/)")
    pretraining = json.loads(meta_path.read_text()).get("pretraining", {})
    if "vae_step" not in pretraining:
        raise ValueError(
            f"{meta_path} does not record the VAE's pretraining step (pretraining.vae_step); "
            "only bases made by scripts/pretrain_tiny.py can be staged"
        )
    vae = AutoencoderKLWan.from_pretrained(vae_folder)
    factor = int(vae.config.scale_factor_temporal)  # as WanSpec.temporal_factor reads it
    # Loading into the script's own build proves the weights fit the layout it will rebuild.
    build_vae(factor).load_state_dict(vae.state_dict())
    return {
        "model": vae.state_dict(),
        "step": int(pretraining["vae_step"]),
        "elapsed": 0.0,
        "eval": dict(pretraining.get("vae_eval", {})),
        "settings": {"vae": {"temporal_factor": factor}},
    }
