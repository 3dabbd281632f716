"""The quality protocol: does an adapter learned from N clips put the action on unseen people?

For each held-out FigureWorld action: learn from N clips of seen-range looks (one adapter per
variant and seed), animate K photos of unseen-range people (frame 0 of held-out true clips) and
score each video against its true clip through the keypoint detector (flashcli.lab.keypoints). Variants:
`base` (no adapter), `plain_lora` (today's common practice: LoRA on every attention projection, no
augmentation, no alignment, no DED) and the paper's six (`none`, `augment`, `augment_motion`,
`augment_correspondence`, `augment_both`, `full`). Two reference rows need no model: `ground truth`
(the true clip itself, through the detector: the best any method can score) and `still photo`
(the photo repeated: what no motion scores).

Every row is decoded twice from the same sampled latents, as two labelled blocks: with the VAE's plain
decoder and with the base's Detail Enhancement Decoder (DED); the DED's own effect is the difference of
the blocks. As shipped, `full` decodes with the DED and the others plainly (`flash animate`'s default for
an action learned without detail enhancement); `augment_both` and `full` train the same adapter. Each
cell is a mean over videos (action x seed x photo) with a bootstrap 95 % interval, and every row is
compared with plain LoRA by paired differences (same action, seed and photo) with their own intervals
(`flashcli.lab.statistics`).

    python bench/quality.py --quick                  # minutes: 2 actions, 4 clips, 2 photos, 1 seed
    python bench/quality.py                          # the full table (see FULL below for its budget)
    python bench/quality.py --plan                   # the runs and an estimate of their CPU time
    python bench/quality.py --workers 2              # the same table, the runs shared by 2 processes

Settings come from a shipped preset through the workflow users run (`flashcli.workflows`: the same
resolution, training with the DED step, and sampling as `flash learn --preset P` and `flash animate`),
with the protocol's `learn` / `animate` overrides applied as flags would be; each variant only sets
its switches (and plain LoRA's targets).

Writes OUT/quality.md (tables), OUT/quality.json (protocol, summaries, every video's scores) and
OUT/sheets/<variant>.png (true and generated frames for one action). Trained adapters' videos are
cached under OUT/cache/<protocol hash>/, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flashcli.figureworld import HELDOUT_ACTIONS, JOINT_NAMES, render_clip
from flashcli.files import atomic_path, write_text_atomic
from flashcli.lab import metrics
from flashcli.lab.keypoints.data import mirror_permutation
from flashcli.lab.keypoints.detector import DEFAULT_WEIGHTS, load_detector
from flashcli.lab.motion_scores import bone_indices, finite_json, score_video
from flashcli.lab.statistics import Interval, paired_interval, score_interval

BENCH = Path(__file__).resolve().parent

TRAINED_VARIANTS = (
    "plain_lora",
    "none",
    "augment",
    "augment_motion",
    "augment_correspondence",
    "augment_both",
    "full",
)
ALL_VARIANTS = ("base", *TRAINED_VARIANTS)
REFERENCE_ROWS = ("ground truth", "still photo")
REFERENCE_VARIANT = "plain_lora"  # every row's paired differences are against it
# Decoder blocks: every row decoded with the VAE's plain decoder, and with the base's DED.
BLOCKS = ("plain", "ded")
BLOCK_TITLES = {"plain": "plain decoder", "ded": "Detail Enhancement Decoder (the base's)"}
# What the cached videos of a run are; a new layout must not read an old cache.
CACHE_LAYOUT = "both decoder blocks, decoded first-frame PSNR (v2)"
# Detail enhancement only chooses the decoder, and every row is decoded by both blocks, so `full`'s
# videos are `augment_both`'s (tests/cli/test_variants.py checks the adapters are the same): made once.
SAME_ADAPTER = {"full": "augment_both"}
# Seed ranges of the benchmark's clips, far from pretraining's (0..) and the detector's (5e6, 6e6).
TRAIN_CLIP_SEED = 7_000_000
TEST_CLIP_SEED = 8_000_000
# Protocol fields of earlier versions, as the preset overrides they now are (old --protocol files work).
_LEGACY_LEARN = {"train_steps": "steps", "rank": "rank", "learning_rate": "learning_rate", "frames": "frames"}
_LEGACY_LEARN_CORE = ("warmup_steps", "augment_copies")


class Protocol(BaseModel):
    """What runs: actions x clip counts x seeds x variants, and the training and sampling budget."""

    model_config = ConfigDict(extra="forbid")

    actions: list[str] = Field(default_factory=lambda: list(HELDOUT_ACTIONS))
    table_clips: int = Field(default=8, ge=1, le=16, description="N of the variant table")
    sweep_clips: list[int] = Field(
        default_factory=lambda: [4, 16], description="other N, sweep variants only"
    )
    sweep_variants: list[str] = Field(default_factory=lambda: ["base", "plain_lora", "full"])
    variants: list[str] = Field(default_factory=lambda: list(ALL_VARIANTS))
    photos: int = Field(default=4, ge=1, description="K unseen people per action")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    preset: str = Field(default="standard", description="a shipped preset's name, or a .toml file")
    # Overrides of the preset's tables, as `flash learn` / `flash animate` flags would give them (the
    # same keys: steps, rank, frames, size, ...; `core` for further knobs). Seeds and variants are set
    # per run.
    learn: dict[str, Any] = Field(default_factory=dict)
    animate: dict[str, Any] = Field(default_factory=dict)
    reference_clips: int = Field(
        default=8, ge=1, le=16, description="true clips per action for nearest-action"
    )
    sheet_action: str | None = Field(default=None, description="None = the first action")
    sheet_stride: int = Field(default=2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _legacy_fields(cls, data: Any) -> Any:
        """train_steps, rank, ... of earlier protocol files become the overrides they mean."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        learn, animate = dict(data.get("learn", {})), dict(data.get("animate", {}))
        for old, new in _LEGACY_LEARN.items():
            if old in data:
                learn[new] = data.pop(old)
        for old in _LEGACY_LEARN_CORE:
            if old in data:
                learn["core"] = {**learn.get("core", {}), old: data.pop(old)}
        if "size" in data:
            learn["size"] = data.pop("size")
        if "sample_steps" in data:
            animate["steps"] = data.pop("sample_steps")
        return {**data, "learn": learn, "animate": animate}

    @model_validator(mode="after")
    def _check(self) -> Protocol:
        unknown = [v for v in [*self.variants, *self.sweep_variants] if v not in ALL_VARIANTS]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; choose from {', '.join(ALL_VARIANTS)}")
        bad = [a for a in self.actions if a not in HELDOUT_ACTIONS]
        if bad:
            raise ValueError(f"{bad} are not held-out actions; the base may have seen them")
        if len(self.actions) < 2:
            raise ValueError("nearest-action accuracy needs at least 2 actions")
        if any(n < 1 or n > 16 for n in self.sweep_clips):
            raise ValueError("clip counts must be 1..16")
        return self

    def runs(self) -> list[tuple[str, int, int]]:
        """(variant, clips, seed) in a fixed order: the table first, then the clip-count sweep."""
        table = [(v, self.table_clips, s) for v in self.variants for s in self.seeds]
        sweep = [
            (v, n, self.seeds[0])
            for n in self.sweep_clips
            if n != self.table_clips
            for v in self.sweep_variants
            if v in self.variants
        ]
        return table + sweep


