"""One GPU call's check of flash on a full-size Wan 2.2 TI2V-5B folder with random weights.

Builds the folder (`flashcli.lab.wan22_folder`: transformer 5B and UMT5-XXL in bf16, the Wan 2.2 VAE, the
miniature's sentencepiece tokenizer; built on the meta device, materialised on the GPU), then runs the
CLI itself, `flash learn` and `flash animate` with --json as subprocesses, at 49x832x480, 81x832x480 and
81x1280x704 (frames x WxH) under GPU memory caps of 24 and 80 GiB ($FLASH_GPU_MEMORY_GIB). For every
run it records the exit code, the error sentence, the wall time, and (from a probe inside the child:
`flash`'s own entry point with read-only hooks on base loading and the progress reports) the load time,
the GPU memory resident after the base loads, the peak (torch.cuda.max_memory_allocated) and, per phase
(load, encode, train, sample, decode, and what follows the last report: writing), its seconds, its peak
and, for stepped phases, s/step.

What it spares, to fit one device call (--budget, default 480 s, the build included; 3600 s for the
miniature): few steps (learn 3 with a 1-step preview and one augmented copy, animate 2); a run that fits
under 24 GiB with the settings as asked (flash's memory ladder chose its first rung) would run the same
under 80 GiB, so that run is recorded as inferred, not run; a size that did not fit under a cap makes
the larger sizes under that cap "skipped: did not fit at ..."; a run is given only the time left, and
whatever cannot start or finish in it is "skipped: time". Each record also holds flash's own memory plan
(the --json "memory": rung, planned need) to set beside the measured peak.

    python scripts/device/real_base_check.py [--out FILE] [--budget SECONDS]    # on a GPU
    python scripts/device/real_base_check.py --miniature --out check.json      # the CPU rehearsal
    (or scripts/device/real_base_check.sh, which first installs the wheels staged in .device/)

--out defaults to $OUT/real_base_check.json when $OUT is set, else ./real_base_check.json. The JSON has
"build" (seconds, bytes per part), "error" (what stopped the check, if anything) and "cases" (one per
size and cap, each with "learn" and "animate"); a short table goes to stdout.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROBE_FLAG = "--as-flash"  # the child mode: `flash` itself, with the probe's hooks
GIB = 2**30
PROMPT = "a welder lifts a steel plate with both hands"
# A few steps of everything, with the memory-relevant settings left as the defaults have them (two
# denoiser passes a step, gradient checkpointing on for a diffusers folder).
PRESET = """description = "real_base_check: a few steps of everything"
[learn]
preview_steps = 1
[learn.core]
warmup_steps = 0
augment_copies = 1
"""
LEARN_STEPS = 3
ANIMATE_STEPS = 2
STOP_GRACE_SECONDS = 20  # after SIGTERM (flash unwinds, removing its staging), before SIGKILL


@dataclass(frozen=True)
class Scale:
    """What to build and run: the full size on a GPU, or the miniature on a CPU (the rehearsal)."""

    name: str
    shapes: tuple[tuple[int, str], ...]  # (frames, "WxH"), smallest first
    caps_gib: tuple[float | None, ...]  # ascending; None: no cap
    clip_size: tuple[int, int]  # (width, height) of the clips and the photo: the largest shape's
    clip_frames: int
    device: str | None  # --device for flash; None: its default (CUDA when present)
    min_run_seconds: float  # a run is not started with less time left than this
    default_budget: float  # seconds for everything, the build included


FULL = Scale(
    "full", ((49, "832x480"), (81, "832x480"), (81, "1280x704")), (24, 80), (1280, 704), 48, None, 40, 480
)
MINIATURE = Scale("miniature", ((9, "64x32"), (9, "32x64")), (None,), (64, 64), 12, "cpu", 0, 3600)


# ----- the child: `flash` with a probe -----------------------------------------------------------------


@dataclass
class Probe:
    """What the child measures; the hooks only read (clocks and torch.cuda's counters).

    Phases are the progress reports' own ("encode", "train", "ded", "sample"), plus "load" (the base),
    "decode" (the sampler's last unit: VAE or DED decoding) and "after the last report" (writing the
    outputs). Each gets its wall seconds (from the previous report) and its peak GPU memory."""

    load_seconds: float | None = None
    resident_after_load: int | None = None
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    peak: int = 0
    _last_time: float | None = None

    def _cuda(self) -> bool:
        import torch

        return torch.cuda.is_available() and torch.cuda.is_initialized()

    def _take_peak(self) -> int | None:
        """The peak since the last call (then reset), or None without CUDA."""
        if not self._cuda():
            return None
        import torch

        peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        self.peak = max(self.peak, peak)
        return peak

    def loaded(self, seconds: float) -> None:
        self.load_seconds = seconds
        if self._cuda():
            import torch

            self.resident_after_load = torch.cuda.memory_allocated()
        self._last_time = time.monotonic()
        self.phases["load"] = {"peak": self._take_peak(), "seconds": seconds}

    def step(self, phase: str, step: int) -> None:
        now = time.monotonic()
        record = self.phases.setdefault(phase, {"times": [], "steps": [], "peak": None, "seconds": 0.0})
        record["times"].append(now)
        record["steps"].append(step)
        record["seconds"] += now - (self._last_time or now)
        self._last_time = now
        peak = self._take_peak()
        if peak is not None:
            record["peak"] = max(record["peak"] or 0, peak)

    def document(self) -> dict[str, Any]:
        phases = {name: _phase_summary(record) for name, record in self.phases.items()}
        tail = self._take_peak()
        if self._last_time is not None:
            seconds = time.monotonic() - self._last_time
            phases["after the last report"] = {"peak_gib": _gib(tail), "seconds": round(seconds, 2)}
        return {
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 2),
            "resident_after_load_gib": _gib(self.resident_after_load),
            "peak_gib": _gib(self.peak) if self._cuda() else None,
            "phases": phases,
        }


def _phase_summary(record: dict[str, Any]) -> dict[str, Any]:
    """s/step between a phase's first and last progress reports: a report comes after its step, so the
    first step (with its warm-up) is not in it."""
    times, steps = record.get("times", []), record.get("steps", [])
    summary: dict[str, Any] = {"peak_gib": _gib(record.get("peak")), "seconds": round(record["seconds"], 2)}
    if steps:
        done = steps[-1] - steps[0]
        per_step = (times[-1] - times[0]) / done if done > 0 else None
        summary.update(steps=steps[-1], s_per_step=None if per_step is None else round(per_step, 3))
    return summary


def _gib(value: int | None) -> float | None:
    return None if value is None else round(value / GIB, 3)


def run_flash_probed(probe_path: Path, argv: list[str]) -> None:
    """Run `flash ARGV` in this process, exactly as the console script does, and write the probe's
    measurements to `probe_path` at exit (whatever the exit code)."""
    from flashcli import cli, terminal
    from flashcli.core import specs

    probe = Probe()
    load_base = specs.load_base

    def timed_load(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        spec = load_base(*args, **kwargs)
        probe.loaded(time.monotonic() - start)
        return spec

    train_step, sample_step = terminal.StepProgress.train_step, terminal.StepProgress.sample_step

    def on_train(self: Any, report: Any) -> None:
        probe.step(getattr(report, "phase", "train"), report.step)
        train_step(self, report)

    def on_sample(self: Any, step: int, total: int) -> None:
        probe.step("decode" if step == total else "sample", step)  # the last unit is the decoding
        sample_step(self, step, total)

    specs.load_base = timed_load
    terminal.StepProgress.train_step = on_train
    terminal.StepProgress.sample_step = on_sample
    atexit.register(lambda: probe_path.write_text(json.dumps(probe.document())))
    sys.argv = ["flash", *argv]
    cli.main()


# ----- the parent: build, run, record ------------------------------------------------------------------


@dataclass
class Clock:
    """The device-time budget, counted from the start (the build included)."""

    budget: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)


def build_base(scale: Scale, folder: Path) -> dict[str, Any]:
    """The Wan 2.2 TI2V-5B folder at `scale`; returns its build time and size on disk."""
    from diffusers.utils import logging

    from flashcli.lab import wan22_folder

    logging.set_verbosity_error()  # its note on casting the fp32-kept modules: from_pretrained keeps them
    start = time.monotonic()
    if scale is FULL:
        wan22_folder.make_wan22_ti2v_folder(folder, wan22_folder.full_size(), fast=wan22_folder.FastInit())
        _release_gpu()
    else:
        # The rehearsal goes through the same fast meta-device path, on the CPU, in fp32.
        import torch

        fast = wan22_folder.FastInit(device="cpu", dtype=torch.float32)
        wan22_folder.make_wan22_ti2v_folder(folder, wan22_folder.MINIATURE, fast=fast)
    parts = {part.name: _folder_bytes(part) for part in sorted(folder.iterdir()) if part.is_dir()}
    return {"seconds": round(time.monotonic() - start, 1), "bytes": parts}


def _release_gpu() -> None:
    """The build's weights are saved: give the card back to the runs."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def write_inputs(scale: Scale, folder: Path) -> tuple[Path, Path, Path]:
    """Three clips (frame folders: no video codec needed), a photo and the preset, under `folder`."""
    from PIL import Image

    clips = folder / "clips"
    for index in range(3):
        frames = folder / "clips" / f"clip{index}"
        frames.mkdir(parents=True)
        for number, frame in enumerate(sliding_square(index, scale.clip_frames, scale.clip_size)):
            Image.fromarray(frame).save(frames / f"{number:04d}.png")
    photo = folder / "photo.png"
    Image.fromarray(sliding_square(9, 1, scale.clip_size)[0]).save(photo)
    preset = folder / "check.toml"
    preset.write_text(PRESET)
    return clips, photo, preset


def sliding_square(seed: int, frames: int, size: tuple[int, int]) -> np.ndarray:
    """A square sliding right on a plain background: (frames, height, width, 3) uint8."""
    rng = np.random.default_rng(seed)
    width, height = size
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    video[:] = rng.integers(0, 255, size=3, dtype=np.uint8)
    side = max(4, min(width, height) // 4)
    for index in range(frames):
        left = (index * max(1, (width - side) // max(1, frames))) % (width - side)
        video[index, height // 3 : height // 3 + side, left : left + side] = rng.integers(0, 255, size=3)
    return video


def run_flash(argv: list[str], cap: float | None, seconds: float, scratch: Path) -> dict[str, Any]:
    """`flash ARGV` as a subprocess under the GPU cap, stopped after `seconds`: exit code, error sentence,
    its --json document's size, wall time and the probe's measurements."""
    probe = Path(tempfile.mkstemp(suffix=".json", dir=scratch)[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FLASH_GPU_MEMORY_GIB", None)
    if cap is not None:
        env["FLASH_GPU_MEMORY_GIB"] = str(cap)
    command = [sys.executable, str(Path(__file__).resolve()), PROBE_FLAG, str(probe), *argv]
    start = time.monotonic()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = child.communicate(timeout=max(1.0, seconds))
        stopped = False
    except subprocess.TimeoutExpired:
        stdout, stderr = _stop(child)
        stopped = True
    record: dict[str, Any] = {"exit": child.returncode, "seconds": round(time.monotonic() - start, 1)}
    if stopped:
        record["status"] = f"skipped: time (stopped after {record['seconds']:.0f} s)"
    record["error"] = error_sentence(stderr)
    document = _json_document(stdout) if child.returncode == 0 else None
    record["json_ok"] = document is not None if child.returncode == 0 else None
    record["memory"] = _memory_choice(document)
    record.update(_read_probe(probe))
    return record


def _stop(child: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM (flash unwinds like Ctrl-C), then SIGKILL after a grace period."""
    child.send_signal(signal.SIGTERM)
    try:
        return child.communicate(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.communicate()


def error_sentence(stderr: str) -> str | None:
    """flash's one sentence for a failure (its last 'error:' or 'internal error:' line), else the last
    line of a crash."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("error:", "internal error:"))]
    if said:
        return said[-1]
    return lines[-1] if lines and "Traceback" in stderr else None


def _json_document(stdout: str) -> Any:
    """flash's --json document (exactly one on stdout), or None when stdout is not that."""
    try:
        return json.loads(stdout)
    except ValueError:
        return None


def _memory_choice(document: Any) -> dict[str, Any] | None:
    """The preflight's memory rung and plan from a --json document (learn: "memory"; animate: each
    output's), to set beside the measured peak; None where flash planned nothing."""
    if not isinstance(document, dict):
        return None
    outputs = document.get("outputs") or [{}]
    return document.get("memory") or (outputs[0].get("memory") if isinstance(outputs[0], dict) else None)


def _read_probe(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    finally:
        path.unlink(missing_ok=True)


@dataclass
class Runner:
    """Runs the cases one after another inside the clock, sparing what can be inferred."""

    scale: Scale
    base: Path
    clips: Path
    photo: Path
    preset: Path
    work: Path
    clock: Clock
    did_not_fit: dict[tuple[float | None, str], str] = field(default_factory=dict)  # (cap, phase): shape

    def _common(self) -> list[str]:
        device = ["--device", self.scale.device] if self.scale.device else []
        return ["--library", str(self.work / "library"), "--json", *device]

    def _run(self, phase: str, cap: float | None, argv: list[str]) -> dict[str, Any]:
        """One run, or its skip record: no time left, or a smaller shape already failed under `cap`."""
        if (cap, phase) in self.did_not_fit:
            return {"status": f"skipped: did not fit at {self.did_not_fit[cap, phase]}"}
        left = self.clock.left()
        if left < max(self.scale.min_run_seconds, 1.0):
            return {"status": "skipped: time"}
        record = run_flash([*argv, *self._common()], cap, left, self.work)
        record.setdefault("status", "ok" if record["exit"] == 0 else f"failed (exit {record['exit']})")
        return record

    def learn(self, action: str, frames: int, size: str, cap: float | None) -> dict[str, Any]:
        argv = ["learn", str(self.clips), "--action", action, "--base", str(self.base)]
        argv += ["--preset", str(self.preset), "--steps", str(LEARN_STEPS), "--prompt", PROMPT]
        return self._run("learn", cap, [*argv, "--frames", str(frames), "--size", size, "--force"])

    def animate(self, action: str, cap: float | None) -> dict[str, Any]:
        out = (
            self.work / "videos" / f"{action}.gif"
        )  # gif: flash's quickest writer of noisy frames; no ffmpeg
        argv = ["animate", str(self.photo), "--action", action, "--steps", str(ANIMATE_STEPS)]
        return self._run("animate", cap, [*argv, "-o", str(out)])

    def shape(self, frames: int, size: str) -> list[dict[str, Any]]:
        """Every cap at one shape: learn then animate under each, the lowest cap first."""
        label = f"{frames}x{size}"
        cases: list[dict[str, Any]] = []
        action: str | None = None  # the first action learned at this shape
        waiting: list[dict[str, Any]] = []  # cases whose learn failed: animate once an action exists
        for cap in self.scale.caps_gib:
            case: dict[str, Any] = {"shape": label, "frames": frames, "size": size, "cap_gib": cap}
            cases.append(case)
            fitted = next((c for c in cases[:-1] if _fitted(c)), None)
            if fitted is not None:
                inferred = f"inferred: fits, as under the {fitted['cap_gib']} GiB cap"
                case.update(learn={"status": inferred}, animate={"status": inferred})
                continue
            name = f"check-{frames}-{size}-{cap or 'nocap'}"
            case["learn"] = self.learn(name, frames, size, cap)
            action = action or (name if case["learn"].get("exit") == 0 else None)
            self._note_fit(case["learn"], cap, "learn", label)
            if action is None:
                waiting.append(case)
                continue
            case["animate"] = self.animate(action, cap)
            self._note_fit(case["animate"], cap, "animate", label)
        for case in waiting:  # their own learn failed; animate with an action learned under a larger cap
            case["animate"] = self._animate_waiting(case, action, cases, label)
        return cases

    def _animate_waiting(
        self, case: dict[str, Any], action: str | None, cases: list[dict[str, Any]], label: str
    ) -> dict[str, Any]:
        """Animate under a cap whose learn failed, with the action learned under another cap, if any."""
        if action is None:
            no_time = self.clock.left() < max(self.scale.min_run_seconds, 1.0)
            return {"status": "skipped: time" if no_time else "skipped: no action learned at this shape"}
        record = self.animate(action, case["cap_gib"])
        record["action_learned_under_gib"] = next(c["cap_gib"] for c in cases if c["learn"].get("exit") == 0)
        self._note_fit(record, case["cap_gib"], "animate", label)
        return record

    def _note_fit(self, record: dict[str, Any], cap: float | None, phase: str, label: str) -> None:
        """An out-of-memory exit under a cap: larger shapes under it are skipped."""
        if record.get("exit") == 2 and "memory" in (record.get("error") or "").lower():
            self.did_not_fit.setdefault((cap, phase), label)


def _fitted(case: dict[str, Any]) -> bool:
    """Both runs exited 0 with the settings as asked: with more memory, flash's memory ladder would choose
    the same (its first rung that fits), so the run would be the same."""
    records = [case.get(phase, {}) for phase in ("learn", "animate")]
    return all(record.get("exit") == 0 and _as_asked(record.get("memory")) for record in records)


def _as_asked(memory: dict[str, Any] | None) -> bool:
    rung = (memory or {}).get("rung")
    return rung is None or rung.get("name") == "as asked"


# ----- the report --------------------------------------------------------------------------------------


def table(document: dict[str, Any]) -> str:
    """The short table on stdout: one line per case and command (GiB; plan: flash's planned need)."""
    budget = f"budget {document['budget_s']} s, used {document['used_s']} s"
    lines = [f"build {document['build'].get('seconds', '-')} s; {budget}"]
    if document["error"]:
        lines.append(f"stopped: {document['error']}")
    lines.append(
        f"{'shape':<14} {'cap':>5} {'cmd':<8} {'exit':>4} {'load':>6} {'resident':>9} {'peak':>7} "
        f"{'plan':>6} {'s/step':>7}  status / error"
    )
    for case in document["cases"]:
        for phase in ("learn", "animate"):
            record = case.get(phase, {})
            lines.append(_row(case, phase, record))
    return "\n".join(lines)


def _row(case: dict[str, Any], phase: str, record: dict[str, Any]) -> str:
    step_phase = "train" if phase == "learn" else "sample"
    per_step = record.get("phases", {}).get(step_phase, {}).get("s_per_step")
    planned = (record.get("memory") or {}).get("needs_gib")
    cells = [
        f"{case['shape']:<14}",
        f"{_cell(case['cap_gib'], '.0f'):>5}",
        f"{phase:<8}",
        f"{_cell(record.get('exit'), 'd'):>4}",
        f"{_cell(record.get('load_seconds'), '.1f'):>6}",
        f"{_cell(record.get('resident_after_load_gib'), '.2f'):>9}",
        f"{_cell(record.get('peak_gib'), '.2f'):>7}",
        f"{_cell(planned, '.1f'):>6}",
        f"{_cell(per_step, '.2f'):>7}",
    ]
    return " ".join(cells) + "  " + (record.get("error") or record.get("status", ""))


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def default_out() -> Path:
    folder = os.environ.get("OUT")
    return Path(folder or ".") / "real_base_check.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--miniature", action="store_true", help="the CPU rehearsal at miniature size")
    parser.add_argument(
        "--out", type=Path, default=None, help="the JSON file (default: $OUT/real_base_check.json)"
    )
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for everything (default 480; --miniature: 3600)"
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Build, run every case inside the budget, and return the document."""
    scale = MINIATURE if args.miniature else FULL
    budget = args.budget if args.budget is not None else scale.default_budget
    clock = Clock(budget)
    work = Path(tempfile.mkdtemp(prefix="real_base_check-", dir=args.work))
    cases: list[dict[str, Any]] = []
    build: dict[str, Any] = {}
    failure = None
    try:
        base = work / "Wan2.2-TI2V-5B-Diffusers"
        build = build_base(scale, base)
        clips, photo, preset = write_inputs(scale, work / "inputs")
        runner = Runner(scale, base, clips, photo, preset, work, clock)
        cases = [case for frames, size in scale.shapes for case in runner.shape(frames, size)]
    except Exception as error:  # noqa: BLE001 - a full disk or a failed build: the record says what stopped it
        failure = f"{type(error).__name__}: {error}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "scale": scale.name,
        "learn_steps": LEARN_STEPS,
        "animate_steps": ANIMATE_STEPS,
        "budget_s": budget,
        "used_s": round(budget - clock.left(), 1),
        "build": build,
        "error": failure,
        "environment": _environment(),
        "cases": cases,
    }


def _environment() -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        found.update(gpu=properties.name, gpu_gib=_gib(properties.total_memory))
    return found


def main(argv: list[str]) -> int:
    if argv[:1] == [PROBE_FLAG]:
        run_flash_probed(Path(argv[1]), argv[2:])
        return 0
    args = parse_args(argv)
    out = args.out or default_out()
    document = check(args)
    from flashcli.files import write_text_atomic

    write_text_atomic(out, json.dumps(document, indent=2) + "\n")
    print(table(document))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
