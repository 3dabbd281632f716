"""Clips retimed to the base's frame rate: a diffusers base (Wan 2.2 TI2V-5B: 24 fps) is trained on frames
1/24 s apart, taken from the middle of each clip, so the motion it learns plays at its real speed; the
preflight table says so, and a clip too short for that is spread over its whole length with a warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flashcli.preflight import run_preflight
from flashcli.video import sample_at_fps, write_video


def numbered_clip(frames: int) -> np.ndarray:
    """Frame i is grey level 4*i: which frames were kept can be read back from the pixels."""
    levels = (np.arange(frames) * 4).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (frames, 32, 32, 3)).copy()


def kept_indices(frames: np.ndarray) -> list[int]:
    return [round(float(frame.mean()) / 4) for frame in frames]


def test_frames_are_taken_one_base_frame_apart_from_the_middle_of_the_clip() -> None:
    indices = sample_at_fps(61, 5, clip_fps=48.0, fps=24.0)  # 2 clip frames per base frame
    assert indices.tolist() == [26, 28, 30, 32, 34]  # centred on frame 30 of 0..60
    assert sample_at_fps(9, 5, clip_fps=8.0, fps=24.0).tolist() == [3, 4, 4, 4, 5]  # 8 fps: frames repeat
    assert sample_at_fps(5, 5, clip_fps=8.0, fps=2.0).tolist() == [0, 1, 2, 3, 4]  # too short: whole clip


def test_the_preflight_retimes_clips_to_the_base_and_shows_it(tmp_path: Path) -> None:
    long_clip, short_clip = tmp_path / "long.mp4", tmp_path / "short.mp4"
    write_video(long_clip, numbered_clip(49), fps=48)
    write_video(short_clip, numbered_clip(13), fps=48)  # 0.25 s: shorter than 9 frames at 24 fps
    report = run_preflight([long_clip, short_clip], 9, (32, 32), "center", fps=24.0)
    long_, short = report.clips
    assert kept_indices(long_.frames) == [16, 18, 20, 22, 24, 26, 28, 30, 32]  # 1/24 s apart, centred
    assert long_.record.sampling == "at 24 fps: 0.33 s of 1.00 s, real speed"
    assert kept_indices(short.frames) == [0, 2, 3, 4, 6, 8, 9, 10, 12]  # first to last, slowed down
    assert short.record.sampling == "at 24 fps: whole clip, slowed to x0.75"
    assert report.median_fps == 24.0  # the preview and manifest play at the base's rate
    assert any("short.mp4' lasts" in warning and "slowed down" in warning for warning in report.warnings)
    assert not any("long.mp4' lasts" in warning for warning in report.warnings)


def test_without_a_base_frame_rate_clips_are_still_sampled_first_to_last(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, numbered_clip(49), fps=48)
    (prepared,) = run_preflight([clip], 9, 32, "center").clips
    assert kept_indices(prepared.frames) == [0, 6, 12, 18, 24, 30, 36, 42, 48]
