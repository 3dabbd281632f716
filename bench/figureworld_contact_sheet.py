"""Contact sheet of FigureWorld actions: one strip of frames per clip, with a label.

    python bench/figureworld_contact_sheet.py --size 80 --stride 3 --columns 2 --seeds 5 \
        --out docs/figureworld_contact_sheet.png
    python bench/figureworld_contact_sheet.py --actions heldout --appearance unseen --seeds 1 --size 96 \
        --stride 2 --out docs/figureworld_heldout_unseen.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flashcli.figureworld import ACTIONS, HELDOUT_ACTIONS, PRETRAIN_ACTIONS, render_clip


def contact_sheet(
    actions: list[str],
    seeds: list[int],
    appearance: str,
    size: int,
    frames: int,
    stride: int,
    columns: int,
    label_width: int = 96,
) -> Image.Image:
    """Rows of (label, frames) strips, laid out in `columns` side-by-side columns."""
    strips = []
    for action in actions:
        for seed in seeds:
            clip = render_clip(action, seed, size=size, frames=frames, appearance=appearance)  # type: ignore[arg-type]
            strip = np.concatenate(list(clip.frames[::stride]), axis=1)
            label = Image.new("RGB", (label_width, size), (255, 255, 255))
            split = "held out" if action in HELDOUT_ACTIONS else "pretrain"
            text = f"{action}\n{split}\nseed {seed}\n{appearance} look"
            ImageDraw.Draw(label).text((4, max(size // 2 - 24, 0)), text, fill=(0, 0, 0))
            strips.append(np.concatenate([np.asarray(label), strip], axis=1))
    rows_per_column = -(-len(strips) // columns)
    strips += [np.full_like(strips[0], 255)] * (rows_per_column * columns - len(strips))
    gap = np.full((rows_per_column * size, 8, 3), 255, dtype=np.uint8)
    pieces: list[np.ndarray] = []
    for c in range(columns):
        if c:
            pieces.append(gap)
        pieces.append(np.concatenate(strips[c * rows_per_column : (c + 1) * rows_per_column], axis=0))
    return Image.fromarray(np.concatenate(pieces, axis=1))


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--actions", default="all", help="comma-separated names, or all, pretrain, heldout")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; one strip per action and seed")
    parser.add_argument("--appearance", default="seen", choices=["seen", "unseen"])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--stride", type=int, default=2, help="show every n-th frame")
    parser.add_argument("--columns", type=int, default=1, help="side-by-side columns of strips")
    parser.add_argument("--out", type=Path, default=Path("docs/figureworld_contact_sheet.png"))
    args = parser.parse_args()
    groups = {"all": list(ACTIONS), "pretrain": list(PRETRAIN_ACTIONS), "heldout": list(HELDOUT_ACTIONS)}
    actions = groups.get(args.actions) or args.actions.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    sheet = contact_sheet(actions, seeds, args.appearance, args.size, args.frames, args.stride, args.columns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
