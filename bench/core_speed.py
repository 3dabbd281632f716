"""Seconds per training step (plain LoRA, strong augmentation, Motion Alignment) and per sampled video.

Uses the embedded `tiny` base when it is installed, otherwise a random base with the tiny base's
configuration (flashcli.lab.pretrain.configs); speed does not depend on the weights' values.
FigureWorld clips at the base's default size and frame count.

    python bench/core_speed.py                      # markdown table on stdout
    python bench/core_speed.py --steps 12 --threads 1 --json bench/results/core_speed.json
    python bench/core_speed.py --scaling --threads 1   # how learn and animate grow with clips, frames, size
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = {
    "plain LoRA (none)": "none",
    "strong augment only": "augment",
    "Motion Align": "augment_motion",
    "Correspondence Align": "augment_correspondence",
    "Motion + Correspondence Align": "augment_both",
}


def _load_spec(base: str):
    from flashcli.core.specs import load_base, save_base

    try:
        return load_base(base, device="cpu"), base
    except FileNotFoundError:
        if base != "tiny":
            raise
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from flashcli.lab.pretrain import configs

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**configs.TRANSFORMER_CONFIG)
    vae_config = {
        **configs.VAE_CONFIG,
        "latents_mean": [0.0] * configs.Z_DIM,
        "latents_std": [1.0] * configs.Z_DIM,
    }
    vae = AutoencoderKLWan(**vae_config)
    null_text = torch.randn(configs.NULL_TEXT_TOKENS, configs.TEXT_DIM)
    folder = Path(tempfile.mkdtemp()) / "tiny-random"
    save_base(folder, transformer, vae, null_text, {"base_id": "tiny-random", "frames": 17, "size": 128})
    return load_base(folder, device="cpu"), "random weights, tiny config (tiny not installed yet)"


def _clips(spec, count: int, *, frames: int | None = None, size: int | None = None) -> list:
    from flashcli.figureworld import render_clip

    return [
        render_clip("wave", seed, size=size or spec.default_size, frames=frames or spec.default_frames).frames
        for seed in range(count)
    ]


def _train_step_seconds(spec, clips, variant: str, steps: int) -> tuple[float, float]:
    """(median seconds per step, seconds before the first step: encoding the clips and their copies)."""
    from flashcli.core.settings import AlignSettings, TrainSettings
    from flashcli.core.trainer import train_adapter

    frames, size = clips[0].shape[0], clips[0].shape[1]
    settings = TrainSettings(
        frames=frames,
        size=size,
        steps=steps,
        rank=16,
        augment_copies=2,
        align=AlignSettings.variant(variant),
    )
    stamps: list[float] = []
    started = time.perf_counter()

    def stamp(progress) -> None:
        if progress.phase == "train":
            stamps.append(time.perf_counter())

    train_adapter(spec, clips, settings, progress=stamp)
    # The first step includes one-off work (allocations, LoRA setup); drop it from the median.
    durations = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    setup = stamps[0] - started
    return statistics.median(durations), setup


def _sample_seconds(spec, photo, sample_steps: int, repeats: int, frames: int | None = None) -> float:
    from flashcli.core.sampler import animate_photo
    from flashcli.core.settings import SampleSettings

    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        animate_photo(
            spec,
            photo,
            [],
            SampleSettings(steps=sample_steps, seed=seed),
            frames=frames or spec.default_frames,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# (clips, frames, size) around the quick preset's 8 clips x 9 frames x 64 px: one axis moves at a time.
SCALING_GRID = [(4, 9, 64), (8, 9, 64), (16, 9, 64), (8, 17, 64), (8, 9, 128)]


def _scaling(spec, args: argparse.Namespace) -> list[dict]:
    """Setup (encoding), seconds per step of the full method, and one video, per grid point."""
    rows = []
    for clips_count, frames, size in SCALING_GRID:
        clips = _clips(spec, clips_count, frames=frames, size=size)
        per_step, setup = _train_step_seconds(spec, clips, "augment_both", args.steps)
        video = _sample_seconds(spec, clips[0][0], args.sample_steps, args.repeats, frames=frames)
        rows.append(
            {
                "clips": clips_count,
                "frames": frames,
                "size": size,
                "encode_seconds": setup,
                "step_seconds": per_step,
                "video_seconds": video,
            }
        )
        print(f"scaling {clips_count} clips, {frames} frames, {size}px done", file=sys.stderr, flush=True)
    return rows


def _print_scaling(rows: list[dict], args: argparse.Namespace) -> None:
    base = rows[1]  # the quick preset's shape
    print(
        f"full method (augment + both alignments), {args.sample_steps}-step videos; x = ratio to 8 x 9 x 64"
    )
    print("| clips | frames | size | encode s | x | s/step | x | video s | x |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['clips']} | {row['frames']} | {row['size']} | {row['encode_seconds']:.1f} | "
            f"{row['encode_seconds'] / base['encode_seconds']:.2f} | {row['step_seconds']:.3f} | "
            f"{row['step_seconds'] / base['step_seconds']:.2f} | {row['video_seconds']:.2f} | "
            f"{row['video_seconds'] / base['video_seconds']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="tiny")
    parser.add_argument(
        "--steps", type=int, default=12, help="training steps per variant (median of all but 1)"
    )
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="sampled videos (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--scaling", action="store_true", help="time the clips / frames / size grid instead of the variants"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    spec, source = _load_spec(args.base)
    if args.scaling:
        rows = _scaling(spec, args)
        print(f"base: {source}; torch threads {torch.get_num_threads()}; steps {args.steps}")
        _print_scaling(rows, args)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {"base": source, "threads": torch.get_num_threads(), "scaling": rows}
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
        return
    clips = _clips(spec, args.clips)
    rows = []
    for label, variant in VARIANTS.items():
        per_step, setup = _train_step_seconds(spec, clips, variant, args.steps)
        rows.append({"what": f"train step, {label}", "seconds": per_step, "setup_seconds": setup})
    plain = rows[0]["seconds"]
    video = _sample_seconds(spec, clips[0][0], args.sample_steps, args.repeats)
    rows.append(
        {"what": f"sample one video ({args.sample_steps} steps)", "seconds": video, "setup_seconds": 0.0}
    )

    info = spec.describe()
    print(
        f"base: {source}; {info['transformer_parameters']:,} transformer parameters, "
        f"{info['blocks']} blocks; "
        f"{spec.default_frames} frames at {spec.default_size}px; torch threads {torch.get_num_threads()}; "
        f"{args.clips} clips"
    )
    print("| what | median s | x plain step | setup s (encode clips + copies) |")
    print("|---|---|---|---|")
    for row in rows:
        ratio = f"{row['seconds'] / plain:.2f}" if row["what"].startswith("train") else ""
        print(f"| {row['what']} | {row['seconds']:.3f} | {ratio} | {row['setup_seconds']:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"base": source, "threads": torch.get_num_threads(), "describe": info, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
