"""Full-size speed and memory: Wan 2.2 TI2V-5B with random weights, through flash's own trainer and sampler.

The weights' values do not change the time or the memory, so no checkpoint is needed: the denoiser
(`WanTransformer3DModel`, 5 B parameters, bf16) and the VAE (`AutoencoderKLWan`, Wan 2.2's 48-channel
layout, fp32) are built from their published configurations with random weights. The UMT5 text
encoder is left out: `flash learn` encodes the prompt once per run, so a random (512, 4096) prompt
embedding stands in for it.

For each video shape it measures, on the GPU:
- seconds per training step (median, first steps dropped) of `flash learn`'s step for each variant,
  with gradient checkpointing, bf16 autocast and a rank-16 LoRA, as `train_adapter` runs it;
- peak GPU memory during the training steps (after the clips are encoded);
- model FLOPs utilisation (MFU): the step's model FLOPs (the denoiser passes of one step, forward and
  backward, counted by torch's FlopCounterMode without gradient checkpointing's recomputation) over
  the step time and over the bf16 matmul peak *measured* on this GPU;
- one animation: seconds per sampling step, the VAE decode, and the peak memory of both.

    python bench/fullsize_speed.py                                   # on a CUDA GPU: the 5B table
    python bench/fullsize_speed.py --shapes 49x512,81x704 --steps 8 --json bench/out/fullsize.json
    python bench/fullsize_speed.py --config smoke --device cpu       # the same path, tiny, on a CPU

Shapes are FRAMESxSIZE (flash trains square clips; frames 4k+1, size a multiple of 32).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Wan 2.2 TI2V-5B as published (transformer/ and vae/ config.json of Wan-AI/Wan2.2-TI2V-5B-Diffusers);
# the constants live with the memory plan, which computes from the same configs.
from flashcli.core.memory_plan import TEXT_TOKENS, WAN22_TI2V_5B_TRANSFORMER, WAN22_VAE
from flashcli.core.time_plan import measured_matmul_tflops  # the preflight's measurement, the MFU denominator

# The same structure, small enough to run on a laptop CPU in seconds: checks the path, not the speed.
SMOKE_TRANSFORMER = {
    **WAN22_TI2V_5B_TRANSFORMER,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "text_dim": 32,
    "freq_dim": 32,
    "ffn_dim": 64,
    "num_layers": 4,
    "rope_max_seq_len": 64,
}
SMOKE_VAE = {**WAN22_VAE, "base_dim": 8, "decoder_base_dim": 8, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
SMOKE_TEXT_TOKENS = 8


@dataclass(frozen=True)
class FullSizeConfig:
    name: str
    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_tokens: int
    default_shapes: tuple[tuple[int, int], ...]
    default_variants: tuple[str, ...]


CONFIGS = {
    "wan2.2-ti2v-5b": FullSizeConfig(
        "wan2.2-ti2v-5b",
        WAN22_TI2V_5B_TRANSFORMER,
        WAN22_VAE,
        TEXT_TOKENS,
        default_shapes=((49, 512), (81, 704)),
        default_variants=("none", "augment_motion", "augment_both"),
    ),
    "smoke": FullSizeConfig(
        "smoke",
        SMOKE_TRANSFORMER,
        SMOKE_VAE,
        SMOKE_TEXT_TOKENS,
        default_shapes=((9, 64),),
        default_variants=("none", "augment_both"),
    ),
}


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'49x512,81x704' -> [(49, 512), (81, 704)]."""
    shapes = []
    for item in text.split(","):
        frames, _, size = item.strip().partition("x")
        if not frames.isdigit() or not size.isdigit():
            raise argparse.ArgumentTypeError(f"shape {item!r} is not FRAMESxSIZE, e.g. 49x512")
        shapes.append((int(frames), int(size)))
    return shapes


# ----- the model ----------------------------------------------------------------------------------


