"""FigureWorld: procedural clips of articulated people doing actions, with exact ground truth.

No torch here: numpy, pillow and imageio only. See docs/figureworld.md.
"""

from __future__ import annotations

from flashcli.figureworld.actions import ACTIONS, ActionDef
from flashcli.figureworld.appearance import CATEGORICAL_SPLITS, CONTINUOUS_SPLITS, in_split
from flashcli.figureworld.files import write_clip
from flashcli.figureworld.render import GENERATOR_VERSION, Clip, render_clip
from flashcli.figureworld.skeleton import JOINT_NAMES
from flashcli.figureworld.splits import HELDOUT_ACTIONS, PRETRAIN_ACTIONS

__all__ = [
    "ACTIONS",
    "CATEGORICAL_SPLITS",
    "CONTINUOUS_SPLITS",
    "GENERATOR_VERSION",
    "HELDOUT_ACTIONS",
    "JOINT_NAMES",
    "PRETRAIN_ACTIONS",
    "ActionDef",
    "Clip",
    "in_split",
    "render_clip",
    "write_clip",
]
