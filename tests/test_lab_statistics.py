"""The benchmark's intervals: they cover the true mean about as often as they claim, narrow with more
videos, are reproducible, and a row paired with itself differs by exactly nothing."""

from __future__ import annotations

import math

import numpy as np

from flashcli.lab.statistics import bootstrap_mean, paired_differences, paired_interval, score_interval


def test_the_interval_covers_the_true_mean_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(1)
    trials, covered = 300, 0
    for trial in range(trials):
        sample = rng.normal(loc=3.0, scale=2.0, size=60)
        interval = bootstrap_mean(sample, resamples=1000, seed=trial)
        covered += interval.low <= 3.0 <= interval.high
    # 95 % nominal; a percentile bootstrap on 60 values runs a little under. 300 trials: sd ~1.3 %.
    assert 0.89 <= covered / trials <= 0.99


def test_the_interval_shrinks_with_more_data_and_is_reproducible() -> None:
    rng = np.random.default_rng(2)
    small, large = rng.exponential(size=25), rng.exponential(size=400)
    narrow, wide = bootstrap_mean(large), bootstrap_mean(small)
    assert narrow.width < 0.5 * wide.width  # sqrt(400 / 25) = 4 times narrower, in theory
    assert bootstrap_mean(small) == wide  # the same values and seed give the same interval


def test_a_row_paired_with_itself_differs_by_exactly_zero() -> None:
    rng = np.random.default_rng(3)
    rows = [
        {"action": action, "seed": seed, "photo": photo, "joint_error": float(rng.uniform(5, 20))}
        for action in ("bow", "weld")
        for seed in (0, 1, 2)
        for photo in range(4)
    ]
    interval = paired_interval(rows, list(reversed(rows)), "joint_error")
    assert (interval.mean, interval.low, interval.high, interval.count) == (0.0, 0.0, 0.0, 24)
    assert not interval.excludes_zero()


def test_differences_pair_the_same_action_seed_and_photo() -> None:
    ours = [{"action": "bow", "seed": 0, "photo": p, "jump": v} for p, v in enumerate([1.0, 2.0, math.inf])]
    theirs = [{"action": "bow", "seed": 0, "photo": p, "jump": v} for p, v in ((2, 1.0), (1, 0.5), (9, 0.0))]
    # photo 0 has no partner, photo 2's own value is not finite: only photo 1 (2.0 - 0.5) counts.
    assert paired_differences(ours, theirs, "jump") == [1.5]
    shifted = [{**item, "jump": item["jump"] + 1.0} for item in theirs]
    assert paired_interval(shifted, theirs, "jump").excludes_zero()


def test_an_accuracy_is_the_hit_rate_with_an_interval_inside_0_and_1() -> None:
    hits = [{"nearest_action": float(i % 4 != 0)} for i in range(40)]  # 30 of 40
    interval = score_interval(hits, "nearest_action")
    assert interval.mean == 0.75 and 0.0 <= interval.low < 0.75 < interval.high <= 1.0
    assert math.isnan(score_interval([], "nearest_action").mean)
