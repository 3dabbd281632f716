"""Static backgrounds, drawn once per clip (with a margin so camera shake can crop into them)."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image

from flashcli.figureworld.appearance import Appearance


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid scaled up bilinearly."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def render_background(
    appearance: Appearance, height: int, width: int, margin: int, rng: np.random.Generator
) -> np.ndarray:
    """A float32 (height + 2 margin, width + 2 margin, 3) background in 0..255."""
    h, w = height + 2 * margin, width + 2 * margin
    hue, value = appearance.background_hue, appearance.background_value
    wall = _rgb(hue, 0.18, value)
    image = np.broadcast_to(wall, (h, w, 3)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ground = margin + appearance.ground_y * height

    kind = appearance.background
    if kind == "gradient":
        other = _rgb(hue + 0.08, 0.3, max(0.2, value - 0.35))
        t = (ys / h)[..., None]
        image = wall * (1.0 - t) + other * t + 0.0 * xs[..., None]
    elif kind == "shapes":
        for _ in range(int(rng.integers(3, 7))):
            colour = _rgb(rng.uniform(), rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.95))
            cx, cy = rng.uniform(0, w), rng.uniform(0, ground)
            size = rng.uniform(0.08, 0.25) * max(h, w)
            if rng.random() < 0.5:
                inside = (np.abs(xs - cx) < size * 0.6) & (np.abs(ys - cy) < size * 0.4)
            else:
                inside = (xs - cx) ** 2 + (ys - cy) ** 2 < (size * 0.5) ** 2
            image = np.where(inside[..., None], colour, image)
    elif kind == "noise":
        coarse = _smooth_noise(rng, h, w, 6)
        fine = rng.uniform(-1.0, 1.0, size=(h, w)).astype(np.float32)
        image = image * (1.0 + 0.18 * coarse + 0.05 * fine)[..., None]
    elif kind == "two_tone":
        floor = _rgb(hue + 0.5, 0.35, max(0.2, value - 0.3))
        image = np.where((ys >= ground - 0.12 * height)[..., None], floor, image)
    elif kind != "flat":
        raise ValueError(f"unknown background kind {kind!r}")

    image = np.array(image, dtype=np.float32)
    if appearance.floor_line:
        below = (ys >= ground)[..., None]
        image = np.where(below, image * 0.82, image)
        line = np.abs(ys - ground) < max(0.6, height / 160)
        image = np.where(line[..., None], image * 0.55, image)
    return np.clip(image, 0.0, 255.0).astype(np.float32)
