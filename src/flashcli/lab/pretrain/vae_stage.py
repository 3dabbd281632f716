"""Stage 1: train the tiny AutoencoderKLWan on FigureWorld frames (pretrain actions, seen appearances).

Samples are random windows of consecutive frames and random square crops of pre-rendered clips, so
a step costs a fraction of a full 128x128x17 clip while the convolutions see the same statistics.
Windows start anywhere in a clip, so every frame also plays 'frame 0' (encoded alone, causally).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from einops import rearrange

from flashcli.core.devices import resolve_device

from .checkpoint import JsonlLog, cosine_lr, load_checkpoint, save_checkpoint, warm_start
from .configs import Z_DIM, RunSettings, vae_config
from .data import render_pool, to_model_range


def build_vae(temporal_factor: int = 2) -> AutoencoderKLWan:
    # Identity latent stats until the encode stage measures the real ones.
    config = vae_config(temporal_factor)
    return AutoencoderKLWan(**config, latents_mean=[0.0] * Z_DIM, latents_std=[1.0] * Z_DIM)


# A pixel moves when it is this far (channel mean, [-1, 1] units) from its clip's temporal median.
MOVING_THRESHOLD = 0.2


def moving_pixels(batch: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, H, W) mask of the pixels of `batch` (B, 3, F, H, W) away from their temporal median:
    the moving limbs (all zero for single frames)."""
    # contiguous(): torch 2.13's CPU median along a broadcast (stride-0) axis returns wrong values.
    median = batch.contiguous().median(dim=2, keepdim=True).values
    return ((batch - median).abs().mean(dim=1, keepdim=True) > MOVING_THRESHOLD).to(batch.dtype)


