"""How a figure and its scene look, sampled from a 'seen' or an 'unseen' range.

The tiny base is pretrained on the seen ranges only; the benchmark tests on the unseen ranges, so a
model that animates an unseen-looking figure well has generalised rather than remembered. Every
split parameter has disjoint seen/unseen ranges (checked by the tests); the rest (pose framing,
hair, trousers, shoes) is shared by both.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np

AppearanceSplit = Literal["seen", "unseen"]
# "standard": textured clothes, busy backgrounds, figures 62-80% of the frame height. "simple": flat
# colours on a flat wall and figures that fill 74-86% of the frame, so a small model's capacity goes to
# motion (the first rung of the tiny base's ladder). Both keep the seen/unseen split of colour and build.
World = Literal["standard", "simple"]
WORLDS: tuple[str, ...] = ("standard", "simple")

# Continuous split parameters: name -> {split: tuple of half-open intervals [lo, hi)}.
CONTINUOUS_SPLITS: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {
    # hue of the top (shirt): unseen are the blues and violets
    "top_hue": {"seen": ((0.0, 0.5), (0.86, 1.0)), "unseen": ((0.55, 0.81),)},
    # 0 = lightest to 1 = darkest skin; unseen is a band in the middle of the range
    "skin_tone": {"seen": ((0.0, 0.38), (0.72, 1.0)), "unseen": ((0.42, 0.68),)},
    # girth of the body relative to average: unseen figures are heavier than any seen one
    "build": {"seen": ((0.82, 1.14),), "unseen": ((1.2, 1.42),)},
}
# Categorical split parameters: name -> {split: allowed values}.
CATEGORICAL_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "top_pattern": {"seen": ("solid", "stripes", "noise"), "unseen": ("checks", "patch")},
    "background": {"seen": ("flat", "gradient", "shapes"), "unseen": ("noise", "two_tone")},
}

HAIR_STYLES = ("short", "long", "bald")
SKIN_PALETTE = np.array(
    [[255, 224, 196], [241, 194, 158], [224, 172, 125], [198, 134, 90], [141, 85, 54], [92, 56, 38]],
    dtype=np.float64,
)
HAIR_PALETTE = np.array(
    [[30, 24, 20], [70, 45, 28], [120, 80, 40], [200, 160, 90], [150, 60, 30], [130, 130, 130]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Appearance:
    """Everything about how one clip looks (JSON-serialisable through as_dict)."""

    split: AppearanceSplit
    skin_tone: float
    hair_style: str
    hair_index: int
    top_hue: float
    top_saturation: float
    top_value: float
    top_pattern: str
    top_second_hue: float
    long_sleeves: bool
    bottom_hue: float
    bottom_value: float
    shorts: bool
    shoe_value: float
    build: float
    leg_ratio: float
    head_ratio: float
    shoulder_ratio: float
    background: str
    background_hue: float
    background_value: float
    floor_line: bool
    height_fraction: float  # figure height / frame height
    centre_x: float  # pelvis x / frame width
    ground_y: float  # floor y / frame height
    view_yaw: float  # radians, camera turned around the figure
    pattern_period: float  # texture period in body heights

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def skin_rgb(self) -> tuple[float, float, float]:
        return _palette(SKIN_PALETTE, self.skin_tone)

    def hair_rgb(self) -> tuple[float, float, float]:
        r, g, b = HAIR_PALETTE[self.hair_index % len(HAIR_PALETTE)]
        return (float(r), float(g), float(b))

    def top_rgb(self) -> tuple[float, float, float]:
        return _hsv(self.top_hue, self.top_saturation, self.top_value)

    def top_second_rgb(self) -> tuple[float, float, float]:
        return _hsv(self.top_second_hue, 0.25, min(0.97, 1.25 - self.top_value))

    def bottom_rgb(self) -> tuple[float, float, float]:
        return _hsv(self.bottom_hue, 0.35, self.bottom_value)

    def shoe_rgb(self) -> tuple[float, float, float]:
        return _hsv(0.08, 0.3, self.shoe_value)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (r * 255.0, g * 255.0, b * 255.0)


def _palette(palette: np.ndarray, position: float) -> tuple[float, float, float]:
    scaled = float(np.clip(position, 0.0, 1.0)) * (len(palette) - 1)
    i = min(int(scaled), len(palette) - 2)
    frac = scaled - i
    r, g, b = palette[i] * (1.0 - frac) + palette[i + 1] * frac
    return (float(r), float(g), float(b))


def _uniform_in(rng: np.random.Generator, intervals: tuple[tuple[float, float], ...]) -> float:
    """Uniform over a union of intervals (weighted by their lengths)."""
    lengths = np.array([hi - lo for lo, hi in intervals])
    k = int(rng.choice(len(intervals), p=lengths / lengths.sum()))
    lo, hi = intervals[k]
    return float(rng.uniform(lo, hi))


def in_split(name: str, value: object, split: AppearanceSplit) -> bool:
    """Whether a parameter value lies in the given split's range."""
    if name in CONTINUOUS_SPLITS:
        return any(lo <= float(value) < hi for lo, hi in CONTINUOUS_SPLITS[name][split])  # type: ignore[arg-type]
    if name in CATEGORICAL_SPLITS:
        return value in CATEGORICAL_SPLITS[name][split]
    raise KeyError(f"{name!r} is not a split appearance parameter")


