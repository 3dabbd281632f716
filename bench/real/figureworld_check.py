"""How well does the mediapipe scorer see FigureWorld figures? (No real footage is available offline.)

    .venv-mediapipe/bin/python bench/real/figureworld_check.py FOLDER [--mirror]

FOLDER is the output of `python -m flashcli.figureworld ... --out FOLDER` (mp4 + JSON per clip). For
every clip: mediapipe's detection rate and its landmark error against the rendered true joints (% of
the true torso length, per frame, no time alignment). Then the scorer's own numbers: each clip
against itself, against the other clips of its action and against clips of other actions, and
leave-one-out nearest-reference accuracy, once with mediapipe's landmarks and once with the true
joints put in mediapipe's slots (the ceiling the scoring math allows). Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import score_real  # bench/real/score_real.py, beside this script

from flashcli.lab import pose_motion

# FigureWorld joint -> mediapipe landmark (both name the person's own left and right).
SLOTS = {
    "l_shoulder": 11, "r_shoulder": 12, "l_elbow": 13, "r_elbow": 14, "l_wrist": 15, "r_wrist": 16,
    "l_hip": 23, "r_hip": 24, "l_knee": 25, "r_knee": 26, "l_ankle": 27, "r_ankle": 28,
}  # fmt: skip


def true_landmarks(sidecar: Path) -> tuple[np.ndarray, np.ndarray]:
    """The rendered joints in mediapipe's 33 slots; slots FigureWorld has no joint for stay unseen."""
    joints = json.loads(sidecar.read_text())["joints"]
    names = joints["names"]
    xy_in, seen_in = np.asarray(joints["xy"], dtype=np.float64), np.asarray(joints["visible"], dtype=bool)
    xy = np.zeros((len(xy_in), pose_motion.NUM_LANDMARKS, 2))
    seen = np.zeros((len(xy_in), pose_motion.NUM_LANDMARKS), dtype=bool)
    for name, slot in SLOTS.items():
        xy[:, slot], seen[:, slot] = xy_in[:, names.index(name)], seen_in[:, names.index(name)]
    return xy, seen


def landmark_error(
    found: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray], swap_free: bool = False
) -> float:
    """Mean distance of the mapped landmarks seen in both, % of the true median torso length.

    `swap_free`: per frame, the smaller of the errors with mediapipe's left and right as they are and
    swapped, to tell a left/right confusion (cheap for motion) from a wrong pose.
    """
    slots = list(SLOTS.values())
    (xy, seen), (true_xy, true_seen) = found, truth
    torso = np.nanmedian(pose_motion._torso_lengths(true_xy, true_seen))
    orders = [slots, [pose_motion.MIRROR[slot] for slot in slots]] if swap_free else [slots]
    per_order = []
    for order in orders:
        both = seen[:, order] & true_seen[:, slots]
        distances = np.linalg.norm(xy[:, order] - true_xy[:, slots], axis=-1)
        counts = both.sum(axis=1)
        per_frame = np.where(counts > 0, (distances * both).sum(axis=1) / np.maximum(counts, 1), np.nan)
        per_order.append(per_frame)
    best = np.fmin.reduce(per_order) if swap_free else per_order[0]
    return float(100.0 * np.nanmean(best) / torso) if np.isfinite(best).any() else float("nan")


def _summary(values: list[float]) -> str:
    finite = [value for value in values if np.isfinite(value)]
    return f"{np.mean(finite):.1f}" if finite else "–"


def scorer_rows(tracks: dict[str, tuple[str, tuple]], mirror: list[int] | None) -> tuple[dict, float]:
    """Mean error / r for self, same action, other action; and leave-one-out nearest accuracy."""
    groups: dict[str, list[tuple[float, float]]] = {"itself": [], "same action": [], "other action": []}
    names = sorted(tracks)
    for name in names:
        action, trajectory = tracks[name]
        score = pose_motion.compare(*trajectory, *trajectory, mirror=mirror)
        groups["itself"].append((score.error, score.correlation))
    table: dict[tuple[str, str], pose_motion.Comparison] = {}
    for a, b in combinations(names, 2):
        for query, reference in ((a, b), (b, a)):
            score = pose_motion.compare(*tracks[query][1], *tracks[reference][1], mirror=mirror)
            table[query, reference] = score
            same = tracks[query][0] == tracks[reference][0]
            groups["same action" if same else "other action"].append((score.error, score.correlation))
    hits = []
    for query in names:
        others = {reference: table[query, reference] for reference in names if reference != query}
        hits.append(tracks[pose_motion.nearest(others)][0] == tracks[query][0])
    means = {
        key: (_summary([e for e, _ in pairs]), _summary([r for _, r in pairs]))
        for key, pairs in groups.items()
    }
    return means, float(np.mean(hits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--mirror", action="store_true")
    args = parser.parse_args(argv)
    clips = sorted(args.folder.glob("*/*.mp4"))
    if not clips:
        print(f"{args.folder} holds no FigureWorld clips (*/*.mp4).", file=sys.stderr)
        return 2
    found_tracks, true_tracks, rates, errors, swap_free_errors = {}, {}, [], [], []
    lines = [
        "| clip | frames | person found | landmark error (% torso) | swap-free |",
        "|---|---|---|---|---|",
    ]
    for clip in clips:
        action = json.loads(clip.with_suffix(".json").read_text())["action"]
        with score_real._native_stderr_muted(True):
            found = score_real.landmarks(clip, complexity=1, threshold=0.5, every=1)
        truth = true_landmarks(clip.with_suffix(".json"))
        rate, error = pose_motion.detection_rate(found[1]), landmark_error(found, truth)
        swap_free = landmark_error(found, truth, swap_free=True)
        rates.append(rate)
        errors.append(error)
        swap_free_errors.append(swap_free)
        lines.append(f"| {clip.stem} | {len(found[0])} | {rate:.0%} | {error:.1f} | {swap_free:.1f} |")
        print(f"{clip}: person in {rate:.0%}, landmark error {error:.1f} % torso", file=sys.stderr)
        trajectory = score_real._trajectory(*found)
        if trajectory is not None:
            found_tracks[clip.stem] = (action, trajectory)
        true_tracks[clip.stem] = (action, score_real._trajectory(*truth))
    lines.append(
        f"| **all {len(clips)}** | | {np.mean(rates):.0%} | {_summary(errors)} "
        f"| {_summary(swap_free_errors)} |"
    )
    mirror = pose_motion.MIRROR if args.mirror else None
    lines += ["", "| landmarks | vs itself: error / r | same action | other action | nearest-action acc. |"]
    lines.append("|---|---|---|---|---|")
    for label, tracks in (("mediapipe", found_tracks), ("true joints (12 slots)", true_tracks)):
        means, accuracy = scorer_rows(tracks, mirror)
        cells = " | ".join(f"{error} / {r}" for error, r in means.values())
        lines.append(f"| {label} ({len(tracks)} clips) | {cells} | {accuracy:.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
