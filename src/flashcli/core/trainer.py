"""Learning an action adapter from a few clips, with FLASH's Motion Alignment.

Per micro-batch: clip latents x and a strongly augmented copy x' (same motion, other look) get the
same noise and sigma, frame 0 stays clean. Depending on the switches:
- none:            loss = L(x)
- augment only:    loss = L(x) + w_aug * L(x')
- motion/corresp.: pass 1 on x' records, pass 2 on x injects;
                   loss = w_align * L(x | x' motion) + w_aug * L(x') [+ w_plain * L(x), a third pass]
L is the flow-matching MSE on the noisy (later) latent frames only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from einops import rearrange

from flashcli.core import distributed
from flashcli.core.adapter import (
    ACTION_TEXT_KEY,
    adapter_metadata,
    adapter_tensors,
    attach_new_lora,
    lora_parameters,
)
from flashcli.core.devices import autocast_dtype
from flashcli.core.flow import (
    flow_loss,
    noisy_with_clean_first_frame,
    sigma_to_timestep,
    training_sigmas,
    velocity_target,
)
from flashcli.core.latent_cache import encoding_fingerprint, load_encoded, save_encoded
from flashcli.core.pixels import video_to_tensor
from flashcli.core.progress import TrainProgress
from flashcli.core.settings import DED_FINETUNE_FIELDS, TrainSettings
from flashcli.files import atomic_path

if TYPE_CHECKING:
    from flashcli.core.specs.wan import WanSpec

TRAIN_ADAPTER_NAME = "flash_train"
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


@dataclasses.dataclass
class TrainResult:
    adapter: dict[str, torch.Tensor]
    metadata: dict[str, str]
    losses: list[dict[str, float]]
    train_seconds: float
    # The clips' normalised latents (N, z, T, h, w) as training encoded them, on the spec's device: the
    # DED fine-tuning that the learn workflow may run next decodes these instead of encoding again.
    latents: torch.Tensor


@dataclasses.dataclass
class _Data:
    """Everything the loop samples from, on the spec's device."""

    latents: torch.Tensor  # (N, z, T, h, w)
    augmented: torch.Tensor | None  # (N, K, z, T, h, w)
    text: torch.Tensor  # (1, L, D)


