"""Does what training learns reach sampling? Fine-tune the WHOLE denoiser on N clips of one action,
then animate a training clip's own photo and unseen people's photos, before and after.

An adapter can only do less than full fine-tuning. If even this barely changes the sampled videos
(against how much a different sampling seed changes them), the trouble is in the base or the
sampler, not in the adapter or Motion Align. Prints grey-level differences and writes a contact
sheet (per photo: truth, after, before).

The photos are a training clip's own, the same clip with the figure's colours changed
("relooked": same body, place, background and motion), new people of the looks the base trained
on ("seen") and people of looks it never saw ("unseen"). A fit that replays the training clip but
not the new people is glued to the training clips; the relooked row tells whether to their look or
to their bodies. `--phase 0` starts every clip and photo at the action's cycle start, as people
record an action, so the motion to learn is nearly the same in every clip; `--mirror-shift` also
trains on mirrored and sideways-shifted copies of the clips.

    python bench/finetune_reach.py --base runs/tiny_v3_export --steps 1200 --threads 2
    python bench/finetune_reach.py --action lunge --phase 0 --steps 1000 --lr 1e-3 --batch 4

With many clips (`--clips 512`: 512 people) it asks the question before the few-shot one: can this
denoiser carry an action to new bodies at all when it sees it on many? `--ema-decay` samples with a
weight average, as pretraining exports; `--save DIR` writes the fitted base, so
`scripts/tiny_quality.py --base DIR --learn` can judge it on bar (c)'s protocol.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TRAIN_SEED, TEST_SEED = 7_000_000, 8_000_000  # bench/quality.py's clip seed ranges


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--action", default="jumping_jack")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sample-steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--phase", type=float, default=None, help="start every clip at this point of its cycle (0..1)"
    )
    parser.add_argument(
        "--mirror-shift",
        action="store_true",
        help="also train on each clip mirrored and shifted sideways by 6 and 12 px (10 copies per clip)",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        help="sample with an exponential moving average of the weights (0: the raw weights)",
    )
    parser.add_argument(
        "--minutes", type=float, default=None, help="stop training after this long, whatever --steps says"
    )
    parser.add_argument("--save", type=Path, default=None, help="write the fitted base folder here")
    parser.add_argument("--picture", type=Path, default=REPO / "bench" / "out" / "finetune_reach.png")
    args = parser.parse_args(argv)
    if args.save is not None and args.save.exists():
        parser.error(f"{args.save} exists; name a new folder for --save")

    from flashcli.core.flow import first_frame_flow_loss
    from flashcli.core.pixels import photo_to_tensor, tensor_to_video, video_to_tensor
    from flashcli.core.sampler import sample_photo_latents
    from flashcli.core.settings import SampleSettings
    from flashcli.core.specs import load_base
    from flashcli.figureworld import render_clip
    from flashcli.lab.pretrain.weight_average import WeightAverage
    from flashcli.lab.sheets import contact_sheet

    torch.set_num_threads(args.threads)
    spec = load_base(args.base, device="cpu")
    size = spec.default_size

    def clip(seed: int, look: str) -> Any:
        return render_clip(
            args.action,
            seed,
            size=size,
            frames=args.frames,
            appearance=look,  # type: ignore[arg-type]
            phase=args.phase,
        )

    # Whole clips (their masks) for the relooked photos; frames for training and the other photos.
    training_clips = [clip(TRAIN_SEED + i, "seen") for i in range(args.clips)]
    training = [c.frames for c in training_clips]
    photos = {
        "training clip": training[0],
        "relooked 1": relooked(training_clips[0], 1),
        "relooked 2": relooked(training_clips[min(1, args.clips - 1)], 2),
        "seen 1": clip(TEST_SEED + 100, "seen").frames,
        "seen 2": clip(TEST_SEED + 101, "seen").frames,
        "unseen 1": clip(TEST_SEED, "unseen").frames,
        "unseen 2": clip(TEST_SEED + 1, "unseen").frames,
    }

    def animate(photo: np.ndarray, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """Sampled latents and their VAE decoding (no DED: the denoiser's own work)."""
        settings = SampleSettings(steps=args.sample_steps, seed=seed, use_ded=False)
        latents = sample_photo_latents(spec, photo_to_tensor(photo)[None], [], settings, frames=args.frames)
        with torch.no_grad():
            video = tensor_to_video(spec.decode(latents, use_ded=False)[0]).astype(np.float64)
        video[0] = photo
        return latents, video

    def encode(video: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return spec.encode_video(video_to_tensor(video)[None])

    def latent_distance(latents: torch.Tensor, truth: torch.Tensor) -> float:
        return float((latents - truth)[:, :, 1:].pow(2).mean())

    before = {name: animate(video[0]) for name, video in photos.items()}
    seeds = [animate(photos["unseen 1"][0], seed)[1] for seed in range(4)]
    seed_spread = np.mean([np.abs(a - b)[1:].mean() for a, b in itertools.combinations(seeds, 2)])

    copies = [mirrored_and_shifted(c) for c in training] if args.mirror_shift else [[c] for c in training]
    latents = torch.cat([encode(copy) for group in copies for copy in group])
    text = spec.encode_text(None)
    transformer = spec.transformer.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    average = (
        WeightAverage.start(transformer, text, args.ema_decay, warmup=False) if args.ema_decay > 0 else None
    )
    started, losses = time.time(), []
    for step in range(1, args.steps + 1):
        x0 = latents[torch.randint(len(latents), (args.batch,), generator=generator)]
        loss = first_frame_flow_loss(spec, x0, text, generator, spec.flow_shift)  # as pretraining trains
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(transformer, text)
        losses.append(loss.item())
        if args.minutes is not None and time.time() - started > 60 * args.minutes:
            print(f"stopped at step {step} after {args.minutes:g} minutes", file=sys.stderr)
            break
        if step % 100 == 0:
            print(
                f"step {step}: loss {np.mean(losses[-100:]):.4f}, {time.time() - started:.0f} s",
                file=sys.stderr,
            )
    transformer.eval().requires_grad_(False)
    if average is not None:
        transformer.load_state_dict(average.model)
    if args.save is not None:
        save_fitted_base(spec, args.save)

    print(
        f"{args.action}, {args.clips} clips, {len(losses)} full fine-tuning steps in "
        f"{time.time() - started:.0f} s, lr {args.lr}, last 100 steps' loss {np.mean(losses[-100:]):.4f}; "
        "grey levels"
    )
    print(f"seed to seed (no training, 4 seeds): {seed_spread:.2f}")
    print(
        "latent distance = mean squared latent difference to the photo's true clip on frames 1..; "
        "the true clip's own motion is its distance to frame 0 held still"
    )
    rows, groups = [], {}
    for name, video in photos.items():
        after_latents, after = animate(video[0])
        before_latents, before_video = before[name]
        moved = np.abs(after[1:] - after[:1]).mean()
        truth = np.abs(video[1:].astype(np.float64) - video[:1]).mean()
        change = np.abs(after - before_video).mean()
        print(f"{name}: after vs before {change:.2f}; motion after {moved:.2f}, in the truth {truth:.2f}")
        true_latents = encode(video)
        distances = (
            latent_distance(before_latents, true_latents),
            latent_distance(after_latents, true_latents),
            latent_distance(true_latents[:, :, :1].expand_as(true_latents), true_latents),
        )
        print(
            f"  latent distance: before {distances[0]:.3f}, after {distances[1]:.3f}; "
            f"true motion {distances[2]:.3f}"
        )
        groups.setdefault(name.split(" ")[0], []).append(distances)
        rows += [video, after.astype(np.uint8), before_video.astype(np.uint8)]
    for group, values in groups.items():
        before_mean, after_mean, still_mean = np.mean(values, axis=0)
        print(
            f"{group}: latent distance before {before_mean:.3f}, after {after_mean:.3f}, "
            f"frame 0 held still {still_mean:.3f}"
        )
    print(f"picture: {contact_sheet(rows, args.picture)}")
    return 0


def save_fitted_base(spec: Any, folder: Path) -> Path:
    """The base with the fitted denoiser's weights and everything else as loaded (VAE, texts, DED,
    flash_base.json), through the core's atomic base writer."""
    from flashcli.core.specs import save_base

    save_base(
        folder,
        spec.transformer,
        spec.vae,
        spec.null_text,
        spec.meta,
        ded=spec.ded,
        action_text=spec.action_text,
    )
    print(f"fitted base: {folder}", file=sys.stderr)
    return folder


def relooked(clip: Any, seed: int) -> np.ndarray:
    """The clip with the figure's colours changed (a hue rotation and saturation change of the figure's
    pixels; background, body, place and motion kept): tells a fit glued to the look from one glued to
    the body, with the photo still of a kind the base trained on."""
    from flashcli.core.augment import StrongAugmentConfig, strong_augment
    from flashcli.core.pixels import tensor_to_video, video_to_tensor

    colours_only = StrongAugmentConfig(
        p_channel_permute=0.0,
        p_invert=0.0,
        p_posterize=0.0,
        p_texture=0.0,
        p_background=0.0,
        p_blur=0.0,
        min_change=0.0,
    )
    video = video_to_tensor(clip.frames)[None]
    mask = torch.from_numpy(clip.mask).float()[None, None]
    changed = strong_augment(video, torch.Generator().manual_seed(seed), mask, config=colours_only)
    return tensor_to_video((mask * changed + (1 - mask) * video)[0])


def mirrored_and_shifted(video: np.ndarray) -> list[np.ndarray]:
    """The clip and its mirror image, each shifted sideways by -12, -6, 0, 6 and 12 px (rolled, so the
    background wraps): the same motion at other places in the frame."""
    copies = []
    for flipped in (video, video[:, :, ::-1]):
        for shift in (-12, -6, 0, 6, 12):
            copies.append(np.ascontiguousarray(np.roll(flipped, shift, axis=2)))
    return copies


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
