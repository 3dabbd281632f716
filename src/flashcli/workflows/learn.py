"""`flash learn` end to end: plan, prepare the clips, train the adapter, fine-tune the DED, stage the
action (adapter, DED, preview, manifest) and commit it to the library in one rename.

Every check that needs no model runs before the base loads: the settings, the action's name and
folder, every clip's first frame and the preview photo. `train_action` is the training part alone,
for bench and scripts that bring their own clips.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashcli.errors import UserError
from flashcli.workflows.plan import (
    BaseShape,
    LearnPlan,
    base_shape,
    base_source,
    learn_memory,
    learn_time,
    memory_advice,
    open_base,
    plan_learn,
)
from flashcli.workflows.report import QUIET, Reporter

if TYPE_CHECKING:
    import numpy as np

    from flashcli.core.ded import DetailEnhancedDecoder
    from flashcli.core.ded_finetune import DedFinetuneResult
    from flashcli.core.progress import TrainProgress
    from flashcli.core.settings import TrainSettings
    from flashcli.core.specs.wan import WanSpec
    from flashcli.core.trainer import TrainResult
    from flashcli.library import ActionManifest, DedRecord, Library
    from flashcli.preflight import Preflight


@dataclass(frozen=True)
class LearnRequest:
    """What the user asked `flash learn` for."""

    clips: list[Path]
    action: str
    preset: str | None = None
    # Settings given as flags, by LearnConfig's names (None: not given; the preset's value stands).
    flags: Mapping[str, Any] = field(default_factory=dict)
    preview_photo: Path | None = None
    resume: bool = False
    force: bool = False
    library: Path | None = None


@dataclass(frozen=True)
class Learned:
    """A learned action, saved in the library."""

    action: str
    path: Path
    library: Path
    manifest: ActionManifest
    warnings: list[str]
    memory: dict[str, Any] | None = None  # the preflight's memory rung and plan (None: not planned)
    time: dict[str, Any] | None = None  # the preflight's time estimate (None: not planned)

    def summary(self) -> dict[str, Any]:
        """What `flash learn --json` prints."""
        return {
            "action": self.action,
            "path": str(self.path),
            "library": str(self.library),
            "adapter": str(self.path / "adapter.safetensors"),
            "ded": str(self.path / self.manifest.ded.file) if self.manifest.ded is not None else None,
            "preview": str(self.path / "preview.gif"),
            "manifest": self.manifest.model_dump(mode="json", exclude={"losses"}),
            "warnings": self.warnings,
            "memory": self.memory,
            "time": self.time,
        }


@dataclass(frozen=True)
class LearnedWeights:
    """What training made: the adapter and, with settings.ded_finetune_steps, the action's own DED."""

    adapter: TrainResult
    ded: DedFinetuneResult | None

    @property
    def seconds(self) -> float:
        return self.adapter.train_seconds + (self.ded.seconds if self.ded is not None else 0.0)


