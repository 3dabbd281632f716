"""bench/base_prior.py: a smoke run on the shipped `tiny` writes a table whose reference rows behave as
references must (its ancestral sampler is the core's, tested in tests/core/test_sampler.py)."""

from __future__ import annotations

import json
from pathlib import Path

import base_prior  # bench/base_prior.py: bench/ is on pytest's pythonpath (pyproject.toml)
import pytest

# bench and script tests run in the full suite, not the fast subset (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow


def test_a_smoke_run_scores_the_truth_best_and_the_still_photo_as_no_motion(tmp_path: Path) -> None:
    out = tmp_path / "prior"
    args = ["--quick", "--photos", "1", "--frames", "5", "--steps", "2", "--out", str(out), "--etas", "0.5"]
    assert base_prior.main(args) == 0
    result = json.loads((out / "base_prior.json").read_text())
    rows = result["rows"]
    sampled = {"euler (eta 0)", "ancestral (eta 1)", "partly ancestral (eta 0.5)"}
    # The shipped tiny learned a text per pretraining action, so each sampler is also told the action.
    told = {f"{row}, told the action" for row in sampled}
    assert set(rows) == {"ground truth", "still photo"} | sampled | told
    assert (result["photos"], result["steps"], result["frames"]) == (1, 2, 5)  # flags beat --quick
    assert rows["ground truth"]["joint_error"] < rows["still photo"]["joint_error"]
    assert result["motion"]["still photo"] == 0.0 and result["motion"]["ground truth"] > 0
    assert (out / "sheet.png").stat().st_size > 0 and "| still photo |" in (out / "base_prior.md").read_text()


def test_stream_photos_are_the_pretraining_streams_own_clips_of_each_action() -> None:
    from flashcli.lab.pretrain.data import clip_action

    seeds = base_prior.stream_seeds(["squat", "kick"], 2)
    assert all(len(found) == 2 for found in seeds.values())
    assert all(clip_action(seed, 0) == action for action, found in seeds.items() for seed in found)
    assert seeds["squat"][0] == min(i for i in range(200) if clip_action(i, 0) == "squat")


def test_clips_from_rest_are_named_in_the_report(tmp_path) -> None:
    out = tmp_path / "rest"
    args = ["--quick", "--photos", "1", "--frames", "5", "--steps", "1", "--samplers", "euler"]
    assert base_prior.main([*args, "--phase", "0", "--out", str(out)]) == 0
    result = json.loads((out / "base_prior.json").read_text())
    assert result["phase"] == 0.0 and "starting at phase 0." in (out / "base_prior.md").read_text()


def test_a_phase_of_one_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as refused:
        base_prior.parse_args(["--phase", "1"])
    assert refused.value.code == 2 and "--phase must lie in [0, 1)" in capsys.readouterr().err


def test_an_eta_outside_zero_to_one_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as refused:
        base_prior.parse_args(["--etas", "1.5"])
    assert refused.value.code == 2 and "between 0 (Euler) and 1 (ancestral)" in capsys.readouterr().err
