"""bench/quality.py measures what users run: its settings come from a shipped preset through the
learn and animate workflows' planning, with the protocol's overrides applied as flags would be."""

from __future__ import annotations

import numpy as np
import pytest

from flashcli.config import load_preset
from flashcli.core.settings import ALL_LORA_TARGETS, DEFAULT_LORA_TARGETS
from flashcli.workflows.plan import BaseShape

# bench and script tests run in the full suite, not the fast subset (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow

TINY = BaseShape("tiny", frame_step=4, size_multiple=8, default_frames=17, default_size=64, default_fps=8.0)


@pytest.fixture(scope="module")
def quality():
    import quality  # bench/quality.py: bench/ is on pytest's pythonpath (pyproject.toml)

    return quality


def test_runs_take_the_shipped_preset_and_only_the_protocols_overrides(quality) -> None:
    quick = quality.learn_plan(quality.QUICK, "full", 3, TINY)
    _, preset = load_preset("quick")
    # What the quick preset ships (frames, rank, learning rate), what QUICK overrides, the run's seed.
    assert quick.preset == "quick" and quick.frames == preset.learn["frames"] == 9
    assert (
        quick.train.rank == preset.learn["rank"]
        and quick.train.learning_rate == preset.learn["learning_rate"]
    )
    assert (quick.train.steps, quick.train.warmup_steps, quick.train.seed) == (4, 0, 3)
    assert quick.train.align.variant_name == "full" and quick.train.targets == list(DEFAULT_LORA_TARGETS)

    plain = quality.learn_plan(quality.FULL, "plain_lora", 0, TINY)
    # The full table runs the quick preset as shipped: no override of its steps, frames or size.
    assert plain.preset == "quick" and (plain.frames, plain.train.size, plain.train.steps) == (9, 64, 60)
    assert plain.train.align.variant_name == "none" and plain.train.targets == list(ALL_LORA_TARGETS)

    sampled = quality.animate_plan(quality.QUICK, "augment", 3, TINY, quick)
    assert (sampled.frames, sampled.sample.steps, sampled.sample.seed) == (9, 3, 3)


def test_old_protocol_files_still_mean_what_they_said(quality) -> None:
    protocol = quality.Protocol(train_steps=300, rank=16, frames=9, warmup_steps=10, sample_steps=16)
    assert protocol.learn == {"steps": 300, "rank": 16, "frames": 9, "core": {"warmup_steps": 10}}
    assert protocol.animate == {"steps": 16}
    plan = quality.learn_plan(protocol, "none", 0, TINY)
    assert (plan.train.steps, plan.train.rank, plan.frames, plan.train.warmup_steps) == (300, 16, 9, 10)


def test_the_full_protocol_has_the_units_to_separate_rows(quality, capsys) -> None:
    protocol = quality.FULL
    assert len(protocol.seeds) >= 3 and len(protocol.actions) >= 8 and protocol.photos >= 4
    assert quality.main(["--plan"]) == 0
    printed = capsys.readouterr().out
    runs = len(protocol.runs()) * len(protocol.actions)
    assert f"= {runs} runs" in printed and "estimated CPU time:" in printed


def _synthetic_videos(quality) -> list[dict]:
    """Per-video scores of a tiny protocol: `full` is plain LoRA exactly; `augment` is 2 points better."""
    rng = np.random.default_rng(0)
    videos = []
    for block in quality.BLOCKS:
        for action in ("bow", "weld"):
            for photo in range(4):
                truth = {"action": action, "photo": photo, "frame0_psnr": float("nan")}
                for row in quality.REFERENCE_ROWS:
                    scores = {key: float(rng.uniform(1, 10)) for key, _, _ in quality.TABLE_SCORES}
                    videos.append(
                        {"row": row, "clips": None, "block": block, "seed": None, **scores, **truth}
                    )
                for seed in (0, 1, 2):
                    plain = {key: float(rng.uniform(5, 20)) for key, _, _ in quality.TABLE_SCORES}
                    plain["nearest_action"] = float(rng.integers(0, 2))
                    unit = {"clips": 4, "block": block, "action": action, "seed": seed, "photo": photo}
                    for row, shift in (("plain_lora", 0.0), ("full", 0.0), ("augment", -2.0)):
                        scores = {
                            key: value + (shift if key == "joint_error" else 0.0)
                            for key, value in plain.items()
                        }
                        videos.append({"row": row, **unit, **scores})
    return videos


