"""Root of the test tree. pytest imports it (and so puts `tests/` on the import path) before the
test folders, which lets `tests/cli` and `tests/core` share `random_wan.py`."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def wan22_miniature_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The faithful Wan 2.2 TI2V-5B miniature (`wan22_miniature.py`), built once per session: read only."""
    from wan22_miniature import make_wan22_ti2v_miniature

    return make_wan22_ti2v_miniature(tmp_path_factory.mktemp("bases") / "Wan2.2-TI2V-5B-Diffusers")
