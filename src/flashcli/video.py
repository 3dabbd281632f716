"""Reading clips and photos, sampling and fitting frames, writing output videos atomically.

Video = numpy uint8 (F, H, W, 3); photo = numpy uint8 (H, W, 3). Decoding uses imageio-ffmpeg's
bundled ffmpeg (no torchvision, no decord: see research/ecosystem.md); GIF, WebP and PNG go
through PIL, with GIF quantised by FASTOCTREE because imageio's default path is ~80x slower.

Training reads clips with `sample_clip`: it streams a clip and keeps only the frames `sample_indices`
picks, each fitted to the training size as soon as it is decoded, so memory does not grow with a
clip's length or resolution. `read_clip` decodes a whole clip (for outputs and tests). Every input
is checked to be a readable regular file before it is opened: opening a FIFO would block forever.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import stat
import subprocess
import warnings
from collections.abc import Callable, Container, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from flashcli import files
from flashcli.errors import UserError
from flashcli.files import WriterFailed

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
OUTPUT_FORMATS = ("mp4", "gif", "webp", "png")
# A folder of numbered frames carries no frame rate; this is the documented assumption.
FRAME_FOLDER_FPS = 8.0
# Photos above this are refused before decoding (an RGB copy alone would take 240 MB); below Pillow's
# own decompression-bomb warning, so that warning never reaches the user.
MAX_PHOTO_PIXELS = 80_000_000
# A video that decodes to fewer frames than this share of what its header promises is truncated.
TRUNCATED_SHARE = 0.8
# mp4 quality: H.264 constant rate factor (lower is better; 10 is near-transparent at our sizes).
MP4_CRF = 10

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


@dataclass(frozen=True)
class SampledClip:
    """What training needs from a clip: its shape on disk and only its sampled frames, already fitted."""

    path: Path
    frames: np.ndarray  # uint8 (count, size, size, 3): the frames `sample_indices` picks, fitted
    frame_count: int  # frames in the whole clip
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps


@dataclass(frozen=True)
class Skipped:
    """A folder entry that is not used as a clip, and why (shown in the preflight)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"Skipped '{self.path}': {self.reason}."


class ClipPaths(list[Path]):
    """The clips `discover_clips` found, plus every folder entry it passed over (`skipped`)."""

    def __init__(self, paths: list[Path] | None = None, skipped: list[Skipped] | None = None) -> None:
        super().__init__(paths or [])
        self.skipped: list[Skipped] = list(skipped or [])


@dataclass
class _FolderScan:
    """One folder's entries sorted into what clip discovery cares about."""

    videos: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _numbered_key(path: Path) -> tuple[int, str]:
    """Sort frame files by the last number in their name (frame2 before frame10)."""
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def _permission_denied(path: Path) -> str:
    return f"Permission denied, '{path}'; make it readable for your user or pass another path."


