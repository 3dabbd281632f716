"""Writing a clip to disk: mp4, PNG frames and a JSON sidecar with the ground truth."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from flashcli.figureworld.render import Clip


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
    """H.264 mp4 (yuv420p, so it plays everywhere); needs an even width and height."""
    # Imported here: rendering clips in memory (pretraining on a bare GPU box) needs no ffmpeg.
    import imageio_ffmpeg

    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"mp4 needs an even width and height, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        (width, height),
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=2,
        output_params=["-crf", "20", "-preset", "medium"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    os.replace(tmp, path)


def write_clip(
    clip: Clip, folder: Path, stem: str, *, mp4: bool = True, png: bool = True, sidecar_json: bool = True
) -> list[Path]:
    """Write <stem>.mp4, <stem>/frame_NNN.png and <stem>.json into folder; returns what was written.

    Each file appears whole or not at all (written under a temporary name, then renamed).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if mp4:
        path = folder / f"{stem}.mp4"
        write_mp4(clip.frames, path, float(clip.meta["fps"]))  # type: ignore[arg-type]
        written.append(path)
    if png:
        final = folder / stem
        staging = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=folder))
        staging.chmod(0o755)  # mkdtemp makes it private; the frames are ordinary output
        try:
            for i, frame in enumerate(clip.frames):
                Image.fromarray(frame).save(staging / f"frame_{i:03d}.png", optimize=False)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        written.append(final)
    if not sidecar_json:
        return written
    path = folder / f"{stem}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(sidecar(clip)) + "\n")
    os.replace(tmp, path)
    written.append(path)
    return written
