"""Reading clips and photos, sampling and fitting frames, writing output videos atomically.

Video = numpy uint8 (F, H, W, 3); photo = numpy uint8 (H, W, 3). Decoding uses imageio-ffmpeg's
bundled ffmpeg (no torchvision, no decord: see research/ecosystem.md); GIF, WebP and PNG go
through PIL, with GIF quantised by FASTOCTREE because imageio's default path is ~80x slower.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from flashcli.core.permissions import current_umask
from flashcli.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
OUTPUT_FORMATS = ("mp4", "gif", "webp", "png")
# A folder of numbered frames carries no frame rate; this is the documented assumption.
FRAME_FOLDER_FPS = 8.0

CropMode = Literal["center", "pad", "stretch"]
OutputFormat = Literal["mp4", "gif", "webp", "png"]


@dataclass(frozen=True)
class Clip:
    """A decoded clip and where it came from."""

    path: Path
    frames: np.ndarray  # uint8 (F, H, W, 3), every decoded frame
    fps: float

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


def _numbered_key(path: Path) -> tuple[int, str]:
    """Sort frame files by the last number in their name (frame2 before frame10)."""
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=_numbered_key,
    )


def discover_clips(paths: list[Path]) -> list[Path]:
    """Expand the user's CLIPS arguments into clip paths (video files or folders of frames).

    A folder holding videos (or sub-folders of frames) expands to those, sorted by name; a folder
    holding only images is itself one clip of numbered frames.
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"Clip path '{path}' does not exist; pass a folder of clips or video files.")
        if path.is_file():
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                raise UserError(
                    f"'{path}' is not a supported video ({', '.join(VIDEO_SUFFIXES)}); "
                    "convert it or pass a folder of numbered frames."
                )
            found.append(path)
            continue
        entries = sorted(path.iterdir())
        videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        frame_folders = [p for p in entries if p.is_dir() and not p.name.startswith(".") and _images_in(p)]
        if videos or frame_folders:
            found.extend(sorted(videos + frame_folders))
        elif _images_in(path):
            found.append(path)
        else:
            raise UserError(
                f"Folder '{path}' holds no videos ({', '.join(VIDEO_SUFFIXES)}) and no numbered frames; "
                "put the action's clips there."
            )
    return found


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, float]:
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in reader]
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else "ffmpeg failed"
        raise UserError(
            f"Could not decode video '{path}' ({reason}); "
            "check that the file is a complete video or re-encode it."
        ) from None
    fps = float(meta.get("fps") or 0.0)
    if not frames:
        raise UserError(f"Video '{path}' has no frames; re-export it or remove it from the clips.")
    return np.stack(frames), fps if fps > 0 else FRAME_FOLDER_FPS


def _read_gif(path: Path) -> tuple[np.ndarray, float]:
    try:
        with Image.open(path) as image:
            durations = []
            frames = []
            for frame in ImageSequence.Iterator(image):
                durations.append(frame.info.get("duration", 0) or 0)
                frames.append(np.asarray(frame.convert("RGB")))
    except (OSError, UnidentifiedImageError):
        raise UserError(f"Could not read GIF '{path}'; check that the file is a complete GIF.") from None
    if not frames:
        raise UserError(f"GIF '{path}' has no frames; re-export it or remove it from the clips.")
    mean_ms = float(np.mean(durations)) if any(durations) else 1000.0 / FRAME_FOLDER_FPS
    return np.stack(frames), 1000.0 / mean_ms


def _read_frame_folder(path: Path) -> tuple[np.ndarray, float]:
    files = _images_in(path)
    if not files:
        raise UserError(f"Folder '{path}' has no frame images; it needs numbered PNG/JPEG frames.")
    frames = [read_image(file) for file in files]
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise UserError(f"Frames in '{path}' have different sizes {sorted(shapes)}; export them at one size.")
    return np.stack(frames), FRAME_FOLDER_FPS


def probe_clip(path: Path) -> None:
    """Fail fast, before any model loads, on a clip that cannot be decoded or has no frames.

    Decodes only the first frame of a video file (cheap); GIFs and frame folders are read whole.
    """
    if path.is_dir() or path.suffix.lower() == ".gif":
        read_clip(path)
        return
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        next(reader)
        first = next(reader, None)
        reader.close()
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else "ffmpeg failed"
        raise UserError(
            f"Could not decode video '{path}' ({reason}); "
            "check that the file is a complete video or re-encode it."
        ) from None
    if first is None:
        raise UserError(f"Video '{path}' has no frames; re-export it or remove it from the clips.")


def read_clip(path: Path) -> Clip:
    """Decode a whole clip (video file, GIF or folder of numbered frames) into RGB frames."""
    if not path.exists():
        raise UserError(f"Clip '{path}' does not exist; check the path.")
    if path.is_dir():
        frames, fps = _read_frame_folder(path)
    elif path.suffix.lower() == ".gif":
        frames, fps = _read_gif(path)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        frames, fps = _read_ffmpeg(path)
    else:
        raise UserError(f"'{path}' is not a supported video ({', '.join(VIDEO_SUFFIXES)}); convert it first.")
    return Clip(path=path, frames=frames, fps=fps)


