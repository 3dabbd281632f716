"""Means and paired differences with bootstrap 95 % intervals, for the quality benchmark's tables.

A benchmark video is one unit: (action, seed, photo). A row's score is the mean over its units; a
row's gain over a reference row (plain LoRA) is the mean of the per-unit differences over the units
both rows have (same action, training seed and photo), which cancels what the units share (a hard
action, an odd photo). Intervals resample the units with replacement (percentile bootstrap) from a
fixed seed, so a table is reproducible to the digit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
UNIT_KEYS = ("action", "seed", "photo")

Unit = tuple[object, ...]


@dataclass(frozen=True)
class Interval:
    """A mean over `count` units and its bootstrap interval (nan everywhere when no unit counted)."""

    mean: float
    low: float
    high: float
    count: int

    @property
    def width(self) -> float:
        return self.high - self.low

    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0: a difference the data can tell."""
        return self.count > 0 and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, float | int | None]:
        """For JSON: nan becomes None."""
        return {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in (("mean", self.mean), ("low", self.low), ("high", self.high))
        } | {"count": self.count}


def bootstrap_mean(
    values: Iterable[float], *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> Interval:
    """The mean of the finite values and its percentile-bootstrap interval.

    Non-finite values (a still video's jump) are left out, as the row means leave them out."""
    sample = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if sample.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, sample.size, size=(resamples, sample.size))
    means = sample[picks].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    # A constant sample has a zero-width interval exactly (quantiles of equal floats can differ by 1 ulp).
    if np.all(sample == sample[0]):
        low = high = sample[0]
    return Interval(float(sample.mean()), float(low), float(high), int(sample.size))


def unit_of(item: Mapping[str, object], keys: Sequence[str] = UNIT_KEYS) -> Unit:
    """The unit a per-video score belongs to."""
    return tuple(item[key] for key in keys)


def paired_differences(
    rows: Sequence[Mapping[str, object]],
    reference: Sequence[Mapping[str, object]],
    score: str,
    keys: Sequence[str] = UNIT_KEYS,
) -> list[float]:
    """`score` of each unit in `rows` minus the same unit's in `reference`, over the units both have
    with a finite score, in `rows`' order."""
    theirs = {unit_of(item, keys): float(item[score]) for item in reference}  # type: ignore[arg-type]
    differences = []
    for item in rows:
        ours, other = float(item[score]), theirs.get(unit_of(item, keys), math.nan)  # type: ignore[arg-type]
        if math.isfinite(ours) and math.isfinite(other):
            differences.append(ours - other)
    return differences


def paired_interval(
    rows: Sequence[Mapping[str, object]],
    reference: Sequence[Mapping[str, object]],
    score: str,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean paired difference (row - reference) of `score` and its bootstrap interval."""
    return bootstrap_mean(paired_differences(rows, reference, score), resamples=resamples, seed=seed)


def score_interval(
    rows: Sequence[Mapping[str, object]], score: str, *, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """A row's mean `score` over its units and the mean's bootstrap interval; for a 0/1 score (a
    nearest-action hit) this is the accuracy and its interval."""
    return bootstrap_mean(
        (float(item[score]) for item in rows),  # type: ignore[arg-type]
        resamples=resamples,
        seed=seed,
    )