# The quick preset (9 frames, rank 4), cut to a few steps: it proves the path runs; numbers mean nothing.
QUICK = Protocol(
    actions=["jumping_jack", "weld"],
    table_clips=4,
    sweep_clips=[],
    photos=2,
    seeds=[0],
    preset="quick",
    learn={"steps": 4, "core": {"warmup_steps": 0, "augment_copies": 1}},
    animate={"steps": 3},
)
# The full table: 8 actions x 4 photos x 8 variants x 3 seeds at N=8 = 192 runs (144 trained): what
# `flash learn --preset quick` and `flash animate --preset quick` do, as shipped. The quick preset is the
# one whose table fits 2 hours on 2 CPU cores (`--workers 2`); the standard preset's 300 steps at 17
# frames would take about 12 CPU-hours. `--protocol` adds the clip-count sweep (`sweep_clips`).
FULL = Protocol(preset="quick", sweep_clips=[])


# ----- inputs -------------------------------------------------------------------------------------


def train_clips(action: str, count: int, size: int, frames: int) -> list[Any]:
    return [
        render_clip(action, TRAIN_CLIP_SEED + index, size=size, frames=frames, appearance="seen")
        for index in range(count)
    ]


def test_clips(action: str, count: int, size: int, frames: int) -> list[Any]:
    return [
        render_clip(action, TEST_CLIP_SEED + index, size=size, frames=frames, appearance="unseen")
        for index in range(count)
    ]


def load_spec(base: str, out: Path) -> Any:
    """The base to measure; with --quick and no tiny base installed, a random base of the tiny config."""
    from flashcli.core.specs import load_base

    try:
        return load_base(base, device="cpu")
    except FileNotFoundError:
        if base != "tiny":
            raise
    print(
        "tiny base not installed: using random weights with its config (scores mean nothing)", file=sys.stderr
    )
    return load_base(_random_tiny_base(out / "random_tiny_base"), device="cpu")


def _random_tiny_base(folder: Path) -> Path:
    if (folder / "flash_base.json").is_file():
        return folder
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from flashcli.core.specs import save_base
    from flashcli.lab.pretrain import configs

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**configs.TRANSFORMER_CONFIG)
    latents = {"latents_mean": [0.0] * configs.Z_DIM, "latents_std": [1.0] * configs.Z_DIM}
    vae = AutoencoderKLWan(**configs.VAE_CONFIG, **latents)
    null_text = torch.randn(configs.NULL_TEXT_TOKENS, configs.TEXT_DIM)
    meta = {"base_id": "tiny-random", "frames": 17, "size": 64}
    return save_base(folder, transformer, vae, null_text, meta)


