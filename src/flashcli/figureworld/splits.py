"""Which actions the tiny base may see in pretraining, and which are kept for the benchmark."""

from __future__ import annotations

from flashcli.figureworld.actions import ACTIONS

# Held out: never in the pretraining corpus. A mix of large and delicate actions, so the benchmark
# asks for both new whole-body motion and new fine hand work.
HELDOUT_ACTIONS: tuple[str, ...] = (
    "jumping_jack",
    "bow",
    "lunge",
    "weld",
    "tighten_screw",
    "typing",
    "wave_wrist",
    "saw",
)
_missing = [name for name in HELDOUT_ACTIONS if name not in ACTIONS]
if _missing:
    raise RuntimeError(f"held-out actions missing from the library: {_missing}")
PRETRAIN_ACTIONS: tuple[str, ...] = tuple(name for name in ACTIONS if name not in HELDOUT_ACTIONS)
