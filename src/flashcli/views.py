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


def smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average over `window` steps (shrinking at the ends), NaN where a value is NaN:
    the trend of a noisy per-step loss."""
    data = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(data)
    if window <= 1 or not finite.any():
        return list(data)
    kernel = np.ones(window)
    sums = np.convolve(np.where(finite, data, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return list(np.where(finite, sums / counts, np.nan))


def _pale(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """The colour blended towards white: raw per-step curves sit behind their smoothed trend."""
    return tuple(int(channel + 0.7 * (255 - channel)) for channel in colour)  # type: ignore[return-value]


def write_loss_plot(path: Path, losses: list[dict[str, float]], title: str) -> Path:
    """A PNG with each loss term against training step: the raw per-step curve pale, a smoothed curve
    over it, axes, and a legend beside (not over) the data."""
    series = loss_series(losses)
    if not series:
        raise ValueError("no losses to plot")
    font = ImageFont.load_default()
    steps = max(len(curve) for curve in series.values())
    window = max(1, steps // 20) | 1  # odd, about 5% of the run
    notes = ("pale: per step", f"bold: mean of {window} steps")
    legend_width = 20 + max(int(font.getlength(text)) for text in (*notes, *series))  # swatch + text
    plot_width, height, margin = 660, 400, 56
    width = plot_width + legend_width + 20
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    values = [value for curve in series.values() for value in curve if math.isfinite(value)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    high = high if high > low else low + 1.0
    left, top, right, bottom = margin, 30, plot_width - 10, height - margin
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

    def points(curve: list[float]) -> list[tuple[float, float]]:
        return [to_xy(index, value) for index, value in enumerate(curve) if math.isfinite(value)]

    curves = list(series.items())
    for number, (_, curve) in enumerate(curves):  # every raw curve first, so none hides a trend
        raw = points(curve)
        if len(raw) > 1:
            draw.line(raw, fill=_pale(_COLOURS[number % len(_COLOURS)]), width=1)
    for number, (name, curve) in enumerate(curves):
        colour = _COLOURS[number % len(_COLOURS)]
        trend = points(smooth(curve, window))
        if len(trend) > 1:
            draw.line(trend, fill=colour, width=2)
        legend_x, legend_y = plot_width + 10, top + 6 + 16 * number
        draw.line((legend_x, legend_y + 6, legend_x + 15, legend_y + 6), fill=colour, width=3)
        draw.text((legend_x + 20, legend_y), name, fill=colour, font=font)
    for number, text in enumerate(notes):
        draw.text((plot_width + 10, top + 12 + 16 * len(curves) + 14 * number), text, fill="gray", font=font)
    draw.rectangle((left, top, right, bottom), outline="black")  # last, so no curve hides the axes
    with atomic_path(path) as temp:
        image.save(temp, format="PNG")
    return path


# Contact-sheet tiles are enlarged (whole pixels, no blur) to at least this many pixels a side.
READABLE_TILE = 192


def write_contact_sheet(path: Path, frames: np.ndarray, columns: int = 6) -> Path:
    """Tile the frames of a video in a grid, each labelled with its frame number; small frames are
    enlarged pixel for pixel (nearest neighbour) so that a 64 px preview can be looked at."""
    count, height, width = frames.shape[:3]
    scale = max(1, math.ceil(READABLE_TILE / max(height, width)))
    height, width = height * scale, width * scale
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    label, gap = 14, 4
    sheet = Image.new("RGB", (columns * (width + gap) - gap, rows * (height + label)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        x, y = column * (width + gap), row * (height + label)
        tile = Image.fromarray(frame).resize((width, height), Image.Resampling.NEAREST)
        sheet.paste(tile, (x, y + label))
        draw.text((x + 2, y), f"{index}", fill="black", font=font)
    with atomic_path(path) as temp:
        sheet.save(temp, format="PNG")
    return path