def _special_kind(mode: int) -> str | None:
    """Words for an entry that is neither a regular file nor a folder; None for those two."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def _stat_input(path: Path, what: str, fix: str) -> os.stat_result:
    """stat an input the user named; a missing path, a broken link or a refused look is a sentence."""
    try:
        return path.stat()
    except PermissionError:
        raise UserError(_permission_denied(path)) from None
    except OSError:
        if path.is_symlink():
            raise UserError(
                f"{what} '{path}' is a broken link (to '{os.readlink(path)}'); fix the link or remove it."
            ) from None
        raise UserError(f"{what} '{path}' does not exist; {fix}.") from None


def _require_readable_file(path: Path, info: os.stat_result, fix: str) -> None:
    """Refuse FIFOs, devices and sockets before opening them (a FIFO blocks forever), and unreadable files."""
    kind = _special_kind(info.st_mode)
    if kind is not None:
        raise UserError(f"'{path}' is {kind}, not a regular file; {fix}.")
    if not os.access(path, os.R_OK):
        raise UserError(_permission_denied(path))


def _require_readable_folder(path: Path) -> None:
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(_permission_denied(path))


def _scan_folder(folder: Path) -> _FolderScan:
    """Sort a folder's entries into videos, images and sub-folders; everything else is skipped with a
    reason. Hidden entries (.DS_Store, our own temp files) are ignored; an unreadable candidate is an
    error, because it is most likely a clip the user meant."""
    _require_readable_folder(folder)
    scan = _FolderScan()
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except PermissionError:
        raise UserError(_permission_denied(folder)) from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            info = path.stat()
        except OSError:
            reason = "a broken link" if path.is_symlink() else "it cannot be looked at"
            scan.skipped.append(Skipped(path, reason))
            continue
        kind = _special_kind(info.st_mode)
        suffix = path.suffix.lower()
        if kind is not None:
            scan.skipped.append(Skipped(path, f"{kind}, not a file"))
        elif stat.S_ISDIR(info.st_mode):
            scan.folders.append(path)
        elif suffix in VIDEO_SUFFIXES or suffix in IMAGE_SUFFIXES:
            if not os.access(path, os.R_OK):
                raise UserError(_permission_denied(path))
            (scan.videos if suffix in VIDEO_SUFFIXES else scan.images).append(path)
        else:
            scan.skipped.append(Skipped(path, "not a video or an image"))
    return scan


def _are_numbered_frames(images: list[Path]) -> bool:
    """Frames of one clip: at least two images whose names differ only in their numbers (frame001.png,
    frame002.png, ...). Two unrelated stills (cat.png, dog.jpg) are not a clip."""
    if len(images) < 2 or not all(re.search(r"\d", image.stem) for image in images):
        return False
    return len({re.sub(r"\d+", "#", image.stem) for image in images}) == 1


def _frame_files(folder: Path) -> list[Path]:
    """The numbered frames of a frame-folder clip, in numeric order."""
    return sorted(_scan_folder(folder).images, key=_numbered_key)


def _explicit_video(path: Path, info: os.stat_result) -> Path:
    _require_readable_file(path, info, "pass a video file or a folder of clips")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(
            f"'{path}' is not a supported video ({', '.join(VIDEO_SUFFIXES)}); "
            "convert it or pass a folder of numbered frames."
        )
    return path


def _looks_like_clip_folder(folder: Path) -> bool:
    try:
        scan = _scan_folder(folder)
    except UserError:  # unreadable: not worth a hint
        return False
    return bool(scan.videos) or _are_numbered_frames(scan.images)


def _clip_folders_below(folder: Path, depth: int = 3) -> list[Path]:
    """Folders under `folder` (a few levels deep, links not followed) that hold videos or numbered
    frames: what the user most likely meant to pass."""
    found: list[Path] = []
    level = [folder]
    for _ in range(depth):
        below: list[Path] = []
        for parent in level:
            try:
                subs = sorted(e.path for e in os.scandir(parent) if e.is_dir(follow_symlinks=False))
            except OSError:
                continue
            for sub in (Path(path) for path in subs if not Path(path).name.startswith(".")):
                (found if _looks_like_clip_folder(sub) else below).append(sub)
        level = below
    return found


def _no_clips_sentence(folder: Path, stills: list[Path]) -> str:
    if stills:
        many = len(stills) != 1
        holds = f"{len(stills)} still{'s' if many else ''} that {'are' if many else 'is'} not numbered frames"
    else:
        holds = "no videos and no numbered frames"
    candidates = _clip_folders_below(folder)
    if candidates:
        shown = ", ".join(f"'{sub}'" for sub in candidates[:5])
        more = f" and {len(candidates) - 5} more" if len(candidates) > 5 else ""
        plural = len(candidates) > 1
        return (
            f"Folder '{folder}' holds no clips ({holds}); {shown}{more} look{'' if plural else 's'} like "
            f"clip folder{'s' if plural else ''} (videos or numbered frames), so pass "
            f"{'one of those' if plural else 'that folder'} instead."
        )
    return (
        f"Folder '{folder}' holds no clips ({holds}); put the action's videos "
        f"({', '.join(VIDEO_SUFFIXES)}) or folders of numbered frames (frame001.png, ...) there."
    )


def _clips_in_folder(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """A folder's clips: its videos and frame folders, or the folder itself when it holds numbered frames."""
    scan = _scan_folder(folder)
    frame_folders: list[Path] = []
    video_folders: list[Path] = []
    skipped = list(scan.skipped)
    for sub in scan.folders:
        inner = _scan_folder(sub)
        if _are_numbered_frames(inner.images):
            frame_folders.append(sub)
            skipped += inner.skipped
        elif inner.videos:
            video_folders.append(sub)
        else:
            skipped.append(Skipped(sub, "a folder without videos or numbered frames"))
    if scan.videos or frame_folders:
        skipped += [Skipped(image, "a still among clips, not a clip") for image in scan.images]
        skipped += [Skipped(sub, "a folder of videos; pass it on its own to use it") for sub in video_folders]
        return sorted(scan.videos + frame_folders), skipped
    if _are_numbered_frames(scan.images):
        return [folder], skipped + [Skipped(sub, "a folder inside a frame folder") for sub in video_folders]
    raise UserError(_no_clips_sentence(folder, scan.images))


