"""bench/memory_plan.py: the full-size Wan 2.2 TI2V-5B plan table, computed without weights."""

from __future__ import annotations

import json
from pathlib import Path

import memory_plan as bench  # bench/ is on pytest's pythonpath (pyproject.toml)
import pytest

# bench and script tests run in the full suite, not the fast subset (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow


def test_the_table_has_one_row_per_setting_and_the_json_every_phase(tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "plan.json"
    assert bench.main(["--shapes", "81x832x480", "--json", str(out)], out=lines.append) == 0
    table = "\n".join(lines)
    assert table.count("| 81×832×480 |") == 5  # checkpointing off/on x UMT5 kept/freed; the lightest
    assert "UMT5-XXL bf16 10.6 GiB" in table
    rows = json.loads(out.read_text())["rows"]
    assert [row["learn"]["run"]["gradient_checkpointing"] for row in rows] == [False, False, True, True, True]
    assert "| 81×832×480 | on | CPU (tiled) |" in table and table.count("| 81×832×480 | off |") == 2
    learn = [phase["name"] for phase in rows[0]["learn"]["phases"]]
    assert learn == [
        "prompt encoding",
        "clip encoding",
        "training step",
        "preview sampling",
        "preview VAE decode",
    ]


def test_the_ladder_table_names_the_rung_each_card_gets_and_what_fits_when_none_does() -> None:
    lines: list[str] = []
    assert bench.main(["--shapes", "81x832x480"], out=lines.append) == 0
    table = "\n".join(lines)
    assert (
        "| 81x832x480 | learn | 25.9/24.3/24.3/19.6 | text encoder on the CPU, VAE tiled, denoiser stored "
        "in fp8 | as asked |"
    ) in table
    assert "| 121x1280x704 | learn |" in table and "refused; fits: --frames 49 (at 1280x704)" in table
