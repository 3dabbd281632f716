"""The tiny base's architecture and the pretraining run settings, in one place.

Sizes were chosen by measuring step times on the shared 2-core CPU (numbers in the model card,
src/flashcli/weights/README.md): 64x64, 17 frames -> a (16, 9, 16, 16) latent -> 576 tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BASE_ID = "tiny"
Z_DIM = 16

# AutoencoderKLWan, Wan 2.2 style pixel patching (2x2 pixels -> 12 channels) then one downsampling that
# is both spatial and temporal: x4 space, x2 time (frames = 2k+1, so every 4k+1 clip fits).
# Measured against the first layout (no patching, x4 space, x4 time, base_dim 16): a 64x64x17 step is
# about 2x cheaper, and x4 temporal compression decoded every frame after the first as a grey blur
# (21 dB after 1100 steps) -- a 1.9 M-parameter VAE cannot pack 4 frames of motion into 16 channels.
VAE_CONFIG: dict[str, Any] = {
    "base_dim": 32,
    "z_dim": Z_DIM,
    "dim_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [True],
    "patch_size": 2,
    "in_channels": 12,
    "out_channels": 12,
    "scale_factor_spatial": 4,
    "scale_factor_temporal": 2,
}


def vae_config(temporal_factor: int) -> dict[str, Any]:
    """VAE_CONFIG with x2 (the layout above) or x1 (no temporal compression) in time.

    Measured on the second base (x2): a moving limb's two frames share one 16-channel latent frame,
    and the decoder renders both as one static blur (13.5 dB on moving pixels, 24.6 dB overall), so
    no motion survives decoding. x1 gives every frame its own latent, as the sharp frame-0 path has.
    """
    if temporal_factor not in (1, 2):
        raise ValueError(f"the tiny VAE compresses time by 1 or 2, not {temporal_factor}")
    return {
        **VAE_CONFIG,
        "temperal_downsample": [temporal_factor == 2],
        "scale_factor_temporal": temporal_factor,
    }


# WanTransformer3DModel, TI2V style: in = out = z_dim, no image embedding; text is a learned null embedding.
TEXT_DIM = 64
NULL_TEXT_TOKENS = 8
TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 4,
    "attention_head_dim": 32,
    "in_channels": Z_DIM,
    "out_channels": Z_DIM,
    "text_dim": TEXT_DIM,
    "freq_dim": 64,
    "ffn_dim": 512,
    "num_layers": 6,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 64,
}


def transformer_config(photo_channels: bool, layers: int = 6, heads: int = 4) -> dict[str, Any]:
    """The tiny denoiser's config; with photo channels it also reads the photo latent on every frame.
    `layers` and `heads` (of 32 dims each, feed-forward 4x the width) size a larger denoiser."""
    return {
        **TRANSFORMER_CONFIG,
        "in_channels": 2 * Z_DIM if photo_channels else Z_DIM,
        "num_layers": layers,
        "num_attention_heads": heads,
        "ffn_dim": 4 * heads * TRANSFORMER_CONFIG["attention_head_dim"],
    }


class DataSettings(BaseModel):
    """Which FigureWorld clips the base may see: pretrain actions, seen appearances, disjoint seed ranges."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=64, ge=64)
    frames: int = Field(default=17, ge=9)
    fps: int = 8
    # 0 starts every clip from rest (standing, before the action), as people record an action and as a
    # photo to animate usually shows; None lets each clip's seed pick a point of the cycle.
    phase: float | None = Field(
        default=None, ge=0, lt=1, description="start every clip at this point of its action's cycle"
    )
    train_seed_start: int = 0
    heldout_seed_start: int = 1_000_000


class VaeStageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=2400, ge=1)
    temporal_factor: int = Field(default=2, ge=1, le=2, description="time compression: 2 or 1 (none)")
    # The step is dominated by the causal cache's per-chunk Python loop: batch 2 measured 1.1x batch 1.
    batch_size: int = Field(default=4, ge=1)
    # Whole 17-frame clips: the causal cache passes chunk to chunk, and a VAE trained on 9-frame windows
    # fell to 7 dB on frames 13-16 (chunk positions it never saw). Crops keep the step cost down.
    window_frames: int = Field(default=17, ge=1, description="consecutive frames per sample (2k+1)")
    crop: int = Field(default=48, ge=16, description="square random crop, a multiple of the VAE's x4")
    # Single-frame steps (joint image + video training, as Wan's VAE was trained): a batch of 32 frames
    # from 32 clips costs about what 2 whole clips cost, and teaches colour and shape far faster than
    # 2 clips' worth of near-identical frames. The clip steps train the temporal taps and the cache.
    image_fraction: float = Field(default=0.75, ge=0, le=1, description="share of steps on single frames")
    image_batch: int = Field(default=32, ge=1, description="frames per single-frame step")
    pool_clips: int = Field(default=240, ge=1, description="clips rendered once and sampled from")
    learning_rate: float = Field(default=1e-3, gt=0)
    min_learning_rate: float = Field(default=1e-4, gt=0)
    warmup_steps: int = Field(default=100, ge=0)
    kl_weight: float = Field(default=1e-4, ge=0)
    mse_weight: float = Field(default=1.0, ge=0)
    l1_weight: float = Field(default=1.0, ge=0)
    # Moving limbs are a few per cent of a clip's pixels: with every pixel weighted alike the VAE
    # learns to blur them. Pixels far from the clip's temporal median get 1 + moved_weight.
    moved_weight: float = Field(default=0.0, ge=0, description="extra loss weight on moving pixels")
    # Train the decoder alone on a frozen encoder: the latents stay fixed, so a denoiser trained on them
    # stays valid while the decoder keeps sharpening (pretraining both at once on 2 CPU cores).
    decoder_only: bool = Field(default=False, description="freeze the encoder, train the decoder")
    # A new run may start from another run's VAE checkpoint: every weight whose name and shape fit is
    # taken (x2 -> x1 in time: all but the two time convolutions), so only the new layout is learnt.
    init_from: Path | None = Field(default=None, description="VAE checkpoint to start a new run from")
    checkpoint_every: int = Field(default=100, ge=1)
    eval_clips: int = Field(default=8, ge=1)


class EncodeStageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clips: int = Field(default=480, ge=1)
    flip_copies: bool = Field(default=True, description="also encode the mirrored clip (left/right swap)")
    # On a GPU box the serial renderer and one-clip encodes would take most of a short lease.
    workers: int = Field(default=1, ge=1, description="processes rendering clips (same clips for any number)")
    batch: int = Field(default=1, ge=1, description="clips per encoder call")


class DitStageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=1600, ge=1)
    batch_size: int = Field(default=4, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    min_learning_rate: float = Field(default=5e-5, gt=0)
    warmup_steps: int = Field(default=200, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    train_shift: float = Field(default=3.0, gt=0)
    checkpoint_every: int = Field(default=100, ge=1)
    autocast_bf16: bool = Field(default=False, description="bf16 autocast: measured 3-7x slower on this CPU")
    short_fraction: float = Field(default=0.25, ge=0, le=1, description="steps on a latent prefix")
    short_latent_frames: int = Field(default=5, ge=2, description="5 latent frames = 9 frames")
    export_every_seconds: float = Field(default=1200.0, gt=0)
    init_from: Path | None = Field(
        default=None, description="denoiser checkpoint, or exported base folder, to start a new run from"
    )
    ema_decay: float = Field(
        default=0.999, ge=0, lt=1, description="weight average the base is exported with; 0 = raw weights"
    )
    photo_channels: bool = Field(
        default=False, description="concatenate the photo latent to every frame's input (in = 2 z_dim)"
    )
    layers: int = Field(default=6, ge=1, description="denoiser blocks (a new run only)")
    heads: int = Field(default=4, ge=1, description="attention heads of 32 dims; width = 32 x heads")
    action_text: bool = Field(
        default=False,
        description="learn one text embedding per pretraining action and condition on it (class-conditional)",
    )
    action_drop: float = Field(
        default=0.2, ge=0, le=1, description="with action_text: share of samples shown the null text instead"
    )
    # A moving limb covers a few per cent of a clip's latent positions, so with every position weighted
    # alike the loss is mostly the static rest, and the denoiser learns to keep bodies still. Positions
    # whose pixels differ from frame 0 (where a limb is, or was) get 1 + moved_weight.
    moved_weight: float = Field(
        default=0.0, ge=0, description="extra loss weight on latent positions where the clip moves"
    )
    text_lr_scale: float = Field(
        default=10.0, gt=0, description="the learned texts' learning rate, as a multiple of the denoiser's"
    )
    # A run with a time limit (a GPU lease) cannot know its step rate beforehand: measured over the
    # first steps of warmup, the schedule is stretched or shrunk to end when the time does.
    fit_steps_to_time: bool = Field(
        default=False, description="with a time limit: set `steps` from the step rate measured early on"
    )


class RunSettings(BaseModel):
    """The whole pretraining run; saved beside the checkpoints so a rerun continues the same recipe."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    # One thread: on the shared, oversubscribed 2-core box a 2-thread step measured 5x slower than 1 thread.
    threads: int = Field(default=1, ge=1)
    # Where the models train: a CUDA GPU does the whole recipe in minutes; checkpoints stay portable.
    device: str = Field(default="cpu", description="cpu, cuda or auto (cuda when present)")
    run_dir: Path = Path("runs/tiny")
    export_dir: Path = Path("src/flashcli/weights/tiny")
    data: DataSettings = Field(default_factory=DataSettings)
    vae: VaeStageSettings = Field(default_factory=VaeStageSettings)
    encode: EncodeStageSettings = Field(default_factory=EncodeStageSettings)
    dit: DitStageSettings = Field(default_factory=DitStageSettings)
