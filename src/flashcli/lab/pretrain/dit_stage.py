"""Stage 3: train the tiny WanTransformer3DModel on cached latents, first-frame conditioned.

The forward is the core's own path: WanSpec.denoise (per-token timesteps, frame-0 tokens at t=0), the
rectified-flow helpers in flashcli.core.flow and the adapter trainer's loss, so the base learns exactly
what `learn` and `animate` later ask of it: the clean photo latent at frame 0, velocity loss on frames 1..T-1.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import load_file

from flashcli.core import flow
from flashcli.core.devices import resolve_device
from flashcli.core.specs import WanSpec
from flashcli.figureworld import PRETRAIN_ACTIONS

from .checkpoint import JsonlLog, cosine_lr, load_checkpoint, load_fitting, save_checkpoint
from .configs import (
    BASE_ID,
    NULL_TEXT_TOKENS,
    TEXT_DIM,
    DataSettings,
    DitStageSettings,
    RunSettings,
    transformer_config,
)
from .data import clip_action
from .latent_cache import build_latent_cache, with_moved_masks
from .vae_stage import encoder_fingerprint, load_trained_vae, same_encoder
from .weight_average import WeightAverage, describe_weights


def build_transformer(settings: DitStageSettings | None = None) -> WanTransformer3DModel:
    settings = settings or DitStageSettings()
    return WanTransformer3DModel(
        **transformer_config(settings.photo_channels, settings.layers, settings.heads)
    )


def as_text_table(text: torch.Tensor) -> torch.Tensor:
    """The learned text as a table (rows, L, D): row 0 the null text, row 1 + a the embedding of
    PRETRAIN_ACTIONS[a] when the run is class-conditional. Older checkpoints hold the null text alone."""
    return text.unsqueeze(0) if text.ndim == 2 else text


def saved_text_table(state: dict[str, Any]) -> torch.Tensor:
    """A checkpoint's raw text table (checkpoints before the table held "null_text")."""
    return as_text_table(state["text"] if "text" in state else state["null_text"])


def text_rows(action_text: bool) -> int:
    return 1 + len(PRETRAIN_ACTIONS) if action_text else 1


def fit_text_table(source: torch.Tensor, rows: int, generator: torch.Generator) -> torch.Tensor:
    """A run's text table from another run's: shared rows copied, new action rows drawn at random.

    Measured on a warm start from a denoiser that only ever saw its null text: action rows that began
    at the null text plus 0.02 noise all drifted the same way and stayed 0.02 apart after 620 steps,
    and the denoiser's error was the same with the true action, a wrong one or none. Rows as far apart
    as the null text is from zero give the denoiser distinct inputs from the first step."""
    source = as_text_table(source)
    scale = float(source[0].std())
    table = source[0] + scale * torch.randn((rows, *source.shape[1:]), generator=generator)
    shared = min(rows, source.shape[0])
    table[:shared] = source[:shared]
    return table


