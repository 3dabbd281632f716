"""The action library: every action by name."""

from __future__ import annotations

from flashcli.figureworld.actions.base import ActionDef, Variation
from flashcli.figureworld.actions.delicate import DELICATE_ACTIONS
from flashcli.figureworld.actions.large import LARGE_ACTIONS

ACTIONS: dict[str, ActionDef] = {a.name: a for a in LARGE_ACTIONS + DELICATE_ACTIONS}

__all__ = ["ACTIONS", "ActionDef", "Variation"]