# ----- one run: train (or not), animate every photo ----------------------------------------------


def learn_plan(protocol: Protocol, variant: str, seed: int, shape: Any) -> Any:
    """What `flash learn --preset P` with the protocol's overrides trains, for one variant and seed."""
    from flashcli.config import resolve_learn
    from flashcli.core.settings import ALL_LORA_TARGETS, VARIANTS
    from flashcli.workflows.plan import plan_learn

    plain = variant == "plain_lora"  # today's practice: LoRA on every projection, no FLASH parts
    switches = dict(
        zip(
            ("strong_augment", "motion_align", "correspondence_align", "detail_enhance"),
            VARIANTS[variant if variant in VARIANTS else "none"],  # `base` is never trained
            strict=True,
        )
    )
    core = {**protocol.learn.get("core", {}), **({"targets": list(ALL_LORA_TARGETS)} if plain else {})}
    align = {**protocol.learn.get("align", {}), **switches}
    flags = {**protocol.learn, "core": core, "align": align, "seed": seed}
    preset, config, table = resolve_learn(protocol.preset, flags)
    return plan_learn(preset, config, table, shape, flags)


def animate_plan(protocol: Protocol, variant: str, seed: int, shape: Any, learned: Any) -> Any:
    """What `flash animate --preset P` samples the action with (the decoder is chosen per block)."""
    from flashcli.config import resolve_animate
    from flashcli.workflows.plan import plan_animate

    # As learned: the bench's frames are square, so the training height is the side.
    flags = {**protocol.animate, "seed": seed, "frames": learned.train.frames, "size": learned.train.size}
    preset, config = resolve_animate(protocol.preset, flags)
    return plan_animate(preset, config, shape, None, None, flags)


def decoder_blocks(spec: Any) -> tuple[str, ...]:
    """The blocks this base can decode: both, or the plain decoder alone on a base without a DED."""
    return BLOCKS if spec.ded is not None else BLOCKS[:1]


def sample_latents(spec: Any, photo: np.ndarray, adapters: list[Any], plan: Any) -> tuple[Any, Any, Any]:
    """One photo sampled as `flash animate` samples it (`animate_photo` before decoding): the latents,
    the fitted photo as the decoder's reference tensor, and as uint8."""
    from flashcli.core.pixels import photo_to_tensor
    from flashcli.core.sampler import sample_photo_latents
    from flashcli.video import fit_image

    still = fit_image(photo, plan.size, plan.config.crop)
    reference = photo_to_tensor(still).unsqueeze(0)
    latents = sample_photo_latents(spec, reference, adapters, plan.sample, frames=plan.frames)
    return latents, reference, still


def decode_block(
    spec: Any, latents: Any, reference: Any, still: np.ndarray, *, use_ded: bool
) -> tuple[np.ndarray, float]:
    """The video `animate` writes with this decoder, and the PSNR of its decoded frame 0 against the
    photo: measured before the photo replaces frame 0, so it can fail (the written frame 0 cannot)."""
    from flashcli.core.pixels import tensor_to_video

    with torch.no_grad():
        raw = spec.to_vae_space(latents)
        if use_ded:
            pixels = spec.ded.decode(raw, reference.to(spec.device, torch.float32))
        else:
            pixels = spec.vae.decode(raw).sample
    video = tensor_to_video(pixels.float().clamp(-1, 1)[0])
    decoded_first = metrics.first_frame_psnr(video, still)
    video[0] = still  # as `animate` writes it
    return video, decoded_first


def animate_run(
    spec: Any, protocol: Protocol, variant: str, clips: int, seed: int, action: str, size: int, frames: int
) -> dict[str, Any]:
    """Train (or not), sample the K test photos once and decode them with every block: videos
    (K, F, H, W, 3) and decoded first-frame PSNR (K,) per block, with CPU seconds per phase."""
    from flashcli.workflows.learn import train_action
    from flashcli.workflows.plan import BaseShape

    shape = BaseShape.of(spec)
    learned = learn_plan(protocol, variant, seed, shape)
    adapters: list[Any] = []
    # CPU seconds: steadier than wall time on a shared machine.
    record: dict[str, Any] = {"train_seconds": 0.0, "train_steps": 0, "final_loss": math.nan}
    if variant != "base":
        rendered = train_clips(action, clips, size, frames)
        started = time.process_time()
        weights = train_action(
            spec, [c.frames for c in rendered], learned.train, masks=[c.mask for c in rendered]
        )
        adapters = [(weights.adapter.adapter, weights.adapter.metadata, 1.0)]
        record = {
            "train_seconds": time.process_time() - started,
            "train_steps": learned.train.steps,
            "final_loss": weights.adapter.losses[-1]["total"],
        }
    plan = animate_plan(protocol, variant, seed, shape, learned)
    blocks = decoder_blocks(spec)
    videos: dict[str, list[np.ndarray]] = {block: [] for block in blocks}
    first: dict[str, list[float]] = {block: [] for block in blocks}
    sample_seconds = decode_seconds = 0.0
    for clip in test_clips(action, protocol.photos, size, frames):
        started = time.process_time()
        latents, reference, still = sample_latents(spec, clip.frames[0], adapters, plan)
        sample_seconds += time.process_time() - started
        for block in blocks:
            started = time.process_time()
            video, decoded_first = decode_block(spec, latents, reference, still, use_ded=block == "ded")
            decode_seconds += time.process_time() - started
            videos[block].append(video)
            first[block].append(decoded_first)
    record.update(
        sample_seconds=sample_seconds, decode_seconds=decode_seconds, sample_steps=plan.sample.steps
    )
    for block in blocks:
        record[f"videos_{block}"] = np.stack(videos[block])
        record[f"frame0_psnr_{block}"] = np.asarray(first[block], dtype=np.float64)
    return record


