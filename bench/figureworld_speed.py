"""FigureWorld rendering speed in frames per second on one core.

    taskset -c 0 python bench/figureworld_speed.py            # 128x128, every action, 5 runs
    taskset -c 0 python bench/figureworld_speed.py --size 256 --runs 3

Pin to one core (taskset) and keep numpy single-threaded (set below) so the figure is per core.
Each run renders one 17-frame clip of every action; the median over runs is reported, both per
wall-clock second and per CPU second of this process. On a shared machine the CPU-second figure
is the one that says what a dedicated core would do.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from flashcli.figureworld import ACTIONS, render_clip  # noqa: E402


def measure(size: int, frames: int, runs: int, camera_shake: bool) -> tuple[list[float], list[float]]:
    """Frames per wall second and per CPU second, one entry per run."""
    render_clip("squat", 0, size=size, frames=2)  # warm caches and imports
    wall_rates, cpu_rates = [], []
    for run in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        total = 0
        for i, action in enumerate(sorted(ACTIONS)):
            clip = render_clip(action, 1000 * run + i, size=size, frames=frames, camera_shake=camera_shake)
            total += len(clip.frames)
        wall_rates.append(total / (time.perf_counter() - wall))
        cpu_rates.append(total / (time.process_time() - cpu))
    return wall_rates, cpu_rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--camera-shake", action="store_true")
    args = parser.parse_args()
    wall_rates, cpu_rates = measure(args.size, args.frames, args.runs, args.camera_shake)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"size {args.size} frames/clip {args.frames} actions {len(ACTIONS)} cores allowed {cores}")
    print("frames per wall second: " + ", ".join(f"{r:.0f}" for r in wall_rates))
    print("frames per CPU second:  " + ", ".join(f"{r:.0f}" for r in cpu_rates))
    wall, cpu = statistics.median(wall_rates), statistics.median(cpu_rates)
    print(f"median: {wall:.0f} frames/s wall, {cpu:.0f} frames/s CPU")


if __name__ == "__main__":
    main()
