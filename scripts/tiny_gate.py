"""The teachable-base ladder's gates (issue 22): can the tiny denoiser make a figure move when told how?

Rung 1 asks it with the strongest cue there is, an *oracle* caption made of the true joint trajectory
(`flashcli.lab.pretrain.caption`), on the simple world (flat looks, figures filling the frame). The judge is
sampled videos, not one-step error: on held-out actions with unseen people, starting from rest, the
distance to the true clip divided by the still photo's distance, in latents and in blurred pixels.
A ratio below 1 means the video is closer to the truth than holding the photo still.

    # 1. render and encode clips once (shards; run two at once, one thread each)
    python scripts/tiny_gate.py cache --out runs/gate/cache --motions named --clips 3000 --shard 0 --shards 2
    # 2. train, judged at the start and every 30 minutes (resumable: run the same command again)
    python scripts/tiny_gate.py train --run runs/gate/per_frame --cache runs/gate/cache --layout per_frame
    # 3. judge a saved checkpoint again
    python scripts/tiny_gate.py judge --run runs/gate/per_frame
    # the diagnostic ceiling: the target skeleton as extra input channels, warm from rung 1's weights
    python scripts/tiny_gate.py train --run runs/gate/skeleton --cache runs/gate/cache --skeleton \
        --warm-from runs/gate/per_frame
    # rung 2: the cue `learn` can compute instead of the oracle (8 clips of the action by other people
    # through the keypoint detector, averaged, retargeted onto the photo's detected pose)
    python scripts/tiny_gate.py judge --run runs/gate/skeleton --cue detected
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flashcli.core import flow
from flashcli.core.pixels import video_to_tensor
from flashcli.core.sampler import first_frame_velocity, initial_noise, sample, sample_ancestral
from flashcli.core.specs import load_base
from flashcli.figureworld import HELDOUT_ACTIONS, PRETRAIN_ACTIONS, render_clip
from flashcli.figureworld.skeleton import JOINT_NAMES
from flashcli.lab.pretrain.caption import MotionCaption, joint_motion
from flashcli.lab.pretrain.checkpoint import JsonlLog, load_checkpoint, save_checkpoint
from flashcli.lab.pretrain.skeleton_cue import SkeletonInput, draw_skeleton

SIZE, FRAMES, FPS = 64, 9, 8
TRAIN_SEED = 20_000_000  # far from every other stream (pretraining 0.., checks 1e6.., benches 5e6..)
JUDGE_SEED = 21_000_000
SHARD_CLIPS = 250


def render_training_clip(motions: str, index: int, world: str) -> Any:
    seed = TRAIN_SEED + index
    if motions == "named":
        action = PRETRAIN_ACTIONS[int(np.random.default_rng(seed).integers(len(PRETRAIN_ACTIONS)))]
        return render_clip(action, seed, size=SIZE, frames=FRAMES, fps=FPS, phase=0.0, world=world)
    from flashcli.figureworld.family import family_action, sample_family_motion

    params = sample_family_motion(np.random.default_rng(seed), fps=FPS, frames=FRAMES)
    return render_clip(family_action(params), seed, size=SIZE, frames=FRAMES, fps=FPS, world=world)


def clip_motion(clip: Any) -> np.ndarray:
    scale = float(clip.meta["camera"]["scale"])  # type: ignore[index]
    return joint_motion(clip.joints, scale, clip.frames.shape[1:3])


def build_cache(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    spec = load_base("tiny", device="cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    starts = range(args.offset, args.offset + args.clips, SHARD_CLIPS)
    for number, start in enumerate(starts):
        if number % args.shards != args.shard:
            continue
        path = out / f"{args.motions}_{args.world}_{start:08d}.pt"
        if path.exists():
            continue
        tick = time.time()
        count = min(SHARD_CLIPS, args.offset + args.clips - start)
        latents, motions = [], []
        for first in range(start, start + count, 25):
            clips = [
                render_training_clip(args.motions, i, args.world)
                for i in range(first, min(first + 25, start + count))
            ]
            video = torch.stack([video_to_tensor(c.frames) for c in clips])
            latents.append(spec.encode_video(video).half())
            motions.extend(clip_motion(c) for c in clips)
        save_checkpoint(path, {"latents": torch.cat(latents), "motion": torch.from_numpy(np.stack(motions))})
        print(f"cache: {path.name} ({count} clips, {time.time() - tick:.0f}s)", flush=True)


class GrowingCache:
    """The cached clips of some folders, re-read as shards arrive: training starts on the first shards while
    the rest are still being rendered and encoded."""

    def __init__(self, folders: list[str]) -> None:
        self.folders = [Path(f) for f in folders]
        self.seen: set[Path] = set()
        self.latents = torch.empty(0)
        self.motion = torch.empty(0)
        if not self.refresh():
            raise SystemExit(f"no cache shards in {folders}; run the cache command first")

    def refresh(self) -> int:
        """Load shards not seen yet; returns how many were added."""
        new = sorted(p for folder in self.folders for p in folder.glob("*.pt") if p not in self.seen)
        if not new:
            return 0
        parts = [torch.load(p, weights_only=True) for p in new]
        self.seen.update(new)
        self.latents = torch.cat([self.latents.half(), *[p["latents"] for p in parts]])
        self.motion = torch.cat([self.motion.float(), *[p["motion"] for p in parts]])
        return len(new)


def judge_clip(action: str, seed: int, world: str) -> Any:
    """A judged clip: an unseen person doing `action` from rest, at the gate's size, length and fps."""
    return render_clip(
        action, seed, size=SIZE, frames=FRAMES, fps=FPS, appearance="unseen", phase=0.0, world=world
    )