def test_each_decoder_block_is_a_labelled_table_with_intervals(quality) -> None:
    protocol = quality.Protocol(
        actions=["bow", "weld"], table_clips=4, sweep_clips=[], variants=["plain_lora", "augment", "full"]
    )
    result = {"blocks": list(quality.BLOCKS), "videos": _synthetic_videos(quality)}
    text = "\n".join(quality.block_tables(result, protocol))
    plain, ded = text.index("## plain decoder"), text.index("## Detail Enhancement Decoder")
    assert plain < ded
    for _, title, _ in quality.TABLE_SCORES:
        assert text.count(f"| {title} |") == 4  # a means table and a differences table per block
    assert "frame 0 exact" not in text
    plain_block = text[:ded].splitlines()
    split = next(i for i, line in enumerate(plain_block) if line.startswith("| row − plain LoRA |"))
    means, differences = plain_block[:split], plain_block[split:]
    assert any(line.startswith("| *still photo* |") for line in means)
    assert "[" in next(line for line in means if line.startswith("| plain_lora |"))
    full = next(line for line in differences if line.startswith("| full |"))
    augment = next(line for line in differences if line.startswith("| augment |"))
    # `full` is plain LoRA video by video: every difference is exactly 0, with a 0-wide interval.
    assert full.count("+0.00 [+0.00, +0.00]") >= 4 and "*" not in full
    # `augment` is 2 points lower in joint error on every video: a difference the interval tells.
    assert "-2.00 [-2.00, -2.00] *" in augment


def test_workers_share_every_run_once_and_pass_on_the_rest_of_the_command(quality) -> None:
    protocol = quality.FULL
    jobs = quality.cache_jobs(protocol)
    # `full` trains `augment_both`'s adapter: one cache entry for both rows, made by one worker.
    assert len(jobs) == len(set(jobs)) and not any(job[0] == "full" for job in jobs)
    made = {(quality.SAME_ADAPTER.get(v, v), n, s) for v, n, s in protocol.runs()}
    assert len(jobs) == len(made) * len(protocol.actions)
    shares = [quality.shard_jobs(jobs, i, 3) for i in range(3)]
    assert sorted(job for share in shares for job in share) == sorted(jobs)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert quality.without_workers(["--workers", "2", "--out", "o"]) == ["--out", "o"]
    assert quality.without_workers(["--quick", "--workers=4"]) == ["--quick"]


def test_a_changed_alignment_setting_retrains_only_the_rows_that_use_it(quality) -> None:
    """The cache key carries what each run's training reads, so a run cached under other alignment
    settings is never scored as if it had the new ones, and rows without alignment keep their cache."""
    before = quality.Protocol(preset="quick")
    after = quality.Protocol(preset="quick", learn={"align": {"aligned_loss_weight": 0.25}})

    def key(protocol, variant: str, seed: int = 0) -> str:
        return quality.run_key(protocol, variant, 8, seed, "weld", TINY)

    for variant in ("augment_motion", "augment_correspondence", "augment_both"):
        assert key(before, variant) != key(after, variant)
    for variant in ("base", "plain_lora", "none", "augment"):
        assert key(before, variant) == key(after, variant)
    assert key(before, "plain_lora") != key(before, "none")  # the targets differ
    assert key(before, "none", seed=0) != key(before, "none", seed=1)
