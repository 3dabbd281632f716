"""Shared fixtures for the core tests: tiny random bases saved as real base folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_helpers import make_base_folder


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base_folder(tmp_path_factory.mktemp("bases") / "tiny-test")


@pytest.fixture(scope="session")
def other_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base_folder(tmp_path_factory.mktemp("bases") / "other-test", seed=1, base_id="other-test")


@pytest.fixture()
def tiny_spec(tiny_base_dir: Path):
    from flashcli.core.specs import load_base

    return load_base(tiny_base_dir, device="cpu")


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models run faster on one thread; with two, OpenMP waits dominate on a shared CPU."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