def discover_clips(paths: list[Path]) -> ClipPaths:
    """Expand the user's CLIPS arguments into clip paths (video files or folders of numbered frames).

    A folder holding videos (or sub-folders of numbered frames) expands to those, sorted by name; a
    folder holding only numbered frames is itself one clip. Entries passed over are in `.skipped`.
    """
    found = ClipPaths()
    for path in paths:
        info = _stat_input(path, "Clip path", "pass a folder of clips or video files")
        if not stat.S_ISDIR(info.st_mode):
            found.append(_explicit_video(path, info))
            continue
        clips, skipped = _clips_in_folder(path)
        found.extend(clips)
        found.skipped.extend(skipped)
    return found


def _decode_failure(path: Path, error: BaseException) -> UserError:
    reason = str(error).splitlines()[0] if str(error) else "ffmpeg failed"
    return UserError(
        f"Could not decode video '{path}' ({reason}); "
        "check that the file is a complete video or re-encode it."
    )


def _count_packets(path: Path) -> int | None:
    """Frames in a video by reading its packets without decoding them (fast); None when unknown."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path)]
    command += ["-map", "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError:
        return None
    counts = re.findall(rb"^frame=(\d+)", result.stdout, flags=re.MULTILINE)
    return int(counts[-1]) if result.returncode == 0 and counts else None


FitFrame = Callable[[np.ndarray], np.ndarray]
# Which frames to keep, given the clip's frame count and fps.
Pick = Callable[[int, float], np.ndarray]
# A frame size: N (square) or (width, height).
FrameSize = int | tuple[int, int]


def _decode_sampled(
    path: Path, wanted: Container[int] | Callable[[dict[str, Any]], Container[int]], fit: FitFrame
) -> tuple[dict[int, np.ndarray], int, dict[str, Any]]:
    """Stream a video through ffmpeg, fitting and keeping only the frames whose index is in `wanted`
    (or in what `wanted` answers for ffmpeg's header, when the choice needs the clip's fps).

    Returns the kept frames by index, how many frames decoded, and ffmpeg's header (size, fps, duration)."""
    import imageio_ffmpeg

    kept: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        if callable(wanted):
            wanted = wanted(meta)
        for index, buffer in enumerate(reader):
            if index in wanted:
                kept[index] = fit(np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3))
            decoded = index + 1
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as error:
        raise _decode_failure(path, error) from None
    return kept, decoded, meta


