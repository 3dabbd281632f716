"""The quality protocol: does an adapter learned from N clips put the action on unseen people?

For each held-out FigureWorld action: learn from N clips of seen-range looks (one adapter per
variant and seed), animate K photos of unseen-range people (frame 0 of held-out true clips) and
score each video against its true clip through the keypoint detector (flashcli.lab.keypoints). Variants:
`base` (no adapter), `plain_lora` (today's common practice: LoRA on every attention projection, no
augmentation, no alignment, no DED) and the paper's six (`none`, `augment`, `augment_motion`,
`augment_correspondence`, `augment_both`, `full`). Two reference rows need no model: `ground truth`
(the true clip itself, through the detector: the best any method can score) and `still photo`
(the photo repeated: what no motion scores).

    python bench/quality.py --quick                  # minutes: 2 actions, 4 clips, 2 photos, 1 seed
    python bench/quality.py                          # the full table (see FULL below for its budget)
    python bench/quality.py --base path/to/base --out bench/out/quality --plan   # print the runs only

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
import statistics
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
from flashcli.lab.keypoints.detector import DEFAULT_WEIGHTS, load_detector
from flashcli.lab.motion_scores import SCORES, bone_indices, finite_json, score_video, summarise

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
    photos: int = Field(default=3, ge=1, description="K unseen people per action")
    seeds: list[int] = Field(default_factory=lambda: [0, 1])
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
# The full table: 8 actions x (8 variants x 2 seeds at N=8 + 3 variants at N=4 and 16) = 8 x 22 runs,
# 19 of them trained: the standard preset at the tiny base's 64x64, 17 frames, with 60 training steps
# (the time budget) and its other settings as shipped. Check with --plan. Before the preset drove it
# (warmup 5, 2 augmented copies, 12 sampling steps) it took 97 CPU-minutes on the 2-core CPU.
FULL = Protocol(learn={"steps": 60})


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
    """What `flash animate --preset P` samples the action with; `full` decodes with the base's DED."""
    from flashcli.config import resolve_animate
    from flashcli.workflows.plan import plan_animate

    core = {**protocol.animate.get("core", {}), "use_ded": variant == "full"}
    flags = {**protocol.animate, "core": core, "seed": seed, "frames": learned.frames, "size": learned.size}
    preset, config = resolve_animate(protocol.preset, flags)
    return plan_animate(preset, config, shape, None, None, flags)


def animate_run(
    spec: Any, protocol: Protocol, variant: str, clips: int, seed: int, action: str, size: int, frames: int
) -> dict[str, Any]:
    """Videos (K, F, H, W, 3) of the K test photos, plus training time and final loss."""
    from flashcli.workflows.animate import animate_one
    from flashcli.workflows.learn import train_action
    from flashcli.workflows.plan import BaseShape

    shape = BaseShape.of(spec)
    learned = learn_plan(protocol, variant, seed, shape)
    adapters: list[Any] = []
    cpu_started = time.process_time()  # CPU seconds: steadier than wall time on a shared machine
    record: dict[str, Any] = {"train_seconds": 0.0, "final_loss": math.nan}
    if variant != "base":
        rendered = train_clips(action, clips, size, frames)
        weights = train_action(
            spec, [c.frames for c in rendered], learned.train, masks=[c.mask for c in rendered]
        )
        adapters = [(weights.adapter.adapter, weights.adapter.metadata, 1.0)]
        record = {"train_seconds": weights.seconds, "final_loss": weights.adapter.losses[-1]["total"]}
    plan = animate_plan(protocol, variant, seed, shape, learned)
    started = time.perf_counter()
    videos = [
        animate_one(spec, clip.frames[0], adapters, plan, f"{action} {index}")
        for index, clip in enumerate(test_clips(action, protocol.photos, size, frames))
    ]
    record["sample_seconds"] = time.perf_counter() - started
    record["cpu_seconds"] = time.process_time() - cpu_started
    record["videos"] = np.stack(videos)
    return record


