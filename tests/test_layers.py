"""The floor plan is a contract: `lint-imports` checks the import-linter contracts in pyproject.toml
(core at the bottom, figureworld without model code, research code in flashcli.lab only, no cycles
in core), so the plain `pytest` run that CI makes breaks when an import crosses a layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.is_file(), "import-linter is missing: pip install -e '.[test]'"
    # --no-cache: nothing written into the checkout.
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 broken" in done.stdout and "KEPT" in done.stdout