def _refuse_truncated(path: Path, meta: dict[str, Any], decoded: int, fps: float) -> None:
    """A video that stops well before the length its header states was cut off (a partial copy)."""
    promised = float(meta.get("duration") or 0.0) * fps
    if promised >= 2 and decoded < TRUNCATED_SHARE * promised:
        raise UserError(
            f"Video '{path}' is truncated: its header promises {meta['duration']:.2f} s (about "
            f"{promised:.0f} frames) but only {decoded} frames decode; copy or export it again."
        )


def _header_fps(meta: dict[str, Any]) -> float:
    return float(meta.get("fps") or 0.0) or FRAME_FOLDER_FPS


def _sample_video(path: Path, pick: Pick, fit: FitFrame) -> SampledClip:
    total = _count_packets(path)
    kept, decoded, meta = _decode_sampled(
        path, lambda meta: {int(i) for i in pick(total, _header_fps(meta))} if total else set(), fit
    )
    if decoded == 0:
        raise UserError(f"Video '{path}' has no frames; re-export it or remove it from the clips.")
    fps = _header_fps(meta)
    _refuse_truncated(path, meta, decoded, fps)
    indices = pick(decoded, fps)
    if decoded != total:  # the packet count was off or unknown: read again, now knowing the true count
        kept, again, meta = _decode_sampled(path, {int(i) for i in indices}, fit)
        if again != decoded:
            raise UserError(
                f"Video '{path}' decodes to {decoded} frames once and {again} the next time; re-encode it."
            )
    width, height = meta["size"]
    return SampledClip(path, np.stack([kept[i] for i in indices]), decoded, fps, int(width), int(height))


def _gif_durations(path: Path) -> list[float]:
    with Image.open(path) as image:
        return [float(frame.info.get("duration", 0) or 0) for frame in ImageSequence.Iterator(image)]


def _gif_fps(durations: list[float]) -> float:
    mean_ms = float(np.mean(durations)) if any(durations) else 1000.0 / FRAME_FOLDER_FPS
    return 1000.0 / mean_ms


def _sample_gif(path: Path, pick: Pick, fit: FitFrame) -> SampledClip:
    """Two passes over the GIF (count, then keep the sampled frames) so only those are ever held."""
    try:
        durations = _gif_durations(path)
        if not durations:
            raise UserError(f"GIF '{path}' has no frames; re-export it or remove it from the clips.")
        indices = pick(len(durations), _gif_fps(durations))
        wanted = set(indices)
        kept: dict[int, np.ndarray] = {}
        with Image.open(path) as image:
            width, height = image.size
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                if index in wanted:
                    kept[index] = fit(np.asarray(frame.convert("RGB")))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        raise UserError(f"Could not read GIF '{path}'; check that the file is a complete GIF.") from None
    frames = np.stack([kept[i] for i in indices])
    return SampledClip(path, frames, len(durations), _gif_fps(durations), width, height)


def _frame_size(files: list[Path], folder: Path) -> tuple[int, int]:
    """The one (width, height) of a frame folder, from the files' headers (nothing is decoded)."""
    sizes = {_photo_size(file) for file in files}
    if len(sizes) != 1:
        listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        raise UserError(f"Frames in '{folder}' have different sizes ({listed}); export them at one size.")
    return sizes.pop()


def _sample_frame_folder(path: Path, pick: Pick, fit: FitFrame) -> SampledClip:
    files = _frame_files(path)
    if not files:
        raise UserError(f"Folder '{path}' has no frame images; it needs numbered PNG/JPEG frames.")
    width, height = _frame_size(files, path)
    indices = pick(len(files), FRAME_FOLDER_FPS)
    kept = {index: fit(read_image(files[index])) for index in set(indices)}
    frames = np.stack([kept[i] for i in indices])
    return SampledClip(path, frames, len(files), FRAME_FOLDER_FPS, width, height)


