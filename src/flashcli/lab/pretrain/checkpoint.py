"""Resumable stage state: model, optimizer, RNG, step and elapsed time in one file; losses in JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from flashcli.files import atomic_path


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (temp file, then rename), so a kill mid-write keeps the previous checkpoint."""
    with atomic_path(path) as temp:
        torch.save(state, temp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def warm_start(module: torch.nn.Module, checkpoint: Path) -> list[str]:
    """Load the weights of `checkpoint` (a stage checkpoint) whose names and shapes fit `module`; the
    rest keep their fresh initialisation. Returns the names left fresh (for the log)."""
    state = load_checkpoint(checkpoint)
    if state is None:
        raise FileNotFoundError(f"no checkpoint at {checkpoint} to start from")
    return load_fitting(module, state["model"], checkpoint)


def load_fitting(module: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> list[str]:
    """Load the `weights` whose names and shapes fit `module`; returns the names left as they were."""
    own = module.state_dict()
    fitting = {k: t for k, t in weights.items() if k in own and own[k].shape == t.shape}
    if not fitting:
        raise ValueError(f"{source} holds no weights that fit this model")
    module.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


class JsonlLog:
    """Append-only log of per-step records; a resumed run drops records past the checkpoint's step."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= resume_step
            ]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def cosine_lr(step: int, total: int, peak: float, floor: float, warmup: int) -> float:
    """Linear warmup to `peak`, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())
