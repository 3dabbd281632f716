"""Clip reading, frame sampling, fitting and output writing as a user of `flash` would notice them."""

from __future__ import annotations

import os
import resource
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio_ffmpeg
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


# -- writing outputs: full disks, failed encoders, stale temp files -----------------------------------


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes fail with EFBIG, as on a full disk (SIGXFSZ ignored so they fail
    rather than kill); child processes such as ffmpeg inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def noisy_video(frames: int = 9, size: int = 64) -> np.ndarray:
    """Random pixels: no format compresses them below a few KB per frame."""
    return np.random.default_rng(0).integers(0, 255, size=(frames, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["mp4", "gif", "png", "webp"])
def test_full_disk_keeps_the_previous_output_and_says_so(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    write_video(target, moving_square(), fps=8)
    before = target.read_bytes()
    with file_size_limit(4096), pytest.raises(UserError, match="disk is full") as error:
        write_video(target, noisy_video(), fps=8)
    assert str(target) in str(error.value)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_stale_temps_of_a_killed_writer_are_swept_but_live_and_user_files_kept(tmp_path: Path) -> None:
    from flashcli.files import atomic_path

    killed_writer = (
        "import os, signal, sys; from flashcli.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as temp:\n"
        "    temp.write_bytes(b'half an mp4')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", killed_writer, str(tmp_path / "out.mp4")], check=False)
    (left,) = tmp_path.iterdir()  # the kill left its hidden temp file behind
    assert left.name.startswith(".out.mp4.")
    users = [tmp_path / ".out.mp4.notes", tmp_path / ".out.backup.mp4", tmp_path / "notes.txt"]
    for path in users:
        path.write_text("the user's own")
    long_ago = time.time() - 3600
    for path in [left, *users]:
        os.utime(path, (long_ago, long_ago))
    young = tmp_path / ".out.gif.abcd1234.flash-tmp.gif"  # unlocked, but its writer may be starting
    young.write_bytes(b"just created")
    with atomic_path(tmp_path / "live.gif") as live:  # a writer still at work in this process
        live.write_bytes(b"in progress")
        os.utime(live, (long_ago, long_ago))
        write_video(tmp_path / "next.png", moving_square(), fps=8)
        assert live.exists()
    assert not left.exists()
    kept = [".out.backup.mp4", ".out.gif.abcd1234.flash-tmp.gif", ".out.mp4.notes", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "live.gif", "next.png"])


def test_output_under_a_file_is_a_sentence_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    with pytest.raises(UserError, match="'.*notes.txt' is a file"):
        write_video(blocker / "out.mp4", moving_square(), fps=8)
    with pytest.raises(UserError, match="'.*notes.txt' is a file"):
        write_video(blocker / "deeper" / "out.png", moving_square(), fps=8)
    assert blocker.read_text() == "x"


# -- reading clips: only the sampled frames, truncation, folders that hold no clips ------------------