def sample_clip(
    path: Path, count: int, size: FrameSize, crop: CropMode = "center", fps: float | None = None
) -> SampledClip:
    """Read the `count` frames `sample_indices` picks from a clip (`sample_at_fps` when `fps` is given:
    the base's frame rate), each fitted to `size` as it is decoded.

    The same frames `read_clip` + `sample_indices` + `fit_frames` would give, without ever holding
    the whole clip: memory stays flat however long or large the clip is."""

    def fit(frame: np.ndarray) -> np.ndarray:
        return fit_image(frame, size, crop)

    def pick(frame_count: int, clip_fps: float) -> np.ndarray:
        return (
            sample_indices(frame_count, count)
            if fps is None
            else sample_at_fps(frame_count, count, clip_fps, fps)
        )

    info = _stat_input(path, "Clip", "check the path")
    if stat.S_ISDIR(info.st_mode):
        return _sample_frame_folder(path, pick, fit)
    _explicit_video(path, info)
    if path.suffix.lower() == ".gif":
        return _sample_gif(path, pick, fit)
    return _sample_video(path, pick, fit)


class _EveryIndex:
    """`wanted` for keeping every frame."""

    def __contains__(self, index: object) -> bool:
        return True


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, float]:
    kept, decoded, meta = _decode_sampled(path, _EveryIndex(), np.copy)
    if decoded == 0:
        raise UserError(f"Video '{path}' has no frames; re-export it or remove it from the clips.")
    fps = float(meta.get("fps") or 0.0)
    return np.stack([kept[i] for i in range(decoded)]), fps if fps > 0 else FRAME_FOLDER_FPS


def _read_gif(path: Path) -> tuple[np.ndarray, float]:
    try:
        durations = _gif_durations(path)
        with Image.open(path) as image:
            frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        raise UserError(f"Could not read GIF '{path}'; check that the file is a complete GIF.") from None
    if not frames:
        raise UserError(f"GIF '{path}' has no frames; re-export it or remove it from the clips.")
    return np.stack(frames), _gif_fps(durations)


def _read_frame_folder(path: Path) -> tuple[np.ndarray, float]:
    files = _frame_files(path)
    if not files:
        raise UserError(f"Folder '{path}' has no frame images; it needs numbered PNG/JPEG frames.")
    _frame_size(files, path)
    return np.stack([read_image(file) for file in files]), FRAME_FOLDER_FPS


def probe_clip(path: Path) -> None:
    """Fail fast, before any model loads, on a clip that cannot be decoded or has no frames.

    Decodes only the first frame of a video or GIF; a frame folder's headers are read, not its pixels.
    """
    info = _stat_input(path, "Clip", "check the path")
    if stat.S_ISDIR(info.st_mode):
        files = _frame_files(path)
        if not files:
            raise UserError(f"Folder '{path}' has no frame images; it needs numbered PNG/JPEG frames.")
        _frame_size(files, path)
        return
    _explicit_video(path, info)
    if path.suffix.lower() == ".gif":
        if not _gif_durations_or_error(path):
            raise UserError(f"GIF '{path}' has no frames; re-export it or remove it from the clips.")
        return
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        next(reader)
        first = next(reader, None)
        reader.close()
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as error:
        raise _decode_failure(path, error) from None
    if first is None:
        raise UserError(f"Video '{path}' has no frames; re-export it or remove it from the clips.")