def cached_run(cache: Path, key: str, make: Any) -> dict[str, Any]:
    """A run's videos from the cache, or made and stored (temp file, then rename)."""
    path = cache / f"{key}.npz"
    if path.is_file():
        stored = np.load(path)
        return {name: (stored[name] if stored[name].ndim else float(stored[name])) for name in stored.files}
    record = make()
    with atomic_path(path) as temp:
        np.savez(temp, **record)
    return record


def cache_jobs(protocol: Protocol) -> list[tuple[str, int, int, str]]:
    """Every (trained_as, clips, seed, action) the table needs, once each: rows that share an adapter
    (SAME_ADAPTER) share a cache entry."""
    jobs: dict[tuple[str, int, int, str], None] = {}
    for variant, clips, seed in protocol.runs():
        for action in protocol.actions:
            jobs[(SAME_ADAPTER.get(variant, variant), clips, seed, action)] = None
    return list(jobs)


def shard_jobs(jobs: list[Any], shard: int, shards: int) -> list[Any]:
    """Worker `shard` of `shards`' share of the jobs: every job in exactly one share."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    return jobs[shard::shards]


def fill_cache(protocol: Protocol, base: str, out: Path, shard: int, shards: int) -> None:
    """Make one worker's share of the runs' videos into the cache (no scoring): `--workers` runs several
    of these at once, then scores everything from the cache."""
    spec = load_spec(base, out)
    settings = settings_summary(protocol, spec)
    size, frames = settings["train"]["size"], settings["train"]["frames"]
    cache = out / "cache" / protocol_hash(protocol, spec, settings)
    from flashcli.workflows.plan import BaseShape

    shape = BaseShape.of(spec)
    for trained_as, clips, seed, action in shard_jobs(cache_jobs(protocol), shard, shards):
        key = run_key(protocol, trained_as, clips, seed, action, shape)
        make = functools.partial(animate_run, spec, protocol, trained_as, clips, seed, action, size, frames)
        tick = time.perf_counter()
        cached_run(cache, key, make)
        print(f"[worker {shard}] {key}: {time.perf_counter() - tick:.1f}s", file=sys.stderr, flush=True)


def without_workers(argv: list[str]) -> list[str]:
    """The command line minus its --workers option (`--workers 2` or `--workers=2`), for the workers."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


def run_workers(argv: list[str], workers: int) -> None:
    """Start `workers` processes of this script, each filling its share of the cache on one thread."""
    import os
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    children = [
        subprocess.Popen([sys.executable, __file__, *argv, "--fill-cache", f"{i}/{workers}"], env=env)
        for i in range(workers)
    ]
    failed = [i for i, child in enumerate(children) if child.wait() != 0]
    if failed:
        raise SystemExit(f"workers {failed} failed (see above); rerun the same command to continue")


# ----- the whole protocol -------------------------------------------------------------------------


def settings_summary(protocol: Protocol, spec: Any) -> dict[str, Any]:
    """The settings every run shares, as resolved from the preset (seed and variant switches aside)."""
    from flashcli.workflows.plan import BaseShape

    shape = BaseShape.of(spec)
    learned = learn_plan(protocol, "none", 0, shape)
    sample = animate_plan(protocol, "none", 0, shape, learned).sample
    train = learned.train.model_dump(mode="json", exclude={"seed", "align", "targets"})
    return {
        "preset": learned.preset,
        "train": train,
        "sample": sample.model_dump(mode="json", exclude={"seed", "use_ded"}),
    }


def trained_fields(train: Any) -> dict[str, Any]:
    """What training reads of a run's own settings (beside the shared ones in `settings_summary`): the
    targets, the switches, and each loss weight or hook setting only where the variant uses it, so a
    changed alignment default re-trains the aligned rows and leaves the others' cache in place."""
    align = train.align
    if align.injects:
        fields = align.model_dump(mode="json", exclude={"detail_enhance"})
    else:
        fields = {"strong_augment": align.strong_augment}
        if align.strong_augment:
            fields["augmented_loss_weight"] = align.augmented_loss_weight
    return {"targets": sorted(train.targets), **fields}


