"""Where `animate` writes, and what it writes: each video with a JSON sidecar saying how it was made
(photo, actions, base, decoder, settings, versions), both replaced together or not at all."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashcli.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from flashcli.core.specs.wan import WanSpec
    from flashcli.workflows.animate import ActionRef
    from flashcli.workflows.plan import AnimatePlan


def versions() -> dict[str, str]:
    """The versions that made a file, for its manifest or sidecar."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for package in ("flashcli", "torch", "diffusers", "peft", "numpy", "safetensors"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def requested_format(output: Path | None, output_format: str | None) -> str | None:
    """The format the user asked for: -o's suffix or --format (they must agree); None = the preset's."""
    from flashcli.video import OUTPUT_FORMATS

    if output is None:
        return output_format
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise UserError(f"Output '{output}' must end in one of .{', .'.join(OUTPUT_FORMATS)}.")
    if output_format is not None and output_format != suffix:
        raise UserError(f"Output '{output}' is .{suffix} but --format is {output_format}; make them agree.")
    return suffix


def plan_outputs(
    photos: list[Path], labels: list[str], output: Path | None, out_dir: Path | None, fmt: str
) -> list[Path]:
    """Where each photo's video goes; clashes, unwritable folders and names held by a FIFO or device
    are the user's to resolve."""
    from flashcli.video import check_output_file, check_writable_folder

    if output is not None and out_dir is not None:
        raise UserError("Pass either -o/--output (one photo) or --out-dir (any number of photos), not both.")
    if output is not None and len(photos) > 1:
        raise UserError(
            f"-o/--output names one file but {len(photos)} photos were given; use --out-dir DIR instead."
        )
    if output is not None:
        if output.is_dir():
            raise UserError(f"Output '{output}' is a folder; use --out-dir for folders.")
        check_writable_folder(output.parent, "Output folder")
        check_output_file(output)
        return [output]
    folder = out_dir if out_dir is not None else Path.cwd()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out-dir '{folder}' is a file; pass a folder.")
    check_writable_folder(folder, "Output folder")
    suffix = "+".join(labels)
    outputs = [folder / f"{photo.stem}_{suffix}.{fmt}" for photo in photos]
    seen: dict[Path, Path] = {}
    for photo, out in zip(photos, outputs, strict=True):
        check_output_file(out)
        if out in seen:
            raise UserError(
                f"Photos '{seen[out]}' and '{photo}' would both write '{out}'; "
                "rename one or animate them separately."
            )
        seen[out] = photo
    return outputs


def write_output(
    out: Path,
    video: np.ndarray,
    photo: Path,
    refs: list[ActionRef],
    spec: WanSpec,
    source: str,
    plan: AnimatePlan,
    decoder: dict[str, Any],
    memory: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `video` to `out` and its sidecar `out.json`; returns the sidecar's record. `memory`: the
    preflight's memory rung on a real base (fp8 storage changes the numbers, so a rerun needs it)."""
    from flashcli.core.sampler import sampler_eta
    from flashcli.video import atomic_path, encode_video, file_hash

    fmt = plan.config.format
    sidecar = out.with_name(out.name + ".json")
    record = {
        "video": str(out),
        "sidecar": str(sidecar),
        "photo": {"path": str(photo), "sha256": file_hash(photo)},
        "actions": [
            {
                "name": ref.label,
                "strength": ref.strength,
                "adapter": str(ref.adapter_path),
                "adapter_sha256": file_hash(ref.adapter_path),
            }
            for ref in refs
        ],
        "base": {"id": spec.base_id, "source": source, "weight_hash": spec.weight_hash},
        "decoder": decoder,  # which Detail Enhancement Decoder decoded: none, the base's, or an action's
        "frames": int(video.shape[0]),
        "size": int(video.shape[1]),  # the height (and width, when square), as before W x H sizes
        "width": int(video.shape[2]),
        "height": int(video.shape[1]),
        "fps": plan.fps,
        "format": fmt,
        "seed": plan.sample.seed,
        "preset": plan.preset,
        "settings": plan.config.model_dump(mode="json"),
        "sample_settings": plan.sample.model_dump(mode="json"),
        "sampler_eta": sampler_eta(spec, plan.sample),  # the settings' eta, else the base's
        "device": str(spec.device),
        "memory": memory,  # None: not planned (the tiny base, or a CPU without FLASH_GPU_MEMORY_GIB)
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # Both files are written in full before either replaces an earlier one: a full disk keeps both.
    with atomic_path(out) as video_temp, atomic_path(sidecar) as sidecar_temp:
        encode_video(video_temp, video, plan.fps, fmt)  # type: ignore[arg-type]
        sidecar_temp.write_text(json.dumps(record, indent=2) + "\n")
    return record
