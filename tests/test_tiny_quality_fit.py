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


def test_text_use_compares_the_true_action_with_none_and_a_wrong_one(tiny_quality, capsys, tmp_path) -> None:
    from flashcli.core.specs import load_base, save_base

    torch.set_num_threads(1)
    assert tiny_quality.main(["--text-use", "--clips", "1"]) == 0  # the shipped tiny has action texts
    use = json.loads(capsys.readouterr().out)["text_use"]
    assert use["clips"] == 2
    assert use["true action"] != use["no action"] != use["wrong action"]
    spec = load_base("tiny", device="cpu")
    save_base(tmp_path / "plain", spec.transformer, spec.vae, spec.null_text, spec.meta)
    with pytest.raises(SystemExit, match="no learned action texts"):
        tiny_quality.main(["--base", str(tmp_path / "plain"), "--text-use", "--clips", "1"])
