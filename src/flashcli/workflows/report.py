"""How a workflow tells its caller what is happening, without knowing the terminal.

The CLI passes a Reporter that draws progress bars and tables on stderr; bench and scripts pass
`QUIET` (or their own). A workflow never prints.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flashcli.core.progress import TrainProgress
    from flashcli.preflight import Preflight


class Steps(Protocol):
    """Where one phase's steps are reported: training (with its loss terms) or sampling."""

    def train_step(self, report: TrainProgress) -> None: ...

    def sample_step(self, step: int, total: int) -> None: ...


class Reporter(Protocol):
    def steps(self, title: str, total: int) -> AbstractContextManager[Steps]:
        """A phase of `total` steps called `title` ('learn', 'preview', 'animate photo.png')."""
        ...

    def clips(self, report: Preflight, frames: int, size: tuple[int, int], crop: str) -> None:
        """The clips as they will be used, with the warnings about them, before training starts."""
        ...

    def note(self, message: str) -> None:
        """One sentence the user should read (not an error)."""
        ...

    def saved(self, what: str) -> None:
        """`what` ("action 'weld' (/path)") is now saved for good, whatever happens next."""
        ...


class _NoSteps:
    def train_step(self, report: TrainProgress) -> None:
        pass

    def sample_step(self, step: int, total: int) -> None:
        pass


class Quiet:
    """A Reporter that shows nothing: for bench, scripts and tests."""

    def steps(self, title: str, total: int) -> AbstractContextManager[Steps]:
        return contextlib.nullcontext(_NoSteps())

    def clips(self, report: Preflight, frames: int, size: tuple[int, int], crop: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def saved(self, what: str) -> None:
        pass


QUIET = Quiet()
