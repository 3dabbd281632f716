"""Which settings of `flash learn` and `flash animate` fit a 24 GB and an 80 GB card, for full-size Wan 2.2
TI2V-5B, planned from its published configs without loading a weight (`flashcli.core.memory_plan`).

    python bench/memory_plan.py                           # the table, markdown on stdout
    python bench/memory_plan.py --json bench/out/memory_plan.json
    python bench/memory_plan.py --calibrate               # re-measure the activation formulas (~5 min CPU)
    python bench/memory_plan.py --calibrate --vae         # and the VAE's (real widths: ~10 min more)

Shapes are FRAMESxWIDTHxHEIGHT. Every row is one setting: gradient checkpointing on or off, the UMT5 text
encoder kept on the GPU for the whole run, freed once the prompt is encoded, or left on the CPU, the VAE
whole or tiled; LoRA rank 16 on attn1, the default variant (two denoiser graphs per step, four
Correspondence Align blocks), bf16. "yes/no" per card: learn fits / animate fits, reserve included.
A last table gives the model TFLOP of one training step and one sampling step per ladder shape, as the
preflight's time estimate counts them (`flashcli.core.time_plan`).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flashcli.core import memory_plan as mp

SHAPES = ((49, 832, 480), (81, 832, 480), (81, 1280, 704), (121, 1280, 704))
CARDS_GIB = (24, 80)  # an RTX 4090 / L4-class card, an A100 / H100-class card
# (gradient checkpointing, where UMT5 is, VAE tiling): the four the CLI can be asked for today, then the
# lightest the plan knows (UMT5 on the CPU, tiled VAE).
SETTINGS = ((False, "gpu", False), (False, "freed", False), (True, "gpu", False), (True, "freed", False))
SETTINGS += ((True, "cpu", True),)


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """'49x832x480,81x1280x704' -> [(49, 832, 480), (81, 1280, 704)] (frames, width, height)."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().split("x")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise argparse.ArgumentTypeError(f"shape {item!r} is not FRAMESxWIDTHxHEIGHT, e.g. 81x832x480")
        shapes.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return shapes


# ----- the plan table -------------------------------------------------------------------------------


def plan_rows(shapes: Iterable[tuple[int, int, int]], weights: Any) -> list[dict[str, Any]]:
    configs = mp.BaseConfigs.wan22_ti2v_5b()
    rows = []
    for frames, width, height in shapes:
        for checkpointing, text, tiling in SETTINGS:
            run = mp.RunSettings(
                frames=frames,
                height=height,
                width=width,
                gradient_checkpointing=checkpointing,
                text_encoder=text,
                vae_tiling=tiling,
            )
            learn = mp.plan_learn(configs, run, weights=weights)
            animate = mp.plan_animate(configs, run, weights=weights)
            rows.append({"learn": learn.as_dict(), "animate": animate.as_dict()})
    return rows


