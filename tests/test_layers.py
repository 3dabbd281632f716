"""The floor plan is a contract: `lint-imports` checks the import-linter contracts in pyproject.toml
(cli over workflows over config, library, video, core and figureworld over the files module; library
and video without core; figureworld without model code; research code in flashcli.lab only; base
loading between the core modules that run a base and the parts it assembles; no cycles in core), so
the plain `pytest` run that CI makes breaks when an import crosses a layer.

bench/ and scripts/ are folders of scripts, not packages, so import-linter cannot see them: the
tests below read the sources instead."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Spelled in two pieces so that this file does not match the searches it makes.
PATH_HACKS = ("sys" + ".path", "spec_from" + "_file_location")


def _script_names() -> set[str]:
    """The names a module of bench/ or scripts/ could be imported by (with those folders on the path)."""
    names = {"bench", "scripts"}
    for folder in (ROOT / "bench", ROOT / "scripts"):
        names |= {entry.stem for entry in folder.iterdir() if entry.suffix == ".py" or entry.is_dir()}
    return names


def _imported_roots(source: Path) -> set[str]:
    """The first name of every absolute import in `source` (`a` for `import a.b`, `from a.b import c`)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.is_file(), "import-linter is missing: pip install -e '.[test]'"
    # --no-cache: nothing written into the checkout.
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 broken" in done.stdout and "KEPT" in done.stdout


def test_src_never_imports_bench_or_scripts() -> None:
    scripts = _script_names()
    crossing = {
        str(source.relative_to(ROOT)): sorted(_imported_roots(source) & scripts)
        for source in (ROOT / "src").rglob("*.py")
    }
    assert not {path: names for path, names in crossing.items() if names}


def test_nothing_reaches_code_through_path_hacks() -> None:
    """bench, scripts and the tests import flashcli (and pytest's pythonpath) like any user would."""
    folders = [ROOT / "src", ROOT / "bench", ROOT / "scripts", ROOT / "tests"]
    hacks = [
        f"{source.relative_to(ROOT)}: {hack}"
        for folder in folders
        for source in folder.rglob("*.py")
        for hack in PATH_HACKS
        if hack in source.read_text(encoding="utf-8")
    ]
    assert not hacks