def sample_batch(
    pool: np.ndarray, window: int, crop: int, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """(B, 3, window, crop, crop) in [-1, 1]: random clip, start frame, crop position and mirror."""
    clips, frames, height, width, _ = pool.shape
    picks = []
    for _ in range(batch):
        index = int(torch.randint(clips, (1,), generator=generator))
        start = int(torch.randint(frames - window + 1, (1,), generator=generator))
        top = int(torch.randint(height - crop + 1, (1,), generator=generator))
        left = int(torch.randint(width - crop + 1, (1,), generator=generator))
        piece = pool[index, start : start + window, top : top + crop, left : left + crop]
        if bool(torch.randint(2, (1,), generator=generator)):
            piece = piece[:, :, ::-1]
        picks.append(to_model_range(np.ascontiguousarray(piece)))
    return rearrange(torch.from_numpy(np.stack(picks)), "b f h w c -> b c f h w")


def decoder_parameters(vae: AutoencoderKLWan) -> list[torch.nn.Parameter]:
    """What decoding a latent uses: post_quant_conv and the decoder (not the encoder, not quant_conv)."""
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def encoder_fingerprint(vae: AutoencoderKLWan) -> str:
    """A hash of what encoding uses (encoder and quant_conv): latents, the latent cache and a denoiser
    trained on them stay valid exactly as long as it is unchanged (decoder-only phases keep it)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        if name.startswith(("encoder.", "quant_conv.")):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def same_encoder(record: dict[str, Any], fingerprint: str, vae_step: int) -> bool:
    """Whether latents recorded in `record` came from the encoder with this `fingerprint`: by
    fingerprint, or by VAE step for records written before fingerprints were kept."""
    if "encoder" in record:
        return record["encoder"] == fingerprint
    return record["vae_step"] == vae_step


def psnr(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (peak 255), over all their pixels."""
    error = np.mean((reference.astype(np.float64) - reconstruction.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10.0 * math.log10(255.0**2 / error)


def moving_psnr(clip: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR over frames 1.. on the pixels that move (uint8 clips): what shows whether motion survives."""
    video = rearrange(torch.from_numpy(to_model_range(clip)), "f h w c -> 1 c f h w")
    mask = moving_pixels(video)[0, 0, 1:].numpy().astype(bool)
    if not mask.any():
        return float("nan")
    error = ((clip[1:].astype(np.float64) - reconstruction[1:].astype(np.float64)) ** 2).mean(axis=-1)
    return 10.0 * math.log10(255.0**2 / error[mask].mean())


@torch.no_grad()
def reconstruct(vae: AutoencoderKLWan, clip: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) -> uint8 reconstruction through the posterior mode, as the spec encodes."""
    video = rearrange(torch.from_numpy(to_model_range(clip)), "f h w c -> 1 c f h w")
    latent = vae.encode(video.to(vae.device)).latent_dist.mode()
    decoded = vae.decode(latent).sample.clamp(-1, 1).cpu()
    pixels = rearrange(decoded[0], "c f h w -> f h w c")
    return ((pixels + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def evaluate_vae(vae: AutoencoderKLWan, clips: np.ndarray) -> dict[str, float]:
    """Mean per-clip PSNR over full-size, full-length clips; also frame 0 alone (the photo path)."""
    vae.eval()
    all_frames, first_frames, moving = [], [], []
    for clip in clips:
        recon = reconstruct(vae, clip)
        all_frames.append(psnr(clip, recon))
        first_frames.append(psnr(clip[0], recon[0]))
        moving.append(moving_psnr(clip, recon))
    vae.train()
    return {
        "psnr": float(np.mean(all_frames)),
        "psnr_frame0": float(np.mean(first_frames)),
        "psnr_moving": float(np.nanmean(moving)),
    }


def vae_checkpoint_path(run: RunSettings) -> Path:
    return run.run_dir / "vae" / "checkpoint.pt"


def checkpoint_temporal_factor(state: dict[str, Any]) -> int:
    """The VAE layout a checkpoint was trained with (checkpoints from before the setting: x2)."""
    return int(state.get("settings", {}).get("vae", {}).get("temporal_factor", 2))


def load_trained_vae(run: RunSettings) -> tuple[AutoencoderKLWan, dict[str, Any]]:
    state = load_checkpoint(vae_checkpoint_path(run))
    if state is None:
        raise FileNotFoundError(f"no VAE checkpoint at {vae_checkpoint_path(run)}; run the vae stage first")
    vae = build_vae(checkpoint_temporal_factor(state))
    vae.load_state_dict(state["model"])
    return vae.eval(), state


def train_vae(run: RunSettings, *, time_limit: float | None = None) -> dict[str, Any]:
    settings = run.vae
    stage_dir = run.run_dir / "vae"
    pool = render_pool(run.data, settings.pool_clips, run.run_dir / "cache" / "vae_pool.npy")
    heldout = render_pool(
        run.data, settings.eval_clips, run.run_dir / "cache" / "heldout_pool.npy", heldout=True
    )

    torch.manual_seed(run.seed)
    device = resolve_device(run.device)
    vae = build_vae(settings.temporal_factor).to(device).train()
    trainable = decoder_parameters(vae) if settings.decoder_only else list(vae.parameters())
    vae.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(run.seed + 1)
    step, elapsed = 0, 0.0
    state = load_checkpoint(vae_checkpoint_path(run))
    if state is not None:
        if checkpoint_temporal_factor(state) != settings.temporal_factor:
            raise ValueError(
                f"{vae_checkpoint_path(run)} holds a VAE with temporal factor "
                f"{checkpoint_temporal_factor(state)}; pass --vae-temporal-factor "
                f"{checkpoint_temporal_factor(state)} or use a new --run-dir"
            )
        vae.load_state_dict(state["model"])
        if state.get("decoder_only", False) == settings.decoder_only:
            optimizer.load_state_dict(state["optimizer"])
        else:
            # The optimiser's parameter list changed (whole VAE <-> decoder alone): its moments no
            # longer line up, so this phase starts with fresh ones.
            print(f"vae: decoder_only is now {settings.decoder_only}; fresh optimiser state", flush=True)
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, elapsed = state["step"], state["elapsed"]
    elif settings.init_from is not None:
        fresh = warm_start(vae, settings.init_from)
        print(f"vae: started from {settings.init_from}; fresh: {fresh or 'none'}", flush=True)
    log = JsonlLog(stage_dir / "log.jsonl", step)
    started = time.time()
    best = state.get("eval", {}) if state else {}

    def checkpoint(evaluation: dict[str, float]) -> None:
        save_checkpoint(
            vae_checkpoint_path(run),
            {
                "model": vae.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "elapsed": elapsed + time.time() - started,
                "eval": evaluation,
                "decoder_only": settings.decoder_only,
                "settings": run.model_dump(mode="json"),
            },
        )

    while step < settings.steps:
        if time_limit is not None and time.time() - started > time_limit:
            break
        tick = time.time()
        lr = cosine_lr(
            step, settings.steps, settings.learning_rate, settings.min_learning_rate, settings.warmup_steps
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        if float(torch.rand((), generator=generator)) < settings.image_fraction:
            batch = sample_batch(pool, 1, settings.crop, settings.image_batch, generator)
        else:
            batch = sample_batch(pool, settings.window_frames, settings.crop, settings.batch_size, generator)
        batch = batch.to(device)
        with torch.set_grad_enabled(not settings.decoder_only):
            posterior = vae.encode(batch).latent_dist
        # Decode the posterior mean, as the spec encodes: sampling starts at std 1 and the encoder needs
        # thousands of steps to shrink it, which kept PSNR below 19 dB for the first 250 steps.
        decoded = vae.decode(posterior.mode()).sample
        weight = 1.0 + settings.moved_weight * moving_pixels(batch) if settings.moved_weight else 1.0
        l1 = ((decoded - batch).abs() * weight).mean()
        mse = ((decoded - batch).pow(2) * weight).mean()
        # KL per latent element (diffusers' kl() sums over only some axes of a 5-D latent).
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        loss = settings.l1_weight * l1 + settings.mse_weight * mse + settings.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        record = {
            "step": step,
            "loss": loss.item(),
            "l1": l1.item(),
            "mse": mse.item(),
            "kl": kl.item(),
            "frames": int(batch.shape[2]),
            "lr": lr,
            "seconds": time.time() - tick,
            "elapsed": elapsed + time.time() - started,
        }
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            best = evaluate_vae(vae, heldout)
            record.update({f"eval_{k}": v for k, v in best.items()})
            checkpoint(best)
        log.write(record)
        if step % 20 == 0:
            print(
                f"vae step {step}/{settings.steps} loss {loss.item():.4f} mse {mse.item():.5f} "
                f"{record['seconds']:.2f}s/step {best}",
                flush=True,
            )
    if step % settings.checkpoint_every != 0 and step != settings.steps:
        best = evaluate_vae(vae, heldout)
        checkpoint(best)
    return {"step": step, "eval": best}
