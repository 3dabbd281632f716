"""How long a run takes, planned before any weight loads: model FLOPs over the GPU's measured throughput.

The FLOPs of one denoiser forward pass of a Wan transformer are counted from its config.json and the
token counts (`denoiser_pass_flops`): every linear layer (patch embedding, the per-token time embedding
Wan 2.2 TI2V uses, the text projection, self- and cross-attention projections, the FFN, the output
projection) and the attention matmuls. A training step and a sampling step are counted in passes of it
(`training_step_flops`, `sampling_step_flops`); the seconds are those FLOPs over the GPU's dense bf16
matmul throughput, measured in a few milliseconds (`measured_matmul_tflops`), times `UTILISATION`.

FLASH_GPU_TFLOPS=N (beside FLASH_GPU_MEMORY_GIB, `core.devices`) sets the throughput instead of measuring
it: to plan on a CPU (tests) or for another card. Off CUDA and without it, nothing is estimated: tiny and
CPU runs are timed by bench/cli_speed.py and bench/core_speed.py instead.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

THROUGHPUT_ENV = "FLASH_GPU_TFLOPS"  # the GPU's dense bf16 matmul TFLOP/s, instead of measuring it
# The share of the measured matmul throughput a denoiser pass reaches. ASSUMED, not measured: a guess for
# a 5B transformer at these token counts until scripts/device/real_base_check.sh measures s/step on a GPU
# (bench/fullsize_speed.py reports the same ratio as MFU).
UTILISATION = 0.35


# ----- counting -----------------------------------------------------------------------------------


def video_tokens(
    transformer: Mapping[str, Any], vae: Mapping[str, Any], frames: int, width: int, height: int
):
    """Tokens the denoiser sees for a video: latent frames x height x width, each divided by the patch."""
    temporal = int(vae.get("scale_factor_temporal") or 4)
    spatial = int(vae.get("scale_factor_spatial") or 8)
    p_t, p_h, p_w = (int(p) for p in transformer["patch_size"])
    latent_frames = (frames - 1) // temporal + 1
    return (latent_frames // p_t) * (height // spatial // p_h) * (width // spatial // p_w)


def _linear(rows: int, inputs: int, outputs: int) -> int:
    return 2 * rows * inputs * outputs


@dataclasses.dataclass(frozen=True)
class _Widths:
    """A Wan transformer's widths, from its config.json."""

    dim: int
    ffn: int
    layers: int
    patch_in: int  # latent channels x patch volume
    patch_out: int
    freq: int
    text: int

    @classmethod
    def of(cls, transformer: Mapping[str, Any]) -> _Widths:
        patch = math.prod(int(p) for p in transformer["patch_size"])
        return cls(
            dim=int(transformer["num_attention_heads"]) * int(transformer["attention_head_dim"]),
            ffn=int(transformer["ffn_dim"]),
            layers=int(transformer["num_layers"]),
            patch_in=int(transformer["in_channels"]) * patch,
            patch_out=int(transformer["out_channels"]) * patch,
            freq=int(transformer["freq_dim"]),
            text=int(transformer["text_dim"]),
        )


def _token_path(w: _Widths, tokens: int, text_tokens: int) -> int:
    """Forward FLOPs on the video tokens' path through the blocks and out: what backward differentiates."""
    self_projections = 4 * _linear(tokens, w.dim, w.dim)  # q k v o
    cross = 2 * _linear(tokens, w.dim, w.dim) + 2 * 2 * tokens * text_tokens * w.dim  # q o; QK^T and AV
    feed_forward = _linear(tokens, w.dim, w.ffn) + _linear(tokens, w.ffn, w.dim)
    block = self_projections + _self_attention(w, tokens) + cross + feed_forward
    return w.layers * block + _linear(tokens, w.dim, w.patch_out)


def _self_attention(w: _Widths, tokens: int) -> int:
    return 2 * 2 * tokens * tokens * w.dim  # QK^T and AV over every head


def _inputs_only(w: _Widths, tokens: int, text_tokens: int) -> int:
    """Forward FLOPs on inputs no gradient reaches: patch embedding, time and text embedding, the cross-
    attention keys and values of the text."""
    embed = _linear(tokens, w.patch_in, w.dim)
    # Wan 2.2 TI2V embeds a timestep per token (frame 0 is clean), then projects it to 6 modulations.
    timestep = (
        _linear(tokens, w.freq, w.dim) + _linear(tokens, w.dim, w.dim) + _linear(tokens, w.dim, 6 * w.dim)
    )
    text = _linear(text_tokens, w.text, w.dim) + _linear(text_tokens, w.dim, w.dim)
    cross_keys = w.layers * 2 * _linear(text_tokens, w.dim, w.dim)
    return embed + timestep + text + cross_keys


def denoiser_pass_flops(transformer: Mapping[str, Any], tokens: int, text_tokens: int) -> int:
    """FLOPs of one forward pass (batch 1) of a Wan transformer with this config over `tokens` patchified
    latent tokens and `text_tokens` of text: every linear layer and the attention matmuls. Norms, rotary
    embedding and activations are left out (a few FLOPs per element, against thousands in the matmuls)."""
    w = _Widths.of(transformer)
    return _inputs_only(w, tokens, text_tokens) + _token_path(w, tokens, text_tokens)


