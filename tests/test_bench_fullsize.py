"""bench/fullsize_speed.py, on its small `smoke` config: the path a GPU run takes, checked on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import fullsize_speed as fullsize  # bench/ is on pytest's pythonpath (pyproject.toml)
import pytest
import torch

# bench and script tests run in the full suite, not the fast subset (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow

CPU = torch.device("cpu")


def test_the_5b_config_builds_a_five_billion_parameter_denoiser_without_allocating_it() -> None:
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        transformer = WanTransformer3DModel(**fullsize.WAN22_TI2V_5B_TRANSFORMER)
    assert 4.9e9 < fullsize.parameter_count(transformer) < 5.1e9


def test_flops_extrapolated_from_one_and_two_blocks_equal_a_direct_count() -> None:
    config = fullsize.CONFIGS["smoke"]
    spec = fullsize.build_spec(config, CPU)
    assert spec.num_blocks == 4  # beyond the 1 and 2 blocks that are counted
    direct = fullsize.denoiser_pass_flops(spec, 9, 64, spec.encode_text(None))
    extrapolated = fullsize.extrapolated_pass_flops(config, spec, 9, 64)
    assert direct > 0
    assert extrapolated == pytest.approx(direct, rel=1e-6)


def test_a_smoke_run_times_each_variant_and_counts_its_denoiser_passes(tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "fullsize.json"
    argv = ["--config", "smoke", "--device", "cpu", "--steps", "3", "--variants", "none,augment_both"]
    argv += ["--matmul-size", "128", "--matmul-repeats", "2", "--sample-steps", "2", "--json", str(out)]
    assert fullsize.main(argv, out=lines.append) == 0

    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert (row["frames"], row["size"]) == (9, 64)
    # plain LoRA runs the denoiser once a step; augment + alignment also on the augmented copy, and
    # (the default plain loss) once more on the clip without injection
    assert row["none"]["denoiser_passes_per_step"] == 1
    assert row["augment_both"]["denoiser_passes_per_step"] == 3
    assert row["augment_both"]["model_tflops_per_step"] == pytest.approx(
        3 * row["none"]["model_tflops_per_step"]
    )
    for variant in ("none", "augment_both"):
        assert row[variant]["seconds_per_step"] > 0
        assert 0 < row[variant]["mfu"]
    assert row["animate"]["decode_seconds"] > 0
    assert "| 9 x 64 | 12 | augment_both |" in lines[0]


def test_shapes_that_are_not_frames_x_size_are_refused() -> None:
    assert fullsize.parse_shapes("49x512,81x704") == [(49, 512), (81, 704)]
    with pytest.raises(Exception, match="FRAMESxSIZE"):
        fullsize.parse_shapes("49by512")