def weights_line(weights: Any) -> str:
    return (
        f"Resident weights: denoiser bf16 {weights.transformer / mp.GIB:.1f} GiB, UMT5-XXL bf16 "
        f"{weights.text_encoder / mp.GIB:.1f} GiB, VAE fp32 {weights.vae / mp.GIB:.2f} GiB."
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per setting; a card column says yes/no for learn, then for animate (reserve included)."""

    def fits(plan: dict[str, Any], card: int) -> str:
        return "yes" if plan["needs_gib"] <= card else "no"

    lines = [
        "| frames×W×H | ckpt | UMT5 (VAE) | learn GiB | animate | 24 GiB | 80 GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        learn, animate, run = row["learn"], row["animate"], row["learn"]["run"]
        shape = f"{run['frames']}×{run['width']}×{run['height']}"
        checkpointing = "on" if run["gradient_checkpointing"] else "off"
        text = {"gpu": "kept", "freed": "freed", "cpu": "CPU"}[run["text_encoder"]]
        text += " (tiled)" if run["vae_tiling"] else ""
        phase = {"training step": "step", "preview VAE decode": "decode", "prompt encoding": "prompt"}.get(
            learn["peak_phase"], learn["peak_phase"]
        )
        cards = " | ".join(f"{fits(learn, card)}/{fits(animate, card)}" for card in CARDS_GIB)
        lines.append(
            f"| {shape} | {checkpointing} | {text} | {learn['peak_gib']:.1f} {phase} "
            f"| {animate['peak_gib']:.1f} | {cards} |"
        )
    return "\n".join(lines)


# ----- the memory ladder: what the preflight chooses on each card --------------------------------------

LADDER_SHAPES = ((49, 832, 480), (81, 832, 480), (121, 1280, 704))


def ladder_rows(weights: Any) -> list[dict[str, Any]]:
    """Per shape, command and card: the rung the preflight chooses (`mp.choose_rung`), as `flash learn`
    (checkpointing on, the default for a diffusers folder) and `flash animate` plan it."""
    configs = mp.BaseConfigs.wan22_ti2v_5b()
    planners = {
        "learn": functools.partial(mp.plan_learn, configs, weights=weights),
        "animate": functools.partial(mp.plan_animate, configs, weights=weights),
    }
    rows = []
    for frames, width, height in LADDER_SHAPES:
        runs = {
            "learn": mp.RunSettings(frames, height, width, gradient_checkpointing=True, text_encoder="freed"),
            "animate": mp.animate_run(frames, width, height, guidance=True),
        }
        for command, run in runs.items():
            for card in CARDS_GIB:
                choice = mp.choose_rung(
                    command, planners[command], run, card * mp.GIB, mp.shape_steps(configs)
                )
                rows.append(
                    {
                        "shape": f"{frames}x{width}x{height}",
                        "command": command,
                        "card_gib": card,
                        **choice.as_dict(),
                    }
                )
    return rows


def ladder_markdown(rows: list[dict[str, Any]]) -> str:
    """One line per shape and command: each card's chosen rung and what it needs, or what would fit."""
    lines = [
        "| shape | command | rungs a/b/c/d need GiB | "
        + " | ".join(f"{card} GiB" for card in CARDS_GIB)
        + " |",
        "|---|---|---|" + "---|" * len(CARDS_GIB),
    ]
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault((row["shape"], row["command"]), []).append(row)
    for (shape, command), cards in by_key.items():
        needs = "/".join(f"{rung['needs_gib']:.1f}" for rung in cards[0]["rungs"])
        cells = [
            card["rung"]["name"] if card["rung"] else f"refused; fits: {card['smaller_settings_that_fit']}"
            for card in cards
        ]
        lines.append(f"| {shape} | {command} | {needs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----- the time plan: model FLOPs per step ------------------------------------------------------------


def flops_rows() -> list[dict[str, Any]]:
    """Per ladder shape: TFLOP of one `flash learn` step (the default variant's passes, checkpointing on)
    and of one `flash animate` denoising step (with guidance), as `core.time_plan` plans them."""
    from flashcli.core import time_plan
    from flashcli.core.settings import AlignSettings

    transformer, vae = mp.WAN22_TI2V_5B_TRANSFORMER, mp.WAN22_VAE
    passes = AlignSettings().denoiser_passes
    rows = []
    for frames, width, height in LADDER_SHAPES:
        tokens = time_plan.video_tokens(transformer, vae, frames, width, height)
        forward = time_plan.denoiser_pass_flops(transformer, tokens, mp.TEXT_TOKENS)
        step = time_plan.training_step_flops(transformer, tokens, mp.TEXT_TOKENS, passes, checkpointing=True)
        rows.append(
            {
                "shape": f"{frames}x{width}x{height}",
                "tokens": tokens,
                "forward_tflop": forward / 1e12,
                "training_step_tflop": step / 1e12,
                "passes": passes,
                "sampling_step_tflop": time_plan.sampling_step_flops(forward, guidance=True) / 1e12,
            }
        )
    return rows


def flops_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | tokens | TFLOP per forward | per training step | per sampling step |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['shape']} | {row['tokens']:,} | {row['forward_tflop']:.0f} | "
            f"{row['training_step_tflop']:.0f} ({row['passes']} passes, checkpointing) | "
            f"{row['sampling_step_tflop']:.0f} (guidance) |"
        )
    return "\n".join(lines)


