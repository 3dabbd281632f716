"""The files module: what flash writes appears whole or not at all, a failed write keeps what was
there, and it gets the user's normal permissions, not the private ones of temp files."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flashcli.errors import UserError
from flashcli.files import atomic_folder, replace_folder, staging_folder, write_json_atomic

_HEADER = {
    "format_version": "1",
    "base_id": "b",
    "base_weight_hash": "h",
    "targets": "t",
    "rank": "2",
    "alpha": "2",
}


@pytest.fixture()
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture()
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _old_folder(parent: Path) -> Path:
    folder = parent / "frames"
    folder.mkdir()
    (folder / "frame_000.png").write_bytes(b"old frame")
    return folder


def _refuse_renames_of(source: Callable[[Path], bool], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the rename of a path that `source` picks fail as on a full disk; other renames go through."""
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if source(Path(src)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


# -- folders --------------------------------------------------------------------------------------


def test_a_writer_that_fails_keeps_the_old_folder_and_leaves_nothing(tmp_path: Path) -> None:
    folder = _old_folder(tmp_path)
    with pytest.raises(RuntimeError, match="encoder died"), atomic_folder(folder) as staging:
        (staging / "frame_000.png").write_bytes(b"half a new frame")
        raise RuntimeError("encoder died")
    assert _tree(folder) == {"frame_000.png": b"old frame"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_a_folder_is_replaced_whole(tmp_path: Path) -> None:
    folder = _old_folder(tmp_path)
    with atomic_folder(folder) as staging:
        (staging / "frame_000.png").write_bytes(b"new frame")
        (staging / "frame_001.png").write_bytes(b"another")
        assert _tree(folder) == {"frame_000.png": b"old frame"}  # readers see the old one meanwhile
    assert _tree(folder) == {"frame_000.png": b"new frame", "frame_001.png": b"another"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _old_folder(tmp_path)
    staged = staging_folder(tmp_path, prefix=".frames-new-")
    (staged / "frame_000.png").write_bytes(b"new frame")
    _refuse_renames_of(lambda src: src == staged, monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        replace_folder(staged, folder)
    assert _tree(folder) == {"frame_000.png": b"old frame"}
    # No trash left behind; the staged folder stays its writer's to retry or remove.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([staged.name, "frames"])


def test_a_refused_folder_write_names_the_target(tmp_path: Path) -> None:
    """A full disk while filling the staging folder is told about the folder the user asked for."""
    folder = _old_folder(tmp_path)
    with pytest.raises(OSError) as raised, atomic_folder(folder) as staging:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(staging / "frame_000.png"))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(folder)

    def explain(target: Path, error: OSError) -> str:
        return f"'{target}' cannot be written: the disk is full."

    with (
        pytest.raises(UserError, match=f"'{folder}' cannot be written"),
        atomic_folder(folder, explain=explain),
    ):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert _tree(folder) == {"frame_000.png": b"old frame"}


def test_a_new_folder_and_its_files_get_the_umask_permissions(tmp_path: Path, umask_027: None) -> None:
    with atomic_folder(tmp_path / "frames") as staging:
        (staging / "frame_000.png").write_bytes(b"frame")
        os.chmod(staging / "frame_000.png", 0o600)  # as a writer going through mkstemp would leave it
    assert _mode(tmp_path / "frames") == 0o750
    assert _mode(tmp_path / "frames" / "frame_000.png") == 0o640


def test_the_staging_folder_of_a_killed_writer_is_swept_but_a_live_one_kept(tmp_path: Path) -> None:
    killed_writer = (
        "import os, signal, sys; from flashcli.files import atomic_folder\n"
        "with atomic_folder(sys.argv[1]) as staging:\n"
        "    (staging / 'frame_000.png').write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", killed_writer, str(tmp_path / "frames")], check=False)
    assert done.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()  # the kill left its hidden staging folder behind
    assert left.name.startswith(".frames.") and left.is_dir()
    long_ago = time.time() - 3600
    os.utime(left, (long_ago, long_ago))
    with atomic_folder(tmp_path / "live") as live:  # a writer still at work in this process
        os.utime(live, (long_ago, long_ago))
        with atomic_folder(tmp_path / "frames") as staging:
            (staging / "frame_000.png").write_bytes(b"whole")
        assert live.exists()
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "live"]


# -- files ----------------------------------------------------------------------------------------


def test_json_is_written_whole_with_normal_permissions(tmp_path: Path, umask_022: None) -> None:
    path = write_json_atomic(tmp_path / "deep" / "clip.json", {"action": "weld"}, indent=2)
    assert path.read_text() == '{\n  "action": "weld"\n}\n'
    assert _mode(path) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.json"]


# -- what the model saves -------------------------------------------------------------------------


def _save_tiny_base(folder: Path, seed: int = 0) -> Path:
    from random_wan import random_wan_components

    from flashcli.core.specs import save_base

    transformer, vae, null_text = random_wan_components(seed, 2)
    meta = {"base_id": f"files-test-{seed}", "frames": 9, "size": 32, "fps": 8, "flow_shift": 2.0}
    return save_base(folder, transformer, vae, null_text, meta)


def test_a_saved_base_is_readable_by_other_users(tmp_path: Path, umask_022: None) -> None:
    base = _save_tiny_base(tmp_path / "base")
    entries = [base, *base.rglob("*")]
    assert _mode(base) == 0o755
    assert all(_mode(p) == (0o755 if p.is_dir() else 0o644) for p in entries), {
        str(p): oct(_mode(p)) for p in entries
    }


def test_a_base_whose_swap_fails_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-saving a base over an installed one: if the new folder cannot be renamed into place, the
    installed base stays where it was, whole."""
    base = _save_tiny_base(tmp_path / "base")
    before = _tree(base)
    _refuse_renames_of(lambda src: src.parent == tmp_path and src.name.startswith(".base."), monkeypatch)
    with pytest.raises(OSError):
        _save_tiny_base(tmp_path / "base", seed=1)
    assert _tree(base) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_a_saved_adapter_is_readable_by_other_users(tmp_path: Path, umask_022: None) -> None:
    import torch

    from flashcli.core.adapter import save_adapter

    path = save_adapter(tmp_path / "a.safetensors", {"w": torch.zeros(2)}, _HEADER)
    assert _mode(path) == 0o644
