"""The prompt per action on a real base (the Wan 2.2 TI2V-5B miniature): learn records the training
prompt and the preview's negative prompt, inspect shows them, animate samples with them unless
--negative-prompt says otherwise, and the preview starts from a mirrored frame of the user's own clip.
The tiny base (no text encoder) is unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import Workspace
from typer.testing import CliRunner

from flashcli.cli import app

PROMPT = "a welder welds a steel plate"
MINI_SIZE, MINI_FRAMES = 64, 5  # the miniature takes multiples of 32 and 4k+1 frames


@contextmanager
def encoded_prompts() -> Iterator[list[str | None]]:
    """Every prompt a base is asked to encode while the block runs (the sampler's and the trainer's)."""
    from flashcli.core.specs.wan import WanSpec

    seen: list[str | None] = []
    original = WanSpec.encode_text

    def recording(self: WanSpec, prompt: str | None) -> Any:
        seen.append(prompt)
        return original(self, prompt)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WanSpec, "encode_text", recording)
        yield seen


@dataclass(frozen=True)
class RealAction:
    library: Path
    manifest: dict[str, Any]  # as `flash learn --json` printed it
    learn_prompts: list[str | None]


@pytest.fixture(scope="module")
def weld(
    wan22_miniature_dir: Path, workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> RealAction:
    """'weld' learned on the miniature with a prompt and no --preview-photo, once for this module."""
    library = tmp_path_factory.mktemp("real") / "library"
    shape = ["--frames", str(MINI_FRAMES), "--size", str(MINI_SIZE)]
    with encoded_prompts() as prompts:
        result = CliRunner().invoke(
            app,
            [
                *["learn", str(workspace.clips), "--action", "weld", "--base", str(wan22_miniature_dir)],
                *["--preset", str(workspace.preset), "--prompt", PROMPT, *shape],
                *["--library", str(library), "--device", "cpu", "--json"],
            ],
        )
    assert result.exit_code == 0, result.output
    return RealAction(library, json.loads(result.stdout)["manifest"], list(prompts))


def _animate(workspace: Workspace, library: Path, action: str, out: Path, *extra: str) -> tuple[dict, list]:
    """`flash animate` the workspace photo; returns the sidecar and the prompts the base encoded."""
    common = ["--library", str(library), "--device", "cpu", "--json"]
    with encoded_prompts() as prompts:
        result = CliRunner().invoke(
            app, ["animate", str(workspace.photo), "--action", action, "-o", str(out), *common, *extra]
        )
    assert result.exit_code == 0, result.output
    return json.loads(out.with_name(out.name + ".json").read_text()), list(prompts)


@pytest.mark.slow
def test_real_base_learn_records_the_prompt_and_the_default_negative_prompt(weld: RealAction) -> None:
    from flashcli.core.specs.wan import DIFFUSERS_NEGATIVE_PROMPT

    assert weld.manifest["prompt"] == PROMPT
    assert weld.manifest["negative_prompt"] == DIFFUSERS_NEGATIVE_PROMPT
    assert "blurry" in DIFFUSERS_NEGATIVE_PROMPT and "watermark" in DIFFUSERS_NEGATIVE_PROMPT
    # The preview guided away from it: it was encoded (before the text encoder was released).
    assert PROMPT in weld.learn_prompts and DIFFUSERS_NEGATIVE_PROMPT in weld.learn_prompts


@pytest.mark.slow
def test_real_base_preview_starts_from_the_first_clip_mirrored(
    weld: RealAction, workspace: Workspace
) -> None:
    from flashcli.video import fit_image, read_clip, read_output

    source = weld.manifest["preview_source"]
    assert source == "clip:clip0.mp4:frame0:mirrored" and "figureworld" not in source
    first = fit_image(read_clip(workspace.clips / "clip0.mp4").frames[0], MINI_SIZE).astype(int)
    preview = read_output(weld.library / "weld" / "preview.gif")[0].astype(int)
    assert np.abs(preview - first[:, ::-1]).mean() < 4  # frame 0 is the still (GIF palette aside)
    assert np.abs(preview - first).mean() > 4 * np.abs(preview - first[:, ::-1]).mean()  # mirrored


@pytest.mark.slow
def test_inspect_shows_the_prompt_and_the_negative_prompt(weld: RealAction) -> None:
    from flashcli.core.specs.wan import DIFFUSERS_NEGATIVE_PROMPT

    library = ["--library", str(weld.library)]
    document = json.loads(CliRunner().invoke(app, ["inspect", "weld", *library, "--json"]).stdout)
    assert document["manifest"]["prompt"] == PROMPT
    assert document["manifest"]["negative_prompt"] == DIFFUSERS_NEGATIVE_PROMPT
    shown = CliRunner().invoke(app, ["inspect", "weld", *library])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stderr.split())  # the table wraps long values
    assert f"prompt {PROMPT}" in text and "negative prompt static image," in text
    assert "frame 0 of clip 'clip0.mp4', mirrored" in text


@pytest.mark.slow
def test_animate_without_prompts_samples_with_the_actions_own(
    weld: RealAction, workspace: Workspace, tmp_path: Path
) -> None:
    sidecar, prompts = _animate(workspace, weld.library, "weld", tmp_path / "weld.png")
    negative = weld.manifest["negative_prompt"]
    assert sidecar["sample_settings"]["prompt"] == PROMPT and PROMPT in prompts
    assert sidecar["sample_settings"]["negative_prompt"] == negative and negative in prompts


@pytest.mark.slow
def test_negative_prompt_flag_replaces_the_default(
    weld: RealAction, workspace: Workspace, tmp_path: Path
) -> None:
    own = "cartoon, still frame"
    out = tmp_path / "weld.png"
    sidecar, prompts = _animate(workspace, weld.library, "weld", out, "--negative-prompt", own)
    assert sidecar["sample_settings"]["negative_prompt"] == own and own in prompts
    assert weld.manifest["negative_prompt"] not in prompts and PROMPT in prompts


@pytest.mark.slow
def test_the_tiny_base_has_no_negative_prompt_and_keeps_its_figureworld_preview(
    workspace: Workspace, library_copy: Path, tmp_path: Path
) -> None:
    from flashcli.library import Library

    manifest = Library(library_copy).manifest("slide")
    assert manifest.negative_prompt is None and manifest.preview_source.startswith("figureworld:")
    out = tmp_path / "slide.png"
    sidecar, prompts = _animate(workspace, library_copy, "slide", out, "--negative-prompt", "blurry")
    assert sidecar["sample_settings"]["negative_prompt"] is None  # no text encoder: nothing to guide
    assert "blurry" not in prompts
