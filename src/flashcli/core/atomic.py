"""The one atomic writer: readers see the old file or the whole new one, never half of it.

Every output goes to a hidden temp file beside its target and replaces the target with one rename,
only after the writer reported success and the bytes reached the disk (fsync), so a full disk, a
failed encoder or a kill leaves the previous file as it was. Temp files are named
`.<target name>.<random>.flash-tmp<suffix>` and locked (flock) while their writer lives; one left
behind by a SIGKILL is swept by the next write into the same folder once it is unlocked and a few
minutes old. Failures are OSErrors naming the target, with the errno kept, so callers can tell a
full disk from a bug.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when a safetensors file is saved: `flash --help` stays fast
    import torch

TEMP_MARK = ".flash-tmp"
# Only names this writer makes are ever swept: '.' + target name + '.' + mkstemp's 8 characters + mark.
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_MARK) + r"(\.[^./]*)?", re.IGNORECASE)
# A temp younger than this may belong to a writer that has not locked it yet; never sweep it.
STALE_AFTER_SECONDS = 180.0
# Where locks are not supported, only temps this old count as abandoned.
UNLOCKABLE_STALE_SECONDS = 24 * 3600.0


class WriterFailed(OSError):
    """The program or library writing a temp file reported failure (an encoder's exit status)."""


def is_temp_name(name: str) -> bool:
    """True for the names `atomic_path` gives its temp files (and nothing a user would name)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive lock without waiting: True taken, False held by a live writer, None unsupported."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _is_abandoned(path: Path, now: float) -> bool:
    """A temp is abandoned when it is old enough and no writer holds its lock."""
    try:
        age = now - path.lstat().st_mtime
        if age < STALE_AFTER_SECONDS:
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        locked = _try_lock(fd)
    finally:
        os.close(fd)
    return locked is True or (locked is None and age > UNLOCKABLE_STALE_SECONDS)


def sweep_stale_temps(folder: Path) -> list[Path]:
    """Delete this writer's temp files in `folder` left by killed processes; returns what was removed.

    Best effort: a folder that cannot be listed, or a temp that cannot be removed, is left alone."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = [entry for entry in os.scandir(folder) if is_temp_name(entry.name)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        if entry.is_file(follow_symlinks=False) and _is_abandoned(path, now):
            with suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _public_mode() -> int:
    from flashcli.core.permissions import current_umask

    return 0o666 & ~current_umask()  # mkstemp makes 0600; outputs get normal permissions


def _naming(error: OSError, target: Path) -> OSError:
    """The same failure, naming the target the user asked for rather than our temp file."""
    # OSError(errno, ...) returns the errno's own subclass (PermissionError, ...).
    kind = WriterFailed if isinstance(error, WriterFailed) else OSError
    return kind(error.errno, error.strerror, str(target))


def _make_folder(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file sits where the folder should be
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of its folder", str(target)) from None
    except OSError as error:
        raise _naming(error, target) from None


def _commit(temp: Path, target: Path) -> None:
    """fsync the finished temp (a full disk or quota that the writer's close missed shows here) and
    rename it over the target."""
    with open(temp, "rb") as handle:  # the writer may have replaced the inode; sync what the name holds
        os.fsync(handle.fileno())
    os.chmod(temp, _public_mode())
    os.replace(temp, target)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target` (same suffix) to write; on success it replaces `target` whole.

    Raises OSError with the target as filename when the folder, the disk or the writer fails; the
    previous `target`, if any, is then untouched and the temp is removed."""
    target = Path(target)
    _make_folder(target.parent, target)
    sweep_stale_temps(target.parent)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f"{TEMP_MARK}{target.suffix}", dir=target.parent
        )
    except OSError as error:
        raise _naming(error, target) from None
    temp = Path(name)
    try:
        _try_lock(fd)  # held until we close: tells sweepers in other processes that we are alive
        yield temp
        _commit(temp, target)
    except OSError as error:
        # Name the target in failures about our temp (or about no file: a write() on a full disk);
        # a failure that names another file (a source being read) keeps its own name.
        if error.errno is None or error.filename not in (None, name, str(temp)):
            raise
        raise _naming(error, target) from None
    finally:
        os.close(fd)
        temp.unlink(missing_ok=True)


def save_safetensors_atomic(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> Path:
    """Save fp32 CPU copies of `tensors` with `metadata` through `atomic_path`."""
    import torch
    from safetensors.torch import save_file

    target = Path(path)
    cpu = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in tensors.items()}
    with atomic_path(target) as staging:
        save_file(cpu, str(staging), metadata=dict(metadata))
    return target
