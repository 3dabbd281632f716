"""Score a generated video's body motion against reference videos with mediapipe pose landmarks.

A second motion scorer, independent of the FigureWorld keypoint detector, for footage of real people.
Runs in its own venv (mediapipe 0.10.21 pins numpy<2 and pulls jax), which holds this project without
its dependencies for the numpy-only `flashcli.lab.pose_motion` (see bench/README.md):

    .venv-mediapipe/bin/python bench/real/score_real.py GENERATED.mp4 REF.mp4 [REF2.mp4 ...]
        [--labels weld,saw,...] [--mirror] [--json]

Per video: mediapipe's 33 landmarks per frame (tracking mode). Per reference: displacement error
after DTW (% of torso length), motion correlation, and which reference is nearest. A markdown table
goes to stdout (or one JSON document with --json); progress goes to stderr. Exit 2 on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from flashcli.lab import pose_motion

# The wheel of mediapipe 0.10.21 bundles only the "full" landmark model; the others are fetched from
# the network on first use, which here would fail after a stack trace (or hang), so refuse up front.
_MODEL_FILES = {
    0: "pose_landmark_lite.tflite",
    1: "pose_landmark_full.tflite",
    2: "pose_landmark_heavy.tflite",
}


class InputError(Exception):
    """Bad input: reported as one sentence on stderr, exit 2."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _native_stderr_muted(muted: bool):  # noqa: ANN202 - a context manager
    """Send file descriptor 2 to /dev/null while mediapipe runs: its C++ side writes several lines of
    absl/TFLite warnings per video there, which no environment variable of 0.10.21 turns off, and they
    would bury the progress lines. Python exceptions still surface (they are raised, not logged)."""
    if not muted:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _check_model(complexity: int) -> None:
    import mediapipe

    path = Path(mediapipe.__file__).parent / "modules" / "pose_landmark" / _MODEL_FILES[complexity]
    if not path.is_file():
        raise InputError(
            f"--complexity {complexity} needs {path.name}, which this mediapipe wheel does not bundle "
            "(only complexity 1 ships in it) and which would have to be downloaded."
        )


def _frames(path: Path, every: int):  # noqa: ANN202 - a generator of (H, W, 3) uint8 arrays
    import imageio.v2 as imageio

    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file.")
    try:
        reader = imageio.get_reader(str(path), format="ffmpeg")
    except Exception as error:  # imageio raises several types for unreadable files
        raise InputError(f"{path} cannot be read as a video ({type(error).__name__}).") from error
    try:
        for index, frame in enumerate(reader):
            if index % every == 0:
                yield np.ascontiguousarray(frame[..., :3])
    except Exception as error:
        raise InputError(f"{path} could not be decoded ({type(error).__name__}).") from error
    finally:
        reader.close()


def landmarks(path: Path, complexity: int, threshold: float, every: int) -> tuple[np.ndarray, np.ndarray]:
    """(F, 33, 2) pixel positions and (F, 33) visibility >= threshold, one row per (kept) frame."""
    from mediapipe.python.solutions import pose as mp_pose

    xy: list[np.ndarray] = []
    seen: list[np.ndarray] = []
    # A fresh tracker per video: tracking state must not leak from one clip into the next.
    with mp_pose.Pose(static_image_mode=False, model_complexity=complexity) as tracker:
        for frame in _frames(path, every):
            height, width = frame.shape[:2]
            result = tracker.process(frame)
            if result.pose_landmarks is None:
                xy.append(np.zeros((pose_motion.NUM_LANDMARKS, 2)))
                seen.append(np.zeros(pose_motion.NUM_LANDMARKS, dtype=bool))
                continue
            points = result.pose_landmarks.landmark
            # Normalised x, y -> pixels, so non-square videos keep their proportions.
            xy.append(np.array([[p.x * width, p.y * height] for p in points]))
            seen.append(np.array([p.visibility >= threshold for p in points]))
    if not xy:
        raise InputError(f"{path} has no frames.")
    return np.stack(xy), np.stack(seen)