LEARN_SEED = 22_000_000


def learn_clips(action: str, count: int, world: str) -> list[Any]:
    """What a user would hand `learn`: `count` clips of the action by other (seen-look) people, from rest."""
    return [
        render_clip(action, LEARN_SEED + 1000 * i, size=SIZE, frames=FRAMES, fps=FPS, phase=0.0, world=world)
        for i in range(count)
    ]


def _rest_height(joints: np.ndarray) -> float:
    """The figure height as skeleton_cue recovers it: frame 0's vertical joint span / REST_SPAN_PER_HEIGHT."""
    from flashcli.lab.pretrain.skeleton_cue import REST_SPAN_PER_HEIGHT

    span = float(joints[0, :, 1].max() - joints[0, :, 1].min())
    return max(span / REST_SPAN_PER_HEIGHT, 1.0)


def side_aligned_moves(detector: Any, clips: list[Any]) -> list[np.ndarray]:
    """Each clip's detected joints as displacement from its frame 0 in figure heights, every clip put on
    the handedness most of them use (mirrored where needed). Returns a list of (F, J, 2)."""
    from flashcli.lab.keypoints.data import mirror_permutation

    swap = mirror_permutation()
    moves = []
    for clip in clips:
        found = detector.detect(clip.frames)
        moves.append((found - found[:1]) / _rest_height(found))
    mirrored = [m[:, swap] * np.array([-1.0, 1.0], dtype=np.float32) for m in moves]
    mean = moves[0]
    for _ in range(3):  # align every clip to the running mean, as it is or mirrored, and average again
        flips = [
            ((f - mean) ** 2).sum() < ((m - mean) ** 2).sum() for m, f in zip(moves, mirrored, strict=True)
        ]
        mean = np.mean([f if flip else m for m, f, flip in zip(moves, mirrored, flips, strict=True)], axis=0)
    aligned = [f if flip else m for m, f, flip in zip(moves, mirrored, flips, strict=True)]
    if sum(flips) > len(flips) / 2:  # most clips were done the other way round: keep their side
        aligned = [a[:, swap] * np.array([-1.0, 1.0], dtype=np.float32) for a in aligned]
    return [a.astype(np.float32) for a in aligned]


def learned_displacement(detector: Any, clips: list[Any]) -> np.ndarray:
    """Rung 2, try 1: the side-aligned detected displacements averaged frame by frame. Returns (F, J, 2)."""
    return np.mean(side_aligned_moves(detector, clips), axis=0).astype(np.float32)


