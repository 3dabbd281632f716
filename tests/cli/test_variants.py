"""The paper's six variants through `flash learn --preset <file>` and `flash animate`: each switch changes
what the user gets. Strong augmentation, Motion Align and Correspondence Align change the adapter;
detail enhancement changes how the action is decoded (the DED, or the plain decoder)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import Workspace, base_with_ded
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.core.settings import ALL_LORA_TARGETS, VARIANTS
from flashcli.library import ADAPTER_FILE, MANIFEST_FILE, read_manifest, write_manifest
from flashcli.video import read_output

SWITCHES = ("strong_augment", "motion_align", "correspondence_align", "detail_enhance")

# Six learns on a 2-block random base (a few seconds each), so the module is slow.
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Variants:
    base: Path  # the test base plus a DED
    library: Path  # one action per variant, named after it, all learned with seed 0


def _variant_preset(workspace: Workspace, folder: Path, name: str) -> Path:
    """The test preset with the variant's switches as a [learn.align] table, as a user would write it;
    `plain_lora` is today's common practice: variant `none` with LoRA on every attention projection."""
    switches = VARIANTS["none" if name == "plain_lora" else name]
    table = "\n".join(f"{key} = {str(on).lower()}" for key, on in zip(SWITCHES, switches, strict=True))
    # A large learning rate, so that two steps move every variant's video by more than 8-bit rounding.
    text = workspace.preset.read_text().replace("[learn]\n", "[learn]\nlearning_rate = 0.2\n")
    if name == "plain_lora":
        targets = ", ".join(f'"{t}"' for t in ALL_LORA_TARGETS)
        text = text.replace("[learn.core]\n", f"[learn.core]\ntargets = [{targets}]\n")
    path = folder / f"{name}.toml"
    path.write_text(text + f"[learn.align]\n{table}\n")
    return path


@pytest.fixture(scope="module")
def variants(workspace: Workspace, runner: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> Variants:
    root = tmp_path_factory.mktemp("variants")
    base = base_with_ded(workspace.base, root / "base")
    library = root / "library"
    for name in [*VARIANTS, "plain_lora"]:
        preset = _variant_preset(workspace, root, name)
        args = ["learn", str(workspace.clips), "--action", name, "--preset", str(preset), "--seed", "0"]
        result = runner.invoke(
            app, [*args, "--base", str(base), "--library", str(library), "--device", "cpu"]
        )
        assert result.exit_code == 0, result.output
    return Variants(base=base, library=library)


def _tensors(variants: Variants, name: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(variants.library / name / ADAPTER_FILE)


def _animate(runner: CliRunner, library: Path, photo: Path, out: Path, *args: str) -> tuple[np.ndarray, dict]:
    result = runner.invoke(
        app, ["animate", str(photo), *args, "-o", str(out), "--library", str(library), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    return read_output(out), json.loads(out.with_name(out.name + ".json").read_text())


def test_the_six_variants_learn_six_different_actions(variants: Variants) -> None:
    """Every pair differs in its adapter weights or in how `animate` decodes it by default; only
    detail enhancement is a decoding switch, so only augment_both and full share their weights."""
    weights = {name: _tensors(variants, name) for name in VARIANTS}
    decoders = {name: read_manifest(variants.library / name / MANIFEST_FILE).decoder for name in VARIANTS}
    for one, other in combinations(VARIANTS, 2):
        assert weights[one].keys() == weights[other].keys()
        same_weights = all(np.array_equal(weights[one][k], weights[other][k]) for k in weights[one])
        if {one, other} == {"augment_both", "full"}:
            assert same_weights and decoders[one] != decoders[other]
        else:
            assert not same_weights, f"'{one}' and '{other}' learned the same adapter weights"


def test_full_differs_from_augment_both_by_its_decoder(
    variants: Variants, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    library, photo = variants.library, workspace.photo
    assert read_manifest(library / "full" / MANIFEST_FILE).decoder == "ded"
    assert read_manifest(library / "augment_both" / MANIFEST_FILE).decoder == "plain"
    full, full_sidecar = _animate(runner, library, photo, tmp_path / "full.png", "--action", "full")
    both, both_sidecar = _animate(runner, library, photo, tmp_path / "both.png", "--action", "augment_both")
    assert not np.array_equal(full[1:], both[1:])
    assert full_sidecar["decoder"] == {"ded": "base", "chosen_by": "default"}
    assert both_sidecar["decoder"]["ded"] == "none"
    assert "augment_both" in both_sidecar["decoder"]["chosen_by"]
    # The two differ only in how they decode: --ded on variant 5 decodes it as variant 6.
    forced, forced_sidecar = _animate(
        runner, library, photo, tmp_path / "forced.png", "--action", "augment_both", "--ded"
    )
    assert np.array_equal(forced, full) and forced_sidecar["decoder"]["chosen_by"] == "--ded"


def test_a_manifest_from_before_the_decoder_field_decodes_with_the_ded(
    variants: Variants, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    import shutil

    library = tmp_path / "library"
    shutil.copytree(variants.library, library)
    manifest_path = library / "augment_both" / MANIFEST_FILE
    document = json.loads(manifest_path.read_text())
    del document["decoder"]  # as flash wrote it before the field existed
    manifest_path.write_text(json.dumps(document))
    old = read_manifest(manifest_path)
    assert old.decoder is None
    write_manifest(manifest_path, old)  # a consistent manifest without the field
    _, sidecar = _animate(runner, library, workspace.photo, tmp_path / "old.png", "--action", "augment_both")
    assert sidecar["decoder"] == {"ded": "base", "chosen_by": "default"}


def test_inspect_says_how_each_variant_decodes_by_default(variants: Variants, runner: CliRunner) -> None:
    words = {}
    for name in ("full", "augment_both"):
        result = runner.invoke(app, ["inspect", name, "--library", str(variants.library)])
        assert result.exit_code == 0, result.output
        words[name] = " ".join(result.output.split())  # the table wraps long values
    assert "decoder plain by default" in words["augment_both"]
    assert "decoder the Detail Enhancement Decoder by default" in words["full"]


def test_plain_lora_and_no_adapter_differ_from_every_variant_through_animate(
    variants: Variants, workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    """The benchmark's two reference rows as a user makes them: plain LoRA is a preset with every
    projection as a target, no adapter is any action at strength 0; each gives its own video."""
    plain, none = _tensors(variants, "plain_lora"), _tensors(variants, "none")
    assert set(none) < set(plain), "plain LoRA adapts more projections than the default targets"
    library, photo = variants.library, workspace.photo
    videos = {
        name: _animate(runner, library, photo, tmp_path / f"{name}.png", "--action", name)[0]
        for name in [*VARIANTS, "plain_lora"]
    }
    videos["no adapter"], sidecar = _animate(
        runner, library, photo, tmp_path / "no_adapter.png", "--action", "full:0", "--no-ded"
    )
    assert sidecar["actions"][0]["strength"] == 0
    for one, other in combinations(videos, 2):
        assert not np.array_equal(videos[one][1:], videos[other][1:]), f"{one} and {other} animate alike"