# ----- calibration ----------------------------------------------------------------------------------

# (heads, head width, ffn, text tokens, latent (frames, h, w), rank): every quantity varies on its own.
GRID = (
    (2, 16, 64, 8, (3, 8, 8), 4),
    (2, 16, 64, 8, (3, 8, 12), 4),
    (2, 16, 64, 8, (5, 8, 8), 4),
    (2, 16, 128, 8, (3, 8, 8), 4),
    (4, 16, 64, 8, (3, 8, 8), 4),
    (2, 32, 64, 8, (3, 8, 8), 4),
    (2, 16, 64, 24, (3, 8, 8), 4),
    (2, 16, 64, 8, (3, 8, 8), 8),
    (3, 24, 96, 16, (2, 12, 8), 2),
    (4, 8, 160, 12, (4, 6, 10), 6),
    (1, 32, 64, 8, (3, 16, 8), 4),
    (2, 16, 64, 40, (2, 8, 8), 4),
    (6, 16, 64, 8, (3, 8, 8), 4),
    (2, 16, 256, 8, (2, 10, 10), 4),
    (2, 48, 64, 8, (2, 8, 8), 4),
    (2, 16, 64, 8, (2, 4, 4), 16),
)
BLOCK_FEATURES = ("T*D", "T*F", "T*H", "T*h", "T*r", "D*r", "L*D", "L*r", "L", "T", "D")
CORRESPONDENCE_FEATURES = ("H*M*T", "M*D", "T*D", "M")
# Sampling's peak is the largest set alive at one moment of a block, not a sum: fitted on T-scaled terms
# at token counts where the per-token terms dominate, as they do at full size.
SAMPLING_FEATURES = ("T*D", "T*F", "T")
SAMPLING_GRID = (
    (2, 16, 64, 8, (3, 16, 16)),
    (2, 16, 96, 8, (3, 16, 16)),
    (4, 16, 128, 8, (3, 16, 16)),
    (2, 32, 160, 8, (3, 16, 16)),
    (2, 16, 64, 8, (5, 16, 24)),
    (3, 16, 144, 16, (4, 16, 16)),
    (2, 24, 96, 8, (3, 24, 16)),
    (4, 16, 320, 8, (2, 16, 16)),
    (2, 16, 64, 64, (3, 16, 16)),
    (1, 32, 128, 8, (4, 20, 16)),
)
TEXT_DIM = 32
CALIBRATION_VAE = {**mp.WAN22_VAE, "base_dim": 4, "decoder_base_dim": 4, "num_res_blocks": 1}


