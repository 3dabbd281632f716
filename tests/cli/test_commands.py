"""The commands doing their job, through typer's runner on a tiny random base (real core, no mocks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import FRAMES, SIZE, Workspace, sliding_square
from PIL import Image
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.library import Library
from flashcli.video import file_hash, fit_image, read_clip, read_image, read_output


def test_help_is_fast_because_the_model_stack_is_not_imported() -> None:
    probe = "import sys, flashcli.cli; print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    for command in ("learn", "animate", "inspect", "remove", "rename", "export", "import"):
        assert command in result.output


def test_learned_action_has_adapter_manifest_and_a_preview_from_a_held_out_still(
    workspace: Workspace,
) -> None:
    lib = Library(workspace.library)
    assert lib.names() == ["slide"]
    manifest = lib.manifest("slide")
    assert [Path(clip.path).name for clip in manifest.clips] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert manifest.frames == FRAMES and manifest.size == SIZE and manifest.steps == 2
    assert len(manifest.losses) == 2 and manifest.final_losses == manifest.losses[-1]
    assert manifest.base == "tiny-test" and manifest.base_source == str(workspace.base)
    assert manifest.preview_source.startswith("figureworld:") and "unseen" in manifest.preview_source
    folder = workspace.library / "slide"
    assert manifest.adapter_sha256 == file_hash(folder / "adapter.safetensors")
    preview = read_output(folder / "preview.gif")
    assert preview.shape == (FRAMES, SIZE, SIZE, 3)
    training_frames = [
        fit_image(frame, SIZE) for clip in manifest.clips for frame in read_clip(Path(clip.path)).frames
    ]
    assert not any(np.abs(preview[0].astype(int) - frame).mean() < 4 for frame in training_frames)
    assert not any(entry.name.startswith(".staging") for entry in workspace.library.iterdir())


@pytest.mark.slow
def test_learn_json_warns_about_few_and_duplicate_clips_and_force_replaces(
    workspace: Workspace, library_copy: Path, runner: CliRunner, tmp_path: Path
) -> None:
    clip = workspace.clips / "clip0.mp4"
    twin = tmp_path / "twin.mp4"
    shutil.copy(clip, twin)
    before = (library_copy / "slide" / "action.json").read_text()
    args = ["learn", str(clip), str(twin), "--action", "slide", "--force", "--base", str(workspace.base)]
    args += ["--preset", str(workspace.preset), "--library", str(library_copy), "--steps", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert document["action"] == "slide" and Path(document["adapter"]).is_file()
    assert document["manifest"]["steps"] == 1
    assert any("Only 2 clips" in warning for warning in document["warnings"])
    assert any("duplicates" in warning for warning in document["warnings"])
    assert "clip0.mp4" in result.stderr and "twin.mp4" in result.stderr  # the preflight table
    assert "learn 1/1" in result.stderr and "s/step" in result.stderr and "ETA" in result.stderr
    assert (library_copy / "slide" / "action.json").read_text() != before


def animate(runner: CliRunner, workspace: Workspace, *args: str) -> dict:
    result = runner.invoke(
        app, ["animate", *args, "--library", str(workspace.library), "--device", "cpu", "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_animate_keeps_the_photo_as_frame_zero_and_writes_a_reproducible_sidecar(
    workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    document = animate(
        runner,
        workspace,
        str(workspace.photo),
        "--action",
        "slide",
        "--format",
        "png",
        "--out-dir",
        str(tmp_path),
    )
    [record] = document["outputs"]
    video = read_output(Path(record["video"]))
    assert Path(record["video"]).name == "photo_slide.png"
    assert video.shape == (FRAMES, SIZE, SIZE, 3)
    assert np.array_equal(video[0], fit_image(read_image(workspace.photo), SIZE, "center"))
    sidecar = json.loads(Path(record["sidecar"]).read_text())
    assert sidecar["photo"]["sha256"] == file_hash(workspace.photo)
    assert (
        sidecar["actions"][0]["adapter_sha256"] == Library(workspace.library).manifest("slide").adapter_sha256
    )
    assert sidecar["base"]["id"] == "tiny-test" and sidecar["base"]["weight_hash"]
    assert sidecar["seed"] == 0 and sidecar["sample_settings"]["steps"] == 2
    assert sidecar["sample_settings"]["eta"] is None and sidecar["sampler_eta"] == 0.0  # the base's: Euler
    assert {"torch", "diffusers", "flashcli"} <= set(sidecar["versions"])


@pytest.mark.slow
def test_several_photos_share_one_model_load_and_a_seed_repeats_exactly(
    workspace: Workspace, runner: CliRunner, tmp_path: Path, monkeypatch
) -> None:
    import flashcli.core.specs as specs

    second = tmp_path / "second.jpg"
    Image.fromarray(sliding_square(3, frames=2, height=32, width=64)[1]).save(second)
    loads = []
    real_load = specs.load_base
    monkeypatch.setattr(specs, "load_base", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    photos = [str(workspace.photo), str(second)]
    first = animate(
        runner,
        workspace,
        *photos,
        "--action",
        "slide:0.5",
        "--format",
        "png",
        "--out-dir",
        str(tmp_path / "a"),
        "--seed",
        "3",
    )
    again = animate(
        runner,
        workspace,
        *photos,
        "--action",
        "slide:0.5",
        "--format",
        "png",
        "--out-dir",
        str(tmp_path / "b"),
        "--seed",
        "3",
    )
    assert len(loads) == 2  # one per call, not one per photo
    assert [Path(r["video"]).name for r in first["outputs"]] == ["photo_slide.png", "second_slide.png"]
    for a, b in zip(first["outputs"], again["outputs"], strict=True):
        assert Path(a["video"]).read_bytes() == Path(b["video"]).read_bytes()
        assert a["actions"][0]["strength"] == 0.5


def test_animate_default_mp4_output(workspace: Workspace, runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "weld.mp4"
    document = animate(
        runner, workspace, str(workspace.photo), "--action", "slide", "-o", str(out), "--steps", "1"
    )
    assert document["outputs"][0]["video"] == str(out)
    clip = read_clip(out)
    assert clip.frame_count == FRAMES and (clip.width, clip.height) == (SIZE, SIZE)
    assert (tmp_path / "weld.mp4.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weld.mp4", "weld.mp4.json"]


def test_inspect_library_action_and_loose_adapter(
    workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    library = ["--library", str(workspace.library)]
    table = runner.invoke(app, ["inspect", *library])
    assert table.exit_code == 0 and "slide" in table.stderr and "tiny-test" in table.stderr
    listing = json.loads(runner.invoke(app, ["inspect", *library, "--json"]).stdout)
    assert [row["action"] for row in listing["actions"]] == ["slide"]
    assert listing["actions"][0]["clips"] == 3 and listing["actions"][0]["size_bytes"] > 0

    plot, sheet = tmp_path / "loss.png", tmp_path / "sheet.png"
    details = runner.invoke(
        app, ["inspect", "slide", *library, "--plot", str(plot), "--contact-sheet", str(sheet)]
    )
    assert details.exit_code == 0, details.output
    assert any(block in details.stderr for block in "▁▂▃▄▅▆▇█") and "clip1.mp4" in details.stderr
    assert Image.open(plot).size[0] > 100
    sheet_image = Image.open(sheet)
    assert sheet_image.size[0] >= FRAMES * SIZE and sheet_image.size[1] > SIZE

    document = json.loads(runner.invoke(app, ["inspect", "slide", *library, "--json"]).stdout)
    assert document["manifest"]["name"] == "slide" and Path(document["files"]["adapter"]).is_file()

    adapter = workspace.library / "slide" / "adapter.safetensors"
    loose = json.loads(runner.invoke(app, ["inspect", str(adapter), "--json"]).stdout)
    assert loose["metadata"]["base_id"] == "tiny-test" and loose["parameters"] > 0


def test_rename_export_import_remove(library_copy: Path, runner: CliRunner, tmp_path: Path) -> None:
    library = ["--library", str(library_copy)]

    def run(*args: str) -> dict:
        result = runner.invoke(app, [*args, *library, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    run("rename", "slide", "glide")
    exported = run("export", "glide", str(tmp_path / "glide.flash"))
    assert Path(exported["file"]).is_file()
    run("import", exported["file"], "--as", "glide2")
    assert Library(library_copy).names() == ["glide", "glide2"]
    run("remove", "glide")
    assert Library(library_copy).names() == ["glide2"]
    assert Library(library_copy).manifest("glide2").name == "glide2"


def test_an_internal_failure_exits_1_without_traceback_or_output(
    workspace: Workspace, runner: CliRunner, tmp_path: Path, monkeypatch
) -> None:
    import flashcli.core.sampler as sampler

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(sampler, "animate_photo", broken)
    result = runner.invoke(
        app,
        [
            "animate",
            str(workspace.photo),
            "--action",
            "slide",
            "--library",
            str(workspace.library),
            "--out-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert "internal error" in result.stderr and "simulated failure" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_json_output_of_real_processes_is_one_document(workspace: Workspace, tmp_path: Path) -> None:
    from cli_helpers import run_cli

    library = ["--library", str(workspace.library)]
    listing = run_cli("inspect", *library, "--json")
    assert listing.returncode == 0 and json.loads(listing.stdout)["actions"][0]["action"] == "slide"
    details = run_cli("inspect", "slide", *library, "--json")
    assert json.loads(details.stdout)["manifest"]["name"] == "slide"
    result = run_cli(
        "animate", str(workspace.photo), "--action", "slide", *library, "--out-dir", str(tmp_path), "--json"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # fails if anything else was printed on stdout
    assert Path(document["outputs"][0]["video"]).is_file()
    assert "animate photo.png" in result.stderr  # progress went to stderr


@pytest.mark.slow
def test_ded_switch_decides_whether_the_detail_decoder_shapes_the_video(
    workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    import torch
    from diffusers import AutoencoderKLWan

    from flashcli.core.ded import DetailEnhancedDecoder

    base = tmp_path / "base-with-ded"
    shutil.copytree(workspace.base, base)
    ded = DetailEnhancedDecoder(AutoencoderKLWan.from_pretrained(base / "vae"))
    with torch.no_grad():  # a trained DED stand-in: non-zero outputs, so it changes what it decodes
        for parameter in ded.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    ded.save(base / "ded")

    def frames(*flags: str) -> tuple[np.ndarray, dict]:
        out = tmp_path / f"out{'-'.join(flags) or '-default'}.png"
        document = animate(
            runner,
            workspace,
            str(workspace.photo),
            "--action",
            "slide",
            "--base",
            str(base),
            "-o",
            str(out),
            *flags,
        )
        return read_output(out), json.loads(Path(document["outputs"][0]["sidecar"]).read_text())

    default, default_sidecar = frames()
    with_ded, _ = frames("--ded")
    without, without_sidecar = frames("--no-ded")
    assert np.array_equal(default, with_ded)  # on by default when the base has a DED
    assert not np.array_equal(with_ded[1:], without[1:])
    assert np.array_equal(with_ded[0], without[0])  # frame 0 is the photo either way
    assert default_sidecar["sample_settings"]["use_ded"] is True
    assert without_sidecar["sample_settings"]["use_ded"] is False
