"""The action library: atomic saves, locking, housekeeping, export/import."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import filelock
import numpy as np
import pytest
import safetensors.numpy

from flashcli.errors import UserError
from flashcli.library import (
    ADAPTER_FILE,
    MANIFEST_FILE,
    PREVIEW_FILE,
    ActionManifest,
    ClipRecord,
    Library,
    default_root,
    read_manifest,
    write_manifest,
)

# A real (if tiny) safetensors file: loading an action checks that its weights are readable and finite.
ADAPTER_BYTES = safetensors.numpy.save({"lora_A": np.ones((2, 4), dtype=np.float32)})


def manifest_for(name: str) -> ActionManifest:
    return ActionManifest(
        name=name,
        base="tiny",
        base_source="tiny",
        base_hash="abc123",
        clips=[
            ClipRecord(
                path="clips/a.mp4",
                sha256="00",
                frames_total=30,
                fps=15,
                duration=2.0,
                width=64,
                height=64,
                frames_used=9,
                sampling="evenly, every ~3.6",
            )
        ],
        frames=9,
        size=64,
        fps=4.0,
        crop="center",
        seed=0,
        steps=3,
        rank=4,
        settings={"steps": 3},
        train_seconds=1.0,
        final_losses={"loss": 0.5},
        losses=[{"loss": 0.9}, {"loss": 0.7}, {"loss": 0.5}],
        adapter_sha256=hashlib.sha256(ADAPTER_BYTES).hexdigest(),
        preview_source="test",
        versions={"flashcli": "test"},
    )


def add_action(lib: Library, name: str, *, force: bool = False) -> Path:
    with lib.writing(name, force=force) as staging:
        (staging.path / ADAPTER_FILE).write_bytes(ADAPTER_BYTES)
        write_manifest(staging.path / MANIFEST_FILE, manifest_for(name))
        return staging.commit(force=force)


def visible_entries(root: Path) -> list[str]:
    return sorted(entry.name for entry in root.iterdir() if not entry.name.startswith("."))


def test_root_comes_from_flash_home_or_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLASH_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home"
    assert Library.open().root == tmp_path / "home"
    assert Library.open(tmp_path / "other").root == tmp_path / "other"
    monkeypatch.delenv("FLASH_HOME")
    assert "flash" in str(default_root())


def test_saved_action_is_listed_and_readable(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    folder = add_action(lib, "weld")
    assert folder == tmp_path / "weld"
    assert lib.names() == ["weld"]
    assert lib.manifest("weld").losses[-1] == {"loss": 0.5}
    assert visible_entries(tmp_path) == ["weld"]


def test_existing_action_needs_force_and_force_replaces(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    add_action(lib, "weld")
    with pytest.raises(UserError, match="--force"):
        add_action(lib, "weld")
    (tmp_path / "weld" / "marker").write_text("old")
    add_action(lib, "weld", force=True)
    assert not (tmp_path / "weld" / "marker").exists()
    assert lib.names() == ["weld"]


def test_a_replacement_that_cannot_be_renamed_into_place_keeps_the_old_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`learn --force` on a disk that refuses the final rename: the action learned before stays usable."""
    lib = Library(tmp_path)
    add_action(lib, "weld")
    (tmp_path / "weld" / "marker").write_text("old")
    real_replace = os.replace

    def refuse_staging(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).name.startswith(".staging-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_staging)
    with pytest.raises(UserError, match="disk is full"):
        add_action(lib, "weld", force=True)
    monkeypatch.undo()
    assert (tmp_path / "weld" / "marker").read_text() == "old"
    lib.verified("weld")
    add_action(lib, "other")  # the next writer sweeps what is left
    assert sorted(entry.name for entry in tmp_path.iterdir() if entry.name != ".locks") == ["other", "weld"]


def test_failure_while_writing_leaves_nothing(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with lib.writing("weld", force=False) as staging:
            (staging.path / ADAPTER_FILE).write_bytes(ADAPTER_BYTES)
            raise RuntimeError("boom")
    assert lib.names() == []
    assert not any(entry.name.startswith(".staging") for entry in tmp_path.iterdir())


def test_staging_of_a_killed_process_is_swept(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / ".staging-weld-xyz"
    stale.mkdir()
    (stale / "owner.pid").write_text(dead.stdout.strip())
    add_action(lib, "other")
    assert not stale.exists()


def test_second_writer_of_the_same_action_is_refused(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    (tmp_path / ".locks").mkdir(parents=True)
    holder = filelock.FileLock(str(tmp_path / ".locks" / "action-weld.lock"))
    with holder:
        with pytest.raises(UserError, match="another flash process"):
            add_action(lib, "weld")
    add_action(lib, "weld")


def test_unknown_action_names_the_library_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="No action 'run'.*flash learn"):
        Library(tmp_path).manifest("run")


@pytest.mark.parametrize("name", ["", "has space", "a:b", "../up", ".hidden", "x" * 65, "w\n", "ok\n"])
def test_bad_action_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="not a valid action name"):
        add_action(Library(tmp_path), name)


def test_remove_and_rename(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    add_action(lib, "weld")
    add_action(lib, "wave")
    with pytest.raises(UserError, match="already exists"):
        lib.rename("weld", "wave", force=False)
    lib.rename("weld", "solder", force=False)
    assert lib.names() == ["solder", "wave"]
    assert lib.manifest("solder").name == "solder"
    assert (tmp_path / "solder" / ADAPTER_FILE).read_bytes() == ADAPTER_BYTES
    lib.remove("wave")
    assert lib.names() == ["solder"]
    with pytest.raises(UserError, match="No action 'wave'"):
        lib.remove("wave")


def test_export_then_import_under_a_new_name(tmp_path: Path) -> None:
    lib = Library(tmp_path / "lib")
    add_action(lib, "weld")
    exported = lib.export("weld", tmp_path / "weld.flash")
    other = Library(tmp_path / "other")
    assert other.import_(exported, name=None, force=False) == "weld"
    assert other.import_(exported, name="weld2", force=False) == "weld2"
    assert other.manifest("weld2").name == "weld2"
    assert (other.root / "weld2" / ADAPTER_FILE).read_bytes() == ADAPTER_BYTES
    with pytest.raises(UserError, match="already exists"):
        other.import_(exported, name=None, force=False)


def test_import_refuses_damaged_or_foreign_files(tmp_path: Path) -> None:
    lib = Library(tmp_path / "lib")
    not_zip = tmp_path / "x.flash"
    not_zip.write_text("nope")
    with pytest.raises(UserError, match="not a flash export"):
        lib.import_(not_zip, name=None, force=False)
    tampered = tmp_path / "t.flash"
    with zipfile.ZipFile(tampered, "w") as archive:
        archive.writestr(MANIFEST_FILE, json.dumps(manifest_for("weld").model_dump(mode="json")))
        archive.writestr(ADAPTER_FILE, b"other bytes")
    with pytest.raises(UserError, match="does not match its manifest"):
        lib.import_(tampered, name=None, force=False)
    assert lib.names() == []


def test_manifest_with_unknown_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST_FILE
    data = manifest_for("weld").model_dump(mode="json") | {"surprise": 1}
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="surprise"):
        read_manifest(path)


def test_a_manifest_from_a_newer_flash_asks_for_an_upgrade_not_a_relearn(tmp_path: Path) -> None:
    from flashcli import __version__

    path = tmp_path / MANIFEST_FILE
    data = manifest_for("weld").model_dump(mode="json") | {"new_field": 1}
    path.write_text(json.dumps(data | {"versions": {"flashcli": "99.0.0"}}))
    with pytest.raises(UserError) as newer:
        read_manifest(path)
    assert str(newer.value) == (
        f"Manifest '{path}' was written by flash 99.0.0, newer than this flash ({__version__}); "
        "upgrade flash to read it."
    )
    path.write_text(json.dumps(data | {"format_version": 2}))
    with pytest.raises(UserError, match=r"uses manifest format 2, newer than this flash .*upgrade flash"):
        read_manifest(path)
    # Written by this flash (or an older one, or one that does not say): the field is damage, as before.
    for writer in (__version__, "0.0.1", "not a version"):
        path.write_text(json.dumps(data | {"versions": {"flashcli": writer}}))
        with pytest.raises(UserError, match="invalid at 'new_field'.*re-learn"):
            read_manifest(path)


def test_a_manifest_records_the_memory_rung_and_reads_without_one(tmp_path: Path) -> None:
    rung = {
        "name": "text encoder on the CPU",
        "text_encoder_cpu": True,
        "vae_tiling": False,
        "fp8_denoiser": False,
    }
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps(manifest_for("weld").model_dump(mode="json") | {"memory": rung}))
    assert read_manifest(path).memory == rung
    older = manifest_for("weld").model_dump(mode="json")
    del older["memory"]
    path.write_text(json.dumps(older))
    assert read_manifest(path).memory is None


def test_library_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(UserError, match="is a file"):
        Library.open(file)
    assert os.path.isfile(file)


def test_manifest_an_older_flash_wrote_for_an_undecodable_clip_name_reads(tmp_path: Path) -> None:
    data = manifest_for("weld").model_dump(mode="json")
    data["clips"][0]["path"] = "clips/clip\udcff.mp4"  # json.dumps writes the lone surrogate as \udcff
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps(data))
    manifest = read_manifest(path)
    assert manifest.clips[0].path == "clips/clip\\xff.mp4"
    write_manifest(path, manifest)
    path.read_bytes().decode("utf-8")
    assert read_manifest(path) == manifest


