"""Peak memory of reading a long, large clip the way `flash learn` does, and of a whole `learn` on it.

Makes a clip with the bundled ffmpeg (a white square crossing a grey 1080p frame: low-complexity
content and the ultrafast preset, so a 60 s clip takes seconds to encode and a few MB on disk),
then measures, each in its own process so nothing else counts:

- the bare import of the preflight (the floor every `learn` pays);
- `prepare_clip` on the clip, exactly what `learn` does per clip (decode, sample, fit);
- optionally (`--learn`) a whole `flash learn --steps 1` on a folder holding the clip.

Peak memory is the child's maximum resident set size (os.wait4). The issue's bound: a 60 s 1080p
clip is learned from with peak memory under 1.5 GB (decoding it whole needed about 22 GB).

Usage: python bench/clip_memory.py [--seconds 60] [--width 1920] [--height 1080] [--fps 30]
                                   [--frames 17] [--size 256] [--learn] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_clip(path: Path, seconds: float, width: int, height: int, fps: int) -> Path:
    """Encode a `seconds`-long clip of a square sliding over grey; fast because there is little to code."""
    import imageio_ffmpeg

    side = max(2, height // 5)
    motion = f"drawbox=x='mod(t*{width // 3},{width - side})':y={(height - side) // 2}"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-nostdin", "-f", "lavfi"]
    command += ["-i", f"color=c=gray:s={width}x{height}:r={fps}:d={seconds}"]
    command += ["-vf", f"{motion}:w={side}:h={side}:c=white:t=fill", "-c:v", "libx264"]
    command += ["-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(command, check=True, capture_output=True)
    return path


def measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process; a failure stops the benchmark."""
    with tempfile.TemporaryFile(mode="w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not all children's
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{stderr.read()[-2000:]}")
    peak_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024  # macOS: bytes
    return wall, peak_kib / 1024.0


def read_like_learn(clip: Path, frames: int, size: int) -> tuple[float, float]:
    """Wall time and peak RSS (MiB) of `prepare_clip` on `clip` in a fresh process."""
    code = (
        "import sys; from pathlib import Path; from flashcli.preflight import prepare_clip; "
        "prepare_clip(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 'center')"
    )
    return measured([sys.executable, "-c", code, str(clip), str(frames), str(size)])


def import_floor() -> tuple[float, float]:
    return measured([sys.executable, "-c", "import flashcli.preflight"])


def learn_once(clip: Path, library: Path) -> tuple[float, float]:
    """A whole `flash learn --steps 1` (tiny base, quick preset) on a folder holding only `clip`."""
    flash = [sys.executable, "-c", "from flashcli.cli import main; main()"]
    args = ["learn", str(clip.parent), "--action", "memory", "--base", "tiny", "--preset", "quick"]
    args += ["--steps", "1", "--library", str(library), "--device", "cpu", "--force"]
    return measured(flash + args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--frames", type=int, default=17, help="frames sampled per clip")
    parser.add_argument("--size", type=int, default=256, help="training frame size")
    parser.add_argument("--learn", action="store_true", help="also time a whole `flash learn --steps 1`")
    parser.add_argument("--keep", type=Path, help="make the clip in this folder and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flash-clip-memory-") as tmp:
        folder = args.keep or Path(tmp)
        clip = folder / "clips" / f"clip_{args.seconds:g}s_{args.height}p.mp4"
        start = time.perf_counter()
        make_clip(clip, args.seconds, args.width, args.height, args.fps)
        made = time.perf_counter() - start
        frames = round(args.seconds * args.fps)
        whole_mib = frames * args.width * args.height * 3 / 2**20
        print(
            f"clip: {args.seconds:g} s {args.width}x{args.height} @ {args.fps} fps, {frames} frames, "
            f"{clip.stat().st_size / 2**20:.1f} MiB on disk, made in {made:.1f} s; "
            f"decoded whole it would hold {whole_mib:,.0f} MiB of RGB frames"
        )
        rows = ["| what | wall s | peak RSS MiB |", "|---|---|---|"]
        wall, peak = import_floor()
        rows.append(f"| import flashcli.preflight | {wall:.1f} | {peak:.0f} |")
        wall, peak = read_like_learn(clip, args.frames, args.size)
        rows.append(f"| prepare_clip ({args.frames} frames at {args.size} px) | {wall:.1f} | {peak:.0f} |")
        if args.learn:
            wall, peak = learn_once(clip, Path(tmp) / "library")
            rows.append(f"| flash learn --base tiny --preset quick --steps 1 | {wall:.1f} | {peak:.0f} |")
    print(f"cpu count {os.cpu_count()}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
