"""The action library: one folder per action, written atomically, guarded by file locks.

Layout of the library root (platform user data dir, or FLASH_HOME, or --library):

    <root>/<action>/adapter.safetensors   LoRA weights with a metadata header (written by the core)
    <root>/<action>/action.json           the manifest below
    <root>/<action>/preview.gif           the action animated from a held-out still
    <root>/<action>/ded.safetensors       only with `learn --ded-steps N`: the fine-tuned DED's weights
    <root>/.staging-*/                    actions being written (invisible until renamed into place)
    <root>/.checkpoints/<action>/         training checkpoints for `flash learn --resume`
    <root>/.locks/                        file locks

An action appears only through `os.replace` of a finished staging folder, so a killed `learn`
never leaves a half-written action; its staging folder is swept by the next writer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock
import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flashcli.core.permissions import current_umask
from flashcli.errors import UserError
from flashcli.video import content_hash

MANIFEST_FILE = "action.json"
ADAPTER_FILE = "adapter.safetensors"
PREVIEW_FILE = "preview.gif"
DED_FILE = "ded.safetensors"
ACTION_FILES = (MANIFEST_FILE, ADAPTER_FILE, PREVIEW_FILE, DED_FILE)
MANIFEST_VERSION = 1
EXPORT_SUFFIX = ".flash"
_STAGING_PREFIX = ".staging-"
_TRASH_PREFIX = ".trash-"
_PID_FILE = "owner.pid"
# ":" is reserved for NAME:STRENGTH in `animate --action`; names also become folder names.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ClipRecord(BaseModel):
    """One training clip as it was used."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str
    frames_total: int
    fps: float
    duration: float
    width: int
    height: int
    frames_used: int
    sampling: str


class DedRecord(BaseModel):
    """The action's fine-tuned Detail Enhancement Decoder (`learn --ded-steps N`), kept in DED_FILE."""

    model_config = ConfigDict(extra="forbid")

    file: str = DED_FILE
    sha256: str
    steps: int
    learning_rate: float
    seconds: float
    final_losses: dict[str, float]
    losses: list[dict[str, float]] = Field(default_factory=list)


