"""Does the Detail Enhancement Decoder help? Decoded frames vs ground truth, with and without the DED.

On FigureWorld clips with unseen appearances and fine texture (checked shirts or noise
backgrounds), every clip is encoded with the base's VAE and decoded (a) by the plain decoder and
(b) by each DED given. Frame 0 of every output is the photo itself, as in a product video. Reports:
- PSNR and SSIM of frames 1.. against the ground truth;
- the transition jump: mean |f1 - f0| / mean over t >= 1 of mean |f(t+1) - f(t)| (1.0 = no jump;
  the ground truth's own value is shown for scale).

    python bench/ded_quality.py --base src/flashcli/weights/tiny --clips 6 \\
        --picture docs/ded_side_by_side.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from PIL import Image, ImageDraw

from flashcli.core.ded import DetailEnhancedDecoder, psnr
from flashcli.figureworld import ACTIONS, render_clip
from flashcli.lab.decoder_scores import frame_metrics, to_uint8, to_video, transition_jump

SEED_START = 3_000_000  # disjoint from the tiny VAE's and the DED's training/validation seeds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, default=Path("src/flashcli/weights/tiny"))
    parser.add_argument(
        "--ded",
        type=Path,
        action="append",
        default=None,
        help="DED folder(s) to compare (default <base>/ded)",
    )
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--json", type=Path, default=Path("bench/out/ded_quality.json"))
    parser.add_argument(
        "--picture", type=Path, default=None, help="write a side-by-side PNG of the first clip"
    )
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def textured_unseen_clips(count: int, size: int, frames: int) -> list[tuple[str, int, np.ndarray]]:
    """The first `count` unseen-appearance clips (cycling through every action) with fine texture."""
    actions = sorted(ACTIONS)
    found: list[tuple[str, int, np.ndarray]] = []
    seed = SEED_START
    while len(found) < count:
        action = actions[(seed - SEED_START) % len(actions)]
        clip = render_clip(action, seed, size=size, frames=frames, appearance="unseen")
        look = clip.meta["appearance"]
        if look["top_pattern"] == "checks" or look["background"] == "noise":
            found.append((action, seed, clip.frames))
        seed += 1
    return found


def side_by_side(rows: list[tuple[str, np.ndarray]], frame_ids: list[int], path: Path, zoom: int = 3) -> None:
    """A grid: one labelled row per decoder, the chosen frames left to right, upscaled by `zoom`."""
    height, width = rows[0][1].shape[1:3]
    label_width, gap = 110, 4
    canvas = Image.new(
        "RGB",
        (label_width + len(frame_ids) * (width * zoom + gap), 18 + len(rows) * (height * zoom + gap)),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for column, frame in enumerate(frame_ids):
        draw.text((label_width + column * (width * zoom + gap) + 4, 3), f"frame {frame}", fill="black")
    for row, (label, video) in enumerate(rows):
        top = 18 + row * (height * zoom + gap)
        draw.text((4, top + height * zoom // 2 - 6), label, fill="black")
        for column, frame in enumerate(frame_ids):
            tile = Image.fromarray(video[frame]).resize((width * zoom, height * zoom), Image.NEAREST)
            canvas.paste(tile, (label_width + column * (width * zoom + gap), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    vae = AutoencoderKLWan.from_pretrained(args.base / "vae", torch_dtype=torch.float32).eval()
    ded_folders = args.ded or [args.base / "ded"]
    decoders = {str(folder): DetailEnhancedDecoder.from_folder(folder, vae) for folder in ded_folders}
    clips = textured_unseen_clips(args.clips, args.size, args.frames)

    per_clip: list[dict[str, object]] = []
    picture_rows: list[tuple[str, np.ndarray]] = []
    for index, (action, seed, frames) in enumerate(clips):
        video = to_video(frames)
        photo = video[:, :, 0]
        with torch.no_grad():
            latents = vae.encode(video).latent_dist.mode()
            outputs = {"plain": to_uint8(vae.decode(latents).sample)}
            # Control: a "video" that is the photo repeated, i.e. what pure copying would score.
            outputs["photo copy"] = np.repeat(frames[:1], len(frames), axis=0)
            for name, ded in decoders.items():
                outputs[name] = to_uint8(ded.decode(latents, photo))
        record: dict[str, object] = {"action": action, "seed": seed, "truth_jump": transition_jump(frames)}
        for name, output in outputs.items():
            record[f"{name}:frame0_psnr"] = float(
                psnr(torch.from_numpy(output[0]).float() / 127.5 - 1, photo[0].permute(1, 2, 0))
            )
            output[0] = frames[0]  # the product puts the photo itself at frame 0
            record.update({f"{name}:{k}": v for k, v in frame_metrics(output, frames).items()})
        per_clip.append(record)
        print(json.dumps(record), flush=True)
        if index == 0:
            picture_rows = [("ground truth", frames), ("VAE decoder", outputs["plain"])]
            single = len(decoders) == 1
            picture_rows += [
                ("DED" if single else f"DED {Path(n).parent.name}", outputs[n]) for n in decoders
            ]

    names = ["plain", "photo copy", *decoders]
    summary = {
        name: {
            metric: float(np.mean([r[f"{name}:{metric}"] for r in per_clip]))
            for metric in ("psnr", "ssim", "jump", "frame0_psnr", "psnr_moving")
        }
        for name in names
    }
    summary["ground truth"] = {"jump": float(np.mean([r["truth_jump"] for r in per_clip]))}
    print(
        f"\n{len(clips)} unseen textured clips, {args.size}px, {args.frames} frames, "
        f"{time.time() - started:.0f}s"
    )
    print(
        "| decoder | PSNR frames 1.. (dB) | SSIM frames 1.. | transition jump | decoded frame 0 PSNR (dB) "
        "| PSNR on moved pixels (dB) |"
    )
    print("|---|---|---|---|---|---|")
    for name in names:
        row = summary[name]
        print(
            f"| {name} | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['jump']:.3f} "
            f"| {row['frame0_psnr']:.2f} | {row['psnr_moving']:.2f} |"
        )
    print(f"| ground truth | - | - | {summary['ground truth']['jump']:.3f} | - | - |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"summary": summary, "clips": per_clip, "args": str(vars(args))}, indent=2)
    )
    if args.picture is not None:
        frame_ids = sorted({0, 1, 2, args.frames // 2, args.frames - 1})
        side_by_side(picture_rows, frame_ids, args.picture)
        print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