def run_key(protocol: Protocol, trained_as: str, clips: int, seed: int, action: str, shape: Any) -> str:
    """A cached run's file name: the run, and a hash of what its training reads."""
    fields = {}
    if trained_as != "base":
        fields = trained_fields(learn_plan(protocol, trained_as, seed, shape).train)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
    return f"{trained_as}_n{clips}_s{seed}_{action}_{digest}"


def protocol_hash(protocol: Protocol, spec: Any, settings: dict[str, Any]) -> str:
    """What a cached run's videos depend on (not which runs are chosen): adding a variant reuses the rest."""
    recipe = {"photos": protocol.photos, "train": settings["train"], "sample": settings["sample"]}
    text = json.dumps([recipe, spec.weight_hash, CACHE_LAYOUT], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def per_video(
    detector: Any,
    bones: list[tuple[int, int]],
    references: dict[str, list[np.ndarray]],
    video: np.ndarray,
    truth: Any,
    action: str,
) -> dict[str, Any]:
    """Every score of one video, with its nearest-action hit (1 or 0) so that accuracy gets an interval."""
    scores = score_video(detector, video, truth, bones)
    signature = scores.pop("signature")
    hit = metrics.nearest_action(signature, references, mirror_permutation()) == action
    return {**scores, "nearest_action": float(hit)}


def run(protocol: Protocol, base: str, out: Path, detector_path: Path) -> dict[str, Any]:
    spec = load_spec(base, out)
    settings = settings_summary(protocol, spec)  # a bad frame count or size fails here, with the fix
    size, frames = settings["train"]["size"], settings["train"]["frames"]
    detector = load_detector(detector_path)
    bones = bone_indices()
    blocks = decoder_blocks(spec)
    cache = out / "cache" / protocol_hash(protocol, spec, settings)
    from flashcli.workflows.plan import BaseShape

    shape = BaseShape.of(spec)
    truths = {action: test_clips(action, protocol.photos, size, frames) for action in protocol.actions}
    # Action references: the true motion of training clips (seen looks), never the test clips scored.
    references = {
        action: [
            metrics.motion_signature(c.joints, metrics.body_height(c.joints, JOINT_NAMES))
            for c in train_clips(action, protocol.reference_clips, size, frames)
        ]
        for action in protocol.actions
    }
    videos: list[dict[str, Any]] = []
    runs_done: list[dict[str, Any]] = []
    sheets: dict[str, np.ndarray] = {}

    for name in REFERENCE_ROWS:  # no decoder: the same scores in every block
        for action, clips in truths.items():
            for photo_index, truth in enumerate(clips):
                video = (
                    truth.frames if name == "ground truth" else np.repeat(truth.frames[:1], frames, axis=0)
                )
                scores = per_video(detector, bones, references, video, truth, action)
                unit = {"action": action, "seed": None, "photo": photo_index, "frame0_psnr": math.nan}
                videos += [{"row": name, "clips": None, "block": b, **unit, **scores} for b in blocks]

    runs = protocol.runs()
    sheet_action = protocol.sheet_action or protocol.actions[0]
    for index, (variant, clips, seed) in enumerate(runs, start=1):
        for action in protocol.actions:
            trained_as = SAME_ADAPTER.get(variant, variant)
            key = run_key(protocol, trained_as, clips, seed, action, shape)
            tick = time.perf_counter()
            make = functools.partial(
                animate_run, spec, protocol, trained_as, clips, seed, action, size, frames
            )
            record = cached_run(cache, key, make)
            score_started = time.process_time()
            for block in blocks:
                pairs = zip(record[f"videos_{block}"], truths[action], strict=True)
                for photo_index, (video, truth) in enumerate(pairs):
                    scores = per_video(detector, bones, references, video, truth, action)
                    unit = {"action": action, "seed": seed, "photo": photo_index}
                    decoded_first = float(record[f"frame0_psnr_{block}"][photo_index])
                    videos.append(
                        {
                            "row": variant,
                            "clips": clips,
                            "block": block,
                            **unit,
                            **scores,
                            "frame0_psnr": decoded_first,
                        }
                    )
            timing = {k: v for k, v in record.items() if not isinstance(v, np.ndarray)}
            runs_done.append(
                {
                    "row": variant,
                    "clips": clips,
                    "seed": seed,
                    "action": action,
                    **timing,
                    "score_seconds": time.process_time() - score_started,
                    "photos": protocol.photos,
                    "blocks": len(blocks),
                }
            )
            print(
                f"[{index}/{len(runs)}] {key}: {time.perf_counter() - tick:.1f}s",
                file=sys.stderr,
                flush=True,
            )
            if action == sheet_action and clips == protocol.table_clips and seed == protocol.seeds[0]:
                sheets[variant] = record[f"videos_{blocks[0]}"]

    sheet_dir = out / "sheets"
    for variant, sheet_videos in sheets.items():
        write_sheet(
            sheet_dir / f"{variant}.png", variant, sheet_action, truths[sheet_action], sheet_videos, protocol
        )
    return {
        "protocol": protocol.model_dump(),
        "settings": settings,
        "base": spec.describe(),
        "size": size,
        "frames": frames,
        "blocks": list(blocks),
        "detector": _detector_facts(detector_path),
        "runs": runs_done,
        "rates": measured_rates(runs_done, frames, size),
        "videos": videos,
    }


def _detector_facts(path: Path) -> dict[str, Any]:
    evaluation = path.with_name("eval.json")
    if not evaluation.is_file():
        return {"weights": path.name, "heldout_unseen": None}
    sets = json.loads(evaluation.read_text())["sets"]
    return {"weights": path.name, "heldout_unseen": sets["heldout_unseen"]["mean"]}


# ----- CPU time: measured rates and the estimate of a protocol --------------------------------------

# CPU seconds (torch on 1 thread) per unit of work, measured by `python bench/quality.py --quick` (its
# `rates` in quality.json; 175 CPU s, 6 min wall) on the 2-core development machine while a training
# job shared it, at the quick preset's 9 frames and 64x64; `estimate_seconds` scales them to a protocol.
MEASURED_RATES: dict[str, float] = {
    "frames": 9,
    "size": 64,
    "train_step": 1.33,
    "sample_step": 0.27,
    "decode": 0.78,
    "score": 0.11,
}


def _latent_frames(frames: int) -> int:
    return (frames - 1) // 4 + 1


def measured_rates(runs: list[dict[str, Any]], frames: int, size: int) -> dict[str, float]:
    """CPU seconds per training step, per sampling step of one photo, per decode and per scored video,
    from the runs just made (cached runs count with the seconds they took when made)."""

    def rate(seconds: str, units: Any) -> float:
        total = sum(units(r) for r in runs)
        return sum(r[seconds] for r in runs) / total if total else math.nan

    return {
        "frames": frames,
        "size": size,
        "train_step": rate("train_seconds", lambda r: r["train_steps"]),
        "sample_step": rate("sample_seconds", lambda r: r["sample_steps"] * r["photos"]),
        "decode": rate("decode_seconds", lambda r: r["photos"] * r["blocks"]),
        "score": rate("score_seconds", lambda r: r["photos"] * r["blocks"]),
    }


def estimate_seconds(protocol: Protocol, shape: Any, rates: dict[str, float], blocks: int = 2) -> float:
    """CPU seconds the protocol's runs take: each run's training steps, sampling steps, decodes and
    scored videos at the measured rates, scaled by latent frames x pixels to the protocol's shape."""
    learned = learn_plan(protocol, "none", 0, shape)
    train_steps = learned.train.steps
    sample_steps = animate_plan(protocol, "none", 0, shape, learned).sample.steps
    scale = (_latent_frames(learned.train.frames) / _latent_frames(int(rates["frames"]))) * (
        learned.train.size / rates["size"]
    ) ** 2
    videos = protocol.photos * blocks
    per_sample = protocol.photos * sample_steps * rates["sample_step"] + videos * rates["decode"]
    made = {(SAME_ADAPTER.get(variant, variant), clips, seed) for variant, clips, seed in protocol.runs()}
    total = len(protocol.runs()) * len(protocol.actions) * videos * rates["score"]
    for variant, _, _ in made:
        trained = train_steps * rates["train_step"] if variant != "base" else 0.0
        total += len(protocol.actions) * scale * (trained + per_sample)
    return total


# ----- reporting ----------------------------------------------------------------------------------

TABLE_SCORES = (
    ("joint_error", "joint error ↓", 2),
    ("moving_error", "moving-joint error ↓", 2),
    ("pck10", "PCK@0.1 ↑", 3),
    ("nearest_action", "nearest-action acc. ↑", 2),
    ("frame0_psnr", "first-frame PSNR, decoded (dB) ↑", 1),
    ("jump", "transition jump (1 = none) ↓", 2),
    ("appearance_drift", "appearance drift ↓", 3),
)


def select(videos: list[dict[str, Any]], row: str, clips: int | None, block: str) -> list[dict[str, Any]]:
    return [v for v in videos if v["row"] == row and v["clips"] == clips and v["block"] == block]


def interval_cell(interval: Interval, digits: int, *, signed: bool = False) -> str:
    """`mean [low, high]`; a difference whose interval excludes 0 is starred."""
    if interval.count == 0 or not math.isfinite(interval.mean):
        return "–"
    sign = "+" if signed else ""
    mean, low, high = (f"{value:{sign}.{digits}f}" for value in (interval.mean, interval.low, interval.high))
    text = f"{mean} [{low}, {high}]"
    return text + (" *" if signed and interval.excludes_zero() else "")


def means_table(
    videos: list[dict[str, Any]], block: str, rows: list[tuple[str, int | None]], *, show_clips: bool = False
) -> list[str]:
    """One line per row: every score's mean over its videos with a bootstrap 95 % interval."""
    lines = [
        "| row | " + " | ".join(title for _, title, _ in TABLE_SCORES) + " |",
        "|---" * (len(TABLE_SCORES) + 1) + "|",
    ]
    for name, clips in rows:
        chosen = select(videos, name, clips, block)
        label = f"*{name}*" if name in REFERENCE_ROWS else name
        label += f" (N = {clips})" if show_clips and clips is not None else ""
        cells = [interval_cell(score_interval(chosen, key), digits) for key, _, digits in TABLE_SCORES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def differences_table(
    videos: list[dict[str, Any]], block: str, rows: list[tuple[str, int | None]], clips: int
) -> list[str]:
    """One line per row: its paired difference from plain LoRA (same action, seed and photo) per score."""
    reference = select(videos, REFERENCE_VARIANT, clips, block)
    lines = [
        "| row − plain LoRA | " + " | ".join(title for _, title, _ in TABLE_SCORES) + " |",
        "|---" * (len(TABLE_SCORES) + 1) + "|",
    ]
    for name, row_clips in rows:
        if name in REFERENCE_ROWS or name == REFERENCE_VARIANT:
            continue
        chosen = select(videos, name, row_clips, block)
        cells = [
            interval_cell(paired_interval(chosen, reference, key), digits, signed=True)
            for key, _, digits in TABLE_SCORES
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def block_tables(result: dict[str, Any], protocol: Protocol) -> list[str]:
    """Each decoder block as its own labelled section: the means, then the differences from plain LoRA."""
    rows: list[tuple[str, int | None]] = [(name, None) for name in REFERENCE_ROWS]
    rows += [(name, protocol.table_clips) for name in protocol.variants]
    lines: list[str] = []
    for block in result["blocks"]:
        lines += [f"## {BLOCK_TITLES[block]}: every row, N = {protocol.table_clips} clips", ""]
        lines += means_table(result["videos"], block, rows)
        if REFERENCE_VARIANT in protocol.variants:
            lines += ["", f"Paired differences from plain LoRA ({BLOCK_TITLES[block]}):", ""]
            lines += differences_table(result["videos"], block, rows, protocol.table_clips)
        lines.append("")
    return lines


def markdown(result: dict[str, Any], command: str) -> str:
    protocol = Protocol(**result["protocol"])
    base = result["base"]
    train, sample = result["settings"]["train"], result["settings"]["sample"]
    seconds = sum(
        r["train_seconds"] + r["sample_seconds"] + r["decode_seconds"] + r["score_seconds"]
        for r in result["runs"]
    )
    lines = [
        "# flash quality benchmark",
        "",
        f"Command: `{command}`  ",
        f"Base: `{base['base_id']}` (weights {base['weight_hash']}, DED {'yes' if base['ded'] else 'no'}), "
        f"{result['size']}x{result['size']}, {result['frames']} frames. "
        f"Actions: {', '.join(protocol.actions)}. K = {protocol.photos} unseen people per action, "
        f"seeds {protocol.seeds}, preset `{result['settings']['preset']}` with {protocol.learn or 'no'} "
        f"learn and {protocol.animate or 'no'} animate overrides: {train['steps']} training steps "
        f"(rank {train['rank']}), {sample['steps']} sampling steps. CPU time of the runs: "
        f"{seconds / 60:.1f} min.",
        "",
        "Each cell: the mean over videos (action x seed x photo) and its bootstrap 95 % interval. "
        "Differences pair each video with plain LoRA's of the same action, seed and photo; `*`: the "
        "interval excludes 0. `augment_both` and `full` train the same adapter (detail enhancement only "
        "chooses the decoder), so within a block their rows agree; as shipped, `full` is its DED-block row "
        "and `augment_both` its plain-block row.",
        "",
    ]
    facts = result["detector"]["heldout_unseen"]
    if facts:
        lines += [
            f"Detector error bar (its own error on held-out unseen renders): {facts['error_in_frame']:.2f} % "
            f"of body height, PCK@0.1 {facts['pck10_in_frame']:.3f}. The `ground truth` row is the best "
            "score any method can get through it; `still photo` is what no motion gets.",
            "",
        ]
    if not base["ded"]:
        lines += ["This base ships no Detail Enhancement Decoder: the plain-decoder block only.", ""]
    lines += block_tables(result, protocol)
    sweep = sorted({protocol.table_clips, *protocol.sweep_clips})
    swept = [name for name in protocol.sweep_variants if name in protocol.variants]
    if len(sweep) > 1 and swept:
        lines += [f"## Clip count ({BLOCK_TITLES[result['blocks'][0]]}, seed {protocol.seeds[0]})", ""]
        rows = [(name, n) for name in swept for n in sweep]
        first_seed = [v for v in result["videos"] if v["seed"] in (None, protocol.seeds[0])]
        lines += means_table(first_seed, result["blocks"][0], rows, show_clips=True)
        lines.append("")
    lines += [
        "Scores: joint error and PCK over frames 1.. after DTW time alignment, joints inside the picture; "
        "moving-joint error: the same over joints that truly move more than 10 % of body height; "
        "nearest-action accuracy: is the nearest of the actions' true training-clip motions (joint "
        "displacements from their mean place, DTW, either hand) one of its own action's; "
        "first-frame PSNR, decoded: the decoder's frame 0 against the photo, before the photo replaces it; "
        "transition jump = mean|f1-f0| / mean|f(t+1)-f(t)|, t >= 1; "
        "appearance drift = Hellinger distance of the figure region's colour histogram "
        "between frame 0 and the last frame (region = around the detected skeleton). quality.json keeps "
        "frame-1 PSNR, roughness and joint jitter per video too.",
    ]
    return "\n".join(lines) + "\n"


def write_sheet(
    path: Path, variant: str, action: str, truths: list[Any], videos: np.ndarray, protocol: Protocol
) -> None:
    """Rows: each photo's true clip, then the variant's video of it; every `sheet_stride`-th frame, 2x."""
    from PIL import Image, ImageDraw

    picks = list(range(0, videos.shape[1], protocol.sheet_stride))
    strips = []
    for truth, video in zip(truths, videos, strict=True):
        for label, frames in (("truth", truth.frames), (variant, video)):
            strips.append((label, np.concatenate([frames[i] for i in picks], axis=1)))
    label_width, zoom = 96, 2
    height, width = strips[0][1].shape[:2]
    sheet = Image.new("RGB", (label_width + width * zoom, height * zoom * len(strips) + 16), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), f"{action}: frames {picks[0]}..{picks[-1]} step {protocol.sheet_stride}", fill="black")
    for row, (label, strip) in enumerate(strips):
        top = 16 + row * height * zoom
        picture = Image.fromarray(strip).resize((width * zoom, height * zoom), Image.NEAREST)
        sheet.paste(picture, (label_width, top))
        draw.text((4, top + height * zoom // 2 - 6), label, fill="black")
    with atomic_path(path) as temp:
        sheet.save(temp, format="PNG")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 actions, 4 clips, 2 photos, 1 seed, few steps"
    )
    parser.add_argument("--base", default="tiny", help="'tiny' or a base folder")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "quality")
    parser.add_argument("--detector", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--protocol", type=Path, default=None, help="JSON file overriding protocol fields")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plan", action="store_true", help="print the runs and exit")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes that make the runs (one thread each), then score"
    )
    parser.add_argument("--fill-cache", metavar="I/N", help=argparse.SUPPRESS)  # one worker's share
    return parser.parse_args(argv)


def build_protocol(args: argparse.Namespace) -> Protocol:
    protocol = QUICK if args.quick else FULL
    if args.protocol is not None:
        protocol = Protocol(**{**protocol.model_dump(), **json.loads(args.protocol.read_text())})
    return protocol


def plan_shape(base: str) -> Any:
    """The base's shape from its files (no loading); the tiny base's when it is not installed."""
    from flashcli.workflows.plan import BaseShape, base_shape

    return base_shape(base) or BaseShape("tiny", 4, 16, 17, 64, 8.0)


def _plan_lines(protocol: Protocol, shape: Any, workers: int = 1) -> Iterator[str]:
    runs = protocol.runs()
    made = {(SAME_ADAPTER.get(variant, variant), clips, seed) for variant, clips, seed in runs}
    trained = sum(1 for variant, _, _ in made if variant != "base")
    actions = len(protocol.actions)
    seconds = estimate_seconds(protocol, shape, MEASURED_RATES)
    yield (
        f"{len(runs)} runs x {actions} actions = {len(runs) * actions} runs; {trained * actions} adapters "
        f"to train; {len(runs) * actions * protocol.photos} videos x 2 decoder blocks"
    )
    yield (
        f"estimated CPU time: {seconds / 3600:.1f} h ({seconds / 60:.0f} min) on one thread at the rates "
        "--quick measured "
        f"({', '.join(f'{k} {v:g}' for k, v in MEASURED_RATES.items())})"
    )
    if workers > 1:
        yield f"with --workers {workers}: about {seconds / workers / 3600:.1f} h of wall time"
    for variant, clips, seed in runs:
        yield f"  {variant:24s} N={clips:2d} seed={seed}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    protocol = build_protocol(args)
    if args.plan:
        print("\n".join(_plan_lines(protocol, plan_shape(args.base), args.workers)))
        return 0
    if args.fill_cache:
        shard, shards = (int(part) for part in args.fill_cache.split("/"))
        fill_cache(protocol, args.base, args.out, shard, shards)
        return 0
    started = time.perf_counter()
    if args.workers > 1:
        given = sys.argv[1:] if argv is None else argv
        run_workers(without_workers(given), args.workers)
    result = run(protocol, args.base, args.out, args.detector)
    result["wall_seconds"] = time.perf_counter() - started
    command = "python bench/quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(result, command.strip())
    write_text_atomic(args.out / "quality.md", text)
    write_text_atomic(args.out / "quality.json", json.dumps(finite_json(result), indent=1) + "\n")
    print(text)
    print(
        f"wrote {args.out / 'quality.md'}, quality.json and sheets/ in {result['wall_seconds']:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