def learn(request: LearnRequest, reporter: Reporter = QUIET) -> Learned:
    """Learn `request.action` from its clips and save it; a user mistake raises UserError."""
    from flashcli.config import resolve_learn
    from flashcli.library import Library, check_action_name
    from flashcli.preflight import run_preflight
    from flashcli.video import check_writable_folder, discover_clips, probe_clip, read_image

    check_action_name(request.action)
    flags = dict(request.flags)
    preset, config, animate_table = resolve_learn(request.preset, flags)
    batch_size, batch_from_flag = config.core_choices().get("batch_size"), flags.get("batch_size") is not None
    check_batch_split(preset, batch_size, from_flag=batch_from_flag)
    if not is_main_process():
        reporter = QUIET  # rank 0 speaks for all the processes a launcher started
    shape = base_shape(config.base)
    plan = None
    if shape is not None and shape.supplies(frames=config.frames is None, size=config.size is None):
        plan = plan_learn(preset, config, animate_table, shape, flags)  # a bad shape fails before loading
    lib = Library.open(request.library)
    if lib.exists(request.action) and not request.force:
        raise UserError(
            f"Action '{request.action}' already exists in '{lib.root}'; "
            "pass --force to replace it or choose another name."
        )
    check_writable_folder(lib.root, "Library")
    clip_paths = discover_clips(request.clips)
    for path in clip_paths:
        probe_clip(path)  # a broken clip fails in a second, not after the base has loaded
    still = read_image(request.preview_photo) if request.preview_photo is not None else None

    memory = learn_memory(config.base, config.device, plan.train) if plan is not None else None
    if memory is not None:
        reporter.note(memory.note())  # before the weights load: a run that cannot fit is refused in seconds
    estimate = learn_time(config.base, config.device, plan) if plan is not None else None
    if estimate is not None:
        reporter.note(estimate.note())
    join_processes(config.device)
    with memory_advice(memory, "learn"):
        spec = open_base(config.base, config.device, memory)
    plan = plan or plan_learn(preset, config, animate_table, BaseShape.of(spec), flags)
    check_ded_finetune(spec, plan.train, from_flag=flags.get("ded_steps") is not None)
    report = run_preflight(clip_paths, plan.frames, plan.size, plan.config.crop, plan.retime_fps)
    reporter.clips(report, plan.frames, plan.size, plan.config.crop)
    with memory_advice(memory, "learn"):
        learned = _train_and_save(lib, request, plan, spec, report, still, reporter)
    timing = None if estimate is None else estimate.as_dict()
    return replace(learned, memory=None if memory is None else memory.as_dict(), time=timing)


def check_ded_finetune(spec: WanSpec, settings: TrainSettings, *, from_flag: bool) -> None:
    """DED fine-tuning needs a base that has a DED to start from."""
    if settings.ded_finetune_steps and spec.ded is None:
        where = "drop --ded-steps" if from_flag else "remove the DED fine-tuning steps from the preset"
        raise UserError(f"Base '{spec.base_id}' has no Detail Enhancement Decoder to fine-tune; {where}.")


# -- several processes (`accelerate launch -m flashcli learn ...`) ------------------------------------------


def is_main_process() -> bool:
    """Whether this process writes (the library, checkpoints, the result): always, without a launcher."""
    from flashcli.core import distributed

    return distributed.is_main()


def check_batch_split(preset: str, batch_size: int | None, *, from_flag: bool) -> None:
    """Each process computes an equal share of every batch: the batch must divide by their number."""
    from flashcli.core import distributed
    from flashcli.core.settings import TrainSettings

    world = distributed.world_size()
    batch = batch_size if batch_size is not None else TrainSettings.model_fields["batch_size"].default
    if batch % world == 0:
        return
    fix = (
        f"pass a --batch-size that is a multiple of {world}"
        if from_flag
        else f"set batch_size in the [learn.core] table of preset '{preset}' to a multiple of {world}"
    )
    raise UserError(
        f"Batch size {batch} does not split over the {world} processes the launcher started; {fix}, "
        "or launch a number of processes that divides it."
    )


def join_processes(device: str) -> None:
    """Under a launcher, join the other processes before the base loads (on CUDA each takes its GPU)."""
    from flashcli.core import distributed
    from flashcli.core.devices import resolve_device

    if distributed.world_size() == 1:
        return
    try:
        chosen = resolve_device(device)
    except ValueError:
        return  # a device this machine lacks: open_base says so in a sentence
    distributed.start(chosen)


@contextmanager
def peers_lost_said() -> Iterator[None]:
    """Under a launcher, another process that stops (out of memory, killed) ends this one's training:
    say so in a sentence; that process printed its own error."""
    from flashcli.core.distributed import PeerLost

    try:
        yield
    except PeerLost:
        raise UserError(
            "Another process of this launch stopped (its error is above), so training cannot go on and the "
            "action was not saved; fix that and rerun the same command, with --resume to continue from "
            "its last checkpoint."
        ) from None


