"""Contact sheets: rows of videos drawn as one picture, a few evenly spaced frames across."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SHEET_COLUMNS = 9


def contact_sheet(rows: list[np.ndarray], path: Path, scale: int = 2) -> Path:
    """Rows of uint8 (F, H, W, 3) videos -> one PNG, SHEET_COLUMNS evenly spaced frames per row."""
    lines = []
    for video in rows:
        picks = np.linspace(0, len(video) - 1, min(SHEET_COLUMNS, len(video))).round().astype(int)
        lines.append(np.concatenate([video[i] for i in picks], axis=1))
    sheet = np.concatenate(lines, axis=0)
    image = Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