def train_adapter(
    spec: WanSpec,
    clips: list[np.ndarray],
    settings: TrainSettings,
    *,
    prompt: str | None = None,
    masks: list[np.ndarray] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a LoRA adapter for one action on `spec` and return its weights and metadata.

    clips: uint8 (frames, size, size, 3) each; masks (optional): bool (frames, size, size), the figure.
    With checkpoint_dir and settings.checkpoint_every, state is saved every N steps; resume=True
    continues from it and ends with exactly the weights an uninterrupted run would have.
    The DED fine-tuning (settings.ded_finetune_*) is not run here: `flashcli.workflows.learn.train_action`
    runs it after this, on `TrainResult.latents`.
    """
    started = time.perf_counter()
    _check_inputs(spec, clips, masks, settings)
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint_dir")
    checkpoint = _read_checkpoint(checkpoint_dir, spec, settings) if resume else None

    data = _cached_or_encoded_data(spec, clips, masks, settings, prompt, progress, checkpoint_dir, resume)
    learned_text = _new_action_text(spec)
    if learned_text is not None:
        data.text = learned_text
    alignment = None
    # LoRA's initial weights come from the global RNG: seed it locally so a seed fixes the whole run.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        parameters = attach_new_lora(
            spec,
            name=TRAIN_ADAPTER_NAME,
            targets=settings.targets,
            rank=settings.rank,
            alpha=settings.lora_alpha,
        )
    groups: list[dict[str, Any]] = [{"params": parameters}]
    if learned_text is not None:
        groups.append({"params": [learned_text], "lr": settings.text_learning_rate, "weight_decay": 0.0})
        parameters = [*parameters, learned_text]
    try:
        optimizer = torch.optim.AdamW(
            groups, lr=settings.learning_rate, weight_decay=settings.weight_decay, betas=(0.9, 0.999)
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings))
        generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        history: list[dict[str, float]] = []
        start_step, previous_seconds = 0, 0.0
        if checkpoint is not None:
            start_step, previous_seconds = checkpoint["step"], checkpoint["train_seconds"]
            history = list(checkpoint["losses"])
            _restore(spec, checkpoint, optimizer, scheduler, generator, learned_text)
        if settings.gradient_checkpointing:
            spec.transformer.enable_gradient_checkpointing()
        if settings.align.injects:
            alignment = _make_alignment(spec, settings, data.latents.shape[2])
            alignment.install()

        step_seconds: list[float] = []
        for step in range(start_step + 1, settings.steps + 1):
            tick = time.perf_counter()
            losses = _optimisation_step(
                spec, data, settings, optimizer, scheduler, generator, parameters, alignment
            )
            history.append(losses)
            step_seconds.append(time.perf_counter() - tick)
            elapsed = previous_seconds + time.perf_counter() - started
            if (
                checkpoint_dir is not None
                and distributed.is_main()  # the other ranks hold the same state: one writer
                and settings.checkpoint_every
                and step % settings.checkpoint_every == 0
            ):
                _write_checkpoint(
                    checkpoint_dir,
                    spec,
                    settings,
                    step,
                    optimizer,
                    scheduler,
                    generator,
                    history,
                    elapsed,
                    learned_text,
                )
            if progress is not None:
                recent = step_seconds[-20:]
                per_step = sum(recent) / len(recent)
                progress(
                    TrainProgress(
                        step=step,
                        total=settings.steps,
                        losses=losses,
                        seconds_per_step=per_step,
                        eta_seconds=per_step * (settings.steps - step),
                        learning_rate=scheduler.get_last_lr()[0],
                    )
                )
        tensors = adapter_tensors(spec, TRAIN_ADAPTER_NAME)
        if learned_text is not None:
            tensors[ACTION_TEXT_KEY] = learned_text.detach()[0].to("cpu", torch.float32).clone()
    finally:
        if alignment is not None:
            alignment.remove()
        if settings.gradient_checkpointing:
            spec.transformer.disable_gradient_checkpointing()
        spec.transformer.delete_adapters(TRAIN_ADAPTER_NAME)

    train_seconds = previous_seconds + time.perf_counter() - started
    metadata = adapter_metadata(
        spec,
        targets=settings.targets,
        rank=settings.rank,
        alpha=settings.lora_alpha,
        extra={
            "variant": settings.align.variant_name or "custom",
            "align": settings.align.model_dump_json(),
            "frames": str(settings.frames),
            "size": str(settings.size),
            "width": str(settings.frame_size[0]),
            "steps": str(settings.steps),
            "seed": str(settings.seed),
            "prompt": prompt or "",
            "ded": "true" if settings.align.detail_enhance else "false",
            # Whether the file carries the action's own text embedding (ACTION_TEXT_KEY).
            "action_text": "learned" if learned_text is not None else "none",
        },
    )
    return TrainResult(
        adapter=tensors, metadata=metadata, losses=history, train_seconds=train_seconds, latents=data.latents
    )


def _new_action_text(spec: WanSpec) -> torch.nn.Parameter | None:
    """The action's own text embedding (1, L, D), trained with the LoRA, on a base without a text encoder
    that learned one embedding per pretraining action; None on any other base. It starts at the mean of
    the base's action embeddings: "some action", which the clips then make specific."""
    if spec.has_text or not spec.action_text:
        return None
    start = torch.stack([text.float() for text in spec.action_text.values()]).mean(0, keepdim=True)
    return torch.nn.Parameter(start.to(spec.device))


# ----- one optimisation step -----------------------------------------------------------------------


def _optimisation_step(
    spec: WanSpec,
    data: _Data,
    settings: TrainSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    parameters: list[torch.nn.Parameter],
    alignment: Any | None,
) -> dict[str, float]:
    totals: dict[str, float] = {}
    for _ in range(settings.grad_accum):
        terms = _micro_batch_losses(spec, data, settings, generator, alignment)
        (terms["total"] / settings.grad_accum).backward()
        if alignment is not None:
            alignment.clear()  # drops the x' tensors and their graph
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach()) / settings.grad_accum
    # Under a launcher each rank computed its rows of the batch: the mean gradient is the whole batch's.
    distributed.average_gradients(parameters)
    torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return distributed.average_losses(totals)


