"""Errors that end a command with one clear sentence and exit code 2: a user mistake, or an environment
that refused what the command needed (a full disk, a read-only or unreadable path)."""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix: bad input, unknown action, a file that is not what it claims.

    The message is one sentence naming the thing and what to do; the CLI prints it without a
    traceback and exits with code 2.
    """


EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2


# What the environment refused, as the end of a sentence that starts with the path; the fix follows.
_ENVIRONMENT_PROBLEMS: dict[int, str] = {
    errno.ENOSPC: "cannot be written: the disk is full; free some space and run again",
    errno.EDQUOT: "cannot be written: the disk quota is used up; free some space and run again",
    errno.EFBIG: "cannot be written: the file system refuses a file that large; write it to another disk",
    errno.EROFS: "is on a read-only file system; choose a writable folder",
    errno.EACCES: "cannot be used: permission denied; check its permissions or choose another path",
    errno.EPERM: "cannot be used: operation not permitted; check its permissions or choose another path",
    errno.ENOTDIR: "goes through a file where a folder should be; check the path",
    errno.EISDIR: "is a folder where a file is expected; check the path",
    errno.ENAMETOOLONG: "is too long a name for the file system; use a shorter one",
    errno.EIO: "cannot be read or written: the device reported an I/O error; check the disk",
}
# Libraries written in Rust (safetensors) report an OS error only in their message.
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _errno_of(error: BaseException) -> tuple[int, str | None] | None:
    """The environment errno behind `error` (or behind what it was raised from), with its path."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _ENVIRONMENT_PROBLEMS:
            path = current.filename2 if current.filename is None else current.filename
            return current.errno, None if path is None else os.fsdecode(path)
        found = _RUST_OS_ERROR.search(str(current))
        if found and int(found.group(1)) in _ENVIRONMENT_PROBLEMS:
            return int(found.group(1)), None
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


def environment_problem(error: BaseException, fallback: Path | None) -> str | None:
    """One sentence for an error the environment caused (a full disk, a read-only or unreadable path,
    a path through a file), naming the path; None when `error` is not one (then it is a bug).

    `fallback` is named when the error does not say which file it was (a write's ENOSPC rarely does)."""
    found = _errno_of(error)
    if found is None:
        return None
    number, path = found
    where = f"'{path}'" if path is not None else (f"'{fallback}'" if fallback is not None else "The output")
    return f"{where} {_ENVIRONMENT_PROBLEMS[number]}."


def out_of_memory(error: BaseException, command: str, fitting: str | None = None) -> str | None:
    """One sentence naming what to change when the GPU ran out of memory (torch.OutOfMemoryError: the
    settings asked for more than the device has, which is the user's to change, not a bug); else None.

    `fitting`: the smaller settings the memory plan says fit this GPU ('--frames 77 (at 832x480) or ...'),
    named instead of the generic list when the preflight could compute them."""
    torch = sys.modules.get("torch")  # loaded whenever a model ran; never imported here for the check
    if torch is None or not isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return None
    if fitting:
        return (
            f"The GPU ran out of memory during `flash {command}`; nothing was saved. "
            f"Its memory plan says {fitting} fits this GPU; run again with that."
        )
    change = "a smaller --size, fewer --frames or --preset low-vram"
    if command == "learn":
        change = "a smaller --size, fewer --frames, --preset low-vram or --gradient-checkpointing"
    return f"The GPU ran out of memory during `flash {command}`; nothing was saved. Try {change}."
