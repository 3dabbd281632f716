"""What flash saves gets the user's normal permissions, not the private ones of temp files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from core_helpers import make_base_folder

from flashcli.core.adapter import save_adapter

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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_saved_base_is_readable_by_other_users(tmp_path: Path, umask_022: None) -> None:
    base = make_base_folder(tmp_path / "base")
    entries = [base, *base.rglob("*")]
    assert _mode(base) == 0o755
    assert all(_mode(p) == (0o755 if p.is_dir() else 0o644) for p in entries), {
        str(p): oct(_mode(p)) for p in entries
    }


def test_a_saved_adapter_is_readable_by_other_users(tmp_path: Path, umask_022: None) -> None:
    path = save_adapter(tmp_path / "a.safetensors", {"w": torch.zeros(2)}, _HEADER)
    assert _mode(path) == 0o644
