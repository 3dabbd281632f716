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
never leaves a half-written action; its staging folder is swept by the next writer. On the way in
(`Staging.commit`) the manifest records every file's size and the preview's sha256 beside the
adapter's and DED's hashes.

Nothing in the library is trusted blindly: `verified` checks an action's files against its
manifest (size, sha256, finite weights) each time it is used, and `import_` treats a `.flash` file
as hostile input: members are streamed under size limits and checked before any byte of them is
written, then written into a staging folder, checked again, and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

import filelock
import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flashcli import __version__
from flashcli.errors import UserError, environment_problem
from flashcli.files import atomic_path, discard_folder, replace_folder, staging_folder, write_text_atomic

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
# Always used with fullmatch: `$` would also match before a trailing newline.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_MIB = 1 << 20
_GIB = 1 << 30
# The most one member of a `.flash` file may unpack to, whatever its manifest declares; far above
# what flash writes (a rank-64 LoRA of a 5B Wan base is about 0.3 GiB, a preview GIF a few MiB).
MEMBER_LIMITS = {MANIFEST_FILE: 16 * _MIB, ADAPTER_FILE: _GIB, DED_FILE: _GIB, PREVIEW_FILE: 256 * _MIB}
EXPORT_LIMIT = 2 * _GIB  # all members together
_CHUNK = _MIB  # members and files are streamed in pieces this size, never read whole
# Errors a zip member can raise while it is decompressed: damage, encryption, unknown methods.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, RuntimeError, NotImplementedError)


def _escape_undecodable(text: str) -> str:
    """`text` with lone surrogates written as backslash escapes: undecodable bytes of a file name
    (which Python keeps as U+DC80..U+DCFF) become `\\xff`, so the manifest stays valid UTF-8 JSON."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    return "".join(
        f"\\x{ord(char) - 0xDC00:02x}"
        if "\udc80" <= char <= "\udcff"
        else f"\\u{ord(char):04x}"
        if "\ud800" <= char <= "\udfff"
        else char
        for char in text
    )


def _escape_strings(value: Any) -> Any:
    if isinstance(value, str):
        return _escape_undecodable(value)
    if isinstance(value, dict):
        return {_escape_strings(key): _escape_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape_strings(item) for item in value]
    return value


class _Record(BaseModel):
    """A manifest part: unknown fields are errors, and every string is made valid UTF-8."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_utf8(cls, data: Any) -> Any:
        return _escape_strings(data)


class ClipRecord(_Record):
    """One training clip as it was used."""

    path: str
    sha256: str
    frames_total: int
    fps: float
    duration: float
    width: int
    height: int
    frames_used: int
    sampling: str


class DedRecord(_Record):
    """The action's fine-tuned Detail Enhancement Decoder (`learn --ded-steps N`), kept in DED_FILE."""

    file: Literal["ded.safetensors"] = DED_FILE  # fixed: a manifest may not point at another file
    sha256: str
    size: int | None = Field(default=None, ge=0)  # bytes; None in manifests from before sizes were kept
    steps: int
    learning_rate: float
    seconds: float
    final_losses: dict[str, float]
    losses: list[dict[str, float]] = Field(default_factory=list)