def _pairwise_dtw(moves: list[np.ndarray]) -> np.ndarray:
    """(N, N) DTW distances between displacement trajectories (mean joint distance along the path)."""
    from flashcli.lab import metrics

    count = len(moves)
    distances = np.zeros((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            cost = metrics.pose_cost(moves[i], moves[j])
            rows, columns = metrics.dtw_path(cost)
            distances[i, j] = distances[j, i] = float(cost[rows, columns].mean())
    return distances


def medoid_displacement(detector: Any, clips: list[Any]) -> np.ndarray:
    """Rung 2, try 3a: one real performance instead of an average, the clip whose side-aligned motion is
    nearest (DTW) to all the others. An average of clips that differ in speed cancels its own amplitude;
    a medoid keeps a whole, crisp motion. Returns (F, J, 2)."""
    return _medoid(side_aligned_moves(detector, clips))


def _medoid(moves: list[np.ndarray]) -> np.ndarray:
    """The trajectory with the least summed DTW distance to the others."""
    return moves[int(_pairwise_dtw(moves).sum(axis=1).argmin())]


def barycenter_displacement(detector: Any, clips: list[Any]) -> np.ndarray:
    """Rung 2, try 3b: the medoid's timing with the clips' average shape. Each clip is DTW-aligned to the
    medoid and its matched poses averaged per medoid frame (one pass of DTW barycenter averaging), so
    speed differences no longer cancel the amplitude. Returns (F, J, 2)."""
    from flashcli.lab import metrics

    moves = side_aligned_moves(detector, clips)
    medoid = _medoid(moves)
    sums = np.zeros_like(medoid, dtype=np.float64)
    counts = np.zeros(len(medoid))
    for move in moves:
        rows, columns = metrics.dtw_path(metrics.pose_cost(medoid, move))
        np.add.at(sums, rows, move[columns])
        np.add.at(counts, rows, 1.0)
    average = sums / counts[:, None, None]
    average[0] = 0.0  # frame 0 is the photo
    return average.astype(np.float32)


def _mirrored(displacement: torch.Tensor) -> torch.Tensor:
    """The displacement (..., F, J, 2) done with the other side: x negated, left and right joints swapped."""
    from flashcli.lab.keypoints.data import mirror_permutation

    flipped = displacement[..., mirror_permutation(), :]
    return torch.stack([-flipped[..., 0], flipped[..., 1]], dim=-1)


def searched_displacement(
    spec: Any,
    caption: MotionCaption,
    skeleton: SkeletonInput,
    detector: Any,
    clips: list[Any],
    start: np.ndarray,
    steps: int,
    seed: int = 0,
) -> np.ndarray:
    """Rung 2's second try: the displacement `learn` finds by asking the frozen denoiser. Starting from the
    detector's average (`start`, (F, J, 2)), one shared trajectory is fitted by gradient descent so that,
    drawn on each clip's detected frame-0 pose (mirrored for clips done with the other side), it best explains
    the clips' latents under the base's own training loss. The denoiser, caption and skeleton are frozen."""
    video = torch.stack([video_to_tensor(c.frames) for c in clips])
    latents = spec.encode_video(video)
    starts, sides = [], []
    reference = torch.from_numpy(start)
    for clip in clips:
        found = detector.detect(clip.frames)
        starts.append(joint_motion(found[:1].repeat(FRAMES, 0), _rest_height(found), clip.frames.shape[1:3]))
        own = torch.from_numpy((found - found[:1]) / _rest_height(found))
        sides.append(bool(((_mirrored(own) - reference) ** 2).sum() < ((own - reference) ** 2).sum()))
    placed = torch.from_numpy(np.stack(starts))[..., 2:]
    flip = torch.tensor(sides)[:, None, None, None]
    displacement = torch.nn.Parameter(reference.clone())
    optimizer = torch.optim.Adam([displacement], lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        shared = displacement[None].expand(len(clips), -1, -1, -1)
        moved = torch.where(flip, _mirrored(shared), shared)
        motion = torch.cat([moved, placed], dim=-1)
        with skeleton.showing(_limb_maps(motion, latents)):
            loss = flow.first_frame_flow_loss(spec, latents, caption(motion), generator, spec.flow_shift)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            displacement[0].zero_()  # frame 0 is the photo: it does not move
    return displacement.detach().numpy().astype(np.float32)


def retargeted_motion(detector: Any, photo: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """The learned displacement drawn on the photo's detected pose, laid out as caption.joint_motion's
    (F, J, 4)."""
    start = detector.detect(photo[None])[:1]
    height, width = photo.shape[:2]
    joints = start + displacement * _rest_height(start)
    motion = joint_motion(joints, _rest_height(start), (height, width))
    return motion


class Judge:
    """Held-out actions on unseen people from rest (and pretraining actions as a second block)."""

    def __init__(self, spec: Any, people: int, world: str, cue: str = "oracle") -> None:
        self.blocks: dict[str, list[Any]] = {
            "heldout": [
                judge_clip(a, JUDGE_SEED + 100 * k + i, world)
                for i, a in enumerate(HELDOUT_ACTIONS)
                for k in range(people)
            ],
            "pretrain": [
                judge_clip(a, JUDGE_SEED + 50_000 + i, world) for i, a in enumerate(PRETRAIN_ACTIONS[:8])
            ],
        }
        self.pixels = {
            name: torch.stack([video_to_tensor(c.frames) for c in clips])
            for name, clips in self.blocks.items()
        }
        self.truth = {name: spec.encode_video(video) for name, video in self.pixels.items()}
        # The still photo as the model would have to draw it: the photo repeated, through the same VAE.
        # Its latents carry the encoder's frame-to-frame jitter and its pixels the decoder's error, so a
        # ratio against it measures motion, not the autoencoder.
        self.still = {
            name: spec.encode_video(video[:, :, :1].expand_as(video).contiguous())
            for name, video in self.pixels.items()
        }
        self.still_pixels = {name: _decode(spec, latents) for name, latents in self.still.items()}
        from flashcli.lab.keypoints.detector import load_detector

        self.detector = load_detector()
        clips = self.blocks["heldout"]
        self.still_keypoints = keypoint_scores(
            self.detector, [np.repeat(c.frames[:1], len(c.frames), 0) for c in clips], clips
        )
        self.truth_keypoints = keypoint_scores(self.detector, [c.frames for c in clips], clips)
        self.cue = cue
        self.learned: dict[str, np.ndarray] = {}
        self.world = world
        if cue != "oracle":
            actions = {str(c.meta["action"]) for block in self.blocks.values() for c in block}
            compute = {"medoid": medoid_displacement, "barycenter": barycenter_displacement}.get(
                cue, learned_displacement
            )
            self.learned = {a: compute(self.detector, learn_clips(a, 8, world)) for a in actions}

    def search_cues(self, spec: Any, caption: MotionCaption, skeleton: SkeletonInput, steps: int) -> None:
        """Replace the held-out actions' detected cues by searched ones (`searched_displacement`)."""
        for action in HELDOUT_ACTIONS:
            tick = time.time()
            clips = learn_clips(action, 8, self.world)
            self.learned[action] = searched_displacement(
                spec, caption, skeleton, self.detector, clips, self.learned[action], steps
            )
            print(f"searched {action}: {time.time() - tick:.0f}s", flush=True)

    def motion(self, clips: list[Any]) -> torch.Tensor:
        """The cue's joint motion per clip: the truth (oracle) or what learn computes (detected)."""
        if self.cue == "oracle":
            return torch.from_numpy(np.stack([clip_motion(c) for c in clips]))
        return torch.from_numpy(
            np.stack(
                [
                    retargeted_motion(self.detector, c.frames[0], self.learned[str(c.meta["action"])])
                    for c in clips
                ]
            )
        )

    @torch.no_grad()
    def __call__(
        self,
        spec: Any,
        caption: MotionCaption,
        null_text: torch.Tensor,
        steps: int,
        skeleton: SkeletonInput | None = None,
        told_only: bool = False,
    ) -> dict[str, Any]:
        """Every row, or with `told_only` just the held-out actions told the cue (ancestral): the row a
        second cue is tracked by while training."""
        results: dict[str, Any] = {}
        for name, clips in self.blocks.items():
            if told_only and name != "heldout":
                continue
            truth = self.truth[name]
            motion = self.motion(clips)
            cue = caption(motion)
            null = _null_like(null_text, cue)
            maps = _limb_maps(motion, truth) if skeleton is not None else None
            for sampler, eta in (("ancestral", 1.0), ("euler", 0.0)):
                for told, text in (("cue", cue), ("null", null)):
                    if (sampler == "euler" or name != "heldout") and told == "null":
                        continue  # the null text is the control; one sampler and one block are enough
                    if told_only and (sampler == "euler" or told == "null"):
                        continue
                    final = self._sample(
                        spec, truth[:, :, :1], text, eta, steps, skeleton, maps if told == "cue" else None
                    )
                    results[f"{name}/{sampler}/{told}"] = self.scores(spec, name, final)
        if told_only:
            return results
        results["heldout/still/keypoints"] = self.still_keypoints
        results["heldout/truth/keypoints"] = self.truth_keypoints
        return results

    def scores(self, spec: Any, name: str, final: torch.Tensor) -> dict[str, float]:
        """The judged numbers of one block's sampled latents (in the block's clip order)."""
        truth, pixels, clips = self.truth[name], _blur(self.pixels[name]), self.blocks[name]
        raw = _decode(spec, final)
        decoded = _blur(raw)
        result = {
            "latent": _ratio(final, self.still[name], truth),
            "pixel": _ratio(decoded, _blur(self.still_pixels[name]), pixels),
            "pixel_exact": _ratio(decoded, pixels[:, :, :1].expand_as(pixels), pixels),
            "motion": _motion(decoded) / max(_motion(pixels), 1e-8),
        }
        if name == "heldout":
            result.update(keypoint_scores(self.detector, _as_videos(raw, clips), clips))
        return result

    @staticmethod
    def _sample(
        spec: Any,
        condition: torch.Tensor,
        text: torch.Tensor,
        eta: float,
        steps: int,
        skeleton: SkeletonInput | None = None,
        maps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if skeleton is not None:  # the null control sees no limbs (maps None), as trained with a dropped cue
            with skeleton.showing(maps):
                return Judge._sample(spec, condition, text, eta, steps)
        shape = (condition.shape[0], condition.shape[1], FRAMES, condition.shape[3], condition.shape[4])
        latents = initial_noise(shape, 7)
        latents[:, :, :1] = condition
        velocity = first_frame_velocity(spec, condition, text)
        sigmas = flow.sampling_sigmas(steps, spec.flow_shift)
        if eta > 0:
            final = sample_ancestral(velocity, latents, sigmas, eta, torch.Generator().manual_seed(8))
        else:
            final = sample(velocity, latents, sigmas)
        final[:, :, :1] = condition
        return final


def keypoint_scores(detector: Any, videos: list[np.ndarray], clips: list[Any]) -> dict[str, float]:
    """What a blur cannot win: the detector's joints in each video against the true joints (mean and
    moving-joint error, % of body height, DTW-aligned, frames 1..), and nearest-action accuracy
    against the detected true clips of the block (chance: 1 / actions)."""
    from flashcli.lab import metrics
    from flashcli.lab.keypoints.data import in_frame, mirror_permutation

    errors, moving, queries = [], [], []
    references: dict[str, list[np.ndarray]] = {}
    for clip in clips:
        scale = metrics.body_height(clip.joints, JOINT_NAMES)
        found = detector.detect(clip.frames)
        references.setdefault(str(clip.meta["action"]), []).append(metrics.motion_signature(found, scale))
    for video, clip in zip(videos, clips, strict=True):
        scale = metrics.body_height(clip.joints, JOINT_NAMES)
        found = detector.detect(video)
        valid = np.asarray(in_frame(clip.joints, *video.shape[1:3]))[1:]
        errors.append(metrics.mean_joint_error(found[1:], clip.joints[1:], scale, valid))
        mask = valid & metrics.moving_joints(clip.joints, scale)[None]
        if mask.any():
            moving.append(metrics.mean_joint_error(found[1:], clip.joints[1:], scale, mask))
        queries.append((str(clip.meta["action"]), metrics.motion_signature(found, scale)))
    return {
        "joint_error": float(np.mean(errors)),
        "moving_error": float(np.mean(moving)) if moving else math.nan,
        "nearest_action": metrics.nearest_action_accuracy(queries, references, mirror_permutation()),
    }


def _as_videos(decoded: torch.Tensor, clips: list[Any]) -> list[np.ndarray]:
    """Decoded (B, 3, F, H, W) in [-1, 1] as uint8 videos whose frame 0 is the photo, as animate writes."""
    from flashcli.core.pixels import tensor_to_video

    videos = []
    for video, clip in zip(decoded, clips, strict=True):
        frames = tensor_to_video(video)
        frames[0] = clip.frames[0]
        videos.append(frames)
    return videos


def _blur(video: torch.Tensor) -> torch.Tensor:
    """Gaussian blur (sigma 1.5 px) per frame, so a soft but well-placed limb beats a sharp missing one."""
    radius = 4
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(grid**2) / (2 * 1.5**2))
    kernel = kernel / kernel.sum()
    b, c, f, h, w = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(b * f * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius,) * 4, mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def _ratio(generated: torch.Tensor, still: torch.Tensor, truth: torch.Tensor) -> float:
    """(distance to truth) / (the still's distance), summed over the block's clips, frames 1.. only: a ratio
    of sums, so clips whose truth barely moves do not dominate."""
    gen = ((generated[:, :, 1:] - truth[:, :, 1:]) ** 2).sum()
    ref = ((still[:, :, 1:] - truth[:, :, 1:]) ** 2).sum()
    return float(gen / ref.clamp_min(1e-8))


def _motion(video: torch.Tensor) -> float:
    """Mean absolute change from frame 0: how much a video moves at all."""
    return float((video[:, :, 1:] - video[:, :, :1]).abs().mean())


def _limb_maps(motion: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """The skeleton ceiling's input: limb maps at the latents' resolution."""
    return draw_skeleton(motion, SIZE, latents.shape[-1])


def _decode(spec: Any, latents: torch.Tensor) -> torch.Tensor:
    return spec.vae.decode(spec.to_vae_space(latents)).sample.float().clamp(-1, 1)


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    cache = GrowingCache(args.cache)
    print(f"train: {cache.latents.shape[0]} cached clips", flush=True)
    spec = load_base("tiny", device="cpu")
    transformer = spec.transformer
    transformer.train().requires_grad_(True)
    caption = MotionCaption(len(JOINT_NAMES), 17, spec.null_text.shape[-1], args.layout)
    null_text = spec.null_text.detach().clone()
    skeleton = SkeletonInput(transformer) if args.skeleton else None
    parts: dict[str, torch.nn.Module] = {"transformer": transformer, "caption": caption}
    if skeleton is not None:
        parts["skeleton"] = skeleton
    modules = torch.nn.ModuleDict(parts)
    if args.warm_from:
        warm = load_checkpoint(Path(args.warm_from) / "checkpoint.pt")
        if warm is None:
            raise SystemExit(f"no checkpoint in {args.warm_from}")
        missing, unexpected = modules.load_state_dict(warm["ema"], strict=False)
        if unexpected or any(not key.startswith("skeleton.") for key in missing):
            raise SystemExit(f"{args.warm_from} does not match this run: {missing} {unexpected}")
    cue_parameters = list(caption.parameters()) + ([] if skeleton is None else list(skeleton.parameters()))
    optimizer = torch.optim.AdamW(
        [
            {"params": list(transformer.parameters()), "lr": args.lr},
            {
                "params": cue_parameters,
                "lr": args.lr * args.caption_lr_scale,
                "weight_decay": 0.0,
            },
        ],
        weight_decay=0.01,
    )
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint_path = run / "checkpoint.pt"
    state = load_checkpoint(checkpoint_path)
    step, elapsed, judged_at = 0, 0.0, -1.0
    if state is not None:
        modules.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, elapsed, judged_at = state["step"], state["elapsed"], state["judged_at"]
        average = state["ema"]
    else:
        average = {k: v.detach().clone() for k, v in modules.state_dict().items()}
    (run / "settings.json").write_text(json.dumps(vars(args), indent=2))
    log = JsonlLog(run / "log.jsonl", step)
    judge = Judge(spec, args.people, args.world)
    # Cues `learn` could compute, tracked at every judge next to the oracle: does what the renderer
    # learns carry over to them?
    tracked = {cue: Judge(spec, args.people, args.world, cue) for cue in args.track_cues}
    started = time.time()

    def now() -> float:
        return elapsed + time.time() - started

    def judged(label: str) -> None:
        live = {k: v.detach().clone() for k, v in modules.state_dict().items()}
        modules.load_state_dict(average)
        transformer.eval()
        tick = time.time()
        result = judge(spec, caption, null_text, args.judge_steps, skeleton)
        for cue, extra in tracked.items():
            told = extra(spec, caption, null_text, args.judge_steps, skeleton, told_only=True)
            result.update({f"{cue}:{key}": value for key, value in told.items()})
        modules.load_state_dict(live)
        transformer.train()
        record = {
            "step": step,
            "minutes": round(now() / 60, 1),
            "label": label,
            "judge_seconds": round(time.time() - tick),
            **result,
        }
        with (run / "judge.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print("judge", json.dumps(record), flush=True)

    def save() -> None:
        save_checkpoint(
            checkpoint_path,
            {
                "model": modules.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "step": step,
                "elapsed": now(),
                "judged_at": judged_at,
                "ema": average,
            },
        )

    if judged_at < 0:
        if not args.skip_start_judge:
            judged("start")
        judged_at = 0.0
    recent: list[float] = []
    while now() < args.minutes * 60:
        picks = torch.randint(cache.latents.shape[0], (args.batch,), generator=generator)
        x0 = cache.latents[picks].float()
        text = caption(cache.motion[picks])
        dropped = torch.rand(args.batch, generator=generator) < args.cue_drop
        text = torch.where(dropped[:, None, None], _null_like(null_text, text), text)
        if skeleton is None:
            loss = flow.first_frame_flow_loss(spec, x0, text, generator, spec.flow_shift)
        else:  # the same clips lose their limbs when they lose their caption: the null control is learned
            maps = _limb_maps(cache.motion[picks], x0) * (~dropped).float()[:, None, None, None, None]
            with skeleton.showing(maps):
                loss = flow.first_frame_flow_loss(spec, x0, text, generator, spec.flow_shift)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for key, value in modules.state_dict().items():
                if value.dtype.is_floating_point:
                    average[key].lerp_(value, 1 - decay)
        step += 1
        recent = (recent + [loss.item()])[-200:]
        log.write({"step": step, "loss": loss.item(), "elapsed": now()})
        if step % 100 == 0:
            print(f"step {step} loss {sum(recent) / len(recent):.4f} {now() / 60:.1f} min", flush=True)
            save()
            if cache.refresh():
                print(f"train: {cache.latents.shape[0]} cached clips", flush=True)
        if now() - judged_at >= args.judge_every * 60:
            judged_at = now()
            judged("periodic")
            save()
    judged("end")
    save()


def _null_like(null_text: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The learned null text shaped like a per-frame caption (its tokens repeated or cut to length)."""
    repeats = math.ceil(text.shape[1] / null_text.shape[-2])
    return null_text.reshape(1, -1, null_text.shape[-1]).repeat(text.shape[0], repeats, 1)[:, : text.shape[1]]


def clip_cues(detector: Any, clips: list[Any]) -> torch.Tensor:
    """What `learn` can draw for each of its own clips: the clip's detected joints as caption motion
    (B, F, J, 4). Unlike the action's shared cue, this is each clip's own motion, so the LoRA is trained
    on cues that match its targets."""
    motions = []
    for clip in clips:
        found = detector.detect(clip.frames)
        motions.append(joint_motion(found, _rest_height(found), clip.frames.shape[1:3]))
    return torch.from_numpy(np.stack(motions))


def fit_action_lora(
    spec: Any,
    caption: MotionCaption,
    skeleton: SkeletonInput,
    clips: list[Any],
    cues: torch.Tensor,
    steps: int,
    rank: int,
    learning_rate: float,
    seed: int = 0,
) -> list[torch.nn.Parameter]:
    """`learn --preset quick`'s LoRA (attention q/k/v/out, rank, learning rate, batch 1 cycling over the
    clips) fitted to the clips under the base's own loss, each clip told its own detected cue. It is
    left attached as adapter 'gate'; the caller samples with it, then deletes it."""
    from flashcli.core.adapter import attach_new_lora
    from flashcli.core.settings import DEFAULT_LORA_TARGETS

    with torch.no_grad():
        latents = spec.encode_video(torch.stack([video_to_tensor(c.frames) for c in clips]))
    parameters = attach_new_lora(spec, name="gate", targets=list(DEFAULT_LORA_TARGETS), rank=rank, alpha=rank)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    spec.transformer.train()
    for step in range(steps):
        index = step % len(clips)
        x0, motion = latents[index : index + 1], cues[index : index + 1]
        with torch.no_grad():
            text = caption(motion)
        with skeleton.showing(_limb_maps(motion, x0)):
            loss = flow.first_frame_flow_loss(spec, x0, text, generator, spec.flow_shift)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    spec.transformer.eval()
    return parameters


@torch.no_grad()
def judge_with_lora(
    spec: Any, caption: MotionCaption, skeleton: SkeletonInput, judge: Judge, args: argparse.Namespace
) -> dict[str, Any]:
    """The held-out block as `learn` then `animate` would make it: per action, a LoRA fitted on the 8 clips
    with their own detected cues, then each judged photo sampled (ancestral) told the action's shared
    computed cue, with the LoRA attached."""
    clips = judge.blocks["heldout"]
    truth = judge.truth["heldout"]
    motion = judge.motion(clips)
    finals = []
    for action in HELDOUT_ACTIONS:
        tick = time.time()
        rows = [i for i, c in enumerate(clips) if c.meta["action"] == action]
        learned = learn_clips(action, 8, judge.world)
        with torch.enable_grad():
            fit_action_lora(
                spec,
                caption,
                skeleton,
                learned,
                clip_cues(judge.detector, learned),
                args.lora_steps,
                args.lora_rank,
                args.lora_lr,
            )
        told = motion[rows]
        condition = truth[rows][:, :, :1]
        finals.append(
            Judge._sample(
                spec, condition, caption(told), 1.0, args.judge_steps, skeleton, _limb_maps(told, truth[rows])
            )
        )
        spec.transformer.delete_adapters(["gate"])
        print(f"lora {action}: {time.time() - tick:.0f}s", flush=True)
    order = [i for action in HELDOUT_ACTIONS for i, c in enumerate(clips) if c.meta["action"] == action]
    final = torch.empty_like(torch.cat(finals))
    final[order] = torch.cat(finals)
    return {"heldout/ancestral/cue+lora": judge.scores(spec, "heldout", final)}


def judge_only(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    state = load_checkpoint(run / "checkpoint.pt")
    if state is None:
        raise SystemExit(f"no checkpoint in {run}")
    settings = json.loads((run / "settings.json").read_text())
    spec = load_base("tiny", device="cpu")
    caption = MotionCaption(len(JOINT_NAMES), 17, spec.null_text.shape[-1], settings["layout"])
    null_text = spec.null_text.detach().clone()
    skeleton = SkeletonInput(spec.transformer) if settings.get("skeleton") else None
    parts: dict[str, torch.nn.Module] = {"transformer": spec.transformer, "caption": caption}
    if skeleton is not None:
        parts["skeleton"] = skeleton
    modules = torch.nn.ModuleDict(parts)
    modules.load_state_dict(state["ema"])
    spec.transformer.eval()
    judge = Judge(spec, args.people, settings["world"], args.cue)
    if args.cue == "searched":
        if skeleton is None:
            raise SystemExit("--cue searched needs a run trained with --skeleton")
        modules.requires_grad_(False)
        judge.search_cues(spec, caption, skeleton, args.search_steps)
    if args.lora_steps:
        if skeleton is None or args.cue == "oracle":
            raise SystemExit("--lora-steps needs a run trained with --skeleton and a computed --cue")
        modules.requires_grad_(False)
        result = judge_with_lora(spec, caption, skeleton, judge, args)
    else:
        result = judge(spec, caption, null_text, args.judge_steps, skeleton)
    print(json.dumps({"step": state["step"], "cue": args.cue, **result}, indent=1))
    if args.sheet:
        write_sheet(Path(args.sheet), judge, spec, caption, null_text, args.judge_steps, skeleton)


@torch.no_grad()
def write_sheet(
    path: Path,
    judge: Judge,
    spec: Any,
    caption: MotionCaption,
    null_text: torch.Tensor,
    steps: int,
    skeleton: SkeletonInput | None = None,
) -> None:
    """One held-out clip per action: the true clip, then sampled with the cue, then with the null text."""
    from PIL import Image

    from flashcli.core.pixels import tensor_to_video

    clips = judge.blocks["heldout"][:: args_people(judge)]
    truth = spec.encode_video(torch.stack([video_to_tensor(c.frames) for c in clips]))
    motion = judge.motion(clips)
    cue = caption(motion)
    rows = [np.concatenate(list(clip.frames), axis=1) for clip in clips]
    maps = _limb_maps(motion, truth) if skeleton is not None else None
    told = _decode(spec, Judge._sample(spec, truth[:, :, :1], cue, 1.0, steps, skeleton, maps))
    null = _null_like(null_text, cue)
    untold = _decode(spec, Judge._sample(spec, truth[:, :, :1], null, 1.0, steps, skeleton, None))
    sheet = []
    for index in range(len(clips)):
        sheet += [
            rows[index],
            np.concatenate(list(tensor_to_video(told[index])), axis=1),
            np.concatenate(list(tensor_to_video(untold[index])), axis=1),
            np.full((4, rows[index].shape[1], 3), 255, dtype=np.uint8),
        ]
    image = Image.fromarray(np.concatenate(sheet, axis=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    print(f"sheet: {path} (per action: true clip, cue, null text; ancestral)", flush=True)


def args_people(judge: Judge) -> int:
    """How many people each held-out action has in the judge's block (one row per action on the sheet)."""
    return len(judge.blocks["heldout"]) // len(HELDOUT_ACTIONS)


@torch.no_grad()
def check_vae(args: argparse.Namespace) -> None:
    """The shipped VAE on one held-out clip per action with unseen looks: PSNR over frames 1.. and on
    the pixels that move (a base cannot draw motion its VAE loses)."""
    torch.set_num_threads(args.threads)
    spec = load_base("tiny", device="cpu")
    for world in ("standard", "simple"):
        clips = [
            render_clip(
                a, 900 + i, size=SIZE, frames=FRAMES, fps=FPS, appearance="unseen", world=world, phase=0.0
            )
            for i, a in enumerate(HELDOUT_ACTIONS)
        ]
        truth = np.stack([c.frames for c in clips]).astype(np.float32)
        video = torch.stack([video_to_tensor(c.frames) for c in clips])
        decoded = (_decode(spec, spec.encode_video(video)) + 1.0) * 127.5
        decoded = decoded.permute(0, 2, 3, 4, 1).round().numpy()
        squared = (decoded - truth) ** 2
        moved = np.abs(truth - truth[:, :1]).sum(-1) > 24
        psnr = 10 * np.log10(255**2 / squared[:, 1:].mean())
        psnr_moving = 10 * np.log10(255**2 / squared[moved].mean())
        print(
            f"vae {world}: {psnr:.1f} dB over frames 1.., {psnr_moving:.1f} dB on moving pixels", flush=True
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    vae = sub.add_parser("vae", help="the shipped VAE's PSNR on held-out clips, standard and simple world")
    cache = sub.add_parser("cache", help="render and encode training clips into shards")
    cache.add_argument("--out", required=True)
    cache.add_argument("--motions", choices=["named", "family"], default="named")
    cache.add_argument("--world", choices=["standard", "simple"], default="simple")
    cache.add_argument("--clips", type=int, default=2000)
    cache.add_argument(
        "--offset", type=int, default=0, help="first clip index (family and named streams differ)"
    )
    cache.add_argument("--shard", type=int, default=0)
    cache.add_argument("--shards", type=int, default=1)
    train_parser = sub.add_parser("train", help="train the denoiser with oracle captions, judged as it goes")
    judge_parser = sub.add_parser("judge", help="judge a run's latest checkpoint (its weight average)")
    for p in (train_parser, judge_parser):
        p.add_argument("--run", required=True)
        p.add_argument("--people", type=int, default=2, help="unseen people per held-out action")
        p.add_argument("--judge-steps", type=int, default=16)
    judge_parser.add_argument(
        "--sheet", help="also write a PNG: per held-out action, the true clip, cue and null"
    )
    judge_parser.add_argument(
        "--cue",
        choices=["oracle", "detected", "searched", "medoid", "barycenter"],
        default="oracle",
        help="oracle: the true joints; detected: 8 clips by other people through the keypoint detector, "
        "averaged (rung 2); searched: that, then fitted through the frozen denoiser (held-out actions "
        "only); medoid: the one clip nearest the others; barycenter: the medoid's timing, averaged shape",
    )
    judge_parser.add_argument("--search-steps", type=int, default=60)
    judge_parser.add_argument(
        "--lora-steps",
        type=int,
        default=0,
        help="judge as learn + animate would: a per-action LoRA fitted this many steps on the 8 clips, "
        "each told its own detected cue (the quick preset: 60)",
    )
    judge_parser.add_argument("--lora-rank", type=int, default=4)
    judge_parser.add_argument("--lora-lr", type=float, default=2e-3)
    train_parser.add_argument("--cache", nargs="+", required=True)
    train_parser.add_argument("--layout", choices=["per_frame", "global"], default="per_frame")
    train_parser.add_argument("--world", choices=["standard", "simple"], default="simple")
    train_parser.add_argument("--minutes", type=float, default=90)
    train_parser.add_argument("--judge-every", type=float, default=30)
    train_parser.add_argument("--batch", type=int, default=4)
    train_parser.add_argument("--lr", type=float, default=3e-4)
    train_parser.add_argument("--caption-lr-scale", type=float, default=3.0)
    train_parser.add_argument("--cue-drop", type=float, default=0.1)
    train_parser.add_argument("--ema", type=float, default=0.998)
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument(
        "--skip-start-judge", action="store_true", help="the warm start's own score is known"
    )
    train_parser.add_argument(
        "--skeleton", action="store_true", help="diagnostic ceiling: the target skeleton as input channels"
    )
    train_parser.add_argument("--warm-from", help="start from another run's weight average (its EMA)")
    train_parser.add_argument(
        "--track-cues",
        nargs="*",
        default=[],
        choices=["detected", "medoid", "barycenter"],
        help="also judge the held-out actions told these computed cues at every judge",
    )
    for p in (vae, cache, train_parser, judge_parser):
        p.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    {"vae": check_vae, "cache": build_cache, "train": train, "judge": judge_only}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