def _train_alongside(
    lib: Library, request: LearnRequest, plan: LearnPlan, spec: WanSpec, report: Preflight
) -> Learned:
    """A process other than rank 0: train its share of every batch, write nothing, wait for rank 0 to
    save the action (or fail: the launcher then stops this one), and return what rank 0 saved."""
    from flashcli.core import distributed
    from flashcli.core.trainer import train_adapter

    spec.release_text_encoder([plan.config.prompt])  # training's prompt only: rank 0 renders the preview
    with peers_lost_said():
        train_adapter(
            spec,
            report.videos,
            plan.train,
            prompt=plan.config.prompt,
            # Read to resume (rank 0 checked it is this run's), never written here.
            checkpoint_dir=lib.checkpoint_dir(request.action),
            resume=request.resume,
        )
        distributed.barrier()
    path = lib.action_dir(request.action)
    return Learned(request.action, path, lib.root, lib.manifest(request.action), report.warnings)


def _train_and_save(
    lib: Library,
    request: LearnRequest,
    plan: LearnPlan,
    spec: WanSpec,
    report: Preflight,
    still: np.ndarray | None,
    reporter: Reporter,
) -> Learned:
    from flashcli.core import distributed
    from flashcli.files import write_text_atomic

    if not distributed.is_main():
        return _train_alongside(lib, request, plan, spec, report)
    action, checkpoints = request.action, lib.checkpoint_dir(request.action)
    fingerprint = run_fingerprint(report, plan.train, spec)
    with lib.writing(action, force=request.force) as staging:  # holds the action's lock: checkpoints are ours
        check_resume(checkpoints, fingerprint, request.resume)
        checkpoints.mkdir(parents=True, exist_ok=True)
        write_text_atomic(checkpoints / "run.json", fingerprint)
        # Every prompt the run needs (training, the preview and its negative) is encoded now; the text
        # encoder's memory then goes to training.
        spec.release_text_encoder([plan.config.prompt, preview_negative_prompt(spec, plan)])
        with reporter.steps("learn", plan.train.steps) as progress, peers_lost_said():
            weights = train_action(
                spec,
                report.videos,
                plan.train,
                prompt=plan.config.prompt,
                progress=progress.train_step,
                checkpoint_dir=checkpoints,
                resume=request.resume,
            )
        manifest = stage_action(staging.path, action, spec, report, plan, weights, still, reporter)
        with interrupts_held():  # an interrupt now is told whether the action was saved
            target = staging.commit(force=request.force)
            reporter.saved(f"action '{action}' ({target})")
        shutil.rmtree(checkpoints, ignore_errors=True)
    with suppress(distributed.PeerLost):  # the action is saved, whatever became of the others
        distributed.barrier()  # the other processes may finish now
    return Learned(action, target, lib.root, manifest, report.warnings)


