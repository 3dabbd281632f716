"""How far the FigureWorld motion family stays from the held-out actions (figureworld.family).

    python bench/family_distance.py                     # 17 frames at 8 fps, 200 family draws
    python bench/family_distance.py --frames 9          # the gate's short clips

Every distance is figureworld.family.motion_distance (0 the same motion, 1 as different as the
larger motion is from standing still) between signatures on the canonical body, front camera, from
rest. Prints, one line each:
- same action: each held-out action's own clips (random variations in its speed, amplitude, style
  and handedness ranges) to the nearest of its references, and pairwise between two of its clips;
- different actions: every pair of distinct named actions (the nearest pair of their clips), and
  each pretraining action to the nearest held-out reference;
- family: raw draws (sample_motion) to the nearest held-out reference, the share that
  sample_family_motion rejects at HELDOUT_MARGIN, and the kept draws to the nearest reference and
  to the nearest of the random held-out clips above (which are not references).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from itertools import combinations

import numpy as np

from flashcli.figureworld import ACTIONS, HELDOUT_ACTIONS, PRETRAIN_ACTIONS
from flashcli.figureworld.actions.base import Variation
from flashcli.figureworld.family import (
    HELDOUT_MARGIN,
    STEP_CAP,
    canonical_joints,
    family_signature,
    heldout_signatures,
    motion_distances,
    motion_signature,
    nearest_heldout,
    sample_family_motion,
    sample_motion,
)


def spread(values: list[float] | np.ndarray) -> str:
    """min / 5% / median / 95% / max of a list of distances."""
    v = np.asarray(values, dtype=np.float64)
    points = np.percentile(v, [0, 5, 50, 95, 100])
    return "min {:.3f}  5% {:.3f}  median {:.3f}  95% {:.3f}  max {:.3f}  (n={})".format(*points, len(v))


def action_signatures(clips: int, fps: float, frames: int, seed: int) -> dict[str, np.ndarray]:
    """(clips, F, J, 2) signatures per named action: random variations, from rest."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, definition in ACTIONS.items():
        variations = [replace(Variation.sample(rng), phase=0.0) for _ in range(clips)]
        joints = [canonical_joints(definition, v, fps=fps, frames=frames) for v in variations]
        out[name] = np.stack([motion_signature(j, 1.0) for j in joints])
    return out


def same_action(sigs: dict[str, np.ndarray], fps: float) -> tuple[dict[str, list[float]], list[float]]:
    """Held-out clips to their own action's nearest reference (per action), and pairwise within each
    action."""
    names, references, _ = heldout_signatures(fps, next(iter(sigs.values())).shape[1])
    to_reference: dict[str, list[float]] = {}
    pairwise: list[float] = []
    for name in HELDOUT_ACTIONS:
        own = references[np.array(names) == name]
        for k, sig in enumerate(sigs[name]):
            to_reference.setdefault(name, []).append(float(motion_distances(sig, own).min()))
            if k + 1 < len(sigs[name]):
                pairwise += motion_distances(sig, sigs[name][k + 1 :]).tolist()
    return to_reference, pairwise


def different_actions(sigs: dict[str, np.ndarray], fps: float) -> tuple[list[float], list[float]]:
    """Nearest clips of every pair of distinct actions, and pretraining clips to the nearest held-out."""
    pairs = [
        min(float(motion_distances(sig, sigs[b]).min()) for sig in sigs[a]) for a, b in combinations(sigs, 2)
    ]
    pretrain = [min(nearest_heldout(sig, fps=fps)[0] for sig in sigs[name]) for name in PRETRAIN_ACTIONS]
    return pairs, pretrain


def family(count: int, fps: float, frames: int, seed: int) -> tuple[list[float], list[np.ndarray]]:
    """Raw family draws' distance to the nearest held-out reference, and kept draws' signatures."""
    rng = np.random.default_rng(seed)
    raw = [
        nearest_heldout(
            family_signature(sample_motion(rng, fps=fps, frames=frames), fps=fps, frames=frames), fps=fps
        )[0]
        for _ in range(count)
    ]
    kept = [
        family_signature(sample_family_motion(rng, fps=fps, frames=frames), fps=fps, frames=frames)
        for _ in range(count)
    ]
    return raw, kept


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--clips", type=int, default=8, help="random clips per named action")
    parser.add_argument("--family", type=int, default=200, help="family draws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sigs = action_signatures(args.clips, args.fps, args.frames, args.seed)
    to_reference, pairwise = same_action(sigs, args.fps)
    pairs, pretrain = different_actions(sigs, args.fps)
    raw, kept = family(args.family, args.fps, args.frames, args.seed + 1)
    heldout_clips = np.concatenate([sigs[name] for name in HELDOUT_ACTIONS])
    kept_to_clips = [float(motion_distances(sig, heldout_clips).min()) for sig in kept]
    kept_to_references = [nearest_heldout(sig, fps=args.fps)[0] for sig in kept]
    rejected = float(np.mean(np.asarray(raw) < HELDOUT_MARGIN))
    worst = ", ".join(f"{name} {max(values):.2f}" for name, values in to_reference.items())
    print(f"{args.frames} frames at {args.fps:g} fps; HELDOUT_MARGIN {HELDOUT_MARGIN}; STEP_CAP {STEP_CAP}")
    print(f"same action, held-out clip to its nearest reference:  {spread(sum(to_reference.values(), []))}")
    print(f"  largest per action: {worst}")
    print(f"same action, two held-out clips of one action:        {spread(pairwise)}")
    print(f"different actions, nearest clips of two actions:      {spread(pairs)}")
    print(f"pretraining action to the nearest held-out reference: {spread(pretrain)}")
    print(f"family draw to the nearest held-out reference (raw):  {spread(raw)}")
    print(f"family draws rejected at the margin: {100 * rejected:.1f}%")
    print(f"kept family draw to the nearest held-out reference:   {spread(kept_to_references)}")
    print(f"kept family draw to the nearest held-out clip:        {spread(kept_to_clips)}")


if __name__ == "__main__":
    main()
