"""Train a base model's Detail Enhancement Decoder (DED) on FigureWorld clips; write it into <base>/ded/.

The DED is action-agnostic, so it is trained once per base: pretrain actions, every appearance of
the pretrain ("seen") split, seeds disjoint from the VAE's and the benchmark's. The VAE is frozen;
the clips are encoded once, as square windows over the figure (all frames). Each step decodes a
batch of windows with the window's frame 0 as the reference photo, and the loss (L1 + two-scale SSIM +
image-gradient L1; no external network) is taken on frames 1.. (frame 0 is the photo itself in a
product video). Resumable: rerun the same command and it continues from runs/.../checkpoint.pt.

    python scripts/train_ded.py --base src/flashcli/weights/tiny --run-dir runs/ded/both \\
        --reference-source both --steps 600
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from einops import rearrange

from flashcli.core.ded import DetailEnhancedDecoder, ded_loss, moved_mask, psnr
from flashcli.figureworld import PRETRAIN_ACTIONS, render_clip
from flashcli.files import atomic_path

TRAIN_SEED_START = 2_000_000  # disjoint from the tiny VAE's train (0..) and held-out (1_000_000..) seeds
VAL_SEED_START = 2_500_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", type=Path, default=Path("src/flashcli/weights/tiny"), help="base folder (has vae/)"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the DED (default <base>/ded)")
    parser.add_argument(
        "--no-export", action="store_true", help="train and checkpoint only; do not write --out"
    )
    parser.add_argument("--run-dir", type=Path, default=Path("runs/ded/default"))
    parser.add_argument("--reference-source", choices=["encoder", "decoder", "both"], default="both")
    parser.add_argument("--attn-dim", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--halo", type=int, default=4)
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start a new run from another run's checkpoint.pt (e.g. after the base's VAE was retrained)",
    )
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--minutes", type=float, default=None, help="stop (and export) after this wall time")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--crop", type=int, default=64, help="square crop in pixels (multiple of the VAE ratio)"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--transfer-lr-scale", type=float, default=10.0)
    parser.add_argument(
        "--moved-weight",
        type=float,
        default=0.0,
        help="extra L1 weight on pixels that moved away from the photo (against holding its pose)",
    )
    parser.add_argument("--no-transfer", action="store_true", help="no output detail-transfer block")
    parser.add_argument("--clips-per-action", type=int, default=2)
    parser.add_argument("--crops-per-clip", type=int, default=2)
    parser.add_argument("--val-clips", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="FigureWorld frame size (the tiny base's size)")
    parser.add_argument("--frames", type=int, default=9, help="frames per clip (4k+1); 9 is short")
    parser.add_argument("--checkpoint-every", type=int, default=25)
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (1, 3, F, H, W) in [-1, 1]."""
    return rearrange(torch.from_numpy(frames).float() / 127.5 - 1, "f h w c -> 1 c f h w")


@torch.no_grad()
def build_dataset(
    vae: AutoencoderKLWan,
    seeds: list[int],
    args: argparse.Namespace,
    cache: Path,
    *,
    crop: int | None,
    crops_per_clip: int = 1,
) -> dict[str, torch.Tensor]:
    """Render clips and encode them once (whole, or as `crop`-sized windows over the figure).

    Encoding crops instead of whole frames is what makes a CPU run affordable: the fine texture
    lives on the figure, so each crop is centred on a random figure pixel of frame 0. Cached beside
    the run, keyed by everything that shapes it.
    """
    key = {
        "vae": vae_digest(vae),
        "seeds": seeds,
        "actions": list(PRETRAIN_ACTIONS),
        "size": args.size,
        "frames": args.frames,
        "crop": crop,
        "crops_per_clip": crops_per_clip,
    }
    if cache.is_file():
        stored = torch.load(cache, weights_only=False)
        if stored["key"] == key:
            return stored["data"]
    rng = np.random.default_rng(seeds[0])
    videos, latents = [], []
    for action in PRETRAIN_ACTIONS:
        for seed in seeds:
            clip = render_clip(action, seed, size=args.size, frames=args.frames, appearance="seen")
            windows = [clip.frames]
            if crop is not None:
                windows = [
                    crop_around_figure(clip.frames, clip.mask[0], crop, rng) for _ in range(crops_per_clip)
                ]
            for window in windows:
                video = to_video_tensor(window)
                videos.append(video)
                latents.append(vae.encode(video).latent_dist.mode())
    data = {"videos": torch.cat(videos), "latents": torch.cat(latents)}
    save_checkpoint(cache, {"key": key, "data": data})
    return data


