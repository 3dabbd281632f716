"""Does fine-tuning the Detail Enhancement Decoder on an action's clips help (`flash learn --ded-steps`)?

For each held-out action, N clips of seen-range looks play the user's training clips; the base's DED
is fine-tuned on them exactly as `learn` does (`flashcli.core.ded_finetune.finetune_ded`). Then K
clips of the same action with unseen-range looks (other people: the case flash is for) are encoded
and decoded (a) by the plain decoder, (b) with the base's DED, (c) with the fine-tuned DED, the
clip's frame 0 as the photo. Scores are `ded_quality.py`'s (`flashcli.lab.decoder_scores`): PSNR /
SSIM of frames 1.., PSNR on the pixels that moved away from the photo, and the transition jump. The
training clips are scored too, so a fit to the training looks shows up as a gap.

    python bench/ded_finetune.py --actions weld,jumping_jack --steps 0,50,200 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from flashcli.core.ded_finetune import finetune_ded
from flashcli.core.settings import TrainSettings
from flashcli.core.specs import load_base
from flashcli.figureworld import render_clip
from flashcli.lab.decoder_scores import frame_metrics, to_uint8, to_video

TRAIN_SEED_START = 4_000_000  # disjoint from every pretraining, DED and benchmark seed range
TEST_SEED_START = 4_500_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--actions", default="weld,jumping_jack")
    parser.add_argument(
        "--steps", default="0,50,200", help="fine-tuning step counts to compare (0 = base DED)"
    )
    parser.add_argument("--lr", type=float, default=None, help="default: TrainSettings' ded_finetune_lr")
    parser.add_argument("--train-clips", type=int, default=8)
    parser.add_argument("--test-clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=9, help="the quick preset's clip length")
    parser.add_argument("--json", type=Path, default=Path("bench/out/ded_finetune.json"))
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def clips_of(action: str, start: int, count: int, size: int, frames: int, look: str) -> list[np.ndarray]:
    return [
        render_clip(action, start + i, size=size, frames=frames, appearance=look).frames for i in range(count)
    ]


@torch.no_grad()
def score(spec, clips: list[np.ndarray], *, use_ded: bool, ded=None) -> dict[str, float]:
    rows = []
    for clip in clips:
        video = to_video(clip)
        latents = spec.encode_video(video)
        decoded = spec.decode(latents, reference_photo=video[:, :, 0], use_ded=use_ded, ded=ded)
        rows.append(frame_metrics(to_uint8(decoded), clip))
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    spec = load_base(args.base, device="cpu")
    if spec.ded is None:
        print(f"base {args.base!r} has no Detail Enhancement Decoder", file=sys.stderr)
        return 2
    size = spec.default_size
    step_counts = [int(s) for s in args.steps.split(",")]
    results: list[dict] = []
    for action in args.actions.split(","):
        train = clips_of(action, TRAIN_SEED_START, args.train_clips, size, args.frames, "seen")
        test = clips_of(action, TEST_SEED_START, args.test_clips, size, args.frames, "unseen")
        latents = torch.cat([spec.encode_video(to_video(clip)) for clip in train])
        rows = {"plain decoder": (False, None)}
        for steps in step_counts:
            if steps == 0:
                rows["base DED"] = (True, None)
                continue
            settings = TrainSettings(
                frames=args.frames,
                size=size,
                ded_finetune_steps=steps,
                **({"ded_finetune_lr": args.lr} if args.lr else {}),
            )
            tick = time.perf_counter()
            tuned = finetune_ded(spec, latents, train, settings)
            seconds = time.perf_counter() - tick
            ded = _ded_from(spec, tuned.tensors)
            rows[f"DED fine-tuned {steps} steps ({seconds:.0f} s)"] = (True, ded)
            print(f"{action}: fine-tuned {steps} steps in {seconds:.1f} s", file=sys.stderr)
        for name, (use_ded, ded) in rows.items():
            results.append(
                {
                    "action": action,
                    "row": name,
                    "test_unseen": score(spec, test, use_ded=use_ded, ded=ded),
                    "train_seen": score(spec, train, use_ded=use_ded, ded=ded),
                }
            )
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2)
    )
    return 0


def _ded_from(spec, tensors):
    from flashcli.core.ded import DetailEnhancedDecoder

    ded = DetailEnhancedDecoder.from_weights(
        spec.vae, spec.ded.config, tensors, device=spec.device, dtype=torch.float32
    )
    return ded.eval()


def table(results: list[dict]) -> str:
    lines = [
        "| action | decoder | unseen looks: PSNR | SSIM | PSNR moved | jump | training looks: PSNR | SSIM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, s = r["test_unseen"], r["train_seen"]
        lines.append(
            f"| {r['action']} | {r['row']} | {t['psnr']:.2f} | {t['ssim']:.3f} | {t['psnr_moving']:.2f} | "
            f"{t['jump']:.2f} | {s['psnr']:.2f} | {s['ssim']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