class ActionManifest(_Record):
    """Everything needed to know what an action is and how it was made (`action.json`)."""

    format_version: int = MANIFEST_VERSION
    name: str
    prompt: str | None = None  # the training prompt (text bases); `animate` uses it
    # What the preview's guidance steered away from; `animate` uses it unless told another. None: a base
    # without text (no guidance), or a manifest from before it was recorded.
    negative_prompt: str | None = None
    base: str  # the base's id
    base_source: str  # how to load it again: 'tiny' or an absolute folder
    base_hash: str
    # A diffusers folder's pipeline kind and the frames, fps and size it is made for (core.pipelines);
    # None for flash's own bases (their flash_base.json tells) and manifests from before.
    base_defaults: dict[str, Any] | None = None
    preset: str | None = None
    clips: list[ClipRecord]
    frames: int = Field(gt=0)
    size: int = Field(gt=0)  # frame height in pixels (and width, unless `width` is set)
    width: int | None = Field(default=None, gt=0)  # None: square, as in every manifest before W x H sizes
    fps: float = Field(gt=0, allow_inf_nan=False)
    crop: str
    seed: int
    steps: int = Field(ge=0)
    rank: int = Field(gt=0)
    settings: dict[str, Any]
    train_seconds: float
    final_losses: dict[str, float]
    losses: list[dict[str, float]] = Field(default_factory=list)
    # The preset's [animate] table at learn time: `animate` samples the action this way by default.
    animate_defaults: dict[str, Any] = Field(default_factory=dict)
    adapter_sha256: str
    adapter_size: int | None = Field(default=None, ge=0)  # bytes; None: from before sizes were kept
    # None: the action has no DED of its own; `animate` decodes with the base's DED (if any).
    ded: DedRecord | None = None
    # How `animate` decodes the action unless --ded/--no-ded (or an [animate] use_ded) says: "ded" (the
    # Detail Enhancement Decoder, where there is one) or "plain" (learned with detail_enhance = false).
    # None: from before it was recorded; the DED decodes, as it did then.
    decoder: Literal["ded", "plain"] | None = None
    # The preflight's memory rung the adapter was trained under (`core.memory_plan.MemoryRung` as a dict:
    # fp8 storage of the denoiser changes what the LoRA learned against). None: not planned (CPU, tiny)
    # or a manifest from before it was recorded.
    memory: dict[str, Any] | None = None
    preview_source: str
    # None in manifests from before the preview was checked; `Staging.commit` records them.
    preview_sha256: str | None = None
    preview_size: int | None = Field(default=None, ge=0)
    versions: dict[str, str]
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) the action was learned at."""
        return (self.width or self.size, self.size)


class BrokenActionError(UserError):
    """An action's files do not match its manifest: missing, truncated, changed or not finite."""


