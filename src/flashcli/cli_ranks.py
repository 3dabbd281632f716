"""What the processes of `accelerate launch -m flashcli ...` print: rank 0 prints results and progress as
a single process would; every other rank prints only its error sentences, marked with its rank, so that
a failure of its own (its GPU out of memory) is not lost and a success prints nothing twice."""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO

_ERROR_STARTS = ("error:", "internal error:")


class _ErrorsOnly(io.TextIOBase):
    """A text stream that passes on whole lines that are error sentences, each with a prefix."""

    def __init__(self, target: TextIO, prefix: str) -> None:
        self._target, self._prefix, self._pending = target, prefix, ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.startswith(_ERROR_STARTS):
                self._target.write(f"{self._prefix}{line}\n")
                self._target.flush()
        return len(text)

    def isatty(self) -> bool:
        return False


def quiet_other_ranks() -> None:
    """On a rank other than 0 (RANK, set by the launcher), drop stdout and all of stderr but errors."""
    rank = os.environ.get("RANK", "0")
    if rank == "0":
        return
    sys.stdout = open(os.devnull, "w")  # open for the process's whole life
    sys.stderr = _ErrorsOnly(sys.stderr, f"rank {rank}: ")