def crop_around_figure(
    frames: np.ndarray, mask: np.ndarray, crop: int, rng: np.random.Generator
) -> np.ndarray:
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        ys, xs = np.array([height // 2]), np.array([width // 2])
    pick = int(rng.integers(len(ys)))
    top = int(np.clip(ys[pick] - crop // 2, 0, height - crop))
    left = int(np.clip(xs[pick] - crop // 2, 0, width - crop))
    return frames[:, top : top + crop, left : left + crop]


def vae_digest(vae: AutoencoderKLWan) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def sample_batch(
    data: dict[str, torch.Tensor], batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows -> (latents (B, C, T, h, w), videos (B, 3, F, H, W))."""
    picked = torch.randint(len(data["videos"]), (batch,), generator=generator)
    return data["latents"][picked], data["videos"][picked]


@torch.no_grad()
def validate(ded: DetailEnhancedDecoder, data: dict[str, torch.Tensor]) -> dict[str, float]:
    """PSNR of frames 1.. with and without the DED on whole validation clips, also on moved pixels only."""
    scores: dict[str, list[float]] = {name: [] for name in ("plain", "ded", "moved_plain", "moved_ded")}
    for latents, video in zip(data["latents"].split(1), data["videos"].split(1), strict=True):
        target = video[:, :, 1:]
        moved = moved_mask(target, video[:, :, 0])
        for name, output in (
            ("plain", ded.vae.decode(latents).sample[:, :, 1:]),
            ("ded", ded.decode(latents, video[:, :, 0])[:, :, 1:]),
        ):
            scores[name].append(float(psnr(output, target)))
            scores[f"moved_{name}"].append(float(psnr(output, target, mask=moved)))
    return {f"val_psnr_{name}": float(np.mean(values)) for name, values in scores.items()}


def learning_rate(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as temp:
        torch.save(state, temp)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vae_folder = args.base / "vae"
    if not (vae_folder / "config.json").is_file():
        raise SystemExit(
            f"{vae_folder} has no VAE (config.json missing); train or point --base at a base folder."
        )
    vae = AutoencoderKLWan.from_pretrained(vae_folder, torch_dtype=torch.float32).eval()
    ratio = 2 ** (len(vae.config.dim_mult) - 1) * (vae.config.patch_size or 1)
    if args.crop % ratio or args.crop > args.size:
        raise SystemExit(f"--crop must be a multiple of {ratio} and at most --size ({args.size}).")

    args.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.run_dir / "checkpoint.pt"
    log_path = args.run_dir / "log.jsonl"
    ded = DetailEnhancedDecoder(
        vae,
        reference_source=args.reference_source,
        attn_dim=args.attn_dim,
        heads=args.heads,
        window=args.window,
        halo=args.halo,
        detail_transfer=not args.no_transfer,
        device="cpu",
        dtype=torch.float32,
    )
    # The output detail-transfer block copies pixels, so its output gain must travel from 0 to about
    # 1: it gets its own, larger learning rate (a short CPU run could not get there otherwise).
    transfer = list(ded.blocks[-1].parameters()) if ded.config.transfer_channels else []
    transfer_ids = {id(p) for p in transfer}
    rest = [p for p in ded.trainable_parameters() if id(p) not in transfer_ids]
    groups = [{"params": rest, "scale": 1.0}]
    if transfer:
        groups.append({"params": transfer, "scale": args.transfer_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    step = 0
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, weights_only=False)
        if state["args"]["reference_source"] != args.reference_source:
            raise SystemExit(
                f"{checkpoint_path} was trained with another --reference-source; use a new --run-dir."
            )
        ded.blocks.load_state_dict(state["ded"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        print(f"resumed from {checkpoint_path} at step {step}", flush=True)
    elif args.init_from is not None:
        ded.blocks.load_state_dict(torch.load(args.init_from, weights_only=False)["ded"])
        print(f"started from the weights in {args.init_from}", flush=True)

    started = time.time()
    train_seeds = list(range(TRAIN_SEED_START, TRAIN_SEED_START + args.clips_per_action))
    train = build_dataset(
        vae,
        train_seeds,
        args,
        args.run_dir.parent / "train_data.pt",
        crop=args.crop or None,
        crops_per_clip=args.crops_per_clip if args.crop else 1,
    )
    val_seeds = list(
        range(VAL_SEED_START, VAL_SEED_START + max(1, args.val_clips // len(PRETRAIN_ACTIONS) + 1))
    )
    val = {
        k: v[: args.val_clips]
        for k, v in build_dataset(
            vae, val_seeds, args, args.run_dir.parent / "val_data.pt", crop=None
        ).items()
    }
    print(
        f"data: {len(train['videos'])} train clips, {len(val['videos'])} val clips "
        f"in {time.time() - started:.0f}s"
    )

    started = time.time()
    last: dict[str, float] = {}
    with log_path.open("a") as log:
        while step < args.steps:
            if args.minutes is not None and time.time() - started > args.minutes * 60:
                print(f"time limit reached at step {step}", flush=True)
                break
            tick = time.time()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, args) * group["scale"]
            latents, videos = sample_batch(train, args.batch, generator)
            prediction = ded.decode(latents, videos[:, :, 0])
            losses = ded_loss(
                prediction[:, :, 1:],
                videos[:, :, 1:],
                reference=videos[:, :, 0],
                moved_weight=args.moved_weight,
            )
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            step += 1
            last = {name: float(value.detach()) for name, value in losses.items()}
            record: dict[str, Any] = {"step": step, **last, "lr": optimizer.param_groups[0]["lr"]}
            record["seconds_per_step"] = time.time() - tick
            if step % args.validate_every == 0 or step == args.steps:
                record.update(validate(ded, val))
            log.write(json.dumps(record) + "\n")
            log.flush()
            if step % 10 == 0 or "val_psnr_ded" in record:
                print(json.dumps(record), flush=True)
            if step % args.checkpoint_every == 0 or step == args.steps:
                save_checkpoint(
                    checkpoint_path,
                    {
                        "step": step,
                        "ded": ded.blocks.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    },
                )

    final = validate(ded, val)
    print(json.dumps({"final": final, "step": step}), flush=True)
    if not args.no_export:
        out = args.out or args.base / "ded"
        metadata = {
            "trained_steps": str(step),
            "train_data": f"FigureWorld {','.join(PRETRAIN_ACTIONS)}, seen appearances, "
            f"seeds {train_seeds[0]}..{train_seeds[-1]}",
            "last_loss": json.dumps(last),
            "validation": json.dumps(final),
            "command": "python scripts/train_ded.py "
            + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False)
            ),
        }
        ded.save(out, metadata=metadata)
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