def printable(text: str) -> str:
    """`text` as one printable line: newlines, control characters and undecodable bytes escaped."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def check_action_name(name: str) -> str:
    """Return `name` if it can name an action folder, else raise a UserError saying what is allowed."""
    if _NAME_PATTERN.fullmatch(name) is None or name.endswith("."):
        raise UserError(
            f"'{printable(name)}' is not a valid action name; use letters, digits, '-', '_' or '.' "
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


def _holds_manifest(folder: Path) -> bool:
    """True for an action folder; one that cannot be read counts too, so that listings show it broken."""
    try:
        return folder.is_dir() and (folder / MANIFEST_FILE).is_file()
    except PermissionError:
        return True


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def environment_refusals(fallback: Path) -> Iterator[None]:
    """Turn the environment refusing a write (permission, read-only, full disk, a file in the way)
    into a UserError: one sentence naming the path (`fallback` when the error names none)."""
    try:
        yield
    except OSError as error:
        sentence = environment_problem(error, fallback)
        if sentence is None:
            raise
        raise UserError(sentence) from None


# -- checking an action's files -----------------------------------------------------------------


def _broken(action: str, what: str, path: Path, problem: str) -> BrokenActionError:
    return BrokenActionError(
        f"Action '{action}' is broken: its {what} '{path}' {problem}; re-learn or re-import it, "
        f"or delete it with `flash remove {action}`."
    )


def _check_file(action: str, what: str, path: Path, sha256: str | None, size: int | None) -> None:
    """The file exists and has the size and sha256 its manifest records (either may be unrecorded)."""
    try:
        if not path.is_file():
            raise _broken(action, what, path, "is missing" if not path.exists() else "is not a file")
        actual = path.stat().st_size
        if size is not None and actual != size:
            problem = (
                f"is truncated ({actual} of {size} bytes)"
                if actual < size
                else f"has {actual} bytes where its manifest records {size}"
            )
            raise _broken(action, what, path, problem)
        if sha256 is not None and _sha256_file(path) != sha256:
            raise _broken(
                action, what, path, "has changed since it was saved (its sha256 is not the manifest's)"
            )
    except OSError as error:
        raise _broken(action, what, path, f"cannot be read ({error.strerror})") from None


def _first_non_finite(path: Path) -> str | None:
    """The first tensor of a safetensors file holding NaN or inf (None: all finite), one tensor at a time."""
    import numpy as np
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            try:
                values = handle.get_tensor(key)
            except TypeError:  # a dtype numpy lacks (bfloat16): let torch read the file
                return _first_non_finite_torch(path)
            if values.dtype.kind in "fc" and not np.isfinite(values).all():
                return key
    return None


def _first_non_finite_torch(path: Path) -> str | None:
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():  # noqa: SIM118
            values = handle.get_tensor(key)
            if values.is_floating_point() and not bool(torch.isfinite(values).all()):
                return key
    return None


def _check_weights(action: str, what: str, path: Path) -> None:
    try:
        key = _first_non_finite(path)
    except Exception as error:  # safetensors raises several types for corrupt files
        raise _broken(action, what, path, f"is not a readable safetensors file ({error})") from None
    if key is not None:
        raise _broken(action, what, path, f"holds non-finite (NaN or inf) weights in '{key}'")


def _sealed(folder: Path, manifest: ActionManifest) -> ActionManifest:
    """The manifest with the sizes of the files in `folder`, and the preview's sha256, recorded."""
    preview = folder / PREVIEW_FILE
    update: dict[str, Any] = {
        "adapter_size": (folder / ADAPTER_FILE).stat().st_size,
        "preview_sha256": _sha256_file(preview) if preview.is_file() else None,
        "preview_size": preview.stat().st_size if preview.is_file() else None,
    }
    if manifest.ded is not None:
        size = (folder / manifest.ded.file).stat().st_size
        update["ded"] = manifest.ded.model_copy(update={"size": size})
    return manifest.model_copy(update=update)


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
        with self.library.refusals():
            manifest = read_manifest(self.path / MANIFEST_FILE)
            write_manifest(self.path / MANIFEST_FILE, _sealed(self.path, manifest))
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

    def refusals(self) -> Any:
        """A context in which the environment refusing a library write becomes one sentence (exit 2)."""
        return environment_refusals(self.root)

    # -- reading -----------------------------------------------------------------------------------

    def action_dir(self, name: str) -> Path:
        return self.root / check_action_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        try:
            entries = list(self.root.iterdir())
        except PermissionError:
            raise UserError(
                f"Cannot read the library at '{self.root}': permission denied; make it readable "
                "or pass another --library."
            ) from None
        return sorted(
            entry.name for entry in entries if not entry.name.startswith(".") and _holds_manifest(entry)
        )

    def exists(self, name: str) -> bool:
        return (self.action_dir(name) / MANIFEST_FILE).is_file()

    def require(self, name: str) -> Path:
        folder = self.action_dir(name)
        try:
            present = (folder / MANIFEST_FILE).is_file()
        except PermissionError:
            raise UserError(
                f"Cannot read action '{name}': permission denied on '{folder}'; make it readable."
            ) from None
        if not present:
            raise UserError(
                f"No action '{name}' in the library at '{self.root}'; run `flash inspect` to list actions "
                f"or `flash learn CLIPS --action {name}` to make it."
            )
        return folder

    def manifest(self, name: str) -> ActionManifest:
        folder = self.require(name)
        return read_manifest(folder / MANIFEST_FILE)

    def verified(self, name: str, *, deep: bool = True) -> ActionManifest:
        """The action's manifest once its files are checked against it: the adapter's and DED's size
        and sha256; with `deep`, also the preview's and that every weight is finite.

        Raises BrokenActionError (a UserError naming the file and the fix) when they do not match."""
        manifest = self.manifest(name)
        folder = self.action_dir(name)
        checks = [("adapter", folder / ADAPTER_FILE, manifest.adapter_sha256, manifest.adapter_size, True)]
        if manifest.ded is not None:
            ded = manifest.ded
            checks.append(("DED weights", folder / ded.file, ded.sha256, ded.size, True))
        if deep and (manifest.preview_sha256 is not None or manifest.preview_size is not None):
            checks.append(
                ("preview", folder / PREVIEW_FILE, manifest.preview_sha256, manifest.preview_size, False)
            )
        for what, path, sha256, size, weights in checks:
            _check_file(name, what, path, sha256, size)
            if deep and weights:
                _check_weights(name, what, path)
        return manifest

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
    def writing(
        self, name: str, *, force: bool, other_name: str = "choose another --action name"
    ) -> Iterator[Staging]:
        """Hold the action's writer lock and yield a staging folder; on any failure it is removed.

        Fails fast (before any work) when the action exists and `force` is false (the message ends
        with `other_name`, the caller's way to pick another name), when another process is writing
        the same action, or when the library cannot be written.
        """
        check_action_name(name)
        if self.exists(name) and not force:
            raise UserError(
                f"Action '{name}' already exists in '{self.root}'; "
                f"pass --force to replace it or {other_name}."
            )
        with self.refusals():
            self.root.mkdir(parents=True, exist_ok=True)
            lock = self._lock(f"action-{name}")
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                raise UserError(
                    f"Action '{name}' is being written by another flash process; wait for it to finish."
                ) from None
        try:
            with self.refusals():
                self.sweep_stale()
                path = staging_folder(self.root, prefix=f"{_STAGING_PREFIX}{name}-")
            try:
                with self.refusals():
                    (path / _PID_FILE).write_text(str(os.getpid()))  # a live owner: sweep_stale keeps it
                yield Staging(self, name, path)
            finally:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            lock.release()

    def _install(self, staged: Path, name: str, *, force: bool) -> Path:
        target = self.action_dir(name)
        with self._lock():
            if target.exists() and not force:
                raise UserError(
                    f"Action '{name}' already exists in '{self.root}'; pass --force to replace it."
                )
            replace_folder(staged, target, trash_prefix=_TRASH_PREFIX)
        return target

    def checkpoint_dir(self, name: str) -> Path:
        return self.root / ".checkpoints" / check_action_name(name)

    def remove(self, name: str) -> None:
        # A listed folder whose name an older flash allowed (say, with a newline) can still be removed:
        # it comes from listing the root, so it cannot point outside it.
        listed = name in self.names()
        folder = self.root / name if listed else self.require(name)
        with self.refusals():
            with self._lock():
                discard_folder(folder, trash_prefix=_TRASH_PREFIX)
            if _NAME_PATTERN.fullmatch(name):
                shutil.rmtree(self.root / ".checkpoints" / name, ignore_errors=True)

    def rename(self, old: str, new: str, *, force: bool) -> Path:
        folder = self.require(old)
        check_action_name(new)
        if old == new:
            raise UserError(f"Action '{old}' already has that name; pass a different new name.")
        manifest = self.verified(old, deep=False).model_copy(update={"name": new})  # never copy damage
        with self.refusals(), self.writing(new, force=force, other_name="choose another NEW name") as staging:
            for file in ACTION_FILES:
                if (folder / file).is_file() and file != MANIFEST_FILE:
                    shutil.copy2(folder / file, staging.path / file)
            write_manifest(staging.path / MANIFEST_FILE, manifest)
            target = staging.commit(force=force)
        self.remove(old)
        return target

    def export(self, name: str, destination: Path) -> Path:
        """Pack an action into one zip file (`.flash`): its manifest, adapter, preview and DED weights,
        after checking them; the packed manifest records every member's size and sha256."""
        manifest = self.verified(name)
        folder = self.action_dir(name)
        if destination.is_dir():
            destination = destination / f"{name}{EXPORT_SUFFIX}"
        members = [ADAPTER_FILE, PREVIEW_FILE] + ([manifest.ded.file] if manifest.ded is not None else [])
        with (
            environment_refusals(destination),
            atomic_path(destination) as temp,
            zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            archive.writestr(MANIFEST_FILE, manifest_json(_sealed(folder, manifest)))
            for file in members:
                if (folder / file).is_file():
                    archive.write(folder / file, arcname=file)
        return destination

    def import_(self, source: Path, *, name: str | None, force: bool) -> str:
        """Unpack a `.flash` file into the library (as `name`, or the name in its manifest).

        Every member is checked (size, sha256) by streaming it before anything is written, then
        streamed into a staging folder and checked again; refusals leave the library as it was."""
        with _open_export(source) as archive:
            members = _export_members(archive, source)
            raw = b"".join(_member_chunks(archive, members[MANIFEST_FILE], source))
            manifest = parse_manifest(
                raw, source, label=f"The manifest inside '{source}'", fix="export the action again"
            )
            if name is None:
                try:
                    check_action_name(manifest.name)
                except UserError:
                    raise UserError(
                        f"'{source}' names its action '{printable(manifest.name)}', which is not a valid "
                        "action name; import it under another name with --as NAME."
                    ) from None
            target_name = check_action_name(name or manifest.name)
            expected = _expected_members(manifest, members, source)
            for member, (sha256, size) in expected.items():  # first pass: check, write nothing
                _unpack_member(archive, members[member], sha256, size, source, None)
            with (
                self.refusals(),
                self.writing(
                    target_name, force=force, other_name="import it under another name with --as NAME"
                ) as staging,
            ):
                for member, (sha256, size) in expected.items():  # second pass: write, check again
                    _unpack_member(archive, members[member], sha256, size, source, staging.path / member)
                write_manifest(
                    staging.path / MANIFEST_FILE, manifest.model_copy(update={"name": target_name})
                )
                staging.commit(force=force)
        return target_name


# -- reading `.flash` files (untrusted input) -----------------------------------------------------


def _not_an_export(source: Path, detail: str = "") -> UserError:
    return UserError(f"'{source}' is not a flash export file{detail}; make one with `flash export NAME`.")


@contextmanager
def _open_export(source: Path) -> Iterator[zipfile.ZipFile]:
    if not source.exists():
        raise UserError(f"Export file '{source}' does not exist; pass a file made by `flash export`.")
    if not source.is_file():
        raise _not_an_export(source, " (not a regular file)")
    try:
        archive = zipfile.ZipFile(source)
    except PermissionError:
        raise UserError(f"Cannot read '{source}': permission denied; make it readable.") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _not_an_export(source) from None
    with archive:
        yield archive


def _export_members(archive: zipfile.ZipFile, source: Path) -> dict[str, zipfile.ZipInfo]:
    """The members by name, once each checked to be the files an export holds and within the limits
    (zipfile never unpacks more than a member's header declares, so the header bounds the work)."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if (
        len(set(names)) != len(names)
        or not {MANIFEST_FILE, ADAPTER_FILE} <= set(names)
        or not set(names) <= set(ACTION_FILES)
    ):
        raise _not_an_export(
            source,
            f" (it must hold {MANIFEST_FILE} and {ADAPTER_FILE}, each once, and nothing but "
            f"{', '.join(ACTION_FILES)})",
        )
    members = {info.filename: info for info in infos}
    for member, info in members.items():
        if info.file_size > MEMBER_LIMITS[member]:
            raise _too_large(source, f"its {member}", info.file_size, MEMBER_LIMITS[member])
    total = sum(info.file_size for info in infos)
    if total > EXPORT_LIMIT:
        raise _too_large(source, "its files", total, EXPORT_LIMIT)
    return members


def _too_large(source: Path, what: str, size: int, limit: int) -> UserError:
    return UserError(
        f"'{source}' is refused: {what} would unpack to {size:,} bytes, more than the {limit:,} a flash "
        "export may hold; make it again with `flash export NAME`."
    )


def _mismatch(source: Path, member: str) -> UserError:
    return UserError(
        f"The {member} inside '{source}' does not match its manifest (size or sha256); export it again."
    )


def _expected_members(
    manifest: ActionManifest, members: dict[str, zipfile.ZipInfo], source: Path
) -> dict[str, tuple[str | None, int | None]]:
    """Each member to unpack with the sha256 and size its manifest records (None: not recorded, as in
    exports from before the preview was checked; such members are bounded by MEMBER_LIMITS only)."""
    expected: dict[str, tuple[str | None, int | None]] = {
        ADAPTER_FILE: (manifest.adapter_sha256, manifest.adapter_size)
    }
    if manifest.ded is not None:
        if DED_FILE not in members:
            raise UserError(f"'{source}' lacks the {DED_FILE} its manifest lists; export it again.")
        expected[DED_FILE] = (manifest.ded.sha256, manifest.ded.size)
    elif DED_FILE in members:
        raise UserError(f"'{source}' holds a {DED_FILE} its manifest does not list; export it again.")
    if PREVIEW_FILE in members:
        expected[PREVIEW_FILE] = (manifest.preview_sha256, manifest.preview_size)
    elif manifest.preview_sha256 is not None:
        raise UserError(f"'{source}' lacks the {PREVIEW_FILE} its manifest lists; export it again.")
    for member, (_, size) in expected.items():
        if size is not None and members[member].file_size != size:
            raise _mismatch(source, member)  # refused from the header, before unpacking anything
    return expected


def _member_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: Path) -> Iterator[bytes]:
    """A member's bytes in pieces, never more than its limit; damage becomes one sentence."""
    limit = MEMBER_LIMITS[info.filename]
    unpacked = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                unpacked += len(chunk)
                if unpacked > limit:
                    raise _too_large(source, f"its {info.filename}", unpacked, limit)
                yield chunk
    except _ZIP_ERRORS as error:
        raise UserError(
            f"'{source}' is damaged ({info.filename}: {error}); make it again with `flash export NAME`."
        ) from None
    except OSError as error:
        raise UserError(f"Cannot read '{source}' ({error.strerror}); check the file.") from None


def _unpack_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    sha256: str | None,
    size: int | None,
    source: Path,
    destination: Path | None,
) -> None:
    """Stream one member into `destination` (None: nowhere) and check its sha256 and size."""
    digest = hashlib.sha256()
    unpacked = 0
    sink: Any = destination.open("wb") if destination is not None else nullcontext()
    with sink as handle:
        out: IO[bytes] | None = handle
        for chunk in _member_chunks(archive, info, source):
            digest.update(chunk)
            unpacked += len(chunk)
            if out is not None:
                out.write(chunk)
    if (sha256 is not None and digest.hexdigest() != sha256) or (size is not None and unpacked != size):
        raise _mismatch(source, info.filename)