def build_spec(heads: int, head: int, ffn: int, layers: int, text_tokens: int, precision: str) -> Any:
    """A WanSpec of Wan 2.2's layout at the given widths, its denoiser cast as `from_pretrained` casts."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from flashcli.core.specs import WanSpec

    torch.manual_seed(0)
    config = {
        **mp.WAN22_TI2V_5B_TRANSFORMER,
        "num_attention_heads": heads,
        "attention_head_dim": head,
        "ffn_dim": ffn,
        "num_layers": layers,
        "text_dim": TEXT_DIM,
        "freq_dim": 32,
    }
    transformer = WanTransformer3DModel(**config)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    keep = set(transformer._keep_in_fp32_modules)
    for name, parameter in transformer.named_parameters():
        if not keep.intersection(name.split(".")):
            parameter.data = parameter.data.to(dtype)
    vae = AutoencoderKLWan(**CALIBRATION_VAE, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    return WanSpec(
        base_id="calibration",
        transformer=transformer,
        vae=vae,
        null_text=torch.randn(text_tokens, TEXT_DIM),
        device=torch.device("cpu"),
        dtype=dtype,
    )


def train_settings(tokens: tuple[int, int, int], precision: str, **fields: Any) -> Any:
    from flashcli.core.settings import AlignSettings, TrainSettings

    frames = (tokens[0] - 1) * 4 + 1
    variant = fields.pop("variant", "none")
    align = AlignSettings.variant(variant, **fields.pop("align", {}))
    return TrainSettings(frames=frames, size=64, precision=precision, align=align, **fields)


def measure_step(shape: tuple, layers: int, precision: str, **fields: Any) -> int:
    heads, head, ffn, text, tokens, rank = shape
    spec = build_spec(heads, head, ffn, layers, text, precision)
    settings = train_settings(tokens, precision, rank=rank, **fields)
    latents = torch.randn(1, 48, *tokens, generator=torch.Generator().manual_seed(1))
    return mp.saved_activation_bytes(spec, settings, latents)


def features(shape: tuple, names: Iterable[str], max_rows: int | None = None) -> dict[str, int]:
    heads, head, ffn, text, (t, h, w), rank = shape
    tokens = t * h * w // 4
    rows = min(max_rows, tokens) if max_rows else tokens
    sizes = mp._Sizes(T=tokens, D=heads * head, F=ffn, H=heads, h=head, L=text, r=rank, C=192, M=rows)
    return {name: sizes.value(name) for name in names}


def fit(
    rows: list[dict[str, int]], values: list[int], names: Iterable[str]
) -> tuple[dict[str, float], float]:
    """Least squares, coefficients rounded to the byte when that changes no prediction by more than 0.1%."""
    names = list(names)
    x = np.array([[row[name] for name in names] for row in rows], dtype=float)
    y = np.array(values, dtype=float)
    solution, *_ = np.linalg.lstsq(x, y, rcond=None)
    rounded = np.round(solution)
    if np.max(np.abs(x @ rounded - y) / y) < 1e-3:
        solution = rounded
    error = float(np.max(np.abs(x @ solution - y) / y))
    return {name: float(c) for name, c in zip(names, solution, strict=True) if abs(c) > 1e-6}, error


def calibrate_activations(report: Callable[[str], None]) -> None:
    from flashcli.core.settings import ALL_LORA_TARGETS, DEFAULT_LORA_TARGETS

    for precision in ("bf16", "fp32"):
        for target_name, targets in (("attn1", DEFAULT_LORA_TARGETS), ("all", ALL_LORA_TARGETS)):
            for checkpointing in (False, True):
                block, once, rows = [], [], []
                for shape in GRID:
                    kwargs = {"targets": list(targets), "gradient_checkpointing": checkpointing}
                    two, three = (measure_step(shape, n, precision, **kwargs) for n in (2, 3))
                    block.append(three - two)
                    once.append(two - 2 * (three - two))
                    rows.append(features(shape, BLOCK_FEATURES))
                key = (precision, target_name, checkpointing)
                report(f"ACTIVATIONS{key}: block {fit(rows, block, BLOCK_FEATURES)}")
                report(f"ACTIVATIONS{key}: once {fit(rows, once, BLOCK_FEATURES)}")


def calibrate_correspondence(report: Callable[[str], None]) -> None:
    for precision in ("bf16", "fp32"):
        for checkpointing in (False, True):
            rows, extra = [], []
            for index, shape in enumerate(GRID[:10]):
                # Fewer rows than tokens, in varying proportion, so rows and tokens are told apart.
                query_rows = max(2, shape[4][0] * shape[4][1] * shape[4][2] // (8 + 4 * (index % 3)))

                settings = {"variant": "augment_correspondence", "gradient_checkpointing": checkpointing}
                counts = [
                    measure_step(
                        shape,
                        3,
                        precision,
                        align={"correspondence_blocks": blocks, "max_correspondence_tokens": query_rows},
                        **settings,
                    )
                    for blocks in ([1], [1, 2])
                ]
                extra.append(counts[1] - counts[0])
                rows.append(features(shape, CORRESPONDENCE_FEATURES, max_rows=query_rows))
            report(f"CORRESPONDENCE{(precision, checkpointing)}: {fit(rows, extra, CORRESPONDENCE_FEATURES)}")


def calibrate_sampling(report: Callable[[str], None]) -> None:
    for precision in ("bf16", "fp32"):
        rows, peaks = [], []
        for heads, head, ffn, text, tokens in SAMPLING_GRID:
            spec = build_spec(heads, head, ffn, 2, text, precision)
            latents = torch.randn(1, 48, *tokens, generator=torch.Generator().manual_seed(1))
            peaks.append(mp.sampling_call_bytes(spec, latents, guidance=False, precision=precision))
            rows.append(features((heads, head, ffn, text, tokens, 1), SAMPLING_FEATURES))
        report(f"SAMPLING[{precision!r}]: {fit(rows, peaks, SAMPLING_FEATURES)}")


def calibrate_vae(report: Callable[[str], None]) -> None:
    """The real-width Wan 2.2 VAE, random weights, on small frames (each point about a minute on a CPU)."""
    from diffusers import AutoencoderKLWan

    with torch.device("meta"):
        vae = AutoencoderKLWan(**mp.WAN22_VAE, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    vae = vae.to_empty(device="cpu").eval()
    for parameter in vae.parameters():
        parameter.data.normal_(0.0, 0.02)
    points = []
    for frames, height, width in ((9, 64, 64), (13, 64, 64), (9, 64, 128)):
        video = torch.randn(1, 3, frames, height, width)
        with torch.no_grad():
            latents = vae.encode(video).latent_dist.mode()
            encoded = mp.peak_tensor_bytes(lambda video=video: vae.encode(video))
            decoded = mp.peak_tensor_bytes(lambda latents=latents: vae.decode(latents))
        points.append((frames, height * width, encoded, decoded))
        report(f"VAE {frames}x{width}x{height}: encode {encoded} B, decode {decoded} B")
    for index, direction in ((2, "encode"), (3, "decode")):
        rows = [{"per_pixel": pixels, "per_pixel_frame": pixels * frames} for frames, pixels, *_ in points]
        values = [point[index] for point in points]
        report(f"VAE_PEAK[{direction!r}]: {fit(rows, values, ('per_pixel', 'per_pixel_frame'))}")


# ----- entry point --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", type=parse_shapes, default=list(SHAPES), help="FRAMESxWIDTHxHEIGHT,...")
    parser.add_argument("--json", type=Path, default=None, help="also write the plans here")
    parser.add_argument("--calibrate", action="store_true", help="re-measure the activation formulas")
    parser.add_argument("--vae", action="store_true", help="with --calibrate: also the VAE's (slow)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    if args.calibrate:
        torch.set_num_threads(1)

        def report(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        calibrate_activations(report)
        calibrate_correspondence(report)
        calibrate_sampling(report)
        if args.vae:
            calibrate_vae(report)
        return 0
    weights = mp._Weights.of(mp.BaseConfigs.wan22_ti2v_5b(), "bf16")
    rows = plan_rows(args.shapes, weights)
    out(weights_line(weights))
    out("")
    out(markdown(rows))
    ladder = ladder_rows(weights)
    out("")
    out(ladder_markdown(ladder))
    flops = flops_rows()
    out("")
    out(flops_markdown(flops))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"weights": weights_line(weights), "rows": rows, "ladder": ladder, "flops": flops}
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
