"""The library's housekeeping: what `inspect` finds (the library, one action, a loose adapter file)
and the pictures it writes, and `remove`, `rename`, `export`, `import`. Each returns the document
that `--json` prints; the CLI renders the rest."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flashcli.errors import UserError

if TYPE_CHECKING:
    from flashcli.library import ActionManifest, Library


@dataclass(frozen=True)
class Inspection:
    """What `inspect` found: `document` is what --json prints."""

    kind: Literal["library", "action", "adapter"]
    document: dict[str, Any]
    manifest: ActionManifest | None = None  # kind "action"
    verify: bool = False

    def refusal(self) -> UserError | None:
        """With --verify, the error that names the broken actions (after the table was shown)."""
        broken = [row["action"] for row in self.document.get("actions", []) if row["status"] == "broken"]
        if not self.verify or not broken:
            return None
        names = ", ".join(f"'{name}'" for name in broken)
        return UserError(
            f"{len(broken)} of {len(self.document['actions'])} actions in '{self.document['library']}' are "
            f"broken ({names}); re-learn or re-import them, or delete them with `flash remove NAME`."
        )


def inspect(
    target: str | None,
    *,
    plot: Path | None = None,
    contact_sheet: Path | None = None,
    verify: bool = False,
    library: Path | None = None,
) -> Inspection:
    """The library (target None), one action in depth, or a loose adapter .safetensors file."""
    from flashcli.library import Library

    lib = Library.open(library)
    if target is not None and verify:
        raise UserError(
            "--verify checks the whole library; leave out NAME (`flash inspect NAME` always checks it)."
        )
    pictures = plot is not None or contact_sheet is not None
    if target is None:
        if pictures:
            raise UserError(
                "--plot and --contact-sheet need an action name: flash inspect NAME --plot loss.png."
            )
        return Inspection("library", library_rows(lib, deep=verify), verify=verify)
    if target.endswith(".safetensors") or Path(target).is_file():
        if pictures:
            raise UserError("--plot and --contact-sheet need a library action, not a loose adapter file.")
        return Inspection("adapter", loose_adapter(Path(target)))
    manifest = lib.verified(target)  # its files' hashes, sizes and weights, so a broken action says so
    return Inspection("action", action_details(lib, manifest, plot, contact_sheet), manifest)


def library_rows(lib: Library, *, deep: bool = False) -> dict[str, Any]:
    """Every action with its status: 'ok', or 'broken' with the problem (a manifest that cannot be read,
    files that do not match it; with `deep` also the preview and non-finite weights)."""
    rows = []
    for name in lib.names():
        row: dict[str, Any] = dict.fromkeys(("base", "clips", "steps", "created", "size_bytes", "problem"))
        try:
            manifest = lib.verified(name, deep=deep)
        except UserError as error:  # one broken action must not hide the others
            rows.append({"action": name, "status": "broken", **row, "problem": str(error)})
            continue
        row.update(
            base=manifest.base,
            clips=len(manifest.clips),
            steps=manifest.steps,
            created=manifest.created,
            size_bytes=lib.size_bytes(name),
        )
        rows.append({"action": name, "status": "ok", **row})
    return {"library": str(lib.root), "actions": rows}


def action_details(
    lib: Library, manifest: ActionManifest, plot: Path | None, contact_sheet: Path | None
) -> dict[str, Any]:
    """One verified action: its manifest, its files, and the pictures asked for (written)."""
    from flashcli.library import ADAPTER_FILE, MANIFEST_FILE, PREVIEW_FILE
    from flashcli.views import write_contact_sheet, write_loss_plot

    name = manifest.name
    folder = lib.action_dir(name)
    files = {
        "folder": str(folder),
        "adapter": str(folder / ADAPTER_FILE),
        "manifest": str(folder / MANIFEST_FILE),
        "preview": str(folder / PREVIEW_FILE) if (folder / PREVIEW_FILE).is_file() else None,
        "ded": str(folder / manifest.ded.file) if manifest.ded is not None else None,
    }
    written: dict[str, str] = {}
    if plot is not None:
        if not manifest.losses:
            raise UserError(f"Action '{name}' has no recorded losses to plot; re-learn it to get them.")
        written["plot"] = str(write_loss_plot(plot, manifest.losses, f"{name}: training losses"))
    if contact_sheet is not None:
        if files["preview"] is None:
            raise UserError(f"Action '{name}' has no preview.gif; re-learn it to get one.")
        from flashcli.video import read_output

        written["contact_sheet"] = str(write_contact_sheet(contact_sheet, read_output(folder / PREVIEW_FILE)))
    return {"manifest": manifest.model_dump(mode="json"), "files": files, "written": written}


def loose_adapter(path: Path) -> dict[str, Any]:
    """An adapter file's header, tensor count and parameter count, read without torch."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"Adapter file '{path}' does not exist; check the path.")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            shapes = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(
            f"'{path}' is not a readable safetensors file ({error}); pass an adapter file."
        ) from None
    parameters = sum(math.prod(shape) for shape in shapes.values())
    return {"path": str(path), "metadata": metadata, "tensors": len(shapes), "parameters": parameters}


def remove(name: str, library: Path | None = None) -> dict[str, Any]:
    from flashcli.library import Library

    lib = Library.open(library)
    lib.remove(name)
    return {"removed": name, "library": str(lib.root)}


def rename(old: str, new: str, *, force: bool, library: Path | None = None) -> dict[str, Any]:
    from flashcli.library import Library

    target = Library.open(library).rename(old, new, force=force)
    return {"renamed": old, "to": new, "path": str(target)}


def export(
    name: str,
    destination: Path | None,
    library: Path | None = None,
    *,
    export_format: Literal["flash", "diffusers"] = "flash",
) -> dict[str, Any]:
    """Pack an action into one .flash file (default: NAME.flash in the current folder), or with format
    "diffusers" write its LoRA alone as a safetensors file for diffusers (default: NAME.safetensors)."""
    from flashcli.library import EXPORT_SUFFIX, Library

    if export_format == "diffusers":
        from flashcli.workflows.diffusers_export import export_diffusers

        return export_diffusers(name, destination, library)
    written = Library.open(library).export(name, destination or Path(f"{name}{EXPORT_SUFFIX}"))
    return {"exported": name, "file": str(written), "format": "flash"}


def import_(source: Path, *, name: str | None, force: bool, library: Path | None = None) -> dict[str, Any]:
    from flashcli.library import Library

    lib = Library.open(library)
    imported = lib.import_(source, name=name, force=force)
    return {"imported": imported, "path": str(lib.action_dir(imported))}