def _gif_durations_or_error(path: Path) -> list[float]:
    try:
        return _gif_durations(path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        raise UserError(f"Could not read GIF '{path}'; check that the file is a complete GIF.") from None


def read_clip(path: Path) -> Clip:
    """Decode a whole clip (video file, GIF or folder of numbered frames) into RGB frames.

    Holds every frame: for outputs and tests. Training reads clips with `sample_clip`."""
    info = _stat_input(path, "Clip", "check the path")
    if stat.S_ISDIR(info.st_mode):
        frames, fps = _read_frame_folder(path)
    else:
        _explicit_video(path, info)
        frames, fps = _read_gif(path) if path.suffix.lower() == ".gif" else _read_ffmpeg(path)
    return Clip(path=path, frames=frames, fps=fps)


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the photo is meant to be seen: EXIF orientations 5-8 turn it a quarter."""
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_photo_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PHOTO_PIXELS:
        raise UserError(
            f"Photo '{path}' is too large ({width}x{height}, {width * height / 1e6:.0f} megapixels; "
            f"the limit is {MAX_PHOTO_PIXELS / 1e6:.0f} megapixels); downscale it first."
        )


def unreadable_photo(path: Path) -> str:
    return f"'{path}' is not an image PIL can read; pass a PNG, JPEG or WebP photo."


@contextmanager
def _open_photo(path: Path) -> Iterator[Image.Image]:
    """Open a photo's header (no pixels yet) after checking it is a readable regular file of a sane size."""
    info = _stat_input(path, "Photo", "check the path")
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"'{path}' is a folder, not a photo; pass image files (PNG, JPEG, WebP).")
    _require_readable_file(path, info, "pass an image file (PNG, JPEG, WebP)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_photo_pixels(path, *image.size)
                yield image
    except PermissionError:
        raise UserError(_permission_denied(path)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(
            f"Photo '{path}' is too large (the limit is {MAX_PHOTO_PIXELS / 1e6:.0f} megapixels); "
            "downscale it first."
        ) from None
    except (OSError, UnidentifiedImageError, ValueError):
        raise UserError(unreadable_photo(path)) from None


def _photo_size(path: Path) -> tuple[int, int]:
    with _open_photo(path) as image:
        return _oriented_size(image)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode as 8-bit RGB: upright (EXIF orientation applied), 16-bit scaled down rather than
    clipped to white, transparency laid over white, palette and CMYK converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16-bit greyscale (I;16*), or I holding 16-bit values
        grey = np.asarray(image, dtype=np.float64) / 257.0
        return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 255)
        return np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).copy()
    return np.asarray(image.convert("RGB")).copy()


def read_image(path: Path) -> np.ndarray:
    """Read a photo as upright RGB uint8 (H, W, 3); anything that is not a readable, sane-sized image
    is a user error (refused before its pixels are decoded)."""
    with _open_photo(path) as image:
        try:
            image.load()
            return _to_rgb(image)
        except (OSError, ValueError, SyntaxError):  # truncated or corrupt pixel data
            raise UserError(unreadable_photo(path)) from None


def sample_indices(frame_count: int, count: int) -> np.ndarray:
    """Indices of `count` frames spread evenly from the first to the last frame of the clip.

    A clip shorter than `count` repeats frames (the preflight warns about it) rather than failing.
    """
    if frame_count < 1 or count < 1:
        raise ValueError(f"need at least one frame, got frame_count={frame_count} count={count}")
    return np.rint(np.linspace(0, frame_count - 1, count)).astype(np.int64)


def time_span_fits(frame_count: int, count: int, clip_fps: float, fps: float) -> bool:
    """Whether `count` frames at `fps` last no longer than the clip (so none has to be slowed down)."""
    return (count - 1) * clip_fps / fps <= frame_count - 1 + 1e-6


def sample_at_fps(frame_count: int, count: int, clip_fps: float, fps: float) -> np.ndarray:
    """Indices of `count` frames `1/fps` seconds apart (the base's frame rate), from the middle of the clip,
    so motion plays at its real speed; a clip shorter than that span is spread first to last instead
    (slowed down; `describe_sampling` says by how much)."""
    if not time_span_fits(frame_count, count, clip_fps, fps):
        return sample_indices(frame_count, count)
    step = clip_fps / fps
    start = ((frame_count - 1) - (count - 1) * step) / 2
    return np.clip(np.rint(start + step * np.arange(count)), 0, frame_count - 1).astype(np.int64)