def test_commit_records_every_files_size_and_the_previews_hash(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    with lib.writing("weld", force=False) as staging:
        (staging.path / ADAPTER_FILE).write_bytes(ADAPTER_BYTES)
        (staging.path / PREVIEW_FILE).write_bytes(b"GIF89a preview")
        write_manifest(staging.path / MANIFEST_FILE, manifest_for("weld"))
        staging.commit(force=False)
    manifest = lib.verified("weld")
    assert manifest.adapter_size == len(ADAPTER_BYTES)
    assert manifest.preview_size == len(b"GIF89a preview")
    assert manifest.preview_sha256 == hashlib.sha256(b"GIF89a preview").hexdigest()


def test_import_refuses_a_member_whose_size_is_not_the_declared_one_before_writing(tmp_path: Path) -> None:
    lib = Library(tmp_path / "lib")
    add_action(lib, "weld")
    exported = lib.export("weld", tmp_path / "weld.flash")
    with zipfile.ZipFile(exported) as archive:
        manifest = json.loads(archive.read(MANIFEST_FILE))
        adapter = archive.read(ADAPTER_FILE)
    assert manifest["adapter_size"] == len(ADAPTER_BYTES)
    lying = tmp_path / "lying.flash"
    with zipfile.ZipFile(lying, "w") as archive:
        archive.writestr(MANIFEST_FILE, json.dumps({**manifest, "adapter_size": len(adapter) - 1}))
        archive.writestr(ADAPTER_FILE, adapter)
    other = Library(tmp_path / "other")
    with pytest.raises(UserError, match="adapter.safetensors inside .* does not match its manifest"):
        other.import_(lying, name=None, force=False)
    assert not other.root.exists()  # refused from the zip's header: not even the library folder was made


def test_a_manifest_cannot_point_the_ded_at_another_file(tmp_path: Path) -> None:
    data = manifest_for("weld").model_dump(mode="json")
    data["ded"] = {
        "file": "../other/ded.safetensors",
        "sha256": "00",
        "steps": 1,
        "learning_rate": 0.1,
        "seconds": 1.0,
        "final_losses": {},
    }
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="invalid at 'ded.file'"):
        read_manifest(path)


def test_remove_takes_a_listed_folder_whose_name_is_no_longer_allowed(tmp_path: Path) -> None:
    """An older flash let some names through (one with a trailing newline); they stay removable."""
    lib = Library(tmp_path)
    add_action(lib, "weld")
    os.rename(tmp_path / "weld", tmp_path / "old weld")
    assert lib.names() == ["old weld"]
    lib.remove("old weld")
    assert lib.names() == [] and visible_entries(tmp_path) == []
