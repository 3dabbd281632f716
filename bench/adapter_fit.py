"""Does a learned adapter denoise the action better, on its own clips and on new people?

For each training variant, learn an adapter from N clips of one held-out FigureWorld action (seen
looks) and measure `fixed_denoising_error` (velocity MSE at fixed noise levels, frame 0 clean), with
and without the adapter, on: a training clip, a new clip of the action with a seen look, a new clip
with an unseen look, and an unseen-look clip of another action. An adapter that learned the action
lowers the first three; one that carries motion to new people lowers the third. No sampling and no
keypoints, so it is quick, and it isolates training from sampling.

    python bench/adapter_fit.py --action jumping_jack --steps 300 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

VARIANTS = ("plain_lora", "none", "augment", "augment_motion", "augment_correspondence", "augment_both")
PROBES = ("training clip", "seen look", "unseen look", "other action, unseen look")
SEED_BASE = 5_000_000  # the quality scripts' evaluation seeds; far from every pretraining stream


def settings_for(variant: str, steps: int, shape: Any, align_overrides: dict[str, Any]) -> Any:
    """What `flash learn --preset quick --steps N` trains on this base, with the variant's switches."""
    from flashcli.config import resolve_learn
    from flashcli.core.settings import ALL_LORA_TARGETS, AlignSettings
    from flashcli.workflows.plan import plan_learn

    plain = variant == "plain_lora"
    align = AlignSettings.variant("none" if plain else variant)
    if align.injects:  # validated: a misspelt field is an error, not a silent default
        align = AlignSettings.model_validate(align.model_dump() | align_overrides)
    flags = {
        "steps": steps,
        "align": align.model_dump(),
        "core": {"targets": list(ALL_LORA_TARGETS)} if plain else {},
    }
    preset, config, table = resolve_learn("quick", flags)
    return plan_learn(preset, config, table, shape, flags).train


def probes(action: str, other: str, clips: int, frames: int, size: int) -> tuple[list, dict[str, Any]]:
    from flashcli.figureworld import render_clip

    def clip(name: str, offset: int, look: str) -> Any:
        return render_clip(name, SEED_BASE + offset, size=size, frames=frames, appearance=look)  # type: ignore[arg-type]

    training = [clip(action, 200 + i, "seen") for i in range(clips)]
    return training, {
        PROBES[0]: training[0].frames,
        PROBES[1]: clip(action, 400, "seen").frames,
        PROBES[2]: clip(action, 300, "unseen").frames,
        PROBES[3]: clip(other, 301, "unseen").frames,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--action", default="jumping_jack", help="a held-out FigureWorld action")
    parser.add_argument("--other", default="squat", help="an action to check the adapter stays specific")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--plain-loss-weight",
        type=float,
        default=0.0,
        help="with an alignment on, also train the plain loss on the original clip (AlignSettings)",
    )
    parser.add_argument(
        "--align",
        default="{}",
        help='more AlignSettings fields for aligned variants as JSON, e.g. {"motion_source": "update"}',
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("bench/out/adapter_fit.json"))
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        align_overrides = {"plain_loss_weight": args.plain_loss_weight, **json.loads(args.align)}
    except json.JSONDecodeError as error:
        parser.error(f"--align is not JSON: {error}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")

    from flashcli.files import write_text_atomic
    from flashcli.lab.evaluation import fixed_denoising_error
    from flashcli.workflows.learn import train_action
    from flashcli.workflows.plan import BaseShape, open_base

    torch.set_num_threads(args.threads)
    spec = open_base(args.base, "cpu")
    shape = BaseShape.of(spec)
    quick = settings_for("none", args.steps, shape, {})
    frames, size = quick.frames, quick.size  # the quick preset's clip length, the base's size
    training, clips = probes(args.action, args.other, args.clips, frames, size)
    plain = {k: fixed_denoising_error(spec, c, []) for k, c in clips.items()}
    rows: list[dict[str, Any]] = [{"variant": "no adapter", "seconds": 0.0, **plain}]
    for variant in variants:
        settings = settings_for(variant, args.steps, shape, align_overrides)
        started = time.time()
        weights = train_action(spec, [c.frames for c in training], settings, masks=[c.mask for c in training])
        result = weights.adapter
        adapters = [(result.adapter, result.metadata, 1.0)]
        row = {"variant": variant, "seconds": time.time() - started, "final_losses": result.losses[-1]}
        row.update({k: fixed_denoising_error(spec, c, adapters) for k, c in clips.items()})
        rows.append(row)
        print(f"{variant}: {row['seconds']:.0f} s", file=sys.stderr, flush=True)

    print(
        f"{args.action}, {args.clips} clips, {args.steps} steps, {align_overrides} where aligned, "
        "quick preset otherwise; lower is better"
    )
    print("| variant | learn s | " + " | ".join(PROBES) + " |")
    print("|---|---|" + "---|" * len(PROBES))
    for row in rows:
        cells = " | ".join(f"{row[k]:.4f}" for k in PROBES)
        print(f"| {row['variant']} | {row['seconds']:.0f} | {cells} |")
    write_text_atomic(
        args.json, json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