def sample_appearance(
    rng: np.random.Generator, split: AppearanceSplit, world: World = "standard"
) -> Appearance:
    if split not in ("seen", "unseen"):
        raise ValueError(f"appearance must be 'seen' or 'unseen', not {split!r}")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}, not {world!r}")
    look = _sample_standard(rng, split)
    return look if world == "standard" else _simplified(look, rng)


def _simplified(look: Appearance, rng: np.random.Generator) -> Appearance:
    """The simple world's version of a look: the same person and colours, flat clothes on a flat wall,
    framed large and nearly frontal. Drawn after the standard look, so standard clips stay as they were."""
    return replace(
        look,
        top_pattern="solid",
        background="flat",
        floor_line=False,
        height_fraction=float(rng.uniform(0.74, 0.86)),
        centre_x=float(rng.uniform(0.45, 0.55)),
        ground_y=float(rng.uniform(0.95, 0.985)),
        view_yaw=float(rng.uniform(-0.35, 0.35)),
    )


def _sample_standard(rng: np.random.Generator, split: AppearanceSplit) -> Appearance:
    top_hue = _uniform_in(rng, CONTINUOUS_SPLITS["top_hue"][split])
    top_value = float(rng.uniform(0.35, 0.9))
    return Appearance(
        split=split,
        skin_tone=_uniform_in(rng, CONTINUOUS_SPLITS["skin_tone"][split]),
        hair_style=str(rng.choice(HAIR_STYLES, p=[0.55, 0.35, 0.1])),
        hair_index=int(rng.integers(len(HAIR_PALETTE))),
        top_hue=top_hue,
        top_saturation=float(rng.uniform(0.45, 0.85)),
        top_value=top_value,
        top_pattern=str(rng.choice(CATEGORICAL_SPLITS["top_pattern"][split])),
        top_second_hue=float((top_hue + rng.uniform(0.3, 0.7)) % 1.0),
        long_sleeves=bool(rng.random() < 0.5),
        bottom_hue=float(rng.uniform(0.0, 1.0)),
        bottom_value=float(rng.uniform(0.15, 0.6)),
        shorts=bool(rng.random() < 0.25),
        shoe_value=float(rng.uniform(0.08, 0.5)),
        build=_uniform_in(rng, CONTINUOUS_SPLITS["build"][split]),
        leg_ratio=float(rng.uniform(0.92, 1.08)),
        head_ratio=float(rng.uniform(0.9, 1.12)),
        shoulder_ratio=float(rng.uniform(0.9, 1.12)),
        background=str(rng.choice(CATEGORICAL_SPLITS["background"][split])),
        background_hue=float(rng.uniform(0.0, 1.0)),
        background_value=float(rng.uniform(0.45, 0.95)),
        floor_line=bool(rng.random() < 0.6),
        height_fraction=float(rng.uniform(0.62, 0.8)),
        centre_x=float(rng.uniform(0.4, 0.6)),
        ground_y=float(rng.uniform(0.88, 0.96)),
        view_yaw=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.85)),
        pattern_period=float(rng.uniform(0.03, 0.06)),
    )
