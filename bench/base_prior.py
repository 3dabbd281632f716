"""Can a base animate the actions it was pretrained on? The gate before any adapter work.

For each of several pretraining actions, K clips of seen-range looks at seeds the pretraining stream
never used: the base animates frame 0 with no adapter, and each video is scored through the keypoint
detector against its true clip, with the scores of bench/quality.py. Two samplers are compared: the
deterministic Euler ODE that `flash animate` uses (eta 0) and an ancestral one that re-noises every
step (eta 1). Two reference rows need no model: `ground truth` and `still photo`. A base pretrained
class-conditionally (it ships action_text.safetensors) is also sampled told each clip's action, through
its learned embedding of that action ("told the action" rows).

A base whose samples do not beat the still photo on the actions it was trained on cannot carry an
action learned from 8 clips either, so judge a new base here before running bench/quality.py.

    python bench/base_prior.py --base runs/tiny_v6_export --out bench/out/base_prior
    python bench/base_prior.py --quick          # 2 actions, 2 photos, 8 steps: a smoke run
    python bench/base_prior.py --base B --photos-from stream   # clips the denoiser trained on
    python bench/base_prior.py --base B --frames 9 --phase 0   # clips that start from rest

Writes OUT/base_prior.md, OUT/base_prior.json and OUT/sheet.png (per photo: truth, then each sampler).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flashcli.figureworld import JOINT_NAMES, PRETRAIN_ACTIONS, render_clip
from flashcli.files import atomic_path
from flashcli.lab import metrics
from flashcli.lab.keypoints.detector import DEFAULT_WEIGHTS, load_detector
from flashcli.lab.motion_scores import bone_indices, finite_json, score_video, summarise
from flashcli.lab.pretrain.data import clip_action

BENCH = Path(__file__).resolve().parent

# Whole-body pretraining actions the detector sees well at 64 px (thin-arm actions read poorly).
DEFAULT_ACTIONS = ("squat", "kick", "march", "side_bend", "toe_touch", "jump", "arm_circles", "punch")
# Far from the pretraining stream (0..) and its held-out checks (1,000,000..).
TEST_SEED = 5_300_000
REFERENCE_SEED = 5_400_000
SAMPLERS = {"euler": 0.0, "ancestral": 1.0}  # name -> eta; rows read "euler (eta 0)", ...


@torch.no_grad()
def animate(
    spec: Any,
    photo: np.ndarray,
    frames: int,
    steps: int,
    eta: float,
    seed: int,
    text: torch.Tensor,
    guidance: float | None = None,
) -> np.ndarray:
    """One video from `photo` with no adapter, frame 0 held clean, decoded as `flash animate` does.
    With `guidance`, classifier-free guidance of `text` against the null text."""
    from flashcli.core.flow import sampling_sigmas
    from flashcli.core.pixels import photo_to_tensor, tensor_to_video
    from flashcli.core.sampler import first_frame_velocity, initial_noise, sample_ancestral

    reference = photo_to_tensor(photo).unsqueeze(0).to(spec.device)
    condition = spec.encode_photo(reference)
    shape = (1, condition.shape[1], spec.latent_frames(frames), condition.shape[3], condition.shape[4])
    latents = initial_noise(shape, seed).to(spec.device)
    latents[:, :, :1] = condition
    if guidance is not None:
        text = torch.cat([text, spec.encode_text(None)])
    velocity = first_frame_velocity(spec, condition, text, guidance=guidance)
    generator = torch.Generator().manual_seed(seed + 1)
    final = sample_ancestral(velocity, latents, sampling_sigmas(steps, spec.flow_shift), eta, generator)
    final[:, :, :1] = condition
    return tensor_to_video(spec.decode(final, reference)[0])


def stream_seeds(actions: list[str], per_action: int) -> dict[str, list[int]]:
    """The first `per_action` clips of each action in the pretraining stream (train seeds from 0): clips
    every tiny denoiser trained on, rendered exactly as the stream renders them."""
    seeds: dict[str, list[int]] = {action: [] for action in actions}
    index = 0
    while any(len(found) < per_action for found in seeds.values()):
        action = clip_action(index, 0)
        if action in seeds and len(seeds[action]) < per_action:
            seeds[action].append(index)
        index += 1
    return seeds


def run(args: argparse.Namespace) -> dict[str, Any]:
    from flashcli.core.specs import load_base

    spec = load_base(args.base, device="cpu")
    size, frames = spec.default_size, args.frames or spec.default_frames
    spec.check_video_shape(frames, size, size)
    detector = load_detector(args.detector)
    bones = bone_indices()
    if args.photos_from == "stream":
        seeds = stream_seeds(args.actions, args.photos)
    else:
        seeds = {action: [TEST_SEED + i for i in range(args.photos)] for action in args.actions}
    truths = {
        action: [
            render_clip(action, seed, size=size, frames=frames, appearance="seen", phase=args.phase)
            for seed in seeds[action]
        ]
        for action in args.actions
    }
    references = {
        action: [
            metrics.motion_signature(c.joints, metrics.body_height(c.joints, JOINT_NAMES))
            for c in (
                render_clip(
                    action, REFERENCE_SEED + i, size=size, frames=frames, appearance="seen", phase=args.phase
                )
                for i in range(args.reference_clips)
            )
        ]
        for action in args.actions
    }
    rows: dict[str, dict[str, float]] = {}
    videos: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}

    def score(name: str, make: Callable[[Any], np.ndarray]) -> None:
        scored, made = [], []
        started = time.perf_counter()
        for action, clips in truths.items():
            for truth in clips:
                video = make(truth)
                made.append(video)
                scored.append({"action": action, **score_video(detector, video, truth, bones)})
        seconds[name] = (time.perf_counter() - started) / len(made)
        rows[name] = summarise(scored, references)
        videos[name] = made
        print(f"{name}: joint error {rows[name]['joint_error']:.2f}", file=sys.stderr, flush=True)

    score("ground truth", lambda truth: truth.frames)
    score("still photo", lambda truth: np.repeat(truth.frames[:1], frames, axis=0))

    def sampled(eta: float, told: bool, guidance: float | None = None) -> Callable[[Any], np.ndarray]:
        """Videos from each truth's frame 0, conditioned on its action's learned text when `told`."""

        def make(truth: Any) -> np.ndarray:
            text = spec.pretrained_action_text(str(truth.meta["action"])) if told else spec.encode_text(None)
            return animate(spec, truth.frames[0], frames, args.steps, eta, args.seed, text, guidance)

        return make

    rows_told = [False, True] if spec.action_text else [False]
    samplers = [(name, SAMPLERS[name]) for name in args.samplers]
    samplers += [("partly ancestral", eta) for eta in args.etas]
    for told in rows_told:
        for sampler, eta in samplers:
            score(f"{sampler} (eta {eta:g})" + (", told the action" if told else ""), sampled(eta, told))
    for guidance in args.guidance if spec.action_text else []:
        score(f"euler (eta 0), told the action, guidance {guidance:g}", sampled(0.0, True, guidance))
    return {
        "base": spec.describe(),
        "actions": list(args.actions),
        "photos": args.photos,
        "photos_from": args.photos_from,
        "frames": frames,
        "phase": args.phase,
        "size": size,
        "steps": args.steps,
        "seed": args.seed,
        "rows": rows,
        "seconds_per_video": seconds,
        "_videos": videos,
        "_truths": [truth.frames for clips in truths.values() for truth in clips],
    }


def motion_level(videos: list[np.ndarray]) -> float:
    """Mean absolute difference of frames 1.. from frame 0, in grey levels."""
    return float(
        np.mean([np.abs(v[1:].astype(np.float32) - v[:1].astype(np.float32)).mean() for v in videos])
    )


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def report(result: dict[str, Any], command: str) -> str:
    lines = [
        "# Base motion prior: pretraining actions, seen looks, no adapter",
        "",
        f"Command: `{command}`  ",
        f"Base: `{result['base'].get('base_id')}` (weights {result['base'].get('weight_hash', '?')}), "
        f"{result['size']}x{result['size']}, {result['frames']} frames, {result['steps']} sampling steps, "
        f"seed {result['seed']}. Actions: {', '.join(result['actions'])}; {result['photos']} photos each, "
        f"from {'the pretraining stream' if result['photos_from'] == 'stream' else 'new seeds'}"
        + ("." if result.get("phase") is None else f", every clip starting at phase {result['phase']:g}."),
        "",
        "| row | joint error (% body h., DTW) ↓ | moving-joint error ↓ | PCK@0.1 ↑ | nearest-action acc. ↑ "
        "| frame-1 PSNR (dB) ↑ | motion (grey levels) | s / video |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        cells = [
            _number(row["joint_error"], 2),
            _number(row["moving_error"], 2),
            _number(row["pck10"], 3),
            _number(row["nearest_action"], 2),
            _number(row["frame1_psnr"], 1),
            _number(result["motion"][name], 2),
            _number(result["seconds_per_video"][name], 2),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Scores as in bench/quality.py (DTW-aligned joint error over frames 1.., joints inside the "
        "picture; moving joints: those that truly move more than 10 % of body height). Nearest-action "
        "accuracy is among the listed actions only. Motion: mean |frame t - frame 0| over frames 1...",
    ]
    return "\n".join(lines) + "\n"


def write_sheet(
    path: Path, truths: list[np.ndarray], videos: dict[str, list[np.ndarray]], stride: int
) -> None:
    from PIL import Image

    strips = []
    for index, truth in enumerate(truths):
        sampled = [name for name in videos if name not in ("ground truth", "still photo")]
        for frames in (truth, *(videos[name][index] for name in sampled)):
            strips.append(np.concatenate(list(frames[::stride]), axis=1))
    sheet = np.concatenate(strips, axis=0)
    with atomic_path(path) as temp:
        Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(temp)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="tiny", help="'tiny' or a base folder")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "base_prior")
    parser.add_argument("--detector", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--actions", nargs="+", default=list(DEFAULT_ACTIONS))
    parser.add_argument("--photos", type=int, default=3, help="clips (photos) per action")
    parser.add_argument(
        "--photos-from",
        choices=["new", "stream"],
        default="new",
        help="new seeds (default), or the pretraining stream's own clips (did the denoiser fit them?)",
    )
    parser.add_argument(
        "--reference-clips", type=int, default=6, help="true clips per action for nearest-action"
    )
    parser.add_argument("--frames", type=int, default=None, help="default: the base's")
    parser.add_argument(
        "--phase",
        type=float,
        default=None,
        help="start every clip at this point of its action's cycle, 0 <= phase < 1 (0: from rest)",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--samplers",
        nargs="+",
        choices=list(SAMPLERS),
        default=list(SAMPLERS),
        help="which samplers to score",
    )
    parser.add_argument(
        "--etas",
        type=float,
        nargs="*",
        default=[],
        help="also rows of samplers between Euler (0) and ancestral (1) that re-noise this share",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="*",
        default=[],
        help="bases with action texts: also Euler with classifier-free guidance against the null text",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 actions, 2 photos, 8 steps")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; flags given on the command line still win
        quick = {"actions": list(DEFAULT_ACTIONS[:2]), "photos": 2, "steps": 8, "reference_clips": 2}
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    bad = [a for a in args.actions if a not in PRETRAIN_ACTIONS]
    if bad:
        parser.error(f"{bad} are not pretraining actions; this check is about what the base was taught")
    if any(not 0.0 <= eta <= 1.0 for eta in args.etas):
        parser.error(f"--etas must lie between 0 (Euler) and 1 (ancestral), got {args.etas}")
    if args.phase is not None and not 0.0 <= args.phase < 1.0:
        parser.error(f"--phase must lie in [0, 1) (0 starts from rest), got {args.phase}")
    if len(args.actions) < 2:
        parser.error("nearest-action accuracy needs at least 2 actions")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = run(args)
    result["motion"] = {name: motion_level(made) for name, made in result["_videos"].items()}
    command = "python bench/base_prior.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_sheet(args.out / "sheet.png", result.pop("_truths"), result.pop("_videos"), stride=2)
    (args.out / "base_prior.json").write_text(json.dumps(finite_json(result), indent=2) + "\n")
    (args.out / "base_prior.md").write_text(report(result, command))
    print(report(result, command))
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
