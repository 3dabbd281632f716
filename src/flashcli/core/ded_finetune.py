"""Learn-time fine-tuning of the Detail Enhancement Decoder (DED) on one action's own clips.

The base's DED is trained once per base and knows nothing of the action. With
`TrainSettings.ded_finetune_steps > 0`, the learn workflow (`flashcli.workflows.learn.train_action`)
tunes a copy of it after the adapter: each clip's latents (`TrainResult.latents`, as the trainer
encoded them) are decoded with the clip's frame 0 as the reference photo,
and `ded_loss` compares frames 1.. with the true frames. Only the DED's own layers learn; the VAE
stays frozen and the base's DED is left as it was.

The result is a small safetensors file kept beside the action's adapter. Its header names the base
it was made on (id and weight hash, as an adapter's does), a hash of the VAE it decodes for, and
the DED's config, so `load_finetuned_ded` can refuse weights that belong to another base.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from flashcli.core.progress import TrainProgress
from flashcli.core.settings import TrainSettings

if TYPE_CHECKING:
    from flashcli.core.ded import DetailEnhancedDecoder
    from flashcli.core.specs.wan import WanSpec

DED_WEIGHTS_FORMAT = "1"
REQUIRED_METADATA = ("flash_ded_format", "base_id", "base_weight_hash", "vae_hash", "ded_config")
# Offsets the window stream from the trainer's and the augmentation's streams of the same seed.
_SEED_OFFSET = 2_000_003


class DedMismatchError(ValueError):
    """Fine-tuned DED weights do not fit the loaded base (or are not such weights at all)."""


@dataclasses.dataclass
class DedFinetuneResult:
    tensors: dict[str, torch.Tensor]  # the DED's own layers (its state_dict), CPU fp32
    metadata: dict[str, str]  # the safetensors header
    losses: list[dict[str, float]]  # per step: loss, l1, ssim, grad
    seconds: float


def finetune_ded(
    spec: WanSpec,
    latents: torch.Tensor,
    clips: list[np.ndarray],
    settings: TrainSettings,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
) -> DedFinetuneResult:
    """Tune a copy of spec.ded for `settings.ded_finetune_steps` steps on the clips.

    latents: the clips' normalised latents (N, z, T, h, w), as `spec.encode_video` returns them;
    clips: the same clips as uint8 (frames, size, size, 3). Progress is reported with phase "ded".
    """
    from flashcli.core.pixels import video_to_tensor

    if spec.ded is None:
        raise ValueError(f"base {spec.base_id!r} has no Detail Enhancement Decoder to fine-tune")
    if len(clips) != latents.shape[0]:
        raise ValueError(f"got {latents.shape[0]} latents for {len(clips)} clips")
    started = time.perf_counter()
    ded = _trainable_copy(spec.ded)
    raw = spec.to_vae_space(latents).detach()
    videos = torch.stack([video_to_tensor(clip) for clip in clips])  # (N, 3, F, H, W), CPU
    optimizer = torch.optim.AdamW(ded.trainable_parameters(), lr=settings.ded_finetune_lr, weight_decay=0.0)
    generator = torch.Generator(device="cpu").manual_seed(settings.seed + _SEED_OFFSET)
    total = settings.ded_finetune_steps
    history: list[dict[str, float]] = []
    step_seconds: list[float] = []
    for step in range(1, total + 1):
        tick = time.perf_counter()
        history.append(_step(ded, optimizer, raw, videos, settings.ded_finetune_crop, generator))
        step_seconds.append(time.perf_counter() - tick)
        if progress is not None:
            recent = step_seconds[-20:]
            per_step = sum(recent) / len(recent)
            progress(
                TrainProgress(
                    step,
                    total,
                    history[-1],
                    per_step,
                    per_step * (total - step),
                    settings.ded_finetune_lr,
                    "ded",
                )
            )
    tensors = {
        name: t.detach().to("cpu", torch.float32).clone() for name, t in ded.blocks.state_dict().items()
    }
    metadata = finetuned_ded_metadata(spec, ded, settings)
    return DedFinetuneResult(tensors, metadata, history, time.perf_counter() - started)


def _trainable_copy(base_ded: DetailEnhancedDecoder) -> DetailEnhancedDecoder:
    # A new DED on the same (frozen, shared) VAE with the base DED's weights: deepcopy would copy
    # the VAE too, and the base's own DED must stay as it is for other actions.
    from flashcli.core.ded import DetailEnhancedDecoder

    copy = DetailEnhancedDecoder.from_weights(
        base_ded.vae,
        base_ded.config,
        base_ded.blocks.state_dict(),
        device=base_ded.device,
        dtype=torch.float32,
    )
    copy.metadata = dict(base_ded.metadata)
    copy.train()
    return copy


def _step(
    ded: DetailEnhancedDecoder,
    optimizer: torch.optim.Optimizer,
    raw: torch.Tensor,
    videos: torch.Tensor,
    crop: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """One optimiser step on one clip (or a window of it): decode with frame 0 as the photo, score 1.."""
    from flashcli.core.ded import ded_loss

    index = int(torch.randint(raw.shape[0], (1,), generator=generator))
    latents, video = _window(raw[index : index + 1], videos[index : index + 1], crop, generator)
    video = video.to(ded.device)
    prediction = ded.decode(latents, video[:, :, 0])
    terms = ded_loss(prediction[:, :, 1:], video[:, :, 1:])
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    return {name: float(value.detach()) for name, value in terms.items()}


def _window(
    latents: torch.Tensor, video: torch.Tensor, crop: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random square window of `crop` pixels (rounded down to whole latent pixels) of latents and video.

    Decoding with gradients costs memory in proportion to the frame's area; a window bounds it at
    large sizes. 0 (or a crop as large as the frame) keeps the whole frame.
    """
    ratio = video.shape[-1] // latents.shape[-1]  # pixels per latent pixel
    side = max(1, crop // ratio)
    height, width = latents.shape[-2:]
    if crop <= 0 or (side >= height and side >= width):
        return latents, video
    side_h, side_w = min(side, height), min(side, width)
    top = int(torch.randint(height - side_h + 1, (1,), generator=generator))
    left = int(torch.randint(width - side_w + 1, (1,), generator=generator))
    cut_latents = latents[..., top : top + side_h, left : left + side_w]
    cut_video = video[..., top * ratio : (top + side_h) * ratio, left * ratio : (left + side_w) * ratio]
    return cut_latents, cut_video


# ----- the weights file ------------------------------------------------------------------------------


def vae_hash(spec: WanSpec) -> str:
    """Hash of the base's VAE weights: a base's transformer hash does not cover its VAE, and a DED
    belongs to the VAE it decodes for."""
    from flashcli.core.specs.wan import hash_state_dict

    return hash_state_dict(spec.vae.state_dict())


def finetuned_ded_metadata(
    spec: WanSpec, ded: DetailEnhancedDecoder, settings: TrainSettings
) -> dict[str, str]:
    """The safetensors header of a fine-tuned DED made on `spec`."""
    return {
        "flash_ded_format": DED_WEIGHTS_FORMAT,
        "base_id": spec.base_id,
        "base_weight_hash": spec.weight_hash,
        "vae_hash": vae_hash(spec),
        "ded_config": ded.config.model_dump_json(),
        "steps": str(settings.ded_finetune_steps),
        "learning_rate": repr(float(settings.ded_finetune_lr)),
        "crop": str(settings.ded_finetune_crop),
        "seed": str(settings.seed),
    }


def save_finetuned_ded(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> Path:
    """Write the DED weights and header atomically (temp file in the same folder, then rename)."""
    from flashcli.core.tensor_files import save_safetensors_atomic

    _check_metadata(metadata, "the DED weights to save")
    return save_safetensors_atomic(path, tensors, metadata)


def load_finetuned_ded(path: str | Path, spec: WanSpec) -> DetailEnhancedDecoder:
    """A DED with the fine-tuned weights in `path`, ready on spec's device; DedMismatchError if they
    were made on another base (transformer or VAE) or do not fit the DED their header describes."""
    from pydantic import ValidationError
    from safetensors import safe_open

    from flashcli.core.ded import DedConfig, DetailEnhancedDecoder

    source = Path(path)
    try:
        with safe_open(str(source), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises several types for missing or corrupt files
        raise DedMismatchError(f"{source} is not a readable safetensors file ({error})") from error
    _check_metadata(metadata, str(source))
    check_finetuned_ded_matches(spec, metadata, str(source))
    try:
        config = DedConfig.model_validate_json(metadata["ded_config"])
        ded = DetailEnhancedDecoder.from_weights(
            spec.vae, config, tensors, device=spec.device, dtype=torch.float32
        )
    except (ValidationError, ValueError, RuntimeError) as error:
        raise DedMismatchError(f"{source} does not fit the DED its header describes ({error})") from error
    ded.metadata = metadata
    return ded.eval()


def check_finetuned_ded_matches(spec: WanSpec, metadata: Mapping[str, str], source: str) -> None:
    loaded_vae = vae_hash(spec)
    if metadata["base_weight_hash"] != spec.weight_hash or metadata["vae_hash"] != loaded_vae:
        raise DedMismatchError(
            f"{source} was fine-tuned on base {metadata['base_id']!r} (weights "
            f"{metadata['base_weight_hash']}, VAE {metadata['vae_hash']}) but the loaded base is "
            f"{spec.base_id!r} (weights {spec.weight_hash}, VAE {loaded_vae}); learn the action again "
            "on this base or animate with --no-ded"
        )


def _check_metadata(metadata: Mapping[str, str], source: str) -> None:
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise DedMismatchError(
            f"{source} is not a fine-tuned flash DED: its header lacks {', '.join(missing)}"
        )
    if metadata["flash_ded_format"] != DED_WEIGHTS_FORMAT:
        raise DedMismatchError(
            f"{source} has DED weights format {metadata['flash_ded_format']}, "
            f"but this flash reads format {DED_WEIGHTS_FORMAT}"
        )
