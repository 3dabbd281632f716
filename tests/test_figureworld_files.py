"""FigureWorld on disk: mp4 + PNG frames + JSON sidecar, and the python -m entry point."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from test_video import file_size_limit

from flashcli.figureworld import JOINT_NAMES, render_clip
from flashcli.figureworld.__main__ import main
from flashcli.figureworld.files import write_clip, write_mp4


def test_write_clip_writes_video_frames_and_ground_truth(tmp_path: Path) -> None:
    clip = render_clip("weld", 2, size=64, frames=5)
    written = write_clip(clip, tmp_path, "weld_2")
    assert {p.name for p in written} == {"weld_2.mp4", "weld_2", "weld_2.json"}

    pngs = sorted((tmp_path / "weld_2").glob("frame_*.png"))
    assert len(pngs) == 5
    assert np.array_equal(np.asarray(Image.open(pngs[3])), clip.frames[3])  # lossless

    video = _read_mp4(tmp_path / "weld_2.mp4")
    assert video.shape == clip.frames.shape
    assert np.abs(video.astype(int) - clip.frames.astype(int)).mean() < 8  # lossy but close

    sidecar = json.loads((tmp_path / "weld_2.json").read_text())
    assert sidecar["action"] == "weld" and sidecar["seed"] == 2
    assert sidecar["joints"]["names"] == list(JOINT_NAMES)
    xy = np.array(sidecar["joints"]["xy"])
    assert xy.shape == (5, len(JOINT_NAMES), 2)
    assert np.allclose(xy, clip.joints, atol=1e-3)
    assert np.array_equal(np.array(sidecar["joints"]["visible"]), clip.visible)
    assert "skin_tone" in sidecar["appearance"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def _read_mp4(path: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    return np.stack(frames)


def test_a_refused_mp4_write_keeps_the_earlier_clip(tmp_path: Path) -> None:
    """A disk that fills up mid-encode (here: a file-size limit) raises naming the clip and leaves the
    earlier clip whole, with no temp file beside it."""
    noisy = np.random.default_rng(0).integers(0, 255, size=(9, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    write_mp4(noisy, path, 8)
    before = path.read_bytes()
    with file_size_limit(4096), pytest.raises(OSError) as raised:
        write_mp4(noisy[::-1].copy(), path, 8)
    assert raised.value.filename == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_written_clips_keep_to_the_users_umask(tmp_path: Path) -> None:
    """A private umask gives private frames: the folder is not opened up to everyone."""
    previous = os.umask(0o077)
    try:
        write_clip(render_clip("weld", 1, size=32, frames=3), tmp_path, "weld_1", mp4=False)
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [*tmp_path.iterdir(), *tmp_path.rglob("*.png")]}
    assert modes == {"weld_1": 0o700, "weld_1.json": 0o600, **{f"frame_00{i}.png": 0o600 for i in range(3)}}


def test_mp4_refuses_odd_sizes(tmp_path: Path) -> None:
    frames = np.zeros((2, 33, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="even"):
        write_mp4(frames, tmp_path / "odd.mp4", 8)


def test_module_entry_renders_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--actions",
            "squat,typing",
            "--clips",
            "2",
            "--size",
            "32",
            "--frames",
            "3",
            "--no-mp4",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 4
    for action in ("squat", "typing"):
        for seed in (0, 1):
            assert (tmp_path / action / f"{action}_{seed}.json").is_file()
            assert len(list((tmp_path / action / f"{action}_{seed}").glob("*.png"))) == 3
    assert not list(tmp_path.rglob("*.mp4"))


def test_module_entry_renders_every_clip_from_the_phase_asked(tmp_path: Path, capsys) -> None:
    args = ["--actions", "lunge", "--clips", "2", "--size", "32", "--frames", "3", "--no-mp4", "--no-png"]
    assert main([*args, "--phase", "0", "--out", str(tmp_path)]) == 0
    for seed in (0, 1):
        sidecar = json.loads((tmp_path / "lunge" / f"lunge_{seed}.json").read_text())
        assert sidecar["variation"]["phase"] == 0.0
    assert main([*args, "--phase", "1.5", "--out", str(tmp_path / "bad")]) == 2
    assert "phase must be in [0, 1)" in capsys.readouterr().err


def test_module_entry_rejects_unknown_actions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--actions", "moonwalk", "--out", str(tmp_path)]) == 2
    assert "unknown action" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_python_dash_m_help_renders() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flashcli.figureworld", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "--actions" in result.stdout and "mp4" in result.stdout


def test_figureworld_does_not_import_torch() -> None:
    code = "import sys, flashcli.figureworld; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
