"""bench/base_prior.py: its ancestral sampler reduces to the Euler ODE at eta 0, and a smoke run on the
shipped `tiny` writes a table whose reference rows behave as references must."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

_BENCH = Path(__file__).resolve().parents[1] / "bench"
_PATH = _BENCH / "base_prior.py"
_SPEC = importlib.util.spec_from_file_location("bench_base_prior", _PATH)
base_prior = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = base_prior
_SPEC.loader.exec_module(base_prior)


def _toy_model(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return 0.5 * x + sigma  # any smooth velocity field will do


def test_eta_zero_is_the_euler_ode_and_eta_one_draws_fresh_noise() -> None:
    from flashcli.core.sampler import sample

    start = torch.randn(1, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    sigmas = torch.linspace(1.0, 0.0, 6)
    euler = sample(_toy_model, start, sigmas)
    deterministic = base_prior.sample_ancestral(
        _toy_model, start, sigmas, 0.0, torch.Generator().manual_seed(1)
    )
    assert torch.allclose(euler, deterministic, atol=1e-5)
    one = base_prior.sample_ancestral(_toy_model, start, sigmas, 1.0, torch.Generator().manual_seed(1))
    other = base_prior.sample_ancestral(_toy_model, start, sigmas, 1.0, torch.Generator().manual_seed(2))
    assert not torch.allclose(one, other)


def test_a_smoke_run_scores_the_truth_best_and_the_still_photo_as_no_motion(tmp_path: Path) -> None:
    out = tmp_path / "prior"
    args = ["--quick", "--photos", "1", "--frames", "5", "--steps", "2", "--out", str(out), "--etas", "0.5"]
    assert base_prior.main(args) == 0
    result = json.loads((out / "base_prior.json").read_text())
    rows = result["rows"]
    expected = {
        "ground truth",
        "still photo",
        "euler (eta 0)",
        "ancestral (eta 1)",
        "partly ancestral (eta 0.5)",
    }
    assert set(rows) == expected
    assert (result["photos"], result["steps"], result["frames"]) == (1, 2, 5)  # flags beat --quick
    assert rows["ground truth"]["joint_error"] < rows["still photo"]["joint_error"]
    assert result["motion"]["still photo"] == 0.0 and result["motion"]["ground truth"] > 0
    assert (out / "sheet.png").stat().st_size > 0 and "| still photo |" in (out / "base_prior.md").read_text()


def test_stream_photos_are_the_pretraining_streams_own_clips_of_each_action() -> None:
    from tiny_pretrain.data import clip_action

    seeds = base_prior.stream_seeds(["squat", "kick"], 2)
    assert all(len(found) == 2 for found in seeds.values())
    assert all(clip_action(seed, 0) == action for action, found in seeds.items() for seed in found)
    assert seeds["squat"][0] == min(i for i in range(200) if clip_action(i, 0) == "squat")


def test_an_eta_outside_zero_to_one_is_refused(capsys) -> None:
    import pytest

    with pytest.raises(SystemExit) as refused:
        base_prior.parse_args(["--etas", "1.5"])
    assert refused.value.code == 2 and "between 0 (Euler) and 1 (ancestral)" in capsys.readouterr().err
