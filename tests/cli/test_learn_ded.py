"""`flash learn --ded-steps N`: the action keeps its own fine-tuned DED, `animate` decodes with it
(and only with it when it animates that action alone), and it travels with the action."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import Workspace, base_with_ded
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.library import DED_FILE, MANIFEST_FILE, Library, read_manifest, write_manifest
from flashcli.video import file_hash, read_output


@dataclass(frozen=True)
class Tuned:
    base: Path  # the test base plus a DED
    library: Path  # 'slide' (no DED, base without DED), 'plain' (base with DED, no --ded-steps),
    # 'tuned' (--ded-steps 2) and 'untuned' ('tuned' with its DED file and record removed)


# Every test here shares one learn with DED fine-tuning (about 35 s), so the module is slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tuned(workspace: Workspace, runner: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> Tuned:
    root = tmp_path_factory.mktemp("ded-finetune")
    base = base_with_ded(workspace.base, root / "base")
    library = root / "library"
    shutil.copytree(workspace.library, library)
    preset = root / "ded.toml"  # the test preset, with a DED learning rate that shows in 2 steps
    preset.write_text(
        workspace.preset.read_text().replace("[learn.core]\n", "[learn.core]\nded_finetune_lr = 0.05\n")
    )
    common = ["--base", str(base), "--preset", str(preset), "--library", str(library), "--device", "cpu"]
    for name, extra in (("plain", []), ("tuned", ["--ded-steps", "2"])):
        result = runner.invoke(app, ["learn", str(workspace.clips), "--action", name, *common, *extra])
        assert result.exit_code == 0, result.output
    untuned = library / "untuned"
    shutil.copytree(library / "tuned", untuned)
    (untuned / DED_FILE).unlink()
    manifest = read_manifest(untuned / MANIFEST_FILE)
    write_manifest(untuned / MANIFEST_FILE, manifest.model_copy(update={"name": "untuned", "ded": None}))
    return Tuned(base=base, library=library)


def _animate(runner: CliRunner, tuned: Tuned, photo: Path, out: Path, *args: str) -> tuple[np.ndarray, dict]:
    result = runner.invoke(
        app,
        ["animate", str(photo), *args, "-o", str(out), "--library", str(tuned.library), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    return read_output(out), json.loads(out.with_name(out.name + ".json").read_text())


@pytest.mark.slow
def test_learn_with_ded_steps_keeps_the_tuned_ded_and_inspect_shows_it(
    tuned: Tuned, runner: CliRunner
) -> None:
    from safetensors.torch import load_file

    folder = tuned.library / "tuned"
    record = Library(tuned.library).manifest("tuned").ded
    assert record is not None and record.steps == 2 and len(record.losses) == 2
    assert record.sha256 == file_hash(folder / DED_FILE) and "loss" in record.final_losses
    base_weights = load_file(tuned.base / "ded" / "ded.safetensors")
    tuned_weights = load_file(folder / DED_FILE)
    assert set(tuned_weights) == set(base_weights)  # the DED's own layers only, no VAE weights
    assert any(not np.array_equal(tuned_weights[k].numpy(), base_weights[k].numpy()) for k in base_weights)

    library = ["--library", str(tuned.library)]
    document = json.loads(runner.invoke(app, ["inspect", "tuned", *library, "--json"]).stdout)
    assert document["files"]["ded"] == str(folder / DED_FILE)
    assert document["manifest"]["ded"]["steps"] == 2
    text = runner.invoke(app, ["inspect", "tuned", *library]).stderr
    assert "fine-tuned on the clips: 2 steps" in text and "DED loss" in text


def test_default_learn_writes_no_ded_file(tuned: Tuned, runner: CliRunner) -> None:
    for name in ("slide", "plain"):  # on a base without a DED, and on one with a DED
        assert not (tuned.library / name / DED_FILE).exists()
        assert Library(tuned.library).manifest(name).ded is None
    document = json.loads(
        runner.invoke(app, ["inspect", "plain", "--library", str(tuned.library), "--json"]).stdout
    )
    assert document["files"]["ded"] is None


@pytest.mark.slow
def test_animate_decodes_with_the_actions_ded_and_no_ded_ignores_it(
    tuned: Tuned, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    photo = workspace.photo
    own, own_sidecar = _animate(runner, tuned, photo, tmp_path / "own.png", "--action", "tuned")
    base, base_sidecar = _animate(runner, tuned, photo, tmp_path / "base.png", "--action", "untuned")
    assert not np.array_equal(own[1:], base[1:])  # same adapter and seed: only the decoder differs
    assert np.array_equal(own[0], base[0])  # frame 0 is the photo either way
    assert own_sidecar["decoder"]["ded"] == "action 'tuned'"
    assert own_sidecar["decoder"]["sha256"] == file_hash(tuned.library / "tuned" / DED_FILE)
    assert base_sidecar["decoder"] == {"ded": "base", "chosen_by": "default"}

    off, off_sidecar = _animate(runner, tuned, photo, tmp_path / "off.png", "--action", "tuned", "--no-ded")
    plain, _ = _animate(runner, tuned, photo, tmp_path / "plain.png", "--action", "untuned", "--no-ded")
    assert np.array_equal(off, plain) and off_sidecar["decoder"] == {"ded": "none", "chosen_by": "--no-ded"}


@pytest.mark.slow
def test_combined_actions_use_the_base_ded_and_say_so(
    tuned: Tuned, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "both.png"
    args = ["animate", str(workspace.photo), "--action", "tuned", "--action", "plain:0.5", "-o", str(out)]
    result = runner.invoke(app, [*args, "--library", str(tuned.library), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "the base's Detail Enhancement Decoder decodes the video" in result.stderr
    assert "'tuned'" in result.stderr
    assert json.loads(out.with_name(out.name + ".json").read_text())["decoder"]["ded"] == "base"


def test_a_tuned_ded_from_another_vae_is_refused(
    tuned: Tuned, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    import torch
    from diffusers import AutoencoderKLWan

    # Same transformer (so the adapter fits), retrained VAE: the action's DED no longer belongs to it.
    base = tmp_path / "base-new-vae"
    shutil.copytree(tuned.base, base)
    vae = AutoencoderKLWan.from_pretrained(base / "vae")
    with torch.no_grad():
        next(vae.parameters()).add_(0.1)
    vae.save_pretrained(base / "vae")
    out = tmp_path / "out"
    out.mkdir()
    args = ["animate", str(workspace.photo), "--action", "tuned", "--base", str(base), "--out-dir", str(out)]
    result = runner.invoke(app, [*args, "--library", str(tuned.library), "--device", "cpu"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: Cannot use the fine-tuned DED of action 'tuned'")
    assert "VAE" in lines[-1] and "--no-ded" in lines[-1] and "Traceback" not in result.stderr
    assert list(out.iterdir()) == []


def test_export_and_import_carry_the_ded(tuned: Tuned, runner: CliRunner, tmp_path: Path) -> None:
    library = tmp_path / "library"
    shutil.copytree(tuned.library, library)
    flags = ["--library", str(library), "--json"]
    exported = tmp_path / "tuned.flash"
    assert runner.invoke(app, ["export", "tuned", str(exported), *flags]).exit_code == 0
    assert runner.invoke(app, ["import", str(exported), "--as", "tuned2", *flags]).exit_code == 0
    assert file_hash(library / "tuned2" / DED_FILE) == file_hash(library / "tuned" / DED_FILE)
    assert Library(library).manifest("tuned2").ded == Library(library).manifest("tuned").ded
