"""bench/finetune_reach.py: its training copies keep the motion and only move or mirror the picture, and a
smoke run fits the whole denoiser and reports a distance per photo group."""

from __future__ import annotations

from pathlib import Path

import finetune_reach  # bench/finetune_reach.py: bench/ is on pytest's pythonpath (pyproject.toml)
import numpy as np
import pytest

# bench and script tests run in the full suite, not the fast subset (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow


def test_mirrored_and_shifted_copies_are_the_clip_moved_sideways_or_mirrored() -> None:
    video = np.random.default_rng(0).integers(0, 256, (3, 8, 32, 3), dtype=np.uint8)
    copies = finetune_reach.mirrored_and_shifted(video)
    assert len(copies) == 10
    assert all(c.shape == video.shape and c.flags["C_CONTIGUOUS"] for c in copies)
    assert np.array_equal(copies[2], video)  # shift 0, not mirrored
    assert np.array_equal(copies[7], video[:, :, ::-1])  # shift 0, mirrored
    assert np.array_equal(copies[3], np.roll(video, 6, axis=2))
    assert len({c.tobytes() for c in copies}) == 10


def test_a_smoke_run_reports_each_photo_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--action", "lunge", "--phase", "0", "--clips", "2", "--frames", "5", "--steps", "2"]
    args += ["--sample-steps", "2", "--threads", "1", "--picture", str(tmp_path / "sheet.png")]
    assert finetune_reach.main(args) == 0
    out = capsys.readouterr().out
    for group in ("training:", "relooked:", "seen:", "unseen:"):
        assert any(line.startswith(group) and "latent distance before" in line for line in out.splitlines())
    assert (tmp_path / "sheet.png").is_file()


def test_save_writes_a_loadable_base_with_the_fitted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from flashcli.core.specs import load_base

    saved = tmp_path / "fitted"
    args = ["--action", "lunge", "--phase", "0", "--clips", "2", "--frames", "5", "--steps", "3"]
    args += ["--sample-steps", "2", "--threads", "1", "--picture", str(tmp_path / "sheet.png")]
    args += ["--lr", "1e-3", "--ema-decay", "0.5", "--save", str(saved)]
    assert finetune_reach.main(args) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fitted", "sheet.png"]  # nothing half-written
    fitted, shipped = load_base(saved, device="cpu"), load_base("tiny", device="cpu")
    assert fitted.weight_hash != shipped.weight_hash
    fitted_weights = fitted.transformer.state_dict()
    changed = [
        name
        for name, value in shipped.transformer.state_dict().items()
        if not torch.equal(value, fitted_weights[name])
    ]
    assert changed  # the fit moved the weights, and the folder holds them
    vae_weight = "decoder.conv_out.weight"
    assert torch.equal(fitted.vae.state_dict()[vae_weight], shipped.vae.state_dict()[vae_weight])
    assert fitted.ded is not None and set(fitted.action_text) == set(shipped.action_text)
    # A second save into the same folder is refused rather than mixed into it.
    with pytest.raises(SystemExit):
        finetune_reach.main(args)