def cached_run(cache: Path, key: str, make: Any) -> dict[str, Any]:
    """A run's videos from the cache, or made and stored (temp file, then rename)."""
    path = cache / f"{key}.npz"
    if path.is_file():
        stored = np.load(path)
        return {name: (stored[name] if name == "videos" else float(stored[name])) for name in stored.files}
    record = make()
    with atomic_path(path) as temp:
        np.savez(temp, **record)
    return record


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
        "sample": sample.model_dump(mode="json", exclude={"seed"}),
    }


def protocol_hash(protocol: Protocol, spec: Any, settings: dict[str, Any]) -> str:
    """What a cached run's videos depend on (not which runs are chosen): adding a variant reuses the rest."""
    recipe = {"photos": protocol.photos, "train": settings["train"], "sample": settings["sample"]}
    text = json.dumps([recipe, spec.weight_hash], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run(protocol: Protocol, base: str, out: Path, detector_path: Path) -> dict[str, Any]:
    spec = load_spec(base, out)
    settings = settings_summary(protocol, spec)  # a bad frame count or size fails here, with the fix
    size, frames = settings["train"]["size"], settings["train"]["frames"]
    detector = load_detector(detector_path)
    bones = bone_indices()
    cache = out / "cache" / protocol_hash(protocol, spec, settings)
    truths = {action: test_clips(action, protocol.photos, size, frames) for action in protocol.actions}
    # Action references: the true motion of training clips (seen looks), never the test clips scored.
    references = {
        action: [
            metrics.motion_signature(c.joints, metrics.body_height(c.joints, JOINT_NAMES))
            for c in train_clips(action, protocol.reference_clips, size, frames)
        ]
        for action in protocol.actions
    }

    rows: list[dict[str, Any]] = []
    per_video: list[dict[str, Any]] = []
    sheets: dict[str, np.ndarray] = {}

    def add_row(name: str, clips: int | None, seed: int | None, scored: list[dict], extra: dict) -> None:
        summary = summarise(scored, references)
        rows.append({"row": name, "clips": clips, "seed": seed, **summary, **extra})
        for item in scored:
            per_video.append({"row": name, "clips": clips, "seed": seed, **_plain(item)})

    for name in REFERENCE_ROWS:
        scored = []
        for action, clips in truths.items():
            for photo_index, truth in enumerate(clips):
                video = (
                    truth.frames if name == "ground truth" else np.repeat(truth.frames[:1], frames, axis=0)
                )
                scored.append(
                    {"action": action, "photo": photo_index, **score_video(detector, video, truth, bones)}
                )
        add_row(name, None, None, scored, {})

    runs = protocol.runs()
    sheet_action = protocol.sheet_action or protocol.actions[0]
    for index, (variant, clips, seed) in enumerate(runs, start=1):
        scored, train_seconds, sample_seconds, losses, cpu_seconds = [], [], [], [], []
        for action in protocol.actions:
            key = f"{variant}_n{clips}_s{seed}_{action}"
            tick = time.perf_counter()
            make = functools.partial(animate_run, spec, protocol, variant, clips, seed, action, size, frames)
            record = cached_run(cache, key, make)
            print(
                f"[{index}/{len(runs)}] {key}: {time.perf_counter() - tick:.1f}s",
                file=sys.stderr,
                flush=True,
            )
            train_seconds.append(record["train_seconds"])
            sample_seconds.append(record["sample_seconds"])
            losses.append(record["final_loss"])
            cpu_seconds.append(record.get("cpu_seconds", math.nan))
            for photo_index, (video, truth) in enumerate(zip(record["videos"], truths[action], strict=True)):
                scored.append(
                    {"action": action, "photo": photo_index, **score_video(detector, video, truth, bones)}
                )
            if action == sheet_action and clips == protocol.table_clips and seed == protocol.seeds[0]:
                sheets[variant] = record["videos"]
        extra = {
            "train_seconds": float(np.mean(train_seconds)),
            "sample_seconds": float(np.mean(sample_seconds)),
            "final_loss": float(np.mean(losses)),
            "cpu_seconds": float(np.mean(cpu_seconds)),
        }
        add_row(variant, clips, seed, scored, extra)

    sheet_dir = out / "sheets"
    for variant, videos in sheets.items():
        write_sheet(
            sheet_dir / f"{variant}.png", variant, sheet_action, truths[sheet_action], videos, protocol
        )
    return {
        "protocol": protocol.model_dump(),
        "settings": settings,
        "base": spec.describe(),
        "size": size,
        "frames": frames,
        "detector": _detector_facts(detector_path),
        "rows": rows,
        "videos": per_video,
    }


def _plain(item: dict) -> dict:
    return {key: value for key, value in item.items() if key != "signature"}


def _detector_facts(path: Path) -> dict[str, Any]:
    evaluation = path.with_name("eval.json")
    if not evaluation.is_file():
        return {"weights": path.name, "heldout_unseen": None}
    sets = json.loads(evaluation.read_text())["sets"]
    return {"weights": path.name, "heldout_unseen": sets["heldout_unseen"]["mean"]}


# ----- reporting ----------------------------------------------------------------------------------


def aggregate(rows: list[dict], name: str, clips: int | None) -> dict[str, tuple[float, float | None]]:
    """Mean and spread (sample sd over seeds; None with one seed) of every score of one row."""
    chosen = [r for r in rows if r["row"] == name and r["clips"] == clips]
    result: dict[str, tuple[float, float | None]] = {}
    for score in (*SCORES, "train_seconds", "cpu_seconds"):
        values = [r[score] for r in chosen if score in r and math.isfinite(r[score])]
        if not values:
            result[score] = (math.nan, None)
            continue
        spread = statistics.stdev(values) if len(values) > 1 else None
        result[score] = (float(np.mean(values)), spread)
    return result


def _cell(value: tuple[float, float | None], digits: int) -> str:
    mean, spread = value
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" if spread is None else f"{mean:.{digits}f} ± {spread:.{digits}f}"


COLUMNS = (
    ("joint_error", "joint error (% body h., DTW) ↓", 2),
    ("moving_error", "moving-joint error ↓", 2),
    ("pck10", "PCK@0.1 ↑", 3),
    ("nearest_action", "nearest-action acc. ↑", 2),
    ("frame0_exact", "frame 0 exact", 2),
    ("frame1_psnr", "frame-1 PSNR (dB) ↑", 1),
    ("jump", "jump (1 = none) ↓", 2),
    ("roughness", "roughness ↓", 2),
    ("joint_jitter", "joint jitter ↓", 2),
    ("appearance_drift", "colour drift ↓", 3),
    ("train_seconds", "train s / action", 1),
    ("cpu_seconds", "CPU s / action (train + K videos)", 1),
)


def markdown(result: dict[str, Any], command: str) -> str:
    protocol = Protocol(**result["protocol"])
    rows = result["rows"]
    base = result["base"]
    train, sample = result["settings"]["train"], result["settings"]["sample"]
    lines = [
        "# flash quality benchmark",
        "",
        f"Command: `{command}`  ",
        f"Base: `{base['base_id']}` (weights {base['weight_hash']}, DED {'yes' if base['ded'] else 'no'}), "
        f"{result['size']}x{result['size']}, {result['frames']} frames. "
        f"Actions: {', '.join(protocol.actions)}. K = {protocol.photos} unseen people per action, "
        f"seeds {protocol.seeds}, preset `{result['settings']['preset']}` with {protocol.learn or 'no'} "
        f"learn and {protocol.animate or 'no'} animate overrides: {train['steps']} training steps "
        f"(rank {train['rank']}), {sample['steps']} sampling steps.",
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
    if not base["ded"] and "full" in protocol.variants:
        lines += ["This base ships no Detail Enhancement Decoder, so `full` samples like `augment_both`.", ""]
    header = "| row | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 1) + "|"
    lines += [f"## Variants at N = {protocol.table_clips} clips", "", header, rule]
    for name in REFERENCE_ROWS:
        cells = aggregate(rows, name, None)
        lines.append(f"| *{name}* | " + " | ".join(_cell(cells[k], d) for k, _, d in COLUMNS) + " |")
    plain = aggregate(rows, "plain_lora", protocol.table_clips)
    marks = []
    for name in protocol.variants:
        cells = aggregate(rows, name, protocol.table_clips)
        lines.append(f"| {name} | " + " | ".join(_cell(cells[k], d) for k, _, d in COLUMNS) + " |")
        if name != "plain_lora" and "plain_lora" in protocol.variants:
            marks.append(_versus(name, cells["joint_error"], plain["joint_error"]))
    if marks:
        lines += [
            "",
            "Joint error against plain LoRA (larger than the spread = |Δ| > sd₁ + sd₂ over seeds):",
            "",
        ]
        lines += [f"- {mark}" for mark in marks]
    sweep = sorted({protocol.table_clips, *protocol.sweep_clips})
    swept = [name for name in protocol.sweep_variants if name in protocol.variants]
    if len(sweep) > 1 and swept:
        lines += ["", "## Clip count", ""]
        lines.append("| row | N | joint error ↓ | moving-joint error ↓ | PCK@0.1 ↑ | nearest-action acc. ↑ |")
        lines.append("|---|---|---|---|---|---|")
        for name in swept:
            for n in sweep:
                cells = aggregate(rows, name, n)
                picked = (
                    cells["joint_error"],
                    cells["moving_error"],
                    cells["pck10"],
                    cells["nearest_action"],
                )
                lines.append(
                    f"| {name} | {n} | "
                    + " | ".join(_cell(c, d) for c, d in zip(picked, (2, 2, 3, 2), strict=True))
                    + " |"
                )
    lines += [
        "",
        "Scores: joint error and PCK over frames 1.. after DTW time alignment, joints inside the picture; "
        "moving-joint error: the same over joints that truly move more than 10 % of body height; "
        "nearest-action accuracy: is the nearest of the actions' true training-clip motions (joint "
        "displacements from their mean place, DTW, either hand) one of its own action's; "
        "jump = mean|f1-f0| / mean|f(t+1)-f(t)|, t >= 1; roughness = mean|second difference| / "
        "mean|first difference| of frames 1..; joint jitter in % body height per frame²; "
        "colour drift = Hellinger distance of the figure region's colour histogram "
        "between frame 0 and the last frame (region = around the detected skeleton).",
    ]
    return "\n".join(lines) + "\n"


def _versus(name: str, ours: tuple[float, float | None], theirs: tuple[float, float | None]) -> str:
    delta = ours[0] - theirs[0]
    if ours[1] is None or theirs[1] is None:
        return f"{name}: Δ {delta:+.2f} (one seed: no spread, not judged)"
    verdict = "larger than the spread" if abs(delta) > ours[1] + theirs[1] else "within the spread"
    return f"{name}: Δ {delta:+.2f} ({verdict})"


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
    return parser.parse_args(argv)


def build_protocol(args: argparse.Namespace) -> Protocol:
    protocol = QUICK if args.quick else FULL
    if args.protocol is not None:
        protocol = Protocol(**{**protocol.model_dump(), **json.loads(args.protocol.read_text())})
    return protocol


def _plan_lines(protocol: Protocol) -> Iterator[str]:
    runs = protocol.runs()
    trained = sum(1 for variant, _, _ in runs if variant != "base")
    actions = len(protocol.actions)
    yield f"{len(runs)} runs x {actions} actions; {trained * actions} adapters to train"
    for variant, clips, seed in runs:
        yield f"  {variant:24s} N={clips:2d} seed={seed}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    protocol = build_protocol(args)
    if args.plan:
        print("\n".join(_plan_lines(protocol)))
        return 0
    started = time.perf_counter()
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
