"""Does a learned adapter denoise the action better, on its own clips and on new people?

For each training variant, learn an adapter from N clips of one held-out FigureWorld action (seen
looks) and measure `fixed_denoising_error` (velocity MSE at fixed noise levels, frame 0 clean), with
and without the adapter, on: a training clip, a new clip of the action with a seen look, a new clip
with an unseen look, and an unseen-look clip of another action. An adapter that learned the action
lowers the first three; one that carries motion to new people lowers the third. No sampling and no
keypoints, so it is quick, and it isolates training from sampling.

    python bench/adapter_fit.py --action jumping_jack --steps 300 --threads 2

Alignment settings against each other, on every held-out action (`--rows`: named rows, each a variant
and AlignSettings fields; a summary of paired differences against plain LoRA, over the actions):

    python bench/adapter_fit.py --actions heldout --steps 60 --unseen-clips 4 --workers 2 \
        --rows bench/align_rows.json
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


def probes(
    action: str, other: str, clips: int, frames: int, size: int, unseen_clips: int = 1
) -> tuple[list, dict[str, Any]]:
    """The training clips, and each probe's clips: `unseen look` is `unseen_clips` new people."""
    from flashcli.figureworld import render_clip

    def clip(name: str, offset: int, look: str) -> Any:
        return render_clip(name, SEED_BASE + offset, size=size, frames=frames, appearance=look)  # type: ignore[arg-type]

    training = [clip(action, 200 + i, "seen") for i in range(clips)]
    return training, {
        PROBES[0]: [training[0].frames],
        PROBES[1]: [clip(action, 400, "seen").frames],
        PROBES[2]: [clip(action, 300 + i, "unseen").frames for i in range(unseen_clips)],
        PROBES[3]: [clip(other, 301, "unseen").frames],
    }


