"""Which diffusers pipeline a base folder holds, read from its files without torch: whether flash can
drive it, and the frames, fps and size its makers run it at (the defaults a run falls back to).

flash animates from a photo by first-frame conditioning as diffusers' TI2V `WanPipeline` does it
(`expand_timesteps: true` in model_index.json: latent frame 0 is the photo's, at timestep 0). A Wan
folder without it is a text-to-video pipeline and could not start from the photo; an image-to-video
Wan 2.1 folder conditions through a CLIP image encoder, which flash does not run; both are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PipelineKind:
    """A kind of diffusers folder flash drives, with the shape its makers sample it at."""

    name: str
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    source: str  # where the defaults come from

    def defaults(self) -> dict[str, Any]:
        """The defaults as a manifest records them."""
        width, height = self.size
        return {"kind": self.name, "frames": self.frames, "fps": self.fps, "size": f"{width}x{height}"}


# Wan2.2 repository: wan/configs/wan_ti2v_5B.py (frame_num 121, sample_fps 24) and generate.py's
# SUPPORTED_SIZES['ti2v-5B'] ('1280*704', '704*1280'; the landscape one is its example); diffusers'
# Wan 2.2 TI2V-5B example samples the same 121 frames at 1280x704 and exports at 24 fps.
WAN22_TI2V_5B = PipelineKind(
    "Wan 2.2 TI2V-5B",
    frames=121,
    fps=24.0,
    size=(1280, 704),
    source="Wan2.2 wan/configs/wan_ti2v_5B.py and generate.py SUPPORTED_SIZES['ti2v-5B']",
)
# A first-frame-conditioned Wan folder without Wan 2.2's 48-channel VAE (small test bases): Wan 2.1's
# sampling shape (81 frames at 16 fps), square at 480 as flash ran such folders before.
WAN_TI2V = PipelineKind(
    "Wan TI2V",
    frames=81,
    fps=16.0,
    size=(480, 480),
    source="Wan2.1 wan/configs (frame_num 81, sample_fps 16)",
)
WAN22_LATENT_CHANNELS = 48


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def pipeline_kind(folder: Path) -> PipelineKind:
    """The kind of the diffusers folder `folder` (its model_index.json); ValueError with one sentence,
    naming the file and what to use instead, for a folder flash cannot drive."""
    index_path = folder / "model_index.json"
    index = _read_json(index_path)
    class_name = index.get("_class_name")
    if index.get("transformer_2") and index["transformer_2"][0] is not None:
        raise ValueError(
            f"{folder} is a two-expert Wan 2.2 A14B checkpoint; flash supports single-transformer TI2V bases "
            "such as Wan-AI/Wan2.2-TI2V-5B-Diffusers"
        )
    if class_name != "WanPipeline":
        raise ValueError(
            f"{index_path} names pipeline {class_name!r}, which flash cannot drive; flash animates from a "
            "photo by first-frame conditioning, as a TI2V WanPipeline folder such as "
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers does"
        )
    if index.get("expand_timesteps") is not True:
        raise ValueError(
            f"{index_path} has no 'expand_timesteps: true', so it is a text-to-video pipeline without "
            "first-frame conditioning and cannot start from a photo; use a TI2V folder such as "
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
        )
    vae = _read_json(folder / "vae" / "config.json")
    return WAN22_TI2V_5B if vae.get("z_dim") == WAN22_LATENT_CHANNELS else WAN_TI2V
