"""Writing a clip to disk: mp4, PNG frames and a JSON sidecar with the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flashcli.figureworld.render import Clip
from flashcli.files import atomic_folder, atomic_path, write_json_atomic

# H.264 constant rate factor of the clips: small files, close to the rendered pixels.
MP4_CRF = 20


def sidecar(clip: Clip) -> dict[str, object]:
    """The clip's metadata plus every joint's pixel position and visibility in every frame."""
    return {
        **clip.meta,
        "joints": {
            "names": list(clip.meta["joint_names"]),  # type: ignore[call-overload]
            "xy": np.round(clip.joints.astype(np.float64), 3).tolist(),
            "visible": clip.visible.tolist(),
        },
        "mask_fraction": [round(float(m.mean()), 5) for m in clip.mask],
    }


def write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    """H.264 mp4 (yuv420p, so it plays everywhere); needs an even width and height.

    An encoder that fails (a full disk) raises an OSError naming `path` and keeps any earlier file."""
    # Imported here: rendering clips in memory (pretraining on a bare GPU box) needs no ffmpeg.
    from flashcli.video import encode_mp4

    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"mp4 needs an even width and height, got {width}x{height}")
    with atomic_path(path) as temp:
        encode_mp4(temp, frames, fps, crf=MP4_CRF)


def write_clip(
    clip: Clip, folder: Path, stem: str, *, mp4: bool = True, png: bool = True, sidecar_json: bool = True
) -> list[Path]:
    """Write <stem>.mp4, <stem>/frame_NNN.png and <stem>.json into folder; returns what was written.

    Each file (and the frames folder) appears whole or not at all: written under a temporary name,
    then renamed; a failed write keeps what was there before.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if mp4:
        path = folder / f"{stem}.mp4"
        write_mp4(clip.frames, path, float(clip.meta["fps"]))  # type: ignore[arg-type]
        written.append(path)
    if png:
        final = folder / stem
        with atomic_folder(final) as staging:
            for i, frame in enumerate(clip.frames):
                Image.fromarray(frame).save(staging / f"frame_{i:03d}.png", optimize=False)
        written.append(final)
    if not sidecar_json:
        return written
    written.append(write_json_atomic(folder / f"{stem}.json", sidecar(clip)))
    return written