class ActionManifest(BaseModel):
    """Everything needed to know what an action is and how it was made (`action.json`)."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = MANIFEST_VERSION
    name: str
    prompt: str | None = None
    base: str  # the base's id
    base_source: str  # how to load it again: 'tiny' or an absolute folder
    base_hash: str
    preset: str | None = None
    clips: list[ClipRecord]
    frames: int
    size: int
    fps: float
    crop: str
    seed: int
    steps: int
    rank: int
    settings: dict[str, Any]
    train_seconds: float
    final_losses: dict[str, float]
    losses: list[dict[str, float]] = Field(default_factory=list)
    # The preset's [animate] table at learn time: `animate` samples the action this way by default.
    animate_defaults: dict[str, Any] = Field(default_factory=dict)
    adapter_sha256: str
    # None: the action has no DED of its own; `animate` decodes with the base's DED (if any).
    ded: DedRecord | None = None
    preview_source: str
    versions: dict[str, str]
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def check_action_name(name: str) -> str:
    """Return `name` if it can name an action folder, else raise a UserError saying what is allowed."""
    if not _NAME_PATTERN.match(name) or name.endswith("."):
        raise UserError(
            f"'{name}' is not a valid action name; use letters, digits, '-', '_' or '.' "
            "(up to 64, starting with a letter or digit)."
        )
    return name


def default_root() -> Path:
    """Library root: FLASH_HOME if set, else the platform's user data dir for flash."""
    env = os.environ.get("FLASH_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("flash", appauthor=False)) / "actions"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _folder_size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.iterdir() if file.is_file())


class Staging:
    """A folder being filled with one action's files; `commit` makes it the action in one rename."""

    def __init__(self, library: Library, name: str, path: Path) -> None:
        self.library = library
        self.name = name
        self.path = path

    def commit(self, *, force: bool) -> Path:
        missing = [file for file in (MANIFEST_FILE, ADAPTER_FILE) if not (self.path / file).is_file()]
        if missing:
            raise RuntimeError(f"staging folder for {self.name!r} lacks {missing}")
        (self.path / _PID_FILE).unlink(missing_ok=True)
        return self.library._install(self.path, self.name, force=force)


class Library:
    """The folder of learned actions."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, override: Path | None = None) -> Library:
        root = override.expanduser() if override is not None else default_root()
        if root.exists() and not root.is_dir():
            raise UserError(f"Library path '{root}' is a file, not a folder; pass a folder with --library.")
        return cls(root)

    # -- reading -----------------------------------------------------------------------------------

    def action_dir(self, name: str) -> Path:
        return self.root / check_action_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and not entry.name.startswith(".") and (entry / MANIFEST_FILE).is_file()
        )

    def exists(self, name: str) -> bool:
        return (self.action_dir(name) / MANIFEST_FILE).is_file()

    def require(self, name: str) -> Path:
        folder = self.action_dir(name)
        if not (folder / MANIFEST_FILE).is_file():
            raise UserError(
                f"No action '{name}' in the library at '{self.root}'; run `flash inspect` to list actions "
                f"or `flash learn CLIPS --action {name}` to make it."
            )
        return folder

    def manifest(self, name: str) -> ActionManifest:
        folder = self.require(name)
        return read_manifest(folder / MANIFEST_FILE)

    def size_bytes(self, name: str) -> int:
        return _folder_size(self.require(name))

    # -- writing -----------------------------------------------------------------------------------

    def _lock(self, name: str = "library") -> filelock.FileLock:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(str(locks / f"{name}.lock"))

    def sweep_stale(self) -> None:
        """Remove staging and trash folders left by killed processes."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name.startswith(_TRASH_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(_STAGING_PREFIX):
                pid_file = entry / _PID_FILE
                try:
                    pid = int(pid_file.read_text())
                except (OSError, ValueError):
                    pid = -1
                if pid <= 0 or not _pid_alive(pid):
                    shutil.rmtree(entry, ignore_errors=True)

    @contextmanager
    def writing(self, name: str, *, force: bool) -> Iterator[Staging]:
        """Hold the action's writer lock and yield a staging folder; on any failure it is removed.

        Fails fast (before any work) when the action exists and `force` is false, or when another
        process is writing the same action.
        """
        check_action_name(name)
        if self.exists(name) and not force:
            raise UserError(
                f"Action '{name}' already exists in '{self.root}'; pass --force to replace it "
                "or choose another --action name."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self._lock(f"action-{name}")
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise UserError(
                f"Action '{name}' is being written by another flash process; wait for it to finish."
            ) from None
        try:
            self.sweep_stale()
            path = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{name}-", dir=self.root))
            os.chmod(path, 0o777 & ~current_umask())  # mkdtemp makes 0700; the action folder is normal
            (path / _PID_FILE).write_text(str(os.getpid()))
            try:
                yield Staging(self, name, path)
            finally:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            lock.release()

    def _install(self, staged: Path, name: str, *, force: bool) -> Path:
        target = self.action_dir(name)
        with self._lock():
            if target.exists():
                if not force:
                    raise UserError(
                        f"Action '{name}' already exists in '{self.root}'; pass --force to replace it."
                    )
                trash = Path(tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=self.root))
                os.replace(target, trash / name)
                os.replace(staged, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(staged, target)
        return target

    def checkpoint_dir(self, name: str) -> Path:
        return self.root / ".checkpoints" / check_action_name(name)

    def remove(self, name: str) -> None:
        folder = self.require(name)
        with self._lock():
            trash = Path(tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=self.root))
            os.replace(folder, trash / name)
            shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.checkpoint_dir(name), ignore_errors=True)

    def rename(self, old: str, new: str, *, force: bool) -> Path:
        folder = self.require(old)
        check_action_name(new)
        if old == new:
            raise UserError(f"Action '{old}' already has that name; pass a different new name.")
        manifest = read_manifest(folder / MANIFEST_FILE).model_copy(update={"name": new})
        with self.writing(new, force=force) as staging:
            for file in ACTION_FILES:
                if (folder / file).is_file() and file != MANIFEST_FILE:
                    shutil.copy2(folder / file, staging.path / file)
            write_manifest(staging.path / MANIFEST_FILE, manifest)
            target = staging.commit(force=force)
        self.remove(old)
        return target

    def export(self, name: str, destination: Path) -> Path:
        """Pack an action into one zip file (`.flash`): its manifest, adapter, preview and DED weights."""
        folder = self.require(name)
        if destination.is_dir():
            destination = destination / f"{name}{EXPORT_SUFFIX}"
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
        os.close(handle)
        try:
            with zipfile.ZipFile(temp_name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for file in ACTION_FILES:
                    if (folder / file).is_file():
                        archive.write(folder / file, arcname=file)
            os.chmod(temp_name, 0o666 & ~current_umask())
            os.replace(temp_name, destination)
        finally:
            Path(temp_name).unlink(missing_ok=True)
        return destination

    def import_(self, source: Path, *, name: str | None, force: bool) -> str:
        """Unpack a `.flash` file into the library (as `name`, or the name in its manifest)."""
        if not source.is_file():
            raise UserError(f"Export file '{source}' does not exist; pass a file made by `flash export`.")
        try:
            archive = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError):
            raise UserError(
                f"'{source}' is not a flash export file; make one with `flash export NAME`."
            ) from None
        with archive:
            members = set(archive.namelist())
            if not {MANIFEST_FILE, ADAPTER_FILE} <= members or not members <= set(ACTION_FILES):
                raise UserError(
                    f"'{source}' is not a flash export file "
                    f"(it must hold {MANIFEST_FILE} and {ADAPTER_FILE}, and nothing but "
                    f"{', '.join(ACTION_FILES)}); "
                    "make one with `flash export NAME`."
                )
            manifest = parse_manifest(archive.read(MANIFEST_FILE), source)
            adapter_bytes = archive.read(ADAPTER_FILE)
            if content_hash(adapter_bytes) != manifest.adapter_sha256:
                raise UserError(
                    f"The adapter inside '{source}' does not match its manifest; export it again."
                )
            ded_bytes = _exported_ded(archive, manifest, source)
            target_name = check_action_name(name or manifest.name)
            with self.writing(target_name, force=force) as staging:
                (staging.path / ADAPTER_FILE).write_bytes(adapter_bytes)
                if PREVIEW_FILE in members:
                    (staging.path / PREVIEW_FILE).write_bytes(archive.read(PREVIEW_FILE))
                if ded_bytes is not None:
                    (staging.path / DED_FILE).write_bytes(ded_bytes)
                write_manifest(
                    staging.path / MANIFEST_FILE, manifest.model_copy(update={"name": target_name})
                )
                staging.commit(force=force)
        return target_name


def _exported_ded(archive: zipfile.ZipFile, manifest: ActionManifest, source: Path) -> bytes | None:
    """The fine-tuned DED inside an export file, checked against its manifest (None when it has none)."""
    present = DED_FILE in archive.namelist()
    if manifest.ded is None:
        if present:
            raise UserError(f"'{source}' holds a {DED_FILE} its manifest does not list; export it again.")
        return None
    if not present or content_hash(ded_bytes := archive.read(DED_FILE)) != manifest.ded.sha256:
        raise UserError(f"The DED weights inside '{source}' do not match its manifest; export it again.")
    return ded_bytes


def parse_manifest(raw: bytes | str, source: Path) -> ActionManifest:
    try:
        return ActionManifest.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise UserError(
            f"Manifest '{source}' is invalid at '{where}' ({first['msg']}); re-learn or re-import it."
        ) from None


def read_manifest(path: Path) -> ActionManifest:
    try:
        raw = path.read_bytes()
    except OSError:
        raise UserError(f"Cannot read manifest '{path}'; check the library folder's permissions.") from None
    return parse_manifest(raw, path)


def write_manifest(path: Path, manifest: ActionManifest) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    os.replace(temp, path)