def read_image(path: Path) -> np.ndarray:
    """Read a photo as RGB uint8 (H, W, 3); anything PIL cannot open is a user error."""
    if not path.exists():
        raise UserError(f"Photo '{path}' does not exist; check the path.")
    if path.is_dir():
        raise UserError(f"'{path}' is a folder, not a photo; pass image files (PNG, JPEG, WebP).")
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB")).copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        raise UserError(f"'{path}' is not an image PIL can read; pass a PNG, JPEG or WebP photo.") from None


def sample_indices(frame_count: int, count: int) -> np.ndarray:
    """Indices of `count` frames spread evenly from the first to the last frame of the clip.

    A clip shorter than `count` repeats frames (the preflight warns about it) rather than failing.
    """
    if frame_count < 1 or count < 1:
        raise ValueError(f"need at least one frame, got frame_count={frame_count} count={count}")
    return np.rint(np.linspace(0, frame_count - 1, count)).astype(np.int64)


def describe_sampling(frame_count: int, count: int) -> str:
    """Human words for how `sample_indices` picks frames, shown in the preflight table."""
    if frame_count == count:
        return "every frame"
    if frame_count < count:
        return f"all {frame_count}, some repeated"
    stride = (frame_count - 1) / max(count - 1, 1)
    return f"evenly, every ~{stride:.1f}"


def fit_frames(frames: np.ndarray, size: int, crop: CropMode = "center") -> np.ndarray:
    """Make frames `size` x `size`: centre-crop the long side, pad it with black, or stretch."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (F, H, W, 3) frames, got {frames.shape}")
    return np.stack([fit_image(frame, size, crop) for frame in frames])


def fit_image(image: np.ndarray, size: int, crop: CropMode = "center") -> np.ndarray:
    """Resize one RGB image to `size` x `size` with the chosen crop mode."""
    height, width = image.shape[:2]
    pil = Image.fromarray(image)
    if crop == "stretch":
        return np.array(pil.resize((size, size), Image.Resampling.BICUBIC))
    if crop == "center":
        scale = size / min(height, width)
    elif crop == "pad":
        scale = size / max(height, width)
    else:
        raise ValueError(f"unknown crop mode {crop!r}; use center, pad or stretch")
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    if crop == "center":
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return resized[top : top + size, left : left + size].copy()
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def motion_score(frames: np.ndarray) -> float:
    """How far the clip moves away from its first frame: the 99th percentile over pixels and frames of
    the grey-level change from frame 0 (0..255). A percentile, not a mean, so a hand-sized mover (about
    1% of the frame) on a still background counts as motion, while a still clip with a little noise
    scores near 0."""
    if frames.shape[0] < 2:
        return 0.0
    grey = frames.astype(np.float32).mean(axis=-1)
    return float(np.percentile(np.abs(grey[1:] - grey[:1]), 99))


def content_hash(data: bytes | np.ndarray) -> str:
    """sha256 hex of raw bytes (file contents or frame pixels)."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    return hashlib.sha256(raw).hexdigest()


def file_hash(path: Path) -> str:
    """sha256 of a file, or of all files of a frame folder in order."""
    digest = hashlib.sha256()
    files = _images_in(path) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse early, before any work, when `folder` (or the ancestor that would create it) is read-only."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} '{folder}' is inside a file ('{existing}'); choose a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{what} '{folder}' is not writable ('{existing}' is read-only); choose another folder."
        )


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target` (same suffix); on success it replaces `target` in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get normal permissions
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"mp4 (yuv420p) needs even width and height, got {width}x{height}")
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        quality=8,
        macro_block_size=2,
        output_params=["-f", "mp4"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _pil_frames(frames: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(frame) for frame in frames]


def write_video(path: Path, frames: np.ndarray, fps: float, fmt: OutputFormat | None = None) -> Path:
    """Write frames atomically as mp4 (H.264), gif, webp (animated, lossless) or png (animated APNG).

    The format defaults to the path's suffix. PNG and WebP are lossless, so frame 0 keeps the photo's
    exact pixels; mp4 and gif are lossy.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (F, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    fmt = fmt or path.suffix.lower().lstrip(".")  # type: ignore[assignment]
    if fmt not in OUTPUT_FORMATS:
        raise UserError(
            f"Output '{path}' has unknown format '{fmt}'; use one of {', '.join(OUTPUT_FORMATS)}."
        )
    frame_ms = max(1, round(1000.0 / fps))
    with atomic_path(path) as temp:
        if fmt == "mp4":
            _write_mp4(temp, frames, fps)
        elif fmt == "gif":
            images = [
                image.quantize(colors=256, method=Image.Quantize.FASTOCTREE) for image in _pil_frames(frames)
            ]
            images[0].save(
                temp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0
            )
        elif fmt == "webp":
            images = _pil_frames(frames)
            images[0].save(
                temp,
                format="WEBP",
                save_all=True,
                append_images=images[1:],
                duration=frame_ms,
                loop=0,
                lossless=True,
            )
        else:
            images = _pil_frames(frames)
            images[0].save(
                temp, format="PNG", save_all=True, append_images=images[1:], duration=frame_ms, loop=0
            )
    return path


def read_output(path: Path) -> np.ndarray:
    """Read back a video written by `write_video` (used by tests and `inspect --contact-sheet`)."""
    if path.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm", ".avi"):
        return read_clip(path).frames
    try:
        with Image.open(path) as image:
            return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    except (OSError, UnidentifiedImageError):
        raise UserError(
            f"Could not read '{path}' as an animation; check that the file is complete."
        ) from None
