"""The keypoint detector's own error on renders it never saw, so the benchmark's error bar is known.

    python bench/keypoints/evaluate.py                    # markdown table on stdout, JSON beside the weights
    python bench/keypoints/evaluate.py --clips-per-action 2 --json /tmp/kp_eval.json   # quick look

Sets: `heldout_unseen` = the benchmark's own setting (the 8 held-out actions, unseen-range looks,
framing chosen by the seed); `pretrain_seen` = the training distribution on new seeds. Scores per
frame (no time alignment): mean joint error in % of body height and PCK@0.1 / PCK@0.05, over joints
inside the picture ("in frame") and over joints neither hidden nor outside ("visible"). The
`mirror-free` column scores each frame against the better of the true and the left/right-swapped
labels: the gap to the plain error is what side confusions cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from flashcli.figureworld import HELDOUT_ACTIONS, JOINT_NAMES, PRETRAIN_ACTIONS, render_clip
from flashcli.lab import metrics
from flashcli.lab.keypoints.data import EVAL_SEED_START, in_frame, mirror_permutation
from flashcli.lab.keypoints.detector import DEFAULT_WEIGHTS, load_detector

SETS = {
    "heldout_unseen": (HELDOUT_ACTIONS, "unseen"),
    "pretrain_seen": (PRETRAIN_ACTIONS, "seen"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--clips-per-action", type=int, default=6, help="held-out set; pretrain gets 1 each")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-flip-average", action="store_true", help="one pass, no mirrored second pass")
    parser.add_argument("--json", type=Path, default=None, help="default: eval.json beside the weights")
    return parser.parse_args(argv)


def score_clip(
    detector, action: str, seed: int, appearance: str, size: int, flip_average: bool
) -> dict[str, float]:
    clip = render_clip(action, seed, size=size, frames=17, appearance=appearance, camera_shake=seed % 3 == 0)
    predicted = detector.detect(clip.frames, flip_average=flip_average)
    scale = metrics.body_height(clip.joints, JOINT_NAMES)
    inside = np.asarray(in_frame(clip.joints, size, size))
    visible = clip.visible & inside
    swapped = clip.joints[:, mirror_permutation()]
    plain = metrics.joint_distances(predicted, clip.joints)
    mirrored = metrics.joint_distances(predicted, swapped)
    per_frame_plain = (plain * inside).sum(1) / np.maximum(inside.sum(1), 1)
    per_frame_mirror = (mirrored * inside).sum(1) / np.maximum(inside.sum(1), 1)
    best = np.where((per_frame_mirror < per_frame_plain)[:, None], mirrored, plain)
    return {
        "error_in_frame": metrics.mean_joint_error(predicted, clip.joints, scale, inside, align=False),
        "pck10_in_frame": metrics.pck(predicted, clip.joints, scale, 0.1, inside, align=False),
        "pck05_in_frame": metrics.pck(predicted, clip.joints, scale, 0.05, inside, align=False),
        "error_visible": metrics.mean_joint_error(predicted, clip.joints, scale, visible, align=False),
        "pck10_visible": metrics.pck(predicted, clip.joints, scale, 0.1, visible, align=False),
        "error_mirror_free": float(100 * best[inside].mean() / scale),
        "body_height_px": scale,
        "close_up": float(clip.meta["framing"] == "close_up"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    detector = load_detector(args.weights)
    report: dict[str, object] = {
        "weights": args.weights.name,
        "detector": detector.info,
        "flip_average": not args.no_flip_average,
        "sets": {},
    }
    for set_name, (actions, appearance) in SETS.items():
        per_clip = []
        repeats = args.clips_per_action if set_name == "heldout_unseen" else 1
        for action in actions:
            for index in range(repeats):
                seed = EVAL_SEED_START + 1000 * actions.index(action) + index
                record = score_clip(detector, action, seed, appearance, args.size, not args.no_flip_average)
                per_clip.append({"action": action, "seed": seed, **record})
        keys = [key for key in per_clip[0] if key not in ("action", "seed")]
        summary = {key: float(np.mean([record[key] for record in per_clip])) for key in keys}
        by_action = {
            action: {
                key: float(np.mean([r[key] for r in per_clip if r["action"] == action]))
                for key in ("error_in_frame", "pck10_in_frame")
            }
            for action in actions
        }
        report["sets"][set_name] = {"clips": len(per_clip), "mean": summary, "by_action": by_action}
    out = args.json or args.weights.with_name("eval.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    lines = [
        "| set | clips | error in frame (% body height) | PCK@0.1 | PCK@0.05 | error visible | "
        "PCK@0.1 visible | mirror-free error | body height (px) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["sets"].items():
        m = entry["mean"]
        lines.append(
            f"| {name} | {entry['clips']} | {m['error_in_frame']:.2f} | {m['pck10_in_frame']:.3f} | "
            f"{m['pck05_in_frame']:.3f} | {m['error_visible']:.2f} | {m['pck10_visible']:.3f} | "
            f"{m['error_mirror_free']:.2f} | {m['body_height_px']:.1f} |"
        )
    held = report["sets"]["heldout_unseen"]["by_action"]
    lines += ["", "| held-out action (unseen looks) | error (% body height) | PCK@0.1 |", "|---|---|---|"]
    lines += [f"| {a} | {v['error_in_frame']:.2f} | {v['pck10_in_frame']:.3f} |" for a, v in held.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