def _micro_batch_losses(
    spec: WanSpec,
    data: _Data,
    settings: TrainSettings,
    generator: torch.Generator,
    alignment: Any | None,
) -> dict[str, torch.Tensor]:
    align = settings.align
    batch = settings.batch_size
    device = spec.device
    # Every random draw comes from one CPU generator, so runs and resumes repeat exactly on any device.
    # Under a launcher every rank draws the whole batch the same way and keeps its own rows of it.
    rows = distributed.share(batch)
    clip_index = torch.randint(data.latents.shape[0], (batch,), generator=generator)
    sigma = training_sigmas(batch, generator, settings.train_shift)
    noise = torch.randn((batch, *data.latents.shape[1:]), generator=generator)
    clip_index, sigma, noise = clip_index[rows], sigma[rows], noise[rows].to(device)
    sigma, timesteps = sigma.to(device), sigma_to_timestep(sigma).to(device)

    x0 = data.latents[clip_index]
    noisy = noisy_with_clean_first_frame(x0, noise, sigma)
    target = velocity_target(x0, noise)
    if data.augmented is not None:
        copy_index = torch.randint(data.augmented.shape[1], (batch,), generator=generator)[rows]
        x0_aug = data.augmented[clip_index, copy_index]
        noisy_aug = noisy_with_clean_first_frame(x0_aug, noise, sigma)
        target_aug = velocity_target(x0_aug, noise)

    cast = autocast_dtype(device, settings.precision)

    def forward(latents: torch.Tensor) -> torch.Tensor:
        context = torch.autocast(device.type, dtype=cast) if cast is not None else contextlib.nullcontext()
        with context:
            return spec.denoise(latents, timesteps, data.text)

    terms: dict[str, torch.Tensor] = {}
    if not align.strong_augment:
        terms["x"] = flow_loss(forward(noisy), target)
        terms["total"] = terms["x"]
        return terms
    if not align.injects:
        terms["x"] = flow_loss(forward(noisy), target)
        terms["x_aug"] = flow_loss(forward(noisy_aug), target_aug)
        terms["total"] = terms["x"] + align.augmented_loss_weight * terms["x_aug"]
        return terms

    with alignment.record(motion=align.motion_align, correspondence=align.correspondence_align):
        terms["x_aug"] = flow_loss(forward(noisy_aug), target_aug)
    with alignment.inject(motion=align.motion_align, correspondence=align.correspondence_align):
        terms["x_aligned"] = flow_loss(forward(noisy), target)
    total = align.aligned_loss_weight * terms["x_aligned"] + align.augmented_loss_weight * terms["x_aug"]
    if align.plain_loss_weight > 0:
        terms["x"] = flow_loss(forward(noisy), target)
        total = total + align.plain_loss_weight * terms["x"]
    terms["total"] = total
    return terms


def _lr_factor(settings: TrainSettings) -> Callable[[int], float]:
    warmup, total, schedule = settings.warmup_steps, settings.steps, settings.lr_schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


# ----- data --------------------------------------------------------------------------------------