# -- manifests ------------------------------------------------------------------------------------


def parse_manifest(
    raw: bytes | str,
    source: Path | str,
    *,
    label: str | None = None,
    fix: str = "re-learn or re-import it",
) -> ActionManifest:
    """Validate a manifest's text; a bad one is a UserError naming `label` (default: the file), the
    field and `fix`. Read with the standard json module, which also reads the lone-surrogate escapes
    an older flash wrote for undecodable file names (they are escaped again on validation)."""
    label = label or f"Manifest '{source}'"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise UserError(f"{label} is not valid UTF-8 JSON ({error}); {fix}.") from None
    try:
        return ActionManifest.model_validate(data)
    except ValidationError as error:
        newer = _newer_writer(data)
        if newer is not None:
            raise UserError(
                f"{label} {newer}, newer than this flash ({__version__}); upgrade flash to read it."
            ) from None
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise UserError(f"{label} is invalid at '{where}' ({first['msg']}); {fix}.") from None


def _newer_writer(data: Any) -> str | None:
    """How the manifest says it comes from a newer flash than this one ('was written by flash X.Y.Z', 'uses
    manifest format N'): its new fields are then not errors to fix but a reason to upgrade. None when it
    does not say so."""
    if not isinstance(data, dict):
        return None
    written = data.get("format_version")
    if isinstance(written, int) and not isinstance(written, bool) and written > MANIFEST_VERSION:
        return f"uses manifest format {written}"
    versions = data.get("versions")
    writer = versions.get("flashcli") if isinstance(versions, dict) else None
    if not isinstance(writer, str):
        return None
    from packaging.version import InvalidVersion, Version

    try:
        return f"was written by flash {writer}" if Version(writer) > Version(__version__) else None
    except InvalidVersion:
        return None


def read_manifest(path: Path) -> ActionManifest:
    try:
        raw = path.read_bytes()
    except OSError:
        raise UserError(f"Cannot read manifest '{path}'; check the library folder's permissions.") from None
    fix = f"re-learn or re-import the action, or delete it with `flash remove {path.parent.name}`"
    return parse_manifest(raw, path, fix=fix)


def manifest_json(manifest: ActionManifest) -> str:
    """The manifest as JSON text; ASCII only (every string was made valid UTF-8 on validation)."""
    return json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"


def write_manifest(path: Path, manifest: ActionManifest) -> None:
    write_text_atomic(path, manifest_json(manifest))