def denoiser_backward_flops(transformer: Mapping[str, Any], tokens: int, text_tokens: int) -> int:
    """FLOPs of the backward of one pass with the base frozen (a LoRA trains): each linear on the tokens'
    path computes its input's gradient only (1x its forward), self-attention the gradients of Q, K and V
    (2x), cross-attention that of Q alone (1x); nothing flows into the embeddings or the text. Not the 2x
    of training every weight: on 81x832x480 a step is about 2.2 forwards, not 3."""
    w = _Widths.of(transformer)
    return _token_path(w, tokens, text_tokens) + w.layers * _self_attention(w, tokens)


def training_step_flops(
    transformer: Mapping[str, Any],
    tokens: int,
    text_tokens: int,
    passes: int,
    *,
    checkpointing: bool,
    samples: int = 1,
) -> int:
    """One optimizer step: each pass forward and backward, plus one more forward when gradient
    checkpointing recomputes the blocks, for every sample (batch rows x accumulated micro-batches)."""
    forward = denoiser_pass_flops(transformer, tokens, text_tokens)
    backward = denoiser_backward_flops(transformer, tokens, text_tokens)
    return (forward * (2 if checkpointing else 1) + backward) * passes * samples


def sampling_step_flops(pass_flops: int, *, guidance: bool) -> int:
    """One denoising step: one forward, two with classifier-free guidance (the prompt and the negative)."""
    return pass_flops * (2 if guidance else 1)


# ----- throughput ---------------------------------------------------------------------------------


def throughput_override() -> float | None:
    """$FLASH_GPU_TFLOPS as TFLOP/s, or None when unset; anything but a positive number is a ValueError."""
    from flashcli.core.devices import positive_number_from_env

    return positive_number_from_env(THROUGHPUT_ENV, "TFLOP/s", "400")


def measured_matmul_tflops(
    device: torch.device, dtype: torch.dtype | None = None, size: int = 4096, repeats: int = 20
) -> float:
    """The dense matmul throughput `device` reaches (TFLOP/s), measured on `repeats` products of two
    `size` x `size` matrices in `dtype` (bf16 by default) after a warm-up: milliseconds on a GPU."""
    import torch

    dtype = torch.bfloat16 if dtype is None else dtype
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):  # cuBLAS picks its kernel on the first calls
        a @ b
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronize(device)
    seconds = (time.perf_counter() - started) / repeats
    return 2 * size**3 / seconds / 1e12


def _synchronize(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_tflops(device: torch.device) -> float | None:
    """The throughput to plan with: $FLASH_GPU_TFLOPS when set, else measured on a CUDA device; None
    on anything else (no estimate)."""
    override = throughput_override()
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    return measured_matmul_tflops(device)


# ----- the estimate -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TimeEstimate:
    """A run's FLOPs and the seconds they take at `UTILISATION` of the measured throughput."""

    steps: int  # the steps the line names: training steps (learn) or denoising steps (animate)
    flops: int  # the whole run's model FLOPs (learn: training steps and the preview's sampling)
    step_flops: int  # one of those steps
    tflops: float  # the measured (or given) dense bf16 matmul throughput
    sampling_step_flops: int | None = None  # learn: one of the preview's denoising steps

    @property
    def seconds(self) -> float:
        return self.flops / (self.tflops * 1e12 * UTILISATION)

    def note(self) -> str:
        """The preflight's stderr line."""
        steps = f"{self.steps} step" + ("" if self.steps == 1 else "s")
        share = f"{UTILISATION:.0%} of the measured {_figure(self.tflops):g} TFLOP/s"
        return f"Time: {_duration(self.seconds)} for {steps} (planned at {share})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "steps": self.steps,
            "tflop_per_step": _figure(self.step_flops / 1e12),
            "tflop_per_sampling_step": (
                None if self.sampling_step_flops is None else _figure(self.sampling_step_flops / 1e12)
            ),
            "tflop": _figure(self.flops / 1e12),
            "measured_tflops": _figure(self.tflops),
            "utilisation": UTILISATION,
            "utilisation_measured": False,
        }


def _figure(value: float) -> float:
    """Four significant figures: 641.0 TFLOP at full size, 2.4e-05 on the miniature, never a rounded 0."""
    return float(f"{value:.4g}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    if seconds < 2 * 3600:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def learn_estimate(
    transformer: Mapping[str, Any],
    vae: Mapping[str, Any],
    text_tokens: int,
    train: Any,
    tflops: float,
    *,
    preview_steps: int = 0,
    preview_guidance: bool = False,
) -> TimeEstimate:
    """A `flash learn` run with these TrainSettings: its training steps, then the preview's sampling."""
    width, height = train.frame_size
    tokens = video_tokens(transformer, vae, train.frames, width, height)
    step = training_step_flops(
        transformer,
        tokens,
        text_tokens,
        train.align.denoiser_passes,
        checkpointing=bool(train.gradient_checkpointing),
        samples=train.batch_size * train.grad_accum,
    )
    sampling = sampling_step_flops(
        denoiser_pass_flops(transformer, tokens, text_tokens), guidance=preview_guidance
    )
    flops = step * train.steps + sampling * preview_steps
    return TimeEstimate(train.steps, flops, step, tflops, sampling)


def animate_estimate(
    transformer: Mapping[str, Any],
    vae: Mapping[str, Any],
    text_tokens: int,
    tflops: float,
    *,
    frames: int,
    size: tuple[int, int],
    steps: int,
    guidance: bool,
    videos: int = 1,
) -> TimeEstimate:
    """A `flash animate` run: `videos` videos of `steps` denoising steps each."""
    tokens = video_tokens(transformer, vae, frames, *size)
    step = sampling_step_flops(denoiser_pass_flops(transformer, tokens, text_tokens), guidance=guidance)
    return TimeEstimate(steps * videos, step * steps * videos, step, tflops)
