"""`flash learn --preview-photo` and `flash animate --negative-prompt`: what the preview starts from and
what sampling steers away from. Declared here so that cli.py stays short."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PreviewPhotoOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Photo for the preview GIF (default: for a diffusers folder, the first clip's first frame "
        "mirrored; else a held-out FigureWorld figure).",
    ),
]
NegativePromptOption = Annotated[
    str | None,
    typer.Option(
        metavar="TEXT",
        help="What sampling steers away from, for text bases (default: the action's, else the base's list "
        "of video defects).",
    ),
]