def parse_rows(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[dict[str, Any]]:
    """Named rows {name, variant, align}: from --rows (a JSON file or text), else one per --variants
    with --plain-loss-weight and --align applied to the aligned ones."""
    if args.rows:
        text = Path(args.rows).read_text() if Path(args.rows).is_file() else args.rows
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            parser.error(f"--rows is neither a JSON file nor JSON: {error}")
        for row in rows:
            if set(row) - {"name", "variant", "align"} or "variant" not in row:
                parser.error(f"--rows: each row has a variant, and optionally a name and align: {row}")
    else:
        try:
            overrides = json.loads(args.align)
            if args.plain_loss_weight is not None:
                overrides["plain_loss_weight"] = args.plain_loss_weight
        except json.JSONDecodeError as error:
            parser.error(f"--align is not JSON: {error}")
        rows = [{"variant": v.strip(), "align": overrides} for v in args.variants.split(",") if v.strip()]
    unknown = [row["variant"] for row in rows if row["variant"] not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    return [{"name": row.get("name", row["variant"]), "align": {}, **row} for row in rows]


def measure_action(args: argparse.Namespace, action: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row's adapter for one action, and each probe's denoising error with it (and without)."""
    from flashcli.lab.evaluation import fixed_denoising_error
    from flashcli.workflows.learn import train_action
    from flashcli.workflows.plan import BaseShape, open_base

    torch.set_num_threads(args.threads)
    spec = open_base(args.base, "cpu")
    shape = BaseShape.of(spec)
    quick = settings_for("none", args.steps, shape, {})
    frames, size = quick.frames, quick.size  # the quick preset's clip length, the base's size
    training, clips = probes(action, args.other, args.clips, frames, size, args.unseen_clips)

    def errors(adapters: list) -> dict[str, Any]:
        """Each probe's mean error, and the unseen-look probe's per person (the summary's units)."""
        each = {
            probe: [fixed_denoising_error(spec, c, adapters) for c in group] for probe, group in clips.items()
        }
        return {probe: sum(v) / len(v) for probe, v in each.items()} | {"unseen_each": each[PROBES[2]]}

    measured: list[dict[str, Any]] = [
        {"action": action, "variant": "no adapter", "seconds": 0.0, **errors([])}
    ]
    for row in rows:
        settings = settings_for(row["variant"], args.steps, shape, row["align"])
        started = time.time()
        weights = train_action(spec, [c.frames for c in training], settings, masks=[c.mask for c in training])
        result = weights.adapter
        seconds = time.time() - started
        measured.append(
            {
                "action": action,
                "variant": row["name"],
                "seconds": seconds,
                "final_losses": result.losses[-1],
                **errors([(result.adapter, result.metadata, 1.0)]),
            }
        )
        print(f"{action} {row['name']}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return measured


def summary_lines(measured: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Over the actions: each row's error relative to no adapter (1 = no gain), and its paired
    difference against plain LoRA, with bootstrap 95 % intervals (units = actions)."""
    from flashcli.lab.statistics import bootstrap_mean, paired_interval

    plain = {m["action"]: m for m in measured if m["variant"] == "no adapter"}

    def relative(row: str, probe: str) -> list[dict[str, Any]]:
        """One unit per action, or per (action, new person) for the unseen-look probe."""
        units = []
        for m in (m for m in measured if m["variant"] == row):
            ours, theirs = [m[probe]], [plain[m["action"]][probe]]
            if probe == PROBES[2]:
                ours, theirs = m["unseen_each"], plain[m["action"]]["unseen_each"]
            for person, (a, b) in enumerate(zip(ours, theirs, strict=True)):
                units.append({"action": m["action"], "seed": 0, "photo": person, "value": a / b})
        return units

    def cell(interval: Any, digits: int = 3) -> str:
        return f"{interval.mean:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"

    probe = PROBES[2]
    lines = [
        f"Error on `{probe}` / no adapter's (lower is better), mean over {len(plain)} actions x their "
        "new people [95 % interval]; minus plain LoRA's, paired by action and person; the training clip "
        "per action:",
        "",
        "| row | unseen look / no adapter | minus plain LoRA | training clip / no adapter | learn s |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        ours = relative(name, probe)
        seconds = [m["seconds"] for m in measured if m["variant"] == name]
        versus = (
            cell(paired_interval(ours, relative("plain_lora", probe), "value"))
            if name != "plain_lora" and any(m["variant"] == "plain_lora" for m in measured)
            else "–"
        )
        training = bootstrap_mean(r["value"] for r in relative(name, PROBES[0]))
        own = bootstrap_mean(r["value"] for r in ours)
        lines.append(
            f"| {name} | {cell(own)} | {versus} | {cell(training)} | {sum(seconds) / len(seconds):.0f} |"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--action", default="jumping_jack", help="a held-out FigureWorld action")
    parser.add_argument("--actions", help="several held-out actions, comma-separated, or 'heldout' (all)")
    parser.add_argument("--other", default="squat", help="an action to check the adapter stays specific")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument(
        "--unseen-clips", type=int, default=1, help="new people the unseen-look probe averages"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rows", help="named rows as JSON (a file or text): [{name, variant, align}, ...]")
    parser.add_argument(
        "--plain-loss-weight",
        type=float,
        default=None,
        help="with an alignment on, the plain loss's weight on the original clip (default: AlignSettings')",
    )
    parser.add_argument(
        "--align",
        default="{}",
        help='more AlignSettings fields for aligned variants as JSON, e.g. {"motion_source": "update"}',
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="processes, one action each at a time")
    parser.add_argument("--json", type=Path, default=Path("bench/out/adapter_fit.json"))
    args = parser.parse_args(argv)
    rows = parse_rows(args, parser)

    from flashcli.figureworld import HELDOUT_ACTIONS
    from flashcli.files import write_text_atomic

    actions = [args.action]
    if args.actions:
        actions = list(HELDOUT_ACTIONS) if args.actions == "heldout" else args.actions.split(",")
    if unknown := [a for a in actions if a not in HELDOUT_ACTIONS]:
        parser.error(f"{unknown} are not held-out actions; the base may have seen them")
    if args.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        args.threads = 1
        with ProcessPoolExecutor(args.workers) as pool:
            parts = list(pool.map(measure_action, [args] * len(actions), actions, [rows] * len(actions)))
    else:
        parts = [measure_action(args, action, rows) for action in actions]
    measured = [m for part in parts for m in part]

    print(
        f"{args.clips} clips, {args.steps} steps, the quick preset with each row's switches; lower is better"
    )
    for action in actions:
        print(f"\n{action}\n\n| row | learn s | " + " | ".join(PROBES) + " |")
        print("|---|---|" + "---|" * len(PROBES))
        for m in (m for m in measured if m["action"] == action):
            cells = " | ".join(f"{m[k]:.4f}" for k in PROBES)
            print(f"| {m['variant']} | {m['seconds']:.0f} | {cells} |")
    if len(actions) > 1:
        print("\n" + "\n".join(summary_lines(measured, [row["name"] for row in rows])))
    report = {"args": vars(args) | {"json": str(args.json)}, "rows": rows, "measured": measured}
    write_text_atomic(args.json, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