def build_spec(
    config: FullSizeConfig,
    device: torch.device,
    *,
    num_layers: int | None = None,
    seed: int = 0,
    vae: Any | None = None,
):
    """A WanSpec of `config` with random weights on `device`: denoiser in bf16 on CUDA (fp32 on CPU),
    keeping the modules diffusers keeps in fp32 when it loads bf16 weights; VAE in fp32 (`vae` reuses
    one already built: at full size it is 0.7 B parameters)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from flashcli.core.devices import default_dtype
    from flashcli.core.specs import WanSpec

    transformer_config = dict(config.transformer)
    if num_layers is not None:
        transformer_config["num_layers"] = num_layers
    z_dim = config.vae["z_dim"]
    torch.manual_seed(seed)
    with torch.device(device):
        transformer = WanTransformer3DModel(**transformer_config)
        if vae is None:
            vae = AutoencoderKLWan(**config.vae, latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
        null_text = torch.randn(config.text_tokens, transformer_config["text_dim"])
    # Cast by hand, keeping in fp32 what diffusers keeps in fp32 when it loads bf16 weights
    # (norms, time embedder, modulation tables, rope), as `from_pretrained(torch_dtype=bf16)` would.
    dtype = default_dtype(device)
    keep_fp32 = set(getattr(transformer, "_keep_in_fp32_modules", None) or [])
    for name, parameter in transformer.named_parameters():
        if not keep_fp32.intersection(name.split(".")):
            parameter.data = parameter.data.to(dtype)
    for module_name, module in transformer.named_modules():
        for buffer_name, buffer in list(module.named_buffers(recurse=False)):
            full_name = f"{module_name}.{buffer_name}".split(".")
            if buffer.is_floating_point() and not keep_fp32.intersection(full_name):
                module._buffers[buffer_name] = buffer.to(dtype)
    meta = {
        "base_id": f"{config.name}-random",
        "frames": config.default_shapes[0][0],
        "size": config.default_shapes[0][1],
    }
    return WanSpec(
        base_id=meta["base_id"],
        transformer=transformer,
        vae=vae,
        meta=meta,
        null_text=null_text,
        device=device,
    )


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----- timing and memory --------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak allocated GPU memory since the last reset; None on a CPU (use bench/cli_speed.py's RSS)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def random_clips(count: int, frames: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for _ in range(count)]


def train_settings(variant: str, frames: int, size: int, steps: int, copies: int) -> Any:
    from flashcli.core.settings import AlignSettings, TrainSettings

    return TrainSettings(
        frames=frames,
        size=size,
        steps=steps,
        rank=16,
        warmup_steps=0,
        augment_copies=copies,
        gradient_checkpointing=True,
        align=AlignSettings.variant(variant),
    )


@dataclass
class StepTiming:
    seconds_per_step: float
    denoiser_passes_per_step: float
    peak_gib: float | None
    encode_seconds: float


def time_training(spec: Any, clips: list[np.ndarray], settings: Any) -> StepTiming:
    """`train_adapter` as `flash learn` runs it; steps timed from its progress reports (each report
    follows a loss read-back, so the GPU has finished the step), the first two dropped."""
    from flashcli.core.trainer import train_adapter

    stamps: list[float] = []
    passes = [0, 0]  # denoiser calls: during the encode phase, during the steps
    device = spec.device

    def count_pass(*_: Any) -> None:
        passes[1 if stamps else 0] += 1

    def on_progress(progress: Any) -> None:
        if progress.phase != "train":
            return
        if not stamps:
            reset_peak(device)  # the steps' peak, not the VAE encoding's
        stamps.append(time.perf_counter())

    hook = spec.transformer.register_forward_pre_hook(count_pass)
    started = time.perf_counter()
    try:
        train_adapter(spec, clips, settings, progress=on_progress)
    finally:
        hook.remove()
    durations = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    if not durations:
        raise ValueError("time at least 3 training steps (the first two are warm-up)")
    return StepTiming(
        seconds_per_step=statistics.median(durations),
        denoiser_passes_per_step=passes[1] / (len(stamps) - 1),
        peak_gib=peak_gib(device),
        encode_seconds=stamps[0] - started,
    )


def denoiser_pass_flops(spec: Any, frames: int, size: int, text: torch.Tensor) -> float:
    """FLOPs of one denoiser forward and backward with a LoRA attached and the base frozen, as in a
    training step, without gradient checkpointing (model FLOPs, not recomputed ones)."""
    from torch.utils.flop_counter import FlopCounterMode

    from flashcli.core.adapter import attach_new_lora
    from flashcli.core.settings import DEFAULT_LORA_TARGETS

    device = spec.device
    latent_frames = spec.latent_frames(frames)
    side = size // spec.spatial_factor
    channels = spec.transformer.config.in_channels
    latents = torch.randn(1, channels, latent_frames, side, side, device=device)
    timesteps = torch.full((1,), 500.0, device=device)
    parameters = attach_new_lora(spec, name="flops", targets=list(DEFAULT_LORA_TARGETS), rank=16, alpha=16)
    try:
        cast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if device.type == "cuda"
            else contextlib.nullcontext()
        )
        with FlopCounterMode(display=False) as counter:
            with cast:
                out = spec.denoise(latents, timesteps, text)
            out.float().square().mean().backward()
        if any(p.grad is None for p in parameters):
            raise RuntimeError("the LoRA got no gradient: the pass counted is not a training pass")
        return float(counter.get_total_flops())
    finally:
        spec.transformer.delete_adapters("flops")


def extrapolated_pass_flops(config: FullSizeConfig, spec: Any, frames: int, size: int) -> float:
    """FLOPs of one pass of `spec`'s denoiser, from exact counts at 1 and 2 blocks of the same config
    (every block has the same shape, so FLOPs are affine in the block count): needs far less memory."""
    counts = []
    for n in (1, 2):
        small = build_spec(config, spec.device, num_layers=n, vae=spec.vae)
        counts.append(denoiser_pass_flops(small, frames, size, small.encode_text(None)))
        del small
    per_block = counts[1] - counts[0]
    return counts[0] + per_block * (spec.num_blocks - 1)


def time_animation(spec: Any, frames: int, size: int, sample_steps: int) -> dict[str, float | None]:
    """One video: the denoising steps (bf16 autocast on CUDA) and the VAE decode, timed apart."""
    from flashcli.core.pixels import photo_to_tensor
    from flashcli.core.sampler import sample_photo_latents
    from flashcli.core.settings import SampleSettings

    device = spec.device
    photo = random_clips(1, 1, size, seed=1)[0][0]
    reference = photo_to_tensor(photo).unsqueeze(0)
    settings = SampleSettings(steps=sample_steps, seed=0, use_ded=False)
    reset_peak(device)
    synchronize(device)
    started = time.perf_counter()
    latents = sample_photo_latents(spec, reference, [], settings, frames=frames)
    synchronize(device)
    sampled = time.perf_counter()
    sample_peak = peak_gib(device)
    reset_peak(device)
    with torch.no_grad():
        spec.decode(latents, reference_photo=reference, use_ded=False)
    synchronize(device)
    decoded = time.perf_counter()
    return {
        "seconds_per_sampling_step": (sampled - started) / sample_steps,
        "sampling_peak_gib": sample_peak,
        "decode_seconds": decoded - sampled,
        "decode_peak_gib": peak_gib(device),
    }


# ----- the table ----------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from flashcli.core.devices import resolve_device

    config = CONFIGS[args.config]
    device = resolve_device(args.device)
    shapes = args.shapes or list(config.default_shapes)
    variants = args.variants or list(config.default_variants)
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = measured_matmul_tflops(device, peak_dtype, args.matmul_size, args.matmul_repeats)
    print(f"measured {peak_dtype} matmul peak: {peak:.3g} TFLOP/s", file=sys.stderr, flush=True)

    spec = build_spec(config, device)
    result: dict[str, Any] = {
        "config": config.name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "denoiser_parameters": parameter_count(spec.transformer),
        "vae_parameters": parameter_count(spec.vae),
        "matmul_peak_tflops": peak,
        "matmul_dtype": str(peak_dtype),
        "clips": args.clips,
        "augment_copies": args.copies,
        "steps": args.steps,
        "rows": [],
    }
    for frames, size in shapes:
        spec.check_video_shape(frames, size, size)
        tokens = spec.latent_frames(frames) * (size // spec.size_multiple) ** 2
        pass_flops = extrapolated_pass_flops(config, spec, frames, size)
        clips = random_clips(args.clips, frames, size, seed=0)
        row: dict[str, Any] = {
            "frames": frames,
            "size": size,
            "tokens": tokens,
            "pass_tflops": pass_flops / 1e12,
        }
        for variant in variants:
            label = f"{frames}x{size} {variant}"
            try:
                timing = time_training(
                    spec, clips, train_settings(variant, frames, size, args.steps, args.copies)
                )
            except torch.OutOfMemoryError:
                row[variant] = {"out_of_memory": True}
                print(f"{label}: out of memory", file=sys.stderr, flush=True)
                torch.cuda.empty_cache()
                continue
            step_flops = pass_flops * timing.denoiser_passes_per_step
            row[variant] = {
                "seconds_per_step": timing.seconds_per_step,
                "denoiser_passes_per_step": timing.denoiser_passes_per_step,
                "peak_gib": timing.peak_gib,
                "encode_seconds": timing.encode_seconds,
                "model_tflops_per_step": step_flops / 1e12,
                "mfu": step_flops / timing.seconds_per_step / (peak * 1e12),
            }
            print(f"{label}: {timing.seconds_per_step:.3f} s/step", file=sys.stderr, flush=True)
        try:
            row["animate"] = time_animation(spec, frames, size, args.sample_steps)
        except torch.OutOfMemoryError:
            row["animate"] = {"out_of_memory": True}
            torch.cuda.empty_cache()
        result["rows"].append(row)
    return result


def markdown(result: dict[str, Any], variants: list[str]) -> str:
    def gib(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    lines = [
        f"{result['config']} with random weights on {result['device']} (torch {result['torch']}); "
        f"denoiser {result['denoiser_parameters'] / 1e6:,.1f} M parameters, VAE "
        f"{result['vae_parameters'] / 1e6:,.1f} M; measured {result['matmul_dtype']} matmul peak "
        f"{result['matmul_peak_tflops']:.3g} TFLOP/s; {result['clips']} clips x {result['augment_copies']} "
        f"augmented copies, rank 16, gradient checkpointing, median of {result['steps'] - 2} steps",
        "",
        "| frames x size | tokens | variant | s/step | denoiser passes | model TFLOP/step | MFU | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        for variant in variants:
            cell = row.get(variant, {})
            shape = f"{row['frames']} x {row['size']}"
            if cell.get("out_of_memory"):
                lines.append(f"| {shape} | {row['tokens']} | {variant} | out of memory | | | | |")
                continue
            lines.append(
                f"| {shape} | {row['tokens']} | {variant} | {cell['seconds_per_step']:.3f} | "
                f"{cell['denoiser_passes_per_step']:.0f} | {cell['model_tflops_per_step']:.3g} | "
                f"{cell['mfu']:.1%} | {gib(cell['peak_gib'])} |"
            )
    lines += [
        "",
        "| frames x size | s per sampling step | sampling peak GiB | VAE decode s | decode peak GiB |",
    ]
    lines.append("|---|---|---|---|---|")
    for row in result["rows"]:
        cell = row["animate"]
        shape = f"{row['frames']} x {row['size']}"
        if cell.get("out_of_memory"):
            lines.append(f"| {shape} | out of memory | | | |")
            continue
        lines.append(
            f"| {shape} | {cell['seconds_per_sampling_step']:.3f} | {gib(cell['sampling_peak_gib'])} | "
            f"{cell['decode_seconds']:.1f} | {gib(cell['decode_peak_gib'])} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=sorted(CONFIGS), default="wan2.2-ti2v-5b")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument(
        "--shapes", type=parse_shapes, default=None, help="FRAMESxSIZE,... (default per config)"
    )
    parser.add_argument(
        "--variants", type=lambda s: s.split(","), default=None, help="e.g. none,augment_both"
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="training steps per variant; the first 2 are dropped"
    )
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="augmented copies per clip (encoded once)")
    parser.add_argument("--sample-steps", type=int, default=4)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--matmul-repeats", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error("--steps must be at least 3: the first two steps are warm-up")
    return args


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    result = measure(args)
    out(markdown(result, args.variants or list(CONFIGS[args.config].default_variants)))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
