"""bench/quality.py measures what users run: its settings come from a shipped preset through the
learn and animate workflows' planning, with the protocol's overrides applied as flags would be."""

from __future__ import annotations

import pytest

from flashcli.config import load_preset
from flashcli.core.settings import ALL_LORA_TARGETS, DEFAULT_LORA_TARGETS
from flashcli.workflows.plan import BaseShape

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
    assert plain.preset == "standard" and (plain.frames, plain.size, plain.train.steps) == (17, 64, 60)
    assert plain.train.align.variant_name == "none" and plain.train.targets == list(ALL_LORA_TARGETS)

    sampled = quality.animate_plan(quality.QUICK, "augment", 3, TINY, quick)
    assert (sampled.frames, sampled.sample.steps, sampled.sample.seed) == (9, 3, 3)
    assert sampled.sample.use_ded is False  # only `full` decodes with the DED


def test_old_protocol_files_still_mean_what_they_said(quality) -> None:
    protocol = quality.Protocol(train_steps=300, rank=16, frames=9, warmup_steps=10, sample_steps=16)
    assert protocol.learn == {"steps": 300, "rank": 16, "frames": 9, "core": {"warmup_steps": 10}}
    assert protocol.animate == {"steps": 16}
    plan = quality.learn_plan(protocol, "none", 0, TINY)
    assert (plan.train.steps, plan.train.rank, plan.frames, plan.train.warmup_steps) == (300, 16, 9, 10)
