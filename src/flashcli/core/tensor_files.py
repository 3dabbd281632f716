"""Saving tensors: fp32 CPU copies in one safetensors file, written through the one atomic writer.

Here rather than in `flashcli.files`, which stays free of torch (the procedural generator writes
through it and knows no model).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from flashcli.files import atomic_path


def save_safetensors_atomic(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> Path:
    """Save fp32 CPU copies of `tensors` with `metadata`; readers see the old file or the whole new one."""
    from safetensors.torch import save_file

    target = Path(path)
    cpu = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in tensors.items()}
    with atomic_path(target) as staging:
        save_file(cpu, str(staging), metadata=dict(metadata))
    return target