def describe_sampling(
    frame_count: int, count: int, clip_fps: float | None = None, fps: float | None = None
) -> str:
    """Human words for how `sample_indices` (or `sample_at_fps`, when `fps` is given) picks frames, shown
    in the preflight table: a retime names the base's fps and the clip's speed."""
    if fps is not None and clip_fps:
        if time_span_fits(frame_count, count, clip_fps, fps):
            seconds = (count - 1) / fps
            return f"at {fps:g} fps: {seconds:.2f} s of {(frame_count - 1) / clip_fps:.2f} s, real speed"
        speed = ((frame_count - 1) / clip_fps) / ((count - 1) / fps)
        return f"at {fps:g} fps: whole clip, slowed to x{speed:.2f}"
    if frame_count == count:
        return "every frame"
    if frame_count < count:
        return f"all {frame_count}, some repeated"
    stride = (frame_count - 1) / max(count - 1, 1)
    return f"evenly, every ~{stride:.1f}"


def fit_frames(frames: np.ndarray, size: FrameSize, crop: CropMode = "center") -> np.ndarray:
    """Make frames `size` (N: N x N, or (width, height)): centre-crop, pad with black, or stretch."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (F, H, W, 3) frames, got {frames.shape}")
    return np.stack([fit_image(frame, size, crop) for frame in frames])


def width_height(size: FrameSize) -> tuple[int, int]:
    """(width, height) of a frame size given as N (square) or (width, height)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def fit_image(image: np.ndarray, size: FrameSize, crop: CropMode = "center") -> np.ndarray:
    """Resize one RGB image to `size` (N: N x N, or (width, height)) with the chosen crop mode: centre
    fills the frame and crops what overflows, pad fits it whole on black, stretch ignores the aspect."""
    out_w, out_h = width_height(size)
    height, width = image.shape[:2]
    pil = Image.fromarray(image)
    if crop == "stretch":
        return np.array(pil.resize((out_w, out_h), Image.Resampling.BICUBIC))
    if crop == "center":
        scale = max(out_w / width, out_h / height)
    elif crop == "pad":
        scale = min(out_w / width, out_h / height)
    else:
        raise ValueError(f"unknown crop mode {crop!r}; use center, pad or stretch")
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0))
    canvas = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    if crop == "center":
        top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
        return resized[top : top + out_h, left : left + out_w].copy()
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
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
    files = _frame_files(path) if path.is_dir() else [path]
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


