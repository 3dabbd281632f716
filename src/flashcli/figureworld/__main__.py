"""python -m flashcli.figureworld: render FigureWorld clips to a folder (mp4 + PNG frames + JSON).

Examples:
    python -m flashcli.figureworld --list
    python -m flashcli.figureworld --actions weld,squat --clips 8 --out /tmp/fw
    python -m flashcli.figureworld --actions heldout --appearance unseen --size 256 --no-png --out bench_clips

Layout: OUT/<action>/<action>_<seed>.mp4, OUT/<action>/<action>_<seed>/frame_NNN.png and
OUT/<action>/<action>_<seed>.json (action, seed, appearance, per-frame joint positions and visibility).
One JSON summary line goes to stdout; exit 0 on success, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flashcli.figureworld.actions import ACTIONS
from flashcli.figureworld.files import write_clip
from flashcli.figureworld.render import render_clip
from flashcli.figureworld.splits import HELDOUT_ACTIONS, PRETRAIN_ACTIONS


def resolve_actions(spec: str) -> list[str]:
    """'all', 'pretrain', 'heldout' or a comma-separated list of action names."""
    groups = {"all": list(ACTIONS), "pretrain": list(PRETRAIN_ACTIONS), "heldout": list(HELDOUT_ACTIONS)}
    if spec in groups:
        return groups[spec]
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in ACTIONS]
    if unknown or not names:
        raise ValueError(
            f"unknown action(s) {', '.join(unknown) or repr(spec)}; choose from {', '.join(ACTIONS)}"
            " or all, pretrain, heldout"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flashcli.figureworld",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--actions", default="all", help="names (comma-separated), all, pretrain or heldout")
    parser.add_argument("--clips", type=int, default=1, help="clips per action (seeds seed..seed+clips-1)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--size", type=int, default=128, help="frame height and width in pixels")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--appearance", choices=["seen", "unseen"], default="seen")
    parser.add_argument("--framing", choices=["full", "close_up"], default=None, help="default: per seed")
    parser.add_argument("--camera-shake", action="store_true")
    parser.add_argument(
        "--phase",
        type=float,
        default=None,
        help="start every clip at this point of the action's cycle, 0 <= phase < 1 (0: from rest, as "
        "people record an action); default: per seed",
    )
    parser.add_argument("--no-png", action="store_true", help="skip the PNG frame folders")
    parser.add_argument("--no-mp4", action="store_true", help="skip the mp4 files")
    parser.add_argument("--no-json", action="store_true", help="skip the JSON ground-truth sidecars")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--list", action="store_true", help="print the actions and their split, then exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, action in ACTIONS.items():
            split = "heldout" if name in HELDOUT_ACTIONS else "pretrain"
            print(f"{name:16s} {split:9s} {action.scale:9s} {action.description}")
        return 0
    if args.out is None:
        parser.error("--out is required (the folder to write clips into)")
    try:
        actions = resolve_actions(args.actions)
        if args.clips < 1:
            raise ValueError(f"--clips must be at least 1, got {args.clips}")
        written = 0
        for action in actions:
            for seed in range(args.seed, args.seed + args.clips):
                clip = render_clip(
                    action,
                    seed,
                    size=args.size,
                    frames=args.frames,
                    fps=args.fps,
                    appearance=args.appearance,
                    camera_shake=args.camera_shake,
                    framing=args.framing,
                    phase=args.phase,
                )
                stem = f"{action}_{seed}"
                write_clip(
                    clip,
                    args.out / action,
                    stem,
                    mp4=not args.no_mp4,
                    png=not args.no_png,
                    sidecar_json=not args.no_json,
                )
                written += 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "actions": actions, "clips": written}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
