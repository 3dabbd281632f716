"""Pretrain the embedded `tiny` base on FigureWorld and export it to src/flashcli/weights/tiny/.

Stages (each resumable from its checkpoint under --run-dir; rerun the same command to continue):
  vae     train AutoencoderKLWan on frames of pretrain actions with seen appearances
  encode  encode the pretraining clips once (latent cache) and measure the latent statistics
  export  write the base from the last checkpoints (no training), e.g. into a scratch folder
  dit     train WanTransformer3DModel (first-frame conditioned, flow matching) + a null text embedding,
          exporting the base every --export-every seconds and at the end

Example (the run that made the shipped weights; see src/flashcli/weights/README.md):
  nohup python scripts/pretrain_tiny.py --stages vae,encode,dit --vae-minutes 45 --dit-minutes 70 \
      > runs/tiny/pretrain.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from flashcli.core.devices import resolve_device
from flashcli.lab.pretrain.configs import RunSettings
from flashcli.lab.pretrain.dit_stage import (
    base_meta,
    build_transformer,
    spec_from_checkpoint,
    train_dit,
    vae_with_latent_stats,
)
from flashcli.lab.pretrain.export import export_base
from flashcli.lab.pretrain.latent_cache import build_latent_cache, sample_latent_stats
from flashcli.lab.pretrain.vae_stage import load_trained_vae, train_vae

STAGES = ("vae", "encode", "dit", "export")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", default="vae,encode,dit", help="comma list of: " + ", ".join(STAGES))
    parser.add_argument("--run-dir", type=Path, default=Path("runs/tiny"))
    parser.add_argument("--export-dir", type=Path, default=Path("src/flashcli/weights/tiny"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where to train")
    parser.add_argument("--vae-steps", type=int, default=None, help="total VAE steps (schedule length)")
    parser.add_argument("--vae-batch", type=int, default=None)
    parser.add_argument("--vae-window", type=int, default=None, help="consecutive frames per VAE sample")
    parser.add_argument("--vae-crop", type=int, default=None, help="square crop size of VAE samples")
    parser.add_argument("--vae-image-fraction", type=float, default=None, help="share of single-frame steps")
    parser.add_argument(
        "--vae-decoder-only",
        action="store_true",
        help="freeze the encoder and train the decoder alone (latents, and a denoiser on them, stay valid)",
    )
    parser.add_argument(
        "--vae-temporal-factor",
        type=int,
        choices=[1, 2],
        default=None,
        help="time compression of a new VAE: 2 (the second base) or 1 (every frame its own latent)",
    )
    parser.add_argument(
        "--vae-moved-weight", type=float, default=None, help="extra loss weight on moving pixels"
    )
    parser.add_argument(
        "--vae-lr", type=float, default=None, help="peak VAE learning rate (cosine schedule over --vae-steps)"
    )
    parser.add_argument("--vae-min-lr", type=float, default=None, help="final VAE learning rate")
    parser.add_argument(
        "--vae-init-from", type=Path, default=None, help="start a new VAE from this VAE checkpoint"
    )
    parser.add_argument(
        "--dit-init-from",
        type=Path,
        default=None,
        help="start a new denoiser from this checkpoint or exported base folder",
    )
    parser.add_argument("--vae-minutes", type=float, default=None, help="stop the VAE stage after this long")
    parser.add_argument("--encode-clips", type=int, default=None)
    parser.add_argument(
        "--data-frames", type=int, default=None, help="frames per pretraining clip (default 17; 4k+1)"
    )
    parser.add_argument(
        "--data-phase",
        type=float,
        default=None,
        help="start every clip at this point of its action's cycle, 0 <= phase < 1 (0: from rest)",
    )
    parser.add_argument("--dit-steps", type=int, default=None, help="total denoiser steps (schedule length)")
    parser.add_argument(
        "--dit-batch", type=int, default=None, help="denoiser clips per step (a GPU takes far more than 4)"
    )
    parser.add_argument("--dit-lr", type=float, default=None, help="peak denoiser learning rate")
    parser.add_argument(
        "--dit-minutes", type=float, default=None, help="stop the denoiser stage after this long"
    )
    parser.add_argument(
        "--dit-until",
        default=None,
        help="UTC time HH:MM today when the denoiser stage stops (wins over minutes)",
    )
    parser.add_argument(
        "--dit-short-latent-frames",
        type=int,
        default=None,
        help="latent frames of the short steps (match the quick preset's frames)",
    )
    parser.add_argument(
        "--dit-ema-decay",
        type=float,
        default=None,
        help="decay of the denoiser weight average the base is exported with (0 = export raw weights)",
    )
    parser.add_argument(
        "--dit-photo-channels",
        action="store_true",
        help="a new denoiser that also reads the photo latent on every frame (in = 2 z_dim)",
    )
    parser.add_argument(
        "--dit-layers", type=int, default=None, help="denoiser blocks of a new run (default 6)"
    )
    parser.add_argument(
        "--dit-moved-weight",
        type=float,
        default=None,
        help="extra loss weight on latent positions where the clip moves (default 0)",
    )
    parser.add_argument(
        "--dit-heads", type=int, default=None, help="attention heads of 32 dims of a new run (default 4)"
    )
    parser.add_argument(
        "--dit-action-text",
        action="store_true",
        help="class-conditional: a learned text embedding per pretraining action (some steps see null text)",
    )
    parser.add_argument(
        "--encode-workers", type=int, default=None, help="processes rendering the clips to encode (default 1)"
    )
    parser.add_argument("--encode-batch", type=int, default=None, help="clips per encoder call (default 1)")
    parser.add_argument(
        "--dit-checkpoint-every",
        type=int,
        default=None,
        help="steps between denoiser checkpoints (default 100; the last step always writes one)",
    )
    parser.add_argument(
        "--dit-bf16",
        action="store_true",
        help="bf16 autocast for the denoiser's steps (for GPUs; measured 3-7x slower on this CPU)",
    )
    parser.add_argument(
        "--dit-fit-steps",
        action="store_true",
        help="with --dit-minutes or --dit-until: set --dit-steps from the step rate of the first steps, "
        "so the schedule ends when the time does",
    )
    parser.add_argument("--export-every", type=float, default=None, help="seconds between base exports")
    return parser.parse_args(argv)


# Command-line flags that set one field of the run settings when given: flag -> (section, field).
FLAG_FIELDS: dict[str, tuple[str, str]] = {
    "vae_steps": ("vae", "steps"),
    "vae_batch": ("vae", "batch_size"),
    "vae_window": ("vae", "window_frames"),
    "vae_crop": ("vae", "crop"),
    "vae_image_fraction": ("vae", "image_fraction"),
    "vae_temporal_factor": ("vae", "temporal_factor"),
    "vae_moved_weight": ("vae", "moved_weight"),
    "vae_lr": ("vae", "learning_rate"),
    "vae_min_lr": ("vae", "min_learning_rate"),
    "vae_init_from": ("vae", "init_from"),
    "data_frames": ("data", "frames"),
    "data_phase": ("data", "phase"),
    "encode_clips": ("encode", "clips"),
    "encode_workers": ("encode", "workers"),
    "encode_batch": ("encode", "batch"),
    "dit_steps": ("dit", "steps"),
    "dit_batch": ("dit", "batch_size"),
    "dit_lr": ("dit", "learning_rate"),
    "dit_short_latent_frames": ("dit", "short_latent_frames"),
    "dit_init_from": ("dit", "init_from"),
    "dit_ema_decay": ("dit", "ema_decay"),
    "dit_checkpoint_every": ("dit", "checkpoint_every"),
    "dit_layers": ("dit", "layers"),
    "dit_moved_weight": ("dit", "moved_weight"),
    "dit_heads": ("dit", "heads"),
    "export_every": ("dit", "export_every_seconds"),
}


def run_settings(args: argparse.Namespace) -> RunSettings:
    run = RunSettings(
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        run_dir=args.run_dir,
        export_dir=args.export_dir,
    )
    for flag, (section, field) in FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(getattr(run, section), field, value)
    if args.vae_decoder_only:
        run.vae.decoder_only = True
    if args.dit_photo_channels:
        run.dit.photo_channels = True
    if args.dit_action_text:
        run.dit.action_text = True
    if args.dit_fit_steps:
        run.dit.fit_steps_to_time = True
    if args.dit_bf16:
        run.dit.autocast_bf16 = True
    return run


def seconds_until(clock: str) -> float:
    """Seconds from now to HH:MM UTC today."""
    hour, minute = (int(part) for part in clock.split(":"))
    now = datetime.now(timezone.utc)
    return (now.replace(hour=hour, minute=minute, second=0, microsecond=0) - now).total_seconds()


def trained_denoiser_shipped(run: RunSettings) -> bool:
    meta_path = run.export_dir / "flash_base.json"
    if not meta_path.exists():
        return False
    return int(json.loads(meta_path.read_text()).get("pretraining", {}).get("dit_step", 0)) > 0


def export_vae_only(run: RunSettings) -> None:
    """A loadable base right after the VAE stage: trained VAE, untrained denoiser (unblocks the DED work).

    Latent statistics come from a small sample here; the denoiser's exports carry the full cache's.
    """
    from flashcli.core.specs import WanSpec
    from flashcli.lab.pretrain.configs import NULL_TEXT_TOKENS, TEXT_DIM

    vae, state = load_trained_vae(run)
    mean, std = sample_latent_stats(run, vae, clips=16)
    vae = vae_with_latent_stats(vae, mean, std)
    torch.manual_seed(run.seed + 10)
    null_text = torch.zeros(NULL_TEXT_TOKENS, TEXT_DIM)
    transformer = build_transformer(run.dit)
    spec = WanSpec(base_id="tiny", transformer=transformer, vae=vae, null_text=null_text)
    summary = {"vae_step": state["step"], "vae_eval": state.get("eval", {}), "dit_step": 0}
    export_base(run.export_dir, spec, null_text, base_meta(run, summary))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    run = run_settings(args)
    try:
        resolve_device(run.device)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    torch.set_num_threads(run.threads)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if {"vae", "dit"} & set(stages):  # a record of the last training invocation (checkpoints hold theirs)
        (run.run_dir / "settings.json").write_text(json.dumps(run.model_dump(mode="json"), indent=2) + "\n")
    started = time.time()
    if "vae" in stages:
        limit = None if args.vae_minutes is None else args.vae_minutes * 60
        print("vae stage:", train_vae(run, time_limit=limit), flush=True)
        # Never replace a shipped, trained denoiser with an untrained one.
        if not trained_denoiser_shipped(run):
            export_vae_only(run)
    if "encode" in stages:
        cache = build_latent_cache(run)
        print(f"latent cache: {tuple(cache['latents'].shape)} in {cache['seconds']:.0f}s", flush=True)
    if "dit" in stages:
        limit = None if args.dit_minutes is None else args.dit_minutes * 60
        if args.dit_until is not None:
            limit = seconds_until(args.dit_until)

        def export(spec, text, summary):  # noqa: ANN001 - local callback
            export_base(run.export_dir, spec, text, base_meta(run, summary))

        print("dit stage:", train_dit(run, export, time_limit=limit), flush=True)
    if "export" in stages:
        spec, text, summary = spec_from_checkpoint(run)
        export_base(run.export_dir, spec, text, base_meta(run, summary))
    print(f"done in {time.time() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