def train_action(
    spec: WanSpec,
    clips: list[np.ndarray],
    settings: TrainSettings,
    *,
    prompt: str | None = None,
    masks: list[np.ndarray] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> LearnedWeights:
    """The adapter (`train_adapter`), then, with settings.ded_finetune_steps, a copy of the base's DED
    fine-tuned on the same clips (`finetune_ded`, reporting phase "ded"): what `flash learn` trains."""
    from flashcli.core.trainer import train_adapter

    adapter = train_adapter(
        spec,
        clips,
        settings,
        prompt=prompt,
        masks=masks,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
    )
    if not settings.ded_finetune_steps:
        return LearnedWeights(adapter, None)
    from flashcli.core.ded_finetune import finetune_ded

    return LearnedWeights(adapter, finetune_ded(spec, adapter.latents, clips, settings, progress=progress))


# -- resuming -------------------------------------------------------------------------------------------


def run_fingerprint(report: Preflight, settings: TrainSettings, spec: WanSpec) -> str:
    """What a checkpoint belongs to: the clips, the settings and the base."""
    from flashcli.core.settings import DED_FINETUNE_FIELDS

    return json.dumps(
        {
            "clips": [record.sha256 for record in report.records],
            # The DED fine-tuning runs after the adapter and is not checkpointed: --resume may change it.
            "settings": settings.model_dump(mode="json", exclude=set(DED_FINETUNE_FIELDS)),
            "base_hash": spec.weight_hash,
        },
        sort_keys=True,
    )


def check_resume(checkpoints: Path, fingerprint: str, resume: bool) -> None:
    """--resume needs a checkpoint of this very run (same clips, settings, base).

    A fresh run drops old checkpoints."""
    from flashcli.core.trainer import CHECKPOINT_NAME

    if not resume:
        shutil.rmtree(checkpoints, ignore_errors=True)  # a fresh run must not pick up an old one
        return
    run_file = checkpoints / "run.json"
    if not run_file.is_file() or not (checkpoints / CHECKPOINT_NAME).is_file():
        raise UserError(f"Nothing to resume at '{checkpoints}'; run the same command without --resume.")
    if run_file.read_text() != fingerprint:
        raise UserError(
            "The interrupted run used other clips, settings or base; rerun with exactly the same "
            "arguments, or without --resume to start over."
        )


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while something must finish whole (a commit and its record), then
    deliver them as KeyboardInterrupt. Python runs signal handlers in the main thread only, so this
    works whichever thread the signal arrives on; elsewhere it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


# -- staging the action ---------------------------------------------------------------------------------


def preview_negative_prompt(spec: WanSpec, plan: LearnPlan) -> str | None:
    """What the preview's guidance steers away from (the preset's, else the base's); None: no guidance."""
    from flashcli.core.sampler import negative_prompt

    return negative_prompt(spec, plan.preview)


def preview_still(
    spec: WanSpec, plan: LearnPlan, report: Preflight, photo: np.ndarray | None
) -> tuple[np.ndarray, str]:
    """The still the preview animates and its source, for the manifest: --preview-photo when given; for a
    diffusers folder, a real frame no clip contains (a FigureWorld figure is far from what such a base
    knows, so its preview would mislead); else a held-out FigureWorld still, which the tiny base knows."""
    from flashcli.video import fit_image

    if photo is not None:
        return fit_image(photo, plan.train.frame_size, plan.config.crop), "--preview-photo"
    if "pipeline" in spec.meta:
        return mirrored_first_frame(Path(report.records[0].path), plan)
    return held_out_still(plan.train.frame_size, plan.train.seed)


def mirrored_first_frame(clip: Path, plan: LearnPlan) -> tuple[np.ndarray, str]:
    """Frame 0 of `clip`, fitted as training fits frames and mirrored left-right: the user's kind of
    picture, yet no clip holds it (training samples frames as they are; augmentation never flips)."""
    import numpy as np

    from flashcli.video import sample_clip

    frame = sample_clip(clip, 1, plan.train.frame_size, plan.config.crop).frames[0]
    return np.ascontiguousarray(frame[:, ::-1]), f"clip:{clip.name}:frame0:mirrored"


def held_out_still(size: tuple[int, int], seed: int) -> tuple[np.ndarray, str]:
    """A photo no training clip contains: frame 0 of a FigureWorld figure with an unseen appearance,
    rendered square at the longer side and centre-cropped to (width, height)."""
    from flashcli.figureworld import HELDOUT_ACTIONS, render_clip
    from flashcli.video import fit_image

    action = HELDOUT_ACTIONS[0]
    clip = render_clip(action, 10_000 + seed, size=max(size), frames=5, appearance="unseen")
    return fit_image(clip.frames[0], size), f"figureworld:{action}:seed={10_000 + seed}:appearance=unseen"


def stage_action(
    folder: Path,
    action: str,
    spec: WanSpec,
    report: Preflight,
    plan: LearnPlan,
    weights: LearnedWeights,
    photo: np.ndarray | None,
    reporter: Reporter = QUIET,
) -> ActionManifest:
    """Write adapter, DED weights (if fine-tuned), preview and manifest into the staging folder;
    returns the manifest."""
    from flashcli.core.adapter import save_adapter
    from flashcli.core.sampler import animate_photo
    from flashcli.library import ADAPTER_FILE, MANIFEST_FILE, PREVIEW_FILE, ActionManifest, write_manifest
    from flashcli.video import file_hash, write_video
    from flashcli.workflows.outputs import versions

    result, settings = weights.adapter, plan.train
    save_adapter(folder / ADAPTER_FILE, result.adapter, result.metadata)
    ded_record, ded = stage_ded(folder, spec, weights.ded)
    still, preview_source = preview_still(spec, plan, report, photo)
    # The preview decodes as `animate` will by default: without detail enhancement, the plain decoder.
    preview = plan.preview.model_copy(update={"use_ded": settings.align.detail_enhance})
    with reporter.steps("preview", preview.steps) as progress:
        video = animate_photo(
            spec,
            still,
            [(result.adapter, result.metadata, 1.0)],
            preview,
            frames=settings.frames,
            progress=progress.sample_step,
            ded=ded,  # the preview shows the action as `animate` will: with its own DED
        )
    fps = report.median_fps
    write_video(folder / PREVIEW_FILE, video, fps, "gif")
    final = result.losses[-1] if result.losses else {}
    manifest = ActionManifest(
        name=action,
        prompt=plan.config.prompt,
        negative_prompt=preview_negative_prompt(spec, plan),
        base=spec.base_id,
        base_source=base_source(plan.config.base),
        base_hash=spec.weight_hash,
        base_defaults=spec.meta.get("pipeline"),
        preset=plan.preset,
        clips=report.records,
        frames=settings.frames,
        size=settings.size,
        width=settings.width,
        fps=round(fps, 3),
        crop=plan.config.crop,
        seed=settings.seed,
        steps=settings.steps,
        rank=settings.rank,
        settings=settings.model_dump(mode="json"),
        train_seconds=round(float(weights.seconds), 2),
        final_losses={name: float(value) for name, value in final.items()},
        losses=[{name: float(value) for name, value in step.items()} for step in result.losses],
        animate_defaults=plan.animate_defaults,
        adapter_sha256=file_hash(folder / ADAPTER_FILE),
        ded=ded_record,
        decoder="ded" if settings.align.detail_enhance else "plain",
        memory=None if spec.memory is None else spec.memory.as_dict(),
        preview_source=preview_source,
        versions=versions(),
    )
    write_manifest(folder / MANIFEST_FILE, manifest)
    return manifest


def stage_ded(
    folder: Path, spec: WanSpec, finetuned: DedFinetuneResult | None
) -> tuple[DedRecord | None, DetailEnhancedDecoder | None]:
    """Save the fine-tuned DED beside the adapter; returns its manifest record and the DED itself
    (read back from the file, so the preview uses exactly what `animate` will load)."""
    if finetuned is None:
        return None, None
    from flashcli.core.ded_finetune import load_finetuned_ded, save_finetuned_ded
    from flashcli.library import DED_FILE, DedRecord
    from flashcli.video import file_hash

    path = save_finetuned_ded(folder / DED_FILE, finetuned.tensors, finetuned.metadata)
    final = finetuned.losses[-1] if finetuned.losses else {}
    record = DedRecord(
        sha256=file_hash(path),
        steps=len(finetuned.losses),
        learning_rate=float(finetuned.metadata["learning_rate"]),
        seconds=round(float(finetuned.seconds), 2),
        final_losses={name: float(value) for name, value in final.items()},
        losses=[{name: float(value) for name, value in step.items()} for step in finetuned.losses],
    )
    return record, load_finetuned_ded(path, spec)
