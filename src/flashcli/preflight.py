"""Turn the user's clips into training input, and say what will be used before training starts.

Each clip is streamed once: only the `frames` frames picked evenly from first to last (or, for a base
with its own frame rate, a diffusers folder, 1/fps apart from the clip's middle: retimed) are kept,
each fitted to the frame size (crop mode) as it is decoded, so a long 1080p clip costs no more
memory than a short small one. The warnings are the things a user would want to hear
before spending minutes on training: too few or too many clips, a clip that barely moves, two
identical clips, a clip shorter than the frames asked for, and every folder entry that discovery
passed over (a broken link, a FIFO, a stray still), with why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flashcli.library import ClipRecord
from flashcli.video import (
    CropMode,
    FrameSize,
    Skipped,
    content_hash,
    describe_sampling,
    file_hash,
    motion_score,
    sample_clip,
    time_span_fits,
)

FEW_CLIPS = 3
MANY_CLIPS = 16
# motion_score below which a clip looks static (FigureWorld's delicate weld clips score 11-26 at 32 px).
STATIC_MOTION = 3.0
SHORT_SECONDS = 0.5


@dataclass(frozen=True)
class PreparedClip:
    record: ClipRecord
    frames: np.ndarray  # uint8 (frames, height, width, 3), what the trainer sees
    motion: float
    slowed: bool = False  # retimed to the base's fps, but too short: spread first to last instead


@dataclass
class Preflight:
    clips: list[PreparedClip]
    warnings: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # folder entries not used as clips, with why
    retime_fps: float | None = None  # the base's fps the clips were sampled at; None: first to last

    @property
    def videos(self) -> list[np.ndarray]:
        return [clip.frames for clip in self.clips]

    @property
    def records(self) -> list[ClipRecord]:
        return [clip.record for clip in self.clips]

    @property
    def median_fps(self) -> float:
        """Frame rate of the sampled frames (frames used per second of clip), for outputs: the base's
        when the clips were retimed to it."""
        if self.retime_fps is not None:
            return self.retime_fps
        rates = [
            (clip.record.frames_used - 1) / clip.record.duration
            for clip in self.clips
            if clip.record.duration > 0 and clip.record.frames_used > 1
        ]
        return float(np.clip(np.median(rates), 1.0, 60.0)) if rates else 8.0


def prepare_clip(
    path: Path, frames: int, size: FrameSize, crop: CropMode, fps: float | None = None
) -> PreparedClip:
    """One clip's `frames` frames, fitted to `size`; sampled at `fps` (the base's) when given."""
    clip = sample_clip(path, frames, size, crop, fps)
    record = ClipRecord(
        path=str(path.resolve()),
        sha256=file_hash(path),
        frames_total=clip.frame_count,
        fps=round(clip.fps, 3),
        duration=round(clip.duration, 3),
        width=clip.width,
        height=clip.height,
        frames_used=frames,
        sampling=describe_sampling(clip.frame_count, frames, clip.fps, fps),
    )
    slowed = fps is not None and not time_span_fits(clip.frame_count, frames, clip.fps, fps)
    return PreparedClip(record=record, frames=clip.frames, motion=motion_score(clip.frames), slowed=slowed)


def run_preflight(
    paths: list[Path], frames: int, size: FrameSize, crop: CropMode, fps: float | None = None
) -> Preflight:
    """Read and prepare every clip (a bad one raises UserError naming it) and collect warnings; with
    `fps` (the base's frame rate) clips are retimed to it: sampled by time, not first to last.

    `paths` may be `discover_clips`'s answer, whose `.skipped` entries become warnings first."""
    prepared = [prepare_clip(path, frames, size, crop, fps) for path in paths]
    skipped = list(getattr(paths, "skipped", []))
    report = Preflight(
        clips=prepared, warnings=[str(entry) for entry in skipped], skipped=skipped, retime_fps=fps
    )
    count = len(prepared)
    if count < FEW_CLIPS:
        report.warnings.append(
            f"Only {count} clip{'s' if count != 1 else ''}: FLASH is made for {FEW_CLIPS}-{MANY_CLIPS}; "
            "the action may not carry over to new photos."
        )
    if count > MANY_CLIPS:
        report.warnings.append(f"{count} clips: more than {MANY_CLIPS} slows training for little gain.")
    seen: dict[str, str] = {}
    for clip in prepared:
        name = Path(clip.record.path).name
        if clip.motion < STATIC_MOTION:
            report.warnings.append(
                f"Clip '{name}' barely moves (motion {clip.motion:.2f}); it teaches little motion."
            )
        if clip.record.frames_total < frames:
            report.warnings.append(
                f"Clip '{name}' is very short ({clip.record.frames_total} frames for {frames} used): "
                "some frames repeat."
            )
        elif clip.slowed and fps is not None:
            report.warnings.append(
                f"Clip '{name}' lasts {clip.record.duration:.2f} s, shorter than the "
                f"{(frames - 1) / fps:.2f} s that {frames} frames at the base's {fps:g} fps take: its motion "
                "is slowed down; use a longer clip or fewer --frames."
            )
        elif clip.record.duration < SHORT_SECONDS:
            report.warnings.append(
                f"Clip '{name}' is very short ({clip.record.duration:.2f} s); the action may be cut off."
            )
        keys = (clip.record.sha256, "pixels:" + content_hash(clip.frames))
        duplicate_of = next((seen[key] for key in keys if key in seen), None)
        if duplicate_of is not None:
            report.warnings.append(
                f"Clips '{duplicate_of}' and '{name}' are duplicates; one of them adds nothing."
            )
        for key in keys:
            seen.setdefault(key, name)
    return report
