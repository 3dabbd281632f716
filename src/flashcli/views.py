"""Pictures of an action for people who would rather look than read: loss sparklines and plots,
and contact sheets of a preview. PIL only (no matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flashcli.video import atomic_path

_SPARK = "▁▂▃▄▅▆▇█"
_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


def _bucket_means(values: list[float], width: int) -> list[float]:
    """Average `values` into at most `width` buckets (keeps the curve's shape on any length)."""
    if len(values) <= width:
        return list(values)
    edges = np.linspace(0, len(values), width + 1).astype(int)
    return [float(np.mean(values[start:end])) for start, end in zip(edges[:-1], edges[1:], strict=True)]


def sparkline(values: list[float], width: int = 40) -> str:
    """A one-line unicode curve of `values` (finite ones), low = ▁, high = █."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return ""
    points = _bucket_means(finite, width)
    low, high = min(points), max(points)
    span = high - low or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, int((point - low) / span * len(_SPARK)))] for point in points)


def loss_series(losses: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-term loss curves from the per-step loss dicts the trainer returns."""
    names: list[str] = []
    for step in losses:
        names.extend(name for name in step if name not in names)
    return {name: [float(step.get(name, math.nan)) for step in losses] for name in names}


def write_loss_plot(path: Path, losses: list[dict[str, float]], title: str) -> Path:
    """A PNG with one line per loss term against training step, with axes and a legend."""
    series = loss_series(losses)
    if not series:
        raise ValueError("no losses to plot")
    width, height, margin = 720, 400, 56
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [value for curve in series.values() for value in curve if math.isfinite(value)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    high = high if high > low else low + 1.0
    steps = max(len(curve) for curve in series.values())
    left, top, right, bottom = margin, 30, width - 20, height - margin
    draw.rectangle((left, top, right, bottom), outline="black")
    draw.text((left, 8), title, fill="black", font=font)
    for fraction in (0.0, 0.5, 1.0):
        y = bottom - fraction * (bottom - top)
        draw.text((4, y - 6), f"{low + fraction * (high - low):.3g}", fill="black", font=font)
        draw.line((left - 4, y, left, y), fill="black")
    draw.text((left, bottom + 8), "step 1", fill="black", font=font)
    draw.text((right - 60, bottom + 8), f"step {steps}", fill="black", font=font)

    def to_xy(index: int, value: float) -> tuple[float, float]:
        x = left + (index / max(steps - 1, 1)) * (right - left)
        return x, bottom - (value - low) / (high - low) * (bottom - top)

    for number, (name, curve) in enumerate(series.items()):
        colour = _COLOURS[number % len(_COLOURS)]
        points = [to_xy(index, value) for index, value in enumerate(curve) if math.isfinite(value)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        legend_y = top + 6 + 14 * number
        draw.line((right - 160, legend_y + 6, right - 145, legend_y + 6), fill=colour, width=3)
        draw.text((right - 140, legend_y), name, fill=colour, font=font)
    with atomic_path(path) as temp:
        image.save(temp, format="PNG")
    return path


def write_contact_sheet(path: Path, frames: np.ndarray, columns: int = 6) -> Path:
    """Tile the frames of a video in a grid, each labelled with its frame number."""
    count, height, width = frames.shape[:3]
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    label = 12
    sheet = Image.new("RGB", (columns * width, rows * (height + label)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        x, y = column * width, row * (height + label)
        sheet.paste(Image.fromarray(frame), (x, y + label))
        draw.text((x + 2, y), f"{index}", fill="black", font=font)
    with atomic_path(path) as temp:
        sheet.save(temp, format="PNG")
    return path