def check_output_file(path: Path) -> None:
    """Refuse an output name held by a FIFO, device or socket: the final rename would replace that
    node itself (as root, even /dev entries)."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return  # nothing there yet (or the folder check will say why not)
    kind = _special_kind(mode)
    if kind is not None:
        raise UserError(f"Output '{path}' is {kind}, not a file; choose another output name.")


def _blocking_file(target: Path) -> Path | None:
    """The nearest existing ancestor of `target` when it is a file rather than a folder."""
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return None if existing.is_dir() else existing


def write_failure(target: Path, error: OSError) -> str | None:
    """The sentence for a write the environment refused (full disk, read-only, permission, a file in
    the way) or an encoder that failed; None for anything else (a bug)."""
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (
            f"Could not write '{target}': the disk is full or a file-size limit was reached; free some "
            "space or write elsewhere (any earlier file of that name is unchanged)."
        )
    if code == errno.EROFS:
        return f"Could not write '{target}': the file system is read-only; choose another folder."
    if code in (errno.EACCES, errno.EPERM):
        return f"Permission denied, '{target}'; choose a folder you can write to."
    if code == errno.ENOTDIR:
        blocker = _blocking_file(target)
        where = f"'{blocker}' is a file, not a folder" if blocker else "part of its path is a file"
        return f"Cannot write '{target}': {where}; choose another output path."
    if isinstance(error, WriterFailed):
        return (
            f"Could not write '{target}' ({error.strerror}); any earlier file of that name is unchanged, "
            "so check the disk and try again."
        )
    return None


def atomic_path(target: Path) -> AbstractContextManager[Path]:
    """The one atomic writer (`flashcli.files.atomic_path`) for outputs: a refused write is told to
    the user as one sentence (`write_failure`, exit 2); the previous `target` then stays as it was."""
    return files.atomic_path(target, explain=write_failure)


def _encoder_errno(returncode: int, stderr: str) -> int:
    """ffmpeg reports a refused write only in words (or dies of SIGXFSZ at a file-size limit); map
    those back to an errno."""
    if returncode == -getattr(signal, "SIGXFSZ", 0):
        return errno.EFBIG
    for words, code in (
        ("No space left", errno.ENOSPC),
        ("File too large", errno.EFBIG),
        ("quota exceeded", errno.EDQUOT),
        ("Read-only file system", errno.EROFS),
        ("Permission denied", errno.EACCES),
    ):
        if words.lower() in stderr.lower():
            return code
    return errno.EIO


def encode_mp4(path: Path, frames: np.ndarray, fps: float, *, crf: int = MP4_CRF) -> None:
    """Encode H.264 (yuv420p) with the bundled ffmpeg, checking its exit status: a failed encode or
    close (a full disk) raises WriterFailed instead of leaving a truncated file to be renamed over the
    target. `crf`: H.264 constant rate factor (lower is better)."""
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"mp4 (yuv420p) needs even width and height, got {width}x{height}")
    rate = str(Fraction(fps).limit_denominator())
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-nostdin", "-f", "rawvideo"]
    command += ["-vcodec", "rawvideo", "-s", f"{width}x{height}", "-pix_fmt", "rgb24", "-r", rate, "-i", "-"]
    command += ["-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-f", "mp4"]
    raw = np.ascontiguousarray(frames).tobytes()
    result = subprocess.run([*command, str(path)], input=raw, capture_output=True, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        last = stderr.splitlines()[-1] if stderr else f"ffmpeg exited with status {result.returncode}"
        raise WriterFailed(
            _encoder_errno(result.returncode, stderr), f"the encoder failed: {last}", str(path)
        )


def _pil_frames(frames: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(frame) for frame in frames]


def _output_format(path: Path, fmt: str | None) -> OutputFormat:
    chosen = fmt or path.suffix.lower().lstrip(".")
    if chosen not in OUTPUT_FORMATS:
        raise UserError(
            f"Output '{path}' has unknown format '{chosen}'; use one of {', '.join(OUTPUT_FORMATS)}."
        )
    return chosen  # type: ignore[return-value]


def encode_video(temp: Path, frames: np.ndarray, fps: float, fmt: OutputFormat) -> None:
    """Write frames into `temp`, a path from `atomic_path` (not atomic itself: for callers that commit
    a video together with another file). A failed write raises; nothing is left to clean up but `temp`."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (F, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    frame_ms = max(1, round(1000.0 / fps))
    if fmt == "mp4":
        encode_mp4(temp, frames, fps)
        return
    images = _pil_frames(frames)
    if fmt == "gif":
        images = [image.quantize(colors=256, method=Image.Quantize.FASTOCTREE) for image in images]
    options: dict[str, Any] = {"lossless": True} if fmt == "webp" else {}
    images[0].save(
        temp,
        format=fmt.upper(),
        save_all=True,
        append_images=images[1:],
        duration=frame_ms,
        loop=0,
        **options,
    )


def write_video(path: Path, frames: np.ndarray, fps: float, fmt: OutputFormat | None = None) -> Path:
    """Write frames atomically as mp4 (H.264), gif, webp (animated, lossless) or png (animated APNG).

    The format defaults to the path's suffix. PNG and WebP are lossless, so frame 0 keeps the photo's
    exact pixels; mp4 and gif are lossy. A full disk or a failed encoder leaves an earlier file of the
    same name as it was and raises UserError naming `path`.
    """
    chosen = _output_format(path, fmt)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (F, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    with atomic_path(path) as temp:
        encode_video(temp, frames, fps, chosen)
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
