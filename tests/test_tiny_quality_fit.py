"""scripts/tiny_quality.py --fit on the shipped `tiny`: training-stream clips against held-out ones."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def tiny_quality():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import tiny_quality

        yield tiny_quality
    finally:
        sys.path.remove(str(SCRIPTS))


def test_fit_reports_both_errors_and_their_ratio(tiny_quality, capsys) -> None:
    torch.set_num_threads(1)
    assert tiny_quality.main(["--fit", "--clips", "1"]) == 0
    fit = json.loads(capsys.readouterr().out)["fit"]
    assert fit["clips"] == 2
    assert 0 < fit["training_clips"] < 1 and 0 < fit["held_out_clips"] < 1
    assert fit["ratio"] == pytest.approx(fit["held_out_clips"] / fit["training_clips"], abs=0.02)
