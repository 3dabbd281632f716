"""The preflight's memory ladder through the CLI, on the faithful Wan 2.2 miniature with an injected GPU
capacity (FLASH_GPU_MEMORY_GIB): a run that fits no rung is refused before any weight loads, the chosen
rung is applied to the loaded base and recorded in --json, `flash animate` releases the text encoder once
its prompts are encoded, and running out of memory names the smaller settings the plan says fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import sliding_square
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.video import write_video

PRESET = (
    'description = "a few steps"\n[learn]\nsteps = 1\nrank = 2\npreview_steps = 1\n'
    "[learn.core]\nwarmup_steps = 0\naugment_copies = 1\n[animate]\nsteps = 1\n"
)


@pytest.fixture()
def job(tmp_path: Path, wan22_miniature_dir: Path) -> dict[str, Any]:
    """Three clips, a preset of a few steps and a library, for 9 frames of 64x64 on the miniature."""
    clips = tmp_path / "clips"
    for seed in range(3):
        write_video(clips / f"clip{seed}.mp4", sliding_square(seed, frames=12, height=64, width=64), fps=8)
    preset = tmp_path / "few.toml"
    preset.write_text(PRESET)
    library = tmp_path / "library"
    learn = ["learn", str(clips), "--action", "weld", "--base", str(wan22_miniature_dir)]
    learn += ["--preset", str(preset), "--prompt", "a welder welds", "--frames", "9", "--size", "64"]
    learn += ["--library", str(library), "--device", "cpu"]
    return {"learn": learn, "library": library, "base": wan22_miniature_dir, "preset": preset}


def _message(result: Any) -> str:
    return " ".join(result.stderr.split())


def test_a_run_no_rung_fits_is_refused_in_one_sentence_before_loading(
    job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", "0.5")
    monkeypatch.setattr("flashcli.workflows.learn.open_base", _never)
    result = CliRunner().invoke(app, job["learn"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = _message(result)
    assert "`flash learn` at 9 frames of 64x64 needs about 1.0 GiB of GPU memory" in message
    assert "more than the 0.5 GiB available" in message and "a GPU with at least 2 GiB" in message
    assert not (job["library"] / "weld").exists()


def test_a_capacity_that_is_not_a_number_is_refused(job: dict[str, Any], monkeypatch) -> None:
    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", "lots")
    result = CliRunner().invoke(app, job["learn"])
    assert result.exit_code == 2 and "FLASH_GPU_MEMORY_GIB='lots' is not a number of GiB" in _message(result)


@pytest.mark.slow
def test_out_of_memory_names_the_smaller_settings_the_plan_says_fit(
    job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", "64")
    monkeypatch.setattr("flashcli.core.trainer.train_adapter", out_of_memory)
    result = CliRunner().invoke(app, job["learn"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = _message(result)
    assert "The GPU ran out of memory during `flash learn`; nothing was saved." in message
    assert "--frames 5 (at 64x64) or --size 32x32 (at 9 frames) fits this GPU" in message
    assert "--preset low-vram" not in message  # the computed settings, not the generic list
    assert not (job["library"] / "weld").exists()


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("the base was loaded")


def _fp8_rung_capacity(job: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """The GiB at which this learn run fits only the last rung (fp8 denoiser), as the preflight plans it."""
    from flashcli.config import resolve_learn
    from flashcli.core.memory_plan import LADDER
    from flashcli.workflows.plan import base_shape, learn_memory, plan_learn

    flags = {"base": str(job["base"]), "prompt": "a welder welds", "frames": 9, "size": "64", "device": "cpu"}
    preset, config, table = resolve_learn(str(job["preset"]), flags)
    shape = base_shape(str(job["base"]))
    assert shape is not None
    train = plan_learn(preset, config, table, shape, flags).train
    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", "1000")
    choice = learn_memory(str(job["base"]), "cpu", train)
    assert choice is not None
    needs = {rung: plan.needs() for rung, plan in choice.plans}
    assert needs[LADDER[-1]] < min(needs[rung] for rung in LADDER[:-1])
    return repr(needs[LADDER[-1]] / 2**30)


@pytest.mark.slow
def test_the_chosen_rung_is_applied_and_the_run_still_learns_and_animates(
    job: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from diffusers.hooks.layerwise_casting import _is_layerwise_casting_active
    from PIL import Image

    from flashcli.workflows import plan

    capacity = _fp8_rung_capacity(job, monkeypatch)
    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", capacity)
    loaded = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        loaded.append(plan.open_base(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr("flashcli.workflows.learn.open_base", spy)
    monkeypatch.setattr("flashcli.workflows.animate.open_base", spy)
    learned = CliRunner().invoke(app, [*job["learn"], "--json"])
    assert learned.exit_code == 0, learned.output
    assert "GPU memory: text encoder on the CPU, VAE tiled, denoiser stored in fp8" in _message(learned)
    memory = json.loads(learned.stdout)["memory"]
    assert memory["rung"]["fp8_denoiser"] and memory["capacity_gib"] == round(float(capacity), 3)
    spec = loaded[0]
    assert spec.vae.use_tiling and spec.text_device.type == "cpu"
    assert _is_layerwise_casting_active(spec.transformer)
    # The action says what it was trained under: an fp8-stored denoiser changes what the LoRA learned.
    saved = json.loads((Path(job["library"]) / "weld" / "action.json").read_text())
    assert saved["memory"]["fp8_denoiser"] and saved["memory"]["name"] == memory["rung"]["name"]
    shown = CliRunner().invoke(app, ["inspect", "weld", "--library", str(job["library"])])
    assert shown.exit_code == 0 and "denoiser stored in fp8" in shown.output

    photo = tmp_path / "photo.png"
    Image.fromarray(sliding_square(9, frames=2, height=64, width=64)[0]).save(photo)
    out = tmp_path / "photo_weld.png"
    args = ["animate", str(photo), "--action", "weld", "-o", str(out), "--library", str(job["library"])]
    animated = CliRunner().invoke(app, [*args, "--device", "cpu", "--json"])
    assert animated.exit_code == 0, animated.output
    assert "GPU memory:" in _message(animated) and out.is_file()
    assert json.loads(animated.stdout)["outputs"][0]["memory"]["rung"] is not None
    # The sidecar keeps the rung: fp8 storage changes the video, so reproducing it needs the rung too.
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["memory"]["rung"]["fp8_denoiser"]
    assert loaded[1].text_encoder is None and loaded[1].has_text  # released once the prompts were encoded


@pytest.mark.slow  # a few seconds: the full suite runs it, the quick subset does not
def test_the_time_estimate_is_printed_before_the_weights_load_only_with_a_throughput(
    job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", "64")
    monkeypatch.setattr("flashcli.workflows.learn.open_base", _never)
    without = CliRunner().invoke(app, job["learn"])
    assert "GPU memory:" in _message(without) and "Time:" not in _message(without)  # a CPU: not measured
    monkeypatch.setenv("FLASH_GPU_TFLOPS", "400")
    planned = CliRunner().invoke(app, job["learn"])
    assert "Time: under a minute for 1 step (planned at 35% of the measured 400 TFLOP/s)" in _message(planned)
    monkeypatch.setenv("FLASH_GPU_TFLOPS", "fast")
    refused = CliRunner().invoke(app, job["learn"])
    assert refused.exit_code == 2 and "FLASH_GPU_TFLOPS='fast' is not a number of TFLOP/s" in _message(
        refused
    )


@pytest.mark.slow
def test_learn_json_carries_the_time_estimate(job: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASH_GPU_MEMORY_GIB", "64")
    monkeypatch.setenv("FLASH_GPU_TFLOPS", "0.000001")  # a millionth of a GPU: the tiny run plans in minutes
    learned = CliRunner().invoke(app, [*job["learn"], "--json"])
    assert learned.exit_code == 0, learned.output
    assert "for 1 step (planned at 35% of the measured 1e-06 TFLOP/s)" in _message(learned)
    planned = json.loads(learned.stdout)["time"]
    assert planned["steps"] == 1 and planned["measured_tflops"] == 1e-06 and planned["utilisation"] == 0.35
    assert planned["seconds"] > 60 and planned["tflop"] > planned["tflop_per_step"] > 0