def _check_inputs(
    spec: WanSpec, clips: list[np.ndarray], masks: list[np.ndarray] | None, settings: TrainSettings
) -> None:
    if not clips:
        raise ValueError("training needs at least one clip")
    width, height = settings.frame_size
    spec.check_video_shape(settings.frames, height, width)
    expected = (settings.frames, height, width, 3)
    for index, clip in enumerate(clips):
        if clip.dtype != np.uint8 or clip.shape != expected:
            raise ValueError(f"clip {index} must be uint8 of shape {expected}, got {clip.dtype} {clip.shape}")
    if masks is not None:
        if len(masks) != len(clips):
            raise ValueError(f"got {len(masks)} masks for {len(clips)} clips")
        for index, mask in enumerate(masks):
            if mask.shape != expected[:3]:
                raise ValueError(f"mask {index} must have shape {expected[:3]}, got {mask.shape}")


def _cached_or_encoded_data(
    spec: WanSpec,
    clips: list[np.ndarray],
    masks: list[np.ndarray] | None,
    settings: TrainSettings,
    prompt: str | None,
    progress: Callable[[TrainProgress], None] | None,
    checkpoint_dir: Path | None,
    resume: bool,
) -> _Data:
    """A resume loads the data the interrupted run encoded (no "encode" progress then); otherwise, or
    when that file was made from anything else, encode, and keep the result beside the checkpoints."""
    checkpointing = checkpoint_dir is not None and settings.checkpoint_every > 0
    if not (checkpointing or resume):
        return _prepare_data(spec, clips, masks, settings, prompt, progress)
    assert checkpoint_dir is not None
    fingerprint = encoding_fingerprint(clips, masks, settings, prompt, spec.weight_hash)
    cached = load_encoded(checkpoint_dir, fingerprint, spec.device) if resume else None
    if cached is not None:
        return _Data(latents=cached["latents"], augmented=cached.get("augmented"), text=cached["text"])
    data = _prepare_data(spec, clips, masks, settings, prompt, progress)
    if checkpointing and distributed.is_main():  # one writer, as for the checkpoints
        tensors = {"latents": data.latents, "text": data.text}
        if data.augmented is not None:
            tensors["augmented"] = data.augmented
        save_encoded(checkpoint_dir, fingerprint, tensors)
    return data


@torch.no_grad()
def _prepare_data(
    spec: WanSpec,
    clips: list[np.ndarray],
    masks: list[np.ndarray] | None,
    settings: TrainSettings,
    prompt: str | None,
    progress: Callable[[TrainProgress], None] | None,
) -> _Data:
    """Encode clips (and their augmented copies) once: the VAE is frozen, so the loop never needs it."""
    copies_per_clip = settings.augment_copies if settings.align.strong_augment else 0
    total = len(clips) * (1 + copies_per_clip)
    # On CPU, batches of 2+ take PyTorch's oneDNN conv3d path, about twice as fast per video as
    # batch 1; on CUDA one video at a time keeps memory bounded at real sizes.
    chunk = 4 if spec.device.type == "cpu" else 1
    started = time.perf_counter()
    encoded: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []

    def flush() -> None:
        encoded.append(spec.encode_video(torch.cat(pending)))
        pending.clear()
        done = sum(len(batch) for batch in encoded)
        if progress is not None:
            per_video = (time.perf_counter() - started) / done
            progress(
                TrainProgress(done, total, {}, per_video, per_video * (total - done), 0.0, phase="encode")
            )

    for video in _videos_to_encode(clips, masks, settings, copies_per_clip):
        pending.append(video)
        if len(pending) == chunk:
            flush()
    if pending:
        flush()
    everything = torch.cat(encoded)
    latents = everything[: len(clips)]
    augmented = None
    if copies_per_clip:
        augmented = rearrange(everything[len(clips) :], "(n k) z t h w -> n k z t h w", k=copies_per_clip)
    return _Data(latents=latents, augmented=augmented, text=spec.encode_text(prompt))


