"""Which actions the tiny base may see in pretraining, and which are kept for the benchmark."""

from __future__ import annotations

from flashcli.figureworld.actions import ACTIONS

# Held out: never in the pretraining corpus. A mix of large and delicate actions, so the benchmark
# asks for both new whole-body motion and new fine hand work.
_HELDOUT_WANTED: tuple[str, ...] = (
    "jumping_jack",
    "bow",
    "lunge",
    "weld",
    "tighten_screw",
    "typing",
    "wave_wrist",
    "saw",
)
HELDOUT_ACTIONS: tuple[str, ...] = tuple(name for name in _HELDOUT_WANTED if name in ACTIONS)
PRETRAIN_ACTIONS: tuple[str, ...] = tuple(name for name in ACTIONS if name not in HELDOUT_ACTIONS)
