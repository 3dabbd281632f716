"""The prepared GPU check of a full-size Wan 2.2 TI2V-5B (scripts/device/real_base_check.py), rehearsed at
miniature size on the CPU: the same build path (meta device, cheap init), the same CLI runs and records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device" / "real_base_check.py"


def _rehearse(tmp_path: Path, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "check.json"
    command = [sys.executable, str(SCRIPT), "--miniature", "--out", str(out), "--work", str(tmp_path), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_the_miniature_rehearsal_learns_and_animates_every_case_through_the_cli(tmp_path: Path) -> None:
    document, table = _rehearse(tmp_path)
    cases = document["cases"]
    assert [case["shape"] for case in cases] == ["9x64x32", "9x32x64"]
    for case in cases:
        for command, stepping, steps in (("learn", "train", 3), ("animate", "sample", 2)):
            record = case[command]
            assert (record["exit"], record["status"], record["error"]) == (0, "ok", None), record
            assert record["json_ok"] and record["load_seconds"] > 0
            stepped = record["phases"][stepping]
            assert (stepped["steps"], stepped["s_per_step"] > 0) == (steps, True), record
            assert {"load", stepping, "decode", "after the last report"} <= set(record["phases"])
        assert "encode" in case["learn"]["phases"]
    assert document["build"]["bytes"]["transformer"] > 0 and document["build"]["bytes"]["text_encoder"] > 0
    rows = [line for line in table.splitlines() if line.startswith(("9x64x32", "9x32x64"))]
    assert len(rows) == 4 and all(" ok" in row for row in rows)
    assert not list(tmp_path.glob("real_base_check-*"))  # the scratch folder (24 GB at full size) goes


@pytest.mark.slow
def test_a_spent_budget_skips_the_runs_and_still_writes_the_record(tmp_path: Path) -> None:
    document, _ = _rehearse(tmp_path, "--budget", "0.5")
    statuses = {case[command]["status"] for case in document["cases"] for command in ("learn", "animate")}
    assert statuses == {"skipped: time"}


def test_a_gpu_memory_cap_that_is_not_a_number_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from flashcli.core.devices import apply_memory_limit

    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", "24GB")
    with pytest.raises(ValueError, match="FLASH_GPU_MEMORY_GIB='24GB' is not a number of GiB"):
        apply_memory_limit(torch.device("cuda"))
