"""Train the FigureWorld keypoint detector (seeded, resumable, one CPU thread by default).

    python bench/keypoints/train.py              # the full recipe -> src/flashcli/lab/keypoints/
    python bench/keypoints/train.py --resume     # continue from runs/keypoints/checkpoint.pt
    python bench/keypoints/train.py --steps 20 --train-clips 8 --out /tmp/kp.safetensors   # smoke run

Data: every frame of --train-clips clips of the pretraining actions, seen-range looks, 64x64, framing
chosen by the seed (full body or close-up), a third with camera shake; rendered once and cached in
--run-dir. Loss: L1 between soft-argmax positions and the true joints, over joints inside the picture
(hidden ones included: their position is still defined by the body). Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from flashcli.figureworld import GENERATOR_VERSION, JOINT_NAMES, PRETRAIN_ACTIONS
from flashcli.files import atomic_path
from flashcli.lab.keypoints.data import (
    TRAIN_SEED_START,
    FramePool,
    augment_batch,
    in_frame,
    render_pool,
    to_tensor,
)
from flashcli.lab.keypoints.detector import DEFAULT_WEIGHTS, save_weights
from flashcli.lab.keypoints.model import KeypointNet

CHECKPOINT_NAME = "checkpoint.pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file to write")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/keypoints"), help="cache and checkpoints")
    parser.add_argument("--train-clips", type=int, default=360)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=32, help="channels of the first stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop (checkpointed) after this; 0 = no limit"
    )
    parser.add_argument("--resume", action="store_true")
    return parser.parse_args(argv)


def load_or_render_pool(args: argparse.Namespace) -> FramePool:
    """The training frames, cached as .npz keyed by the recipe so a rerun renders nothing."""
    cache = args.run_dir / f"train_pool_{args.train_clips}_{args.size}_v{GENERATOR_VERSION}.npz"
    if cache.is_file():
        stored = np.load(cache)
        return FramePool(images=stored["images"], joints=stored["joints"], visible=stored["visible"])
    pool = render_pool(
        PRETRAIN_ACTIONS, args.train_clips, seed_start=TRAIN_SEED_START, appearance="seen", size=args.size
    )
    with atomic_path(cache) as temp:  # its name ends in .npz, so np.savez adds no suffix
        np.savez(temp, images=pool.images, joints=pool.joints, visible=pool.visible)
    return pool


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up over 50 steps, then cosine to 5% of the peak."""
    if step < 50:
        return args.learning_rate * (step + 1) / 50
    progress = (step - 50) / max(1, args.steps - 50)
    return args.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def training_loss(model: KeypointNet, images: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    """Mean L1 pixel error over joints inside the picture."""
    predicted = model(images)
    inside = in_frame(joints, images.shape[2], images.shape[3]).float()
    error = (predicted - joints).abs().sum(dim=-1)
    return (error * inside).sum() / inside.sum().clamp(min=1.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pool = load_or_render_pool(args)
    torch.manual_seed(args.seed)
    model = KeypointNet(len(JOINT_NAMES), width=args.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint_path = args.run_dir / CHECKPOINT_NAME
    step, history = 0, []
    if args.resume:
        if not checkpoint_path.is_file():
            raise SystemExit(f"--resume: no checkpoint at {checkpoint_path}")
        state = torch.load(checkpoint_path, weights_only=False)
        if state["args"] != _recipe(args):
            raise SystemExit(f"--resume: {checkpoint_path} was made with other settings: {state['args']}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, history = state["step"], state["history"]

    model.train()
    deadline = started + args.max_minutes * 60 if args.max_minutes > 0 else math.inf
    while step < args.steps and time.perf_counter() < deadline:
        picks = torch.randint(len(pool), (args.batch_size,), generator=generator).numpy()
        images = to_tensor(pool.images[picks])
        joints = torch.from_numpy(pool.joints[picks])
        images, joints = augment_batch(images, joints, generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        loss = training_loss(model, images, joints)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        history.append(float(loss.detach()))
        if step % 20 == 0:
            recent = sum(history[-20:]) / 20
            elapsed = time.perf_counter() - started
            print(
                f"step {step}/{args.steps} loss {recent:.3f} px  {elapsed:.0f}s", file=sys.stderr, flush=True
            )
        if step % args.checkpoint_every == 0 or step == args.steps:
            _save_checkpoint(checkpoint_path, model, optimizer, generator, step, history, args)

    _save_checkpoint(checkpoint_path, model, optimizer, generator, step, history, args)
    finished = step >= args.steps
    if finished:
        save_weights(
            args.out,
            model,
            {
                "train_steps": step,
                "train_clips": args.train_clips,
                "seed": args.seed,
                "figureworld_version": GENERATOR_VERSION,
            },
        )
    summary = {
        "steps": step,
        "finished": finished,
        "weights": str(args.out) if finished else None,
        "final_loss_px": sum(history[-50:]) / max(1, len(history[-50:])),
        "seconds_this_run": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    return 0


def _recipe(args: argparse.Namespace) -> dict[str, object]:
    keys = ("train_clips", "size", "steps", "batch_size", "learning_rate", "width", "seed")
    return {key: getattr(args, key) for key in keys}


def _save_checkpoint(
    path: Path,
    model: KeypointNet,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    history: list[float],
    args: argparse.Namespace,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "step": step,
        "history": history,
        "args": _recipe(args),
    }
    with atomic_path(path) as temp:
        torch.save(state, temp)


if __name__ == "__main__":
    raise SystemExit(main())
