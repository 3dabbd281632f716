"""`flash export NAME --format diffusers`: one safetensors file of the action's LoRA that diffusers' own
loader (`WanPipeline.load_lora_weights`) reads, with flash's scale; what it cannot carry (the action's
DED) is named on stderr, and an action on one of flash's own bases is refused in one sentence."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from cli_helpers import Workspace, base_with_ded, run_cli, sliding_square
from typer.testing import CliRunner

from flashcli.video import write_video

PROMPT = "a welder welds a steel plate"
RANK, ALPHA = 2, 8.0  # alpha / rank = 4: a file that lost alpha would load at scale 1 and not match


@pytest.fixture(scope="module")
def learned(wan22_miniature_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Action 'weld' learned in one step (a large learning rate, so the LoRA is far from zero) with its
    own DED on the miniature; returns (base folder, library)."""
    from flashcli.cli import app

    root = tmp_path_factory.mktemp("diffusers-export")
    base = base_with_ded(wan22_miniature_dir, root / "Wan2.2-TI2V-5B-Diffusers")
    clips = root / "clips"
    for index in range(3):
        write_video(clips / f"clip{index}.mp4", sliding_square(index), fps=8)
    preset = root / "one-step.toml"
    preset.write_text(
        'description = "one step"\n[learn]\nsteps = 1\nrank = 2\nlearning_rate = 0.05\npreview_steps = 1\n'
        f"[learn.core]\nwarmup_steps = 0\naugment_copies = 1\nalpha = {ALPHA}\n[animate]\nsteps = 1\n"
    )
    library = root / "library"
    args = ["learn", str(clips), "--action", "weld", "--base", str(base), "--preset", str(preset)]
    shape = ["--prompt", PROMPT, "--frames", "5", "--size", "32", "--ded-steps", "1"]
    result = CliRunner().invoke(app, [*args, *shape, "--library", str(library), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return base, library


@pytest.fixture(scope="module")
def exported(
    learned: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess]:
    """`flash export weld --format diffusers --json`, run in an empty folder as a script would; returns
    (that folder, the run)."""
    _, library = learned
    folder = tmp_path_factory.mktemp("out")
    run = run_cli("export", "weld", "--format", "diffusers", "--library", str(library), "--json", cwd=folder)
    return folder, run


@pytest.mark.slow
def test_diffusers_own_loader_reads_the_export_and_the_transformer_matches_flash(
    learned: tuple[Path, Path], exported: tuple[Path, subprocess.CompletedProcess]
) -> None:
    from diffusers import WanPipeline

    from flashcli.core.adapter import adapters_attached, load_adapter
    from flashcli.core.specs import load_base
    from flashcli.library import ADAPTER_FILE, Library

    base, library = learned
    folder, run = exported
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["file"] == "weld.safetensors"  # NAME.safetensors in the current folder
    spec = load_base(base, device="cpu")
    latents = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([600.0])
    text = spec.encode_text(PROMPT)
    adapter = load_adapter(Library.open(library).action_dir("weld") / ADAPTER_FILE)
    pipe = WanPipeline.from_pretrained(base)
    with torch.no_grad():
        with adapters_attached(spec, [(*adapter, 1.0)]):
            flash = spec.denoise(latents, t, text)
        call = {"timestep": spec.token_timesteps(t, latents.shape), "encoder_hidden_states": text}
        plain = pipe.transformer(hidden_states=latents, **call, return_dict=False)[0]
        pipe.load_lora_weights(str(folder / "weld.safetensors"))  # diffusers' own loader
        loaded = pipe.transformer(hidden_states=latents, **call, return_dict=False)[0]
    assert torch.allclose(loaded, flash, rtol=1e-4, atol=1e-5), (loaded - flash).abs().max()
    # The LoRA moves the output far more than the tolerance: a file that did not load would fail above.
    assert (plain - flash).abs().max() > 100 * (loaded - flash).abs().max() + 1e-4


@pytest.mark.slow
def test_the_export_json_names_rank_alpha_and_the_ded_left_out(
    exported: tuple[Path, subprocess.CompletedProcess],
) -> None:
    folder, run = exported
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["format"] == "diffusers" and sorted(path.name for path in folder.iterdir()) == [
        "weld.safetensors"
    ]
    assert (document["rank"], document["alpha"], document["left_out"]) == (RANK, ALPHA, ["ded"])
    assert document["prompt"] == PROMPT
    assert "Detail Enhancement Decoder" in run.stderr and "flash export weld" in run.stderr


@pytest.mark.slow
def test_an_action_on_the_embedded_tiny_base_is_refused_in_one_sentence(
    workspace: Workspace, tmp_path: Path
) -> None:
    from flashcli.cli import app

    library = tmp_path / "library"
    learn = ["learn", str(workspace.clips), "--action", "wave", "--base", "tiny", "--library", str(library)]
    shape = ["--frames", "5", "--size", "32", "--device", "cpu"]  # the fewest frames and pixels: seconds
    learned = CliRunner().invoke(app, [*learn, *shape, "--preset", str(workspace.preset)])
    assert learned.exit_code == 0, learned.output
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("export", "wave", "--format", "diffusers", "--library", str(library), cwd=out)
    assert result.returncode == 2, result.stderr
    assert "embedded 'tiny' base" in result.stderr and "flash export wave" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(out.iterdir()) == []  # nothing written, not even a temp


@pytest.mark.slow
def test_a_destination_that_is_not_safetensors_is_refused(learned: tuple[Path, Path], tmp_path: Path) -> None:
    from flashcli.cli import app

    _, library = learned
    target = tmp_path / "weld.flash"
    result = CliRunner().invoke(
        app, ["export", "weld", str(target), "--format", "diffusers", "--library", str(library)]
    )
    assert result.exit_code == 2
    assert "does not end in .safetensors" in result.stderr and "'weld.safetensors'" in result.stderr
    assert list(tmp_path.iterdir()) == []