def _videos_to_encode(
    clips: list[np.ndarray], masks: list[np.ndarray] | None, settings: TrainSettings, copies_per_clip: int
) -> Iterator[torch.Tensor]:
    """The clips, then `copies_per_clip` strongly augmented copies of each clip, as (1, 3, F, H, W)."""
    for clip in clips:
        yield video_to_tensor(clip).unsqueeze(0)
    if not copies_per_clip:
        return
    from flashcli.core.augment import strong_augment

    # Its own generator, so the loop's random stream does not depend on how augmentation draws.
    generator = torch.Generator(device="cpu").manual_seed(settings.seed + 1_000_003)
    for index, clip in enumerate(clips):
        video = video_to_tensor(clip).unsqueeze(0)
        mask = None
        if masks is not None:
            mask = torch.from_numpy(np.ascontiguousarray(masks[index])).float()[None, None]
        for _ in range(copies_per_clip):
            yield strong_augment(video, generator, mask)


def _make_alignment(spec: WanSpec, settings: TrainSettings, frames_latent: int) -> Any:
    from flashcli.core.motion_align import MotionAlignment

    align = settings.align
    motion_blocks = align.motion_blocks if align.motion_blocks is not None else spec.default_motion_blocks
    correspondence_blocks = (
        align.correspondence_blocks
        if align.correspondence_blocks is not None
        else spec.default_correspondence_blocks
    )
    return MotionAlignment(
        spec.transformer,
        motion_blocks=motion_blocks if align.motion_align else [],
        correspondence_blocks=correspondence_blocks if align.correspondence_align else [],
        frames_latent=frames_latent,
        max_correspondence_tokens=align.max_correspondence_tokens,
        correspondence_keys=align.correspondence_keys,
        detach_recorded=align.detach_recorded,
        motion_source=align.motion_source,
    )


# ----- checkpoints -------------------------------------------------------------------------------


def _settings_fingerprint(settings: TrainSettings) -> str:
    # checkpoint_every may change between runs without changing the result, and the DED
    # fine-tuning runs after the adapter (it is not checkpointed), so neither invalidates a checkpoint.
    return json.dumps(settings.model_dump(exclude={"checkpoint_every", *DED_FINETUNE_FIELDS}), sort_keys=True)


def _write_checkpoint(
    folder: Path,
    spec: WanSpec,
    settings: TrainSettings,
    step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    history: list[dict[str, float]],
    train_seconds: float,
    learned_text: torch.Tensor | None,
) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "settings": _settings_fingerprint(settings),
        "base_weight_hash": spec.weight_hash,
        "lora": {
            name: p.detach().to("cpu").clone()
            for name, p in spec.transformer.named_parameters()
            if "lora_" in name and f".{TRAIN_ADAPTER_NAME}." in name
        },
        "text": None if learned_text is None else learned_text.detach().to("cpu").clone(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "losses": history,
        "train_seconds": train_seconds,
    }
    # Through a file handle: torch.save on a path hides a full disk behind a RuntimeError, a handle's
    # write raises the OSError that the CLI turns into a sentence (exit 2).
    with atomic_path(folder / CHECKPOINT_NAME) as staging, open(staging, "wb") as handle:
        torch.save(state, handle)


def _read_checkpoint(folder: Path | None, spec: WanSpec, settings: TrainSettings) -> dict[str, Any]:
    assert folder is not None
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"there is no checkpoint to resume from in {folder}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} was written by another version of flash; start the training afresh")
    if state["base_weight_hash"] != spec.weight_hash:
        raise ValueError(f"{path} was made on another base model ({state['base_weight_hash']}); start afresh")
    if state["settings"] != _settings_fingerprint(settings):
        raise ValueError(f"{path} was made with different training settings; resume with the same ones")
    return state


def _restore(
    spec: WanSpec,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    learned_text: torch.Tensor | None,
) -> None:
    parameters = dict(spec.transformer.named_parameters())
    with torch.no_grad():
        for name, value in state["lora"].items():
            parameters[name].copy_(value)
        if (state.get("text") is None) != (learned_text is None):
            raise ValueError("the checkpoint's action text does not match the adapter being trained")
        if learned_text is not None:
            learned_text.copy_(state["text"])
    if len(state["lora"]) != len(lora_parameters(spec, TRAIN_ADAPTER_NAME)):
        raise ValueError("the checkpoint's adapter does not match the adapter being trained")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
