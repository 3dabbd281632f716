"""Clip reading, frame sampling, fitting and output writing as a user of `flash` would notice them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flashcli.errors import UserError
from flashcli.video import (
    describe_sampling,
    discover_clips,
    fit_image,
    motion_score,
    read_clip,
    read_image,
    read_output,
    sample_indices,
    write_video,
)


def moving_square(frames: int = 12, size: int = 32) -> np.ndarray:
    """A white square sliding left to right over grey: real motion, easy to check."""
    video = np.full((frames, size, size, 3), 90, dtype=np.uint8)
    for index in range(frames):
        left = index * (size - 8) // max(frames - 1, 1)
        video[index, 12:20, left : left + 8] = 255
    return video


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_lossless_formats_keep_every_pixel(tmp_path: Path, fmt: str) -> None:
    video = moving_square()
    path = write_video(tmp_path / f"out.{fmt}", video, fps=8)
    assert np.array_equal(read_output(path), video)


def test_mp4_round_trip_keeps_frame_count_fps_and_picture(tmp_path: Path) -> None:
    video = moving_square(frames=9, size=64)
    path = write_video(tmp_path / "out.mp4", video, fps=12)
    clip = read_clip(path)
    assert clip.frame_count == 9
    assert clip.fps == pytest.approx(12)
    assert np.abs(clip.frames.astype(int) - video).mean() < 6


def test_gif_is_written_fast_path_and_reads_back_with_its_fps(tmp_path: Path) -> None:
    video = moving_square()
    write_video(tmp_path / "out.gif", video, fps=10)
    clip = read_clip(tmp_path / "out.gif")
    assert clip.frame_count == len(video)
    assert clip.fps == pytest.approx(10, rel=0.05)
    assert np.abs(clip.frames.astype(int) - video).mean() < 3


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    odd = np.zeros((5, 33, 33, 3), dtype=np.uint8)  # yuv420p cannot hold odd sizes
    with pytest.raises(ValueError):
        write_video(target, odd, fps=8)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_folder_of_numbered_frames_is_read_in_numeric_order(tmp_path: Path) -> None:
    video = moving_square(frames=11)
    for index, frame in enumerate(video):
        Image.fromarray(frame).save(tmp_path / f"frame{index}.png")  # frame10 sorts before frame2 as text
    clip = read_clip(tmp_path)
    assert np.array_equal(clip.frames, video)


def test_discover_expands_folders_and_rejects_other_files(tmp_path: Path) -> None:
    write_video(tmp_path / "b.mp4", moving_square(size=32), fps=8)
    write_video(tmp_path / "a.gif", moving_square(), fps=8)
    (tmp_path / "notes.txt").write_text("not a clip")
    assert [p.name for p in discover_clips([tmp_path])] == ["a.gif", "b.mp4"]
    with pytest.raises(UserError, match="notes.txt"):
        discover_clips([tmp_path / "notes.txt"])
    with pytest.raises(UserError, match="does not exist"):
        discover_clips([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no videos"):
        discover_clips([empty])


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 50])
def test_unreadable_video_is_a_user_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(UserError, match="broken.mp4"):
        read_clip(path)


def test_photo_that_is_not_an_image_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_text("hello")
    with pytest.raises(UserError, match="photo.png"):
        read_image(path)


def test_sampling_spans_the_whole_clip_and_repeats_when_short() -> None:
    indices = sample_indices(100, 5)
    assert indices[0] == 0 and indices[-1] == 99
    assert np.all(np.diff(indices) > 0)
    short = sample_indices(3, 9)
    assert len(short) == 9 and set(short) == {0, 1, 2}
    assert "repeated" in describe_sampling(3, 9)
    assert describe_sampling(9, 9) == "every frame"


def test_fit_modes_centre_crop_pad_and_stretch() -> None:
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, :20] = (255, 0, 0)  # red band on the far left: a centre crop drops it
    wide[:, 20:60] = (0, 255, 0)
    cropped = fit_image(wide, 32, "center")
    assert cropped.shape == (32, 32, 3)
    assert cropped[..., 0].max() < 40 and cropped[16, 16, 1] > 200
    padded = fit_image(wide, 32, "pad")
    assert padded.shape == (32, 32, 3)
    assert padded[0, 16].sum() == 0 and padded[16, 1, 0] > 200  # black bars, red band kept
    stretched = fit_image(wide, 32, "stretch")
    assert stretched[16, 1, 0] > 200 and stretched[0, 16, 1] > 200


def test_motion_score_tells_static_from_moving_even_when_the_mover_is_small() -> None:
    assert motion_score(np.repeat(moving_square()[:1], 12, axis=0)) == 0.0
    noisy = np.repeat(moving_square()[:1], 12, axis=0).astype(int)
    noisy += np.random.default_rng(0).integers(-2, 3, size=noisy.shape)
    assert motion_score(np.clip(noisy, 0, 255).astype(np.uint8)) < 3.0
    small = np.full((12, 64, 64, 3), 90, dtype=np.uint8)
    for index in range(12):
        small[index, 30:36, 10 + 2 * index : 16 + 2 * index] = 255  # a hand-sized patch (~1% of the frame)
    assert motion_score(small) > 3.0


def test_output_folder_inside_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    from flashcli.video import check_writable_folder

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(UserError, match="inside a file"):
        check_writable_folder(blocker / "out", "Output folder")
    check_writable_folder(tmp_path / "new" / "deeper", "Output folder")  # creatable: fine
