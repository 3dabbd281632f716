"""scripts/tiny_quality.py --fit on the shipped `tiny`: training-stream clips against held-out ones."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow  # each test runs the script on the shipped base (tens of seconds)


@pytest.fixture(scope="module")
def tiny_quality():
    import tiny_quality  # scripts/tiny_quality.py: scripts/ is on pytest's pythonpath (pyproject.toml)

    return tiny_quality


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


def test_learn_from_rest_start_clips_reports_each_video_against_the_truth(
    tiny_quality, capsys, tmp_path
) -> None:
    from PIL import Image

    torch.set_num_threads(1)
    argv = ["--learn", "--action", "lunge", "--clips", "2", "--runs", "1", "--learn-steps", "1"]
    assert tiny_quality.main([*argv, "--phase", "0", "--docs", str(tmp_path)]) == 0
    learn = json.loads(capsys.readouterr().out)["learn"]
    assert learn["phase"] == 0.0 and learn["frames"] == 9
    distances = learn["distance_to_truth"]
    assert set(distances) == {"adapter", "no_adapter", "still"}
    # A lunge from rest moves the legs, so holding the photo still is measurably off the truth.
    assert distances["still"] > 1.0
    sheet = Image.open(learn["picture"])
    assert sheet.size[1] == 3 * 2 * 64  # one run: truth, with the adapter, without; drawn at 2x