def _trajectory(xy: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Displacement trajectory, or None when the clip has no usable person (reported, not fatal)."""
    try:
        return pose_motion.displacements(pose_motion.normalise(xy, seen), seen)
    except ValueError:
        return None


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def score(args: argparse.Namespace) -> dict:
    videos = [args.generated, *args.references]
    labels = args.labels.split(",") if args.labels else [path.stem for path in args.references]
    if len(labels) != len(args.references):
        raise InputError(f"--labels names {len(labels)} references but {len(args.references)} were given.")
    missing = [str(path) for path in videos if not path.is_file()]
    if missing:  # before any slow work, so a typo in the last reference fails at once
        raise InputError(f"{', '.join(missing)} does not exist or is not a file.")
    _check_model(args.complexity)
    tracks = {}
    for path in videos:
        started = time.perf_counter()
        with _native_stderr_muted(not args.verbose):
            xy, seen = landmarks(path, args.complexity, args.visibility, args.every)
        rate = pose_motion.detection_rate(seen)
        _log(f"{path}: {len(xy)} frames, person found in {rate:.0%} ({time.perf_counter() - started:.1f} s)")
        tracks[path] = (len(xy), rate, _trajectory(xy, seen))
    frames, rate, generated = tracks[args.generated]
    mirror = pose_motion.MIRROR if args.mirror else None
    rows = []
    comparisons = {}
    for label, path in zip(labels, args.references, strict=True):
        ref_frames, ref_rate, reference = tracks[path]
        row = {"label": label, "reference": str(path), "frames": ref_frames, "detection_rate": ref_rate}
        row.update({"error": None, "correlation": None, "matched_landmarks": None})
        if generated is not None and reference is not None:
            try:
                comparison = pose_motion.compare(*generated, *reference, mirror=mirror)
            except ValueError as error:  # e.g. no landmark seen in both: an empty row, not a crash
                _log(f"{path}: not scored ({error})")
            else:
                # Keyed by position: several references may share a label (or a file).
                comparisons[str(len(rows))] = comparison
                row.update({key: _number(value) for key, value in asdict(comparison).items()})
        rows.append(row)
    # With several references per label, the nearest label is that of the single nearest reference.
    nearest = rows[int(pose_motion.nearest(comparisons))]["label"] if len(comparisons) > 1 else None
    return {
        "generated": str(args.generated),
        "frames": frames,
        "detection_rate": rate,
        "scorable": generated is not None,
        "settings": {
            "complexity": args.complexity,
            "visibility": args.visibility,
            "every": args.every,
            "mirror": args.mirror,
        },
        "references": rows,
        "nearest": nearest,
    }


def _cell(value: object, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    lines = [
        f"generated: `{result['generated']}` — {result['frames']} frames, "
        f"person found in {result['detection_rate']:.0%}",
        "",
        "| reference | label | frames | person found | displacement error (% torso) | motion r | landmarks |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["references"]:
        lines.append(
            f"| `{row['reference']}` | {row['label']} | {row['frames']} | {row['detection_rate']:.0%} "
            f"| {_cell(row['error'], 1)} | {_cell(row['correlation'])} "
            f"| {_cell(row['matched_landmarks'], 1)} |"
        )
    if not result["scorable"]:
        lines += ["", "The generated video has no frame showing both shoulders and hips: nothing scored."]
    if result["nearest"] is not None:
        lines += ["", f"nearest reference: **{result['nearest']}**"]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("generated", type=Path, help="the video to score")
    parser.add_argument("references", type=Path, nargs="+", help="one or more reference videos")
    parser.add_argument("--labels", help="comma-separated names for the references (default: file stems)")
    parser.add_argument(
        "--complexity",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="mediapipe pose model (only 1 is bundled in the wheel)",
    )
    parser.add_argument("--visibility", type=float, default=0.5, help="landmark visibility threshold")
    parser.add_argument(
        "--every", type=int, default=1, help="keep every Nth frame (long clips: DTW is F x F)"
    )
    parser.add_argument(
        "--mirror", action="store_true", help="also try the generated body mirrored (other hand)"
    )
    parser.add_argument("--verbose", action="store_true", help="keep mediapipe's own log lines on stderr")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        result = score(args)
    except InputError as error:
        _log(str(error))
        return 2
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