def as_two_groups(saved: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state in this stage's layout (denoiser weights, then the text table), from a checkpoint
    written when both shared one parameter group (the text last)."""
    if len(saved["param_groups"]) == 2:
        return saved
    (group,) = saved["param_groups"]
    *weights, text = group["params"]
    return {**saved, "param_groups": [{**group, "params": weights}, {**group, "params": [text]}]}


def latent_actions(cache: dict[str, Any], data: DataSettings) -> torch.Tensor:
    """(N,) the PRETRAIN_ACTIONS index of each cached latent (a clip's mirror image keeps its action)."""
    per_clip = torch.tensor(
        [PRETRAIN_ACTIONS.index(clip_action(i, data.train_seed_start)) for i in range(cache["clips"])]
    )
    return per_clip.repeat_interleave(cache["latents"].shape[0] // cache["clips"])


def shipped_weights(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A denoiser checkpoint's weights and text table as its run exports them: the weight average when
    it keeps one, else the raw weights."""
    average = state.get("ema")
    if average is None:
        return state["model"], saved_text_table(state)
    return average["model"], as_text_table(average["extra"])


def base_folder_weights(folder: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """An exported base folder's denoiser weights and text table: its null text, then its action texts
    in PRETRAIN_ACTIONS order when it ships them."""
    files = sorted((folder / "transformer").glob("*.safetensors"))
    if not files or not (folder / "null_text.safetensors").exists():
        raise FileNotFoundError(
            f"{folder} is not a base folder with a denoiser and a null text to start from"
        )
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        weights.update(load_file(path))
    rows = [load_file(folder / "null_text.safetensors")["null_text"]]
    if (folder / "action_text.safetensors").exists():
        actions = load_file(folder / "action_text.safetensors")
        rows += [actions[name] for name in PRETRAIN_ACTIONS]
    return weights, torch.stack(rows)


def start_from(transformer: WanTransformer3DModel, source: Path) -> tuple[torch.Tensor, list[str]]:
    """Warm-start from another run's denoiser: a checkpoint's weight average when it kept one (what it
    shipped), else its raw weights; or an exported base folder's weights (how a GPU lease's result comes
    back). A patch embedding with fewer input channels (a base without photo channels) fills the leading
    channels and leaves the photo channels at zero, so the start predicts exactly as the source did.
    Returns the source's text table and the names left fresh."""
    if source.is_dir():
        weights, text = base_folder_weights(source)
    else:
        state = load_checkpoint(source)
        if state is None:
            raise FileNotFoundError(f"no checkpoint at {source} to start from")
        weights, text = shipped_weights(state)
    own = transformer.state_dict()
    weights = dict(weights)
    name = "patch_embedding.weight"
    embedding = weights.get(name)
    if (
        embedding is not None
        and embedding.shape != own[name].shape
        and embedding.shape[1] < own[name].shape[1]
    ):
        widened = torch.zeros_like(own[name])
        widened[:, : embedding.shape[1]] = embedding
        weights[name] = widened
    return text, load_fitting(transformer, weights, source)


def vae_with_latent_stats(vae: AutoencoderKLWan, mean: list[float], std: list[float]) -> AutoencoderKLWan:
    """The trained VAE with its measured latent statistics written into its config (as Wan ships them)."""
    vae.register_to_config(latents_mean=list(mean), latents_std=list(std))
    return vae


def base_meta(run: RunSettings, extra: dict[str, Any]) -> dict[str, Any]:
    pretraining = dict(extra)
    if run.data.phase is not None:  # the clips all started at this point of their cycle
        pretraining["clip_phase"] = run.data.phase
    return {
        "base_id": BASE_ID,
        "frames": run.data.frames,
        "size": run.data.size,
        "fps": run.data.fps,
        "flow_shift": run.dit.train_shift,
        "pretraining": pretraining,
    }


def dit_checkpoint_path(run: RunSettings) -> Path:
    return run.run_dir / "dit" / "checkpoint.pt"


def train_dit(
    run: RunSettings,
    export: Callable[[WanSpec, torch.Tensor, dict[str, Any]], None],
    *,
    time_limit: float | None = None,
) -> dict[str, Any]:
    settings = run.dit
    cache = build_latent_cache(run)
    if settings.moved_weight > 0:
        cache = with_moved_masks(run, cache)
    vae, vae_state = load_trained_vae(run)
    encoder = encoder_fingerprint(vae)
    vae = vae_with_latent_stats(vae, cache["latents_mean"], cache["latents_std"])

    torch.manual_seed(run.seed + 10)
    device = resolve_device(run.device)
    # The whole cache lives where the model trains (about 1 GB per 2,000 clips): no per-step copies.
    latents: torch.Tensor = cache["latents"].to(device)
    moved: torch.Tensor | None = cache["moved"].to(device) if settings.moved_weight > 0 else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 weights, TF32 matmuls: fast and stable
    transformer = build_transformer(settings).to(device)
    rows = text_rows(settings.action_text)
    text = torch.nn.Parameter((torch.randn(rows, NULL_TEXT_TOKENS, TEXT_DIM) * 0.02).to(device))
    actions = latent_actions(cache, run.data)
    generator = torch.Generator().manual_seed(run.seed + 11)
    noise_generator = device_noise_generator(device, run.seed + 12)
    step, elapsed = 0, 0.0
    state = load_checkpoint(dit_checkpoint_path(run))
    if state is not None:
        if not same_encoder(state, encoder, vae_state["step"]):
            raise RuntimeError(
                f"the denoiser checkpoint was trained on latents of another encoder (VAE step "
                f"{state['vae_step']}, now {vae_state['step']}); "
                f"delete {dit_checkpoint_path(run)} to start over"
            )
        # Checkpoints from before the size was a setting hold the default size.
        saved_size = {
            key: state["settings"]["dit"].get(key, DitStageSettings.model_fields[key].default)
            for key in ("layers", "heads")
        }
        if saved_size != {"layers": settings.layers, "heads": settings.heads}:
            raise ValueError(
                f"the denoiser checkpoint {dit_checkpoint_path(run)} has {saved_size['layers']} layers and "
                f"{saved_size['heads']} heads; resume it with --dit-layers {saved_size['layers']} "
                f"--dit-heads {saved_size['heads']}"
            )
        saved_in = state["model"]["patch_embedding.weight"].shape[1]
        if saved_in != transformer.config.in_channels:
            flag = "with" if saved_in > latents.shape[1] else "without"
            raise ValueError(
                f"the denoiser checkpoint {dit_checkpoint_path(run)} was trained {flag} "
                f"--dit-photo-channels; resume it {flag} that flag"
            )
        saved_text = saved_text_table(state)
        if saved_text.shape[0] != rows:
            flag = "with" if saved_text.shape[0] > 1 else "without"
            raise ValueError(
                f"the denoiser checkpoint {dit_checkpoint_path(run)} was trained {flag} "
                f"--dit-action-text; resume it {flag} that flag"
            )
        transformer.load_state_dict(state["model"])
        text.data.copy_(saved_text)
    elif settings.init_from is not None:
        # Another run's denoiser (e.g. on the previous VAE's latents): a head start, then it adapts.
        start_text, fresh = start_from(transformer, settings.init_from)
        text.data.copy_(fit_text_table(start_text, rows, generator))
        print(f"dit: started from {settings.init_from}; fresh: {fresh or 'none'}", flush=True)
    spec = WanSpec(
        base_id=BASE_ID,
        transformer=transformer,
        vae=vae,
        meta=base_meta(run, {}),
        null_text=text[0].detach(),
    )
    average = None
    if settings.ema_decay > 0:
        saved = state.get("ema") if state is not None else None
        average = (
            WeightAverage.from_state(saved, settings.ema_decay)
            if saved is not None
            # Warm up only from random weights; resumed or warm-started weights are already trained.
            else WeightAverage.start(
                spec.transformer,
                text,
                settings.ema_decay,
                warmup=state is None and settings.init_from is None,
            )
        )
    spec.transformer.train().requires_grad_(True)
    weights = list(spec.transformer.parameters())
    parameters = [*weights, text]
    optimizer = torch.optim.AdamW(
        [
            {"params": weights},
            # The texts are inputs, not weights: no decay toward zero, and a faster rate, so action rows
            # separate within a short run.
            {"params": [text], "weight_decay": 0.0, "lr_scale": settings.text_lr_scale},
        ],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    if state is not None:
        optimizer.load_state_dict(as_two_groups(state["optimizer"]))
        optimizer.param_groups[1].update(weight_decay=0.0, lr_scale=settings.text_lr_scale)
        generator.set_state(state["generator"])
        if noise_generator is not None and state.get("noise_generator") is not None:
            noise_generator.set_state(state["noise_generator"])
        torch.set_rng_state(state["torch_rng"])
        step, elapsed = state["step"], state["elapsed"]
    log = JsonlLog(run.run_dir / "dit" / "log.jsonl", step)
    started = time.time()
    last_export = time.time()
    recent: list[float] = []

    def summary() -> dict[str, Any]:
        return {
            "vae_step": vae_state["step"],
            "vae_eval": vae_state.get("eval", {}),
            "dit_step": step,
            "dit_loss_recent": sum(recent) / max(1, len(recent)),
            "dit_seconds": round(elapsed + time.time() - started),
            "latent_clips": int(latents.shape[0]),
            "dit_weights": describe_weights(None if average is None else average.state_dict()),
        }

    def exported() -> tuple[WanSpec, torch.Tensor]:
        """What the base ships: the weight average when there is one, else the raw weights."""
        if average is None:
            return spec, text.detach().clone()
        return spec_with_weights(run, vae, average.model, average.extra), average.extra.clone()

    def checkpoint() -> None:
        save_checkpoint(
            dit_checkpoint_path(run),
            {
                "model": spec.transformer.state_dict(),
                "text": text.detach().clone(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "noise_generator": None if noise_generator is None else noise_generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "elapsed": elapsed + time.time() - started,
                "vae_step": vae_state["step"],
                "encoder": encoder,
                "settings": run.model_dump(mode="json"),
                "ema": None if average is None else average.state_dict(),
            },
        )

    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if settings.autocast_bf16
        else contextlib.nullcontext()
    )
    first_step, warm_since = step, None
    while step < settings.steps:
        if time_limit is not None and time.time() - started > time_limit:
            break
        if settings.fit_steps_to_time and time_limit is not None:
            # The rate is measured after the first steps, which pay one-off costs (a GPU's kernel
            # selection, caches); the schedule changes only during warmup, where its length is unused.
            if step == first_step + SETTLING_STEPS:
                warm_since = time.time()
            elif step == first_step + SETTLING_STEPS + CALIBRATION_STEPS and warm_since is not None:
                rate = (time.time() - warm_since) / CALIBRATION_STEPS
                settings.steps = steps_in_time(step, rate, time.time() - started, time_limit)
                print(f"dit: {rate:.3f}s/step; the run ends at step {settings.steps}", flush=True)
        tick = time.time()
        lr = cosine_lr(
            step, settings.steps, settings.learning_rate, settings.min_learning_rate, settings.warmup_steps
        )
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        picks = torch.randint(latents.shape[0], (settings.batch_size,), generator=generator)
        x0 = latents[picks].to(device)
        # Some steps see only the first latent frames: the causal VAE makes that prefix exactly the latent
        # of a shorter clip, so the base also serves 9-frame presets.
        if float(torch.rand((), generator=generator)) < settings.short_fraction:
            x0 = x0[:, :, : settings.short_latent_frames]
        weights = None
        if moved is not None:
            weights = 1.0 + settings.moved_weight * moved[picks, None, : x0.shape[2]].float()
        # Class-conditional runs show each clip its action's text, and some the null text, so the base
        # serves both an action's embedding and none.
        rows_shown = torch.zeros(settings.batch_size, dtype=torch.long)
        if settings.action_text:
            dropped = torch.rand(settings.batch_size, generator=generator) < settings.action_drop
            rows_shown = torch.where(dropped, 0, 1 + actions[picks])
        with autocast:
            loss = flow.first_frame_flow_loss(
                spec,
                x0,
                text[rows_shown.to(device)],
                generator,
                settings.train_shift,
                noise_generator,
                weights=weights,
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
        optimizer.step()
        if average is not None:
            average.update(spec.transformer, text)
        step += 1
        recent = (recent + [loss.item()])[-200:]
        log.write(
            {
                "step": step,
                "loss": loss.item(),
                "latent_frames": int(x0.shape[2]),
                "grad_norm": float(grad_norm),
                "lr": lr,
                "seconds": time.time() - tick,
                "elapsed": elapsed + time.time() - started,
            }
        )
        if step % 20 == 0:
            print(
                f"dit step {step}/{settings.steps} loss {loss.item():.4f} "
                f"(avg {summary()['dit_loss_recent']:.4f}) {time.time() - tick:.2f}s/step",
                flush=True,
            )
        if step % settings.checkpoint_every == 0:
            checkpoint()
        if time.time() - last_export > settings.export_every_seconds:
            checkpoint()
            export(*exported(), summary())
            last_export = time.time()
    checkpoint()
    export(*exported(), summary())
    return summary()


SETTLING_STEPS = 10
CALIBRATION_STEPS = 50


def steps_in_time(step: int, seconds_per_step: float, seconds: float, time_limit: float) -> int:
    """The last step a time-limited run reaches at `seconds_per_step` when `seconds` of its `time_limit`
    are spent at `step`; 5 % of the limit is kept for the final checkpoint and export."""
    return step + max(1, int((0.95 * time_limit - seconds) / seconds_per_step))


def device_noise_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """A generator for the training noise on a GPU (None on the CPU, where the run's CPU generator draws
    it, as runs always have, so CPU runs resume bit for bit)."""
    if device.type == "cpu":
        return None
    return torch.Generator(device=device).manual_seed(seed)


def spec_with_weights(
    run: RunSettings, vae: AutoencoderKLWan, weights: dict[str, torch.Tensor], text: torch.Tensor
) -> WanSpec:
    """A fresh base around `vae` with these denoiser weights and text table (the training model is left
    alone)."""
    transformer = build_transformer(run.dit)
    transformer.load_state_dict(weights)
    return WanSpec(
        base_id=BASE_ID,
        transformer=transformer,
        vae=vae,
        meta=base_meta(run, {}),
        null_text=text[0].detach().clone(),
        action_text=action_text_of(text),
    )


def action_text_of(text: torch.Tensor) -> dict[str, torch.Tensor]:
    """A text table's action rows by action name (none for a table of the null text alone)."""
    table = as_text_table(text)
    if table.shape[0] == 1:
        return {}
    return {name: table[1 + index].detach().clone() for index, name in enumerate(PRETRAIN_ACTIONS)}


def spec_from_checkpoint(run: RunSettings) -> tuple[WanSpec, torch.Tensor, dict[str, Any]]:
    """The base as of the last denoiser checkpoint (for an export without training)."""
    cache = build_latent_cache(run)
    vae, vae_state = load_trained_vae(run)
    vae = vae_with_latent_stats(vae, cache["latents_mean"], cache["latents_std"])
    state = load_checkpoint(dit_checkpoint_path(run))
    if state is None:
        raise FileNotFoundError(
            f"no denoiser checkpoint at {dit_checkpoint_path(run)}; run the dit stage first"
        )
    if not same_encoder(state, encoder_fingerprint(vae), vae_state["step"]):
        raise RuntimeError(
            f"the denoiser at {dit_checkpoint_path(run)} was trained on latents of another encoder; "
            "train it again (dit stage) before exporting"
        )
    weights, text = shipped_weights(state)
    spec = spec_with_weights(run, vae, weights, text)
    summary = {
        "dit_weights": describe_weights(state.get("ema")),
        "vae_step": vae_state["step"],
        "vae_eval": vae_state.get("eval", {}),
        "dit_step": state["step"],
        "dit_seconds": round(state["elapsed"]),
        "latent_clips": int(cache["latents"].shape[0]),
    }
    return spec, text, summary
