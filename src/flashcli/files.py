"""Files: the one atomic writer, staging folders, and the permissions of what flash writes.

Readers see the old file (or folder) or the whole new one, never half of it. A file goes to a hidden
temp beside its target and replaces the target with one rename, only after the writer reported
success and the bytes reached the disk (fsync), so a full disk, a failed encoder or a kill leaves the
previous file as it was. A folder is filled in a hidden staging folder beside its target and swapped
in the same way; a failed swap puts the old folder back.

Temps are named `.<target name>.<random>.flash-tmp<suffix>` and locked (flock) while their writer
lives; one left behind by a SIGKILL is swept by the next write into the same folder once it is
unlocked and a few minutes old. Failures are OSErrors naming the target, with the errno kept, so
callers can tell a full disk from a bug.

`tempfile.mkstemp`/`mkdtemp` make private (0600/0700) entries; what flash saves gets the permissions
any other file the user creates would get (0666/0777 minus the umask), so that a base installed for
several users stays readable by them.

The bottom of the floor plan: no other flashcli module but `flashcli.errors`, and no torch (the
procedural generator writes through it and knows no model).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from flashcli.errors import UserError

TEMP_MARK = ".flash-tmp"
# Only names this writer makes are ever swept: '.' + target name + '.' + mkstemp's 8 characters + mark.
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_MARK) + r"(\.[^./]*)?", re.IGNORECASE)
# A temp younger than this may belong to a writer that has not locked it yet; never sweep it.
STALE_AFTER_SECONDS = 180.0
# Where locks are not supported, only temps this old count as abandoned.
UNLOCKABLE_STALE_SECONDS = 24 * 3600.0

# Turns a refused write into the sentence the user reads (None: not the environment, a bug).
Explain = Callable[[Path, OSError], str | None]


class WriterFailed(OSError):
    """The program or library writing a temp file reported failure (an encoder's exit status)."""


# -- permissions ----------------------------------------------------------------------------------


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(*, folder: bool) -> int:
    """The mode the umask gives a new file (0666 minus it) or folder (0777 minus it)."""
    return (0o777 if folder else 0o666) & ~current_umask()


def make_public(path: str | Path) -> None:
    """Give `path` (and, for a folder, everything under it) the permissions the umask allows."""
    root = Path(path)
    folder_mode, file_mode = public_mode(folder=True), public_mode(folder=False)
    entries = [root, *root.rglob("*")] if root.is_dir() else [root]
    for entry in entries:
        os.chmod(entry, folder_mode if entry.is_dir() else file_mode)


# -- temps left by killed writers -----------------------------------------------------------------


def is_temp_name(name: str) -> bool:
    """True for the names this module gives its temp files and folders (and nothing a user would name)."""
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
    """Delete this module's temp files and staging folders in `folder` left by killed processes;
    returns what was removed.

    Best effort: a folder that cannot be listed, or a temp that cannot be removed, is left alone."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = [entry for entry in os.scandir(folder) if is_temp_name(entry.name)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink() or not _is_abandoned(path, now):
            continue
        with suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


# -- one file -------------------------------------------------------------------------------------


def _naming(error: OSError, target: Path) -> OSError:
    """The same failure, naming the target the user asked for rather than our temp."""
    # OSError(errno, ...) returns the errno's own subclass (PermissionError, ...).
    kind = WriterFailed if isinstance(error, WriterFailed) else OSError
    return kind(error.errno, error.strerror, str(target))


def _names_ours(error: OSError, temp: Path) -> bool:
    """True when `error` is about `temp` (or anything under it) or names no file (a write() on a full
    disk); a failure that names another file (a source being read) keeps its own name."""
    if error.errno is None:
        return False
    if error.filename is None:
        return True
    name = os.fsdecode(error.filename)
    return name == str(temp) or name.startswith(str(temp) + os.sep)


def _make_folder(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file sits where the folder should be
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of its folder", str(target)) from None
    except OSError as error:
        raise _naming(error, target) from None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:  # the writer may have replaced the inode; sync what the name holds
        os.fsync(handle.fileno())


def _commit_file(temp: Path, target: Path) -> None:
    """fsync the finished temp (a full disk or quota that the writer's close missed shows here) and
    rename it over the target."""
    _fsync_file(temp)
    os.chmod(temp, public_mode(folder=False))
    os.replace(temp, target)


@contextmanager
def _explained(target: Path, explain: Explain | None) -> Iterator[None]:
    """With `explain`, a refused write becomes a UserError carrying its sentence (exit 2)."""
    try:
        yield
    except OSError as error:
        sentence = None if explain is None else explain(target, error)
        if sentence is None:
            raise
        raise UserError(sentence) from None


@contextmanager
def _temp_file(target: Path) -> Iterator[Path]:
    _make_folder(target.parent, target)
    sweep_stale_temps(target.parent)
    try:  # through the module attribute: tests make the file system refuse it there
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f"{TEMP_MARK}{target.suffix}", dir=target.parent
        )
    except OSError as error:
        raise _naming(error, target) from None
    temp = Path(name)
    try:
        _try_lock(fd)  # held until we close: tells sweepers in other processes that we are alive
        yield temp
        _commit_file(temp, target)
    except OSError as error:
        if not _names_ours(error, temp):
            raise
        raise _naming(error, target) from None
    finally:
        os.close(fd)
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: str | Path, *, explain: Explain | None = None) -> Iterator[Path]:
    """Yield a temp path beside `target` (same suffix) to write; on success it replaces `target` whole.

    Raises OSError with the target as filename when the folder, the disk or the writer fails (or,
    with `explain`, a UserError with its sentence); the previous `target`, if any, is then untouched
    and the temp is removed."""
    target = Path(target)
    with _explained(target, explain), _temp_file(target) as temp:
        yield temp


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` through `atomic_path`."""
    target = Path(path)
    with atomic_path(target) as temp:
        temp.write_text(text, encoding="utf-8")
    return target


def write_json_atomic(
    path: str | Path, data: Any, *, indent: int | None = None, sort_keys: bool = False
) -> Path:
    """Write `data` as JSON (one trailing newline) to `path` through `atomic_path`."""
    return write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


# -- one folder -----------------------------------------------------------------------------------


def staging_folder(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A new, uniquely named folder in `parent` with the permissions the umask allows (mkdtemp's are
    private), to be filled and then swapped in with `replace_folder`."""
    path = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    try:
        os.chmod(path, public_mode(folder=True))
    except BaseException:
        path.rmdir()
        raise
    return path


def _trash(parent: Path, prefix: str | None, name: str) -> Path:
    """A new private folder in `parent` to move a folder being retired into (one rename)."""
    chosen = prefix if prefix is not None else f".{name}."
    return Path(tempfile.mkdtemp(prefix=chosen, suffix="" if prefix is not None else TEMP_MARK, dir=parent))


def replace_folder(staged: Path, target: Path, *, trash_prefix: str | None = None) -> None:
    """Make the finished folder `staged` (beside `target`) the `target`, replacing any old one.

    The old folder is moved into a trash folder first and put back when the swap fails, so `target`
    is the old folder or the new one whatever happens short of a kill between two renames. The trash
    is named `<trash_prefix>...` (default: a temp name that `sweep_stale_temps` removes if left)."""
    if not target.exists():
        os.replace(staged, target)
        return
    trash = _trash(target.parent, trash_prefix, target.name)
    retired = trash / "old"
    os.replace(target, retired)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(retired, target)
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def discard_folder(folder: Path, *, trash_prefix: str | None = None) -> None:
    """Remove `folder` at once for its readers (one rename into a trash folder), then delete it."""
    trash = _trash(folder.parent, trash_prefix, folder.name)
    os.replace(folder, trash / "old")
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def _held(folder: Path) -> Iterator[None]:
    """Hold a lock on `folder` while the block runs: tells sweepers in other processes we are alive."""
    fd: int | None = None
    with suppress(OSError):  # a platform that cannot open folders: unlocked, so never swept as abandoned
        fd = os.open(folder, os.O_RDONLY)
    try:
        if fd is not None:
            _try_lock(fd)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for entry in folder.rglob("*"):
        if entry.is_file() and not entry.is_symlink():
            _fsync_file(entry)


@contextmanager
def atomic_folder(target: str | Path, *, explain: Explain | None = None) -> Iterator[Path]:
    """Yield a staging folder beside `target` to fill; on success it replaces `target` whole.

    What the writer put there gets the umask's permissions and reaches the disk before the swap. On
    any failure the staging folder is removed and the old `target`, if any, is kept; OSErrors about
    the staging folder name `target` (with `explain`, they become a UserError with its sentence)."""
    target = Path(target)
    with _explained(target, explain):
        _make_folder(target.parent, target)
        sweep_stale_temps(target.parent)
        try:
            staging = staging_folder(target.parent, prefix=f".{target.name}.", suffix=TEMP_MARK)
        except OSError as error:
            raise _naming(error, target) from None
        try:
            with _held(staging):
                yield staging
                make_public(staging)
                _fsync_tree(staging)
                replace_folder(staging, target)
        except OSError as error:
            if not _names_ours(error, staging):
                raise
            raise _naming(error, target) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it became the target