def ffmpeg_clip(path: Path, seconds: float, size: str = "64x48", fps: int = 8, *, faststart: bool) -> Path:
    """A test-pattern clip; `faststart` puts the index first, as phones and web exports do."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi"]
    command += ["-i", f"testsrc=s={size}:r={fps}:d={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    command += ["-movflags", "+faststart"] if faststart else []
    subprocess.run([*command, str(path)], check=True, capture_output=True)
    return path


def frame_folder(folder: Path, video: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(video):
        Image.fromarray(frame).save(folder / f"frame{index}.png")
    return folder


@pytest.mark.parametrize("kind", ["mp4", "gif", "frames"])
def test_sampled_frames_are_the_ones_the_whole_clip_gives(tmp_path: Path, kind: str) -> None:
    from flashcli.video import fit_frames, sample_clip

    video = moving_square(frames=23, size=48)
    if kind == "frames":
        path = frame_folder(tmp_path / "frames", video)
    else:
        path = write_video(tmp_path / f"clip.{kind}", video, fps=10)
    whole = read_clip(path)
    for count in (5, 9, 30):  # fewer than the clip, and more (frames repeat)
        sampled = sample_clip(path, count, 32, "pad")
        expected = fit_frames(whole.frames[sample_indices(whole.frame_count, count)], 32, "pad")
        assert np.array_equal(sampled.frames, expected)
        assert (sampled.frame_count, sampled.width, sampled.height) == (23, 48, 48)
        assert sampled.fps == pytest.approx(whole.fps)


def test_truncated_video_is_refused_not_taken_as_short(tmp_path: Path) -> None:
    from flashcli.preflight import run_preflight

    whole = ffmpeg_clip(tmp_path / "whole.mp4", 5, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])  # a copy that stopped at 60%
    assert run_preflight([whole], 5, 32, "center").clips[0].record.frames_total == 40
    with pytest.raises(UserError, match="cut.mp4' is truncated"):
        run_preflight([cut], 5, 32, "center")


@pytest.mark.slow
def test_a_long_1080p_clip_is_read_in_bounded_memory(tmp_path: Path) -> None:
    import clip_memory as bench  # bench/clip_memory.py: bench/ is on pytest's pythonpath (pyproject.toml)

    clip = bench.make_clip(tmp_path / "long.mp4", 20, 1920, 1080, 30)  # whole: 600 frames, 3.5 GiB
    _, peak_mib = bench.read_like_learn(clip, 17, 256)
    assert peak_mib < 1536, f"reading a 20 s 1080p clip peaked at {peak_mib:.0f} MiB"


def test_folder_of_stills_beside_a_clips_folder_is_refused_naming_it(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    frame_folder(examples, moving_square(frames=2))  # frame0.png, frame1.png would pass as frames...
    for index, name in enumerate(["frame0.png", "frame1.png"]):
        (examples / name).rename(examples / ["photo.png", "portrait.jpg"][index])  # ...unrelated stills
    write_video(examples / "clips" / "weld" / "a.mp4", moving_square(), fps=8)  # as in the repo's examples/
    frame_folder(examples / "clips" / "jump", moving_square(frames=3))
    with pytest.raises(UserError, match="holds no clips") as error:
        discover_clips([examples])
    named = f"'{examples / 'clips' / 'jump'}', '{examples / 'clips' / 'weld'}' look like clip folders"
    assert named in str(error.value) and "2 stills" in str(error.value)
    lone = tmp_path / "stills"
    frame_folder(lone, moving_square(frames=2))
    (lone / "frame0.png").rename(lone / "cat.png")
    (lone / "frame1.png").rename(lone / "dog.png")
    with pytest.raises(UserError, match="not numbered frames"):
        discover_clips([lone])
    numbered = frame_folder(tmp_path / "numbered", moving_square(frames=3))
    assert discover_clips([numbered]) == [numbered]


def test_skipped_entries_are_listed_with_why(tmp_path: Path) -> None:
    from flashcli.preflight import run_preflight

    clips = tmp_path / "clips"
    for index in range(2):
        write_video(clips / f"clip{index}.mp4", moving_square(size=32), fps=8)
    (clips / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    os.mkfifo(clips / "pipe.mp4")
    (clips / "notes.txt").write_text("x")
    found = discover_clips([clips])
    assert [p.name for p in found] == ["clip0.mp4", "clip1.mp4"]
    report = run_preflight(found, 5, 32, "center")
    skipped = [w for w in report.warnings if w.startswith("Skipped")]
    assert skipped == [
        f"Skipped '{clips / 'gone.mp4'}': a broken link.",
        f"Skipped '{clips / 'notes.txt'}': not a video or an image.",
        f"Skipped '{clips / 'pipe.mp4'}': a FIFO (named pipe), not a file.",
    ]


@pytest.mark.parametrize("special", ["fifo", "/dev/null"])
def test_a_fifo_or_device_as_a_clip_is_refused_up_front(tmp_path: Path, special: str) -> None:
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "clip.mp4"
        os.mkfifo(path)
    with pytest.raises(UserError, match="FIFO|device"):
        discover_clips([path])


# -- reading photos --------------------------------------------------------------------------------


def exif_rotated(path: Path, upright: np.ndarray) -> Path:
    """Save `upright` turned a quarter to the left plus the EXIF tag (6) that turns it back, as
    phones store portrait photos."""
    image = Image.fromarray(np.rot90(upright, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())
    return path


def test_photos_in_every_common_mode_come_out_as_seen(tmp_path: Path) -> None:
    grey16 = np.full((8, 12), 0x8000, dtype=np.uint16)  # mid grey in 16 bits
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    assert np.abs(read_image(tmp_path / "grey16.png").astype(int) - 128).max() <= 1

    rgb48 = tmp_path / "rgb48.png"  # 16 bits per channel, written by ffmpeg
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi"]
    command += ["-i", "color=c=0x804020:s=8x8:d=1", "-frames:v", "1", "-pix_fmt", "rgb48be", str(rgb48)]
    subprocess.run(command, check=True)
    assert np.abs(read_image(rgb48)[0, 0].astype(int) - [128, 64, 32]).max() <= 4

    cutout = np.zeros((8, 8, 4), dtype=np.uint8)
    cutout[..., :3] = (255, 0, 0)  # red hidden under full transparency on the left half
    cutout[:, 4:] = (0, 0, 255, 255)
    Image.fromarray(cutout, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(cutout, "RGBA").convert("LA").save(tmp_path / "la.png")
    assert (read_image(tmp_path / "rgba.png")[:, :4] == 255).all()  # shown over white
    assert (read_image(tmp_path / "la.png")[:, :4] == 255).all()
    assert (read_image(tmp_path / "rgba.png")[:, 4:] == (0, 0, 255)).all()

    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    palette.paste(1, (4, 0, 8, 8))
    palette.save(tmp_path / "palette.png", transparency=0)  # index 0 (red) is transparent
    assert (read_image(tmp_path / "palette.png")[:, :4] == 255).all()
    assert (read_image(tmp_path / "palette.png")[:, 4:] == (0, 0, 255)).all()

    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg")  # pure cyan
    assert np.abs(read_image(tmp_path / "cmyk.jpg").astype(int) - [0, 255, 255]).max() <= 8

    upright = np.zeros((20, 10, 3), dtype=np.uint8)
    upright[:5] = 255  # white band at the top of a portrait photo
    rotated = read_image(exif_rotated(tmp_path / "portrait.jpg", upright))
    assert rotated.shape == (20, 10, 3)
    assert rotated[:4].mean() > 200 and rotated[6:].mean() < 40


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height but which holds almost no data: cheap to make, and
    only a reader that decodes before checking the size would spend the memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize("side", [9500, 20000])
def test_oversized_photo_is_refused_as_too_large_before_decoding(tmp_path: Path, side: int) -> None:
    photo = png_header_only(tmp_path / "huge.png", side, side)
    with pytest.raises(UserError, match=r"huge.png' is too large.*80 megapixels"):
        read_image(photo)


def test_fifo_photo_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_image(fifo)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # the old behaviour: blocked in open(); free it so the test can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
    assert isinstance(outcome[0], UserError) and "FIFO" in str(outcome[0])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_photo_and_clip_folder_say_permission_denied(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(moving_square()[0]).save(photo)
    photo.chmod(0)
    with pytest.raises(UserError, match="Permission denied, '.*photo.png'"):
        read_image(photo)
    clips = tmp_path / "clips"
    locked = clips / "locked"
    frame_folder(locked, moving_square(frames=3))
    locked.chmod(0)
    try:
        with pytest.raises(UserError, match="Permission denied, '.*locked'"):
            discover_clips([clips])
    finally:
        locked.chmod(0o755)
