"""Wall time and peak memory of `flash learn` and `flash animate`, as a user runs them.

Each command runs as its own process (so import time, model loading and writing the outputs all
count), repeated, in a throwaway library; peak memory is the child's maximum resident set size.
Reports medians, and the spread as min-max.

Usage: python bench/cli_speed.py [--clips examples/clips/weld] [--photo examples/photo.png]
                                 [--presets quick] [--repeats 3] [--base tiny]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLASH = [sys.executable, "-c", "from flashcli.cli import main; main()"]


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `flash` process; a failure stops the benchmark."""
    with tempfile.TemporaryFile(mode="w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(FLASH + args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        # wait4 gives this child's own rusage (getrusage(RUSAGE_CHILDREN) would mix all children).
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            stderr.seek(0)
            raise SystemExit(
                f"flash {' '.join(args)} failed ({process.returncode}):\n{stderr.read()[-2000:]}"
            )
    return wall, usage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def summarise(label: str, samples: list[tuple[float, float]]) -> str:
    walls = [wall for wall, _ in samples]
    peak = max(mem for _, mem in samples)
    return (
        f"| {label} | {statistics.median(walls):.1f} | {min(walls):.1f}-{max(walls):.1f} "
        f"| {peak:.0f} | {len(samples)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path("examples/clips/weld"))
    parser.add_argument("--photo", type=Path, default=Path("examples/photo.png"))
    parser.add_argument("--presets", default="quick", help="comma-separated presets to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", default="tiny")
    args = parser.parse_args()

    rows = ["| command | median s | min-max s | peak RSS MiB | runs |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="flash-bench-") as tmp:
        env = {**os.environ, "FLASH_HOME": str(Path(tmp) / "library")}
        for preset in args.presets.split(","):
            action = f"bench_{preset}"
            learn = [
                run_measured(
                    [
                        "learn",
                        str(args.clips),
                        "--action",
                        action,
                        "--preset",
                        preset,
                        "--base",
                        args.base,
                        "--force",
                    ],
                    env,
                )
                for _ in range(args.repeats)
            ]
            rows.append(summarise(f"learn --preset {preset} ({args.clips})", learn))
            animate = [
                run_measured(
                    ["animate", str(args.photo), "--action", action, "-o", str(Path(tmp) / "out.mp4")], env
                )
                for _ in range(args.repeats)
            ]
            rows.append(summarise(f"animate (action learned with {preset})", animate))
    print(f"threads: torch default; cpu count {os.cpu_count()}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
