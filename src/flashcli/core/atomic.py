"""Write a safetensors file so that readers see the old file or the whole new one, never half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch


def save_safetensors_atomic(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> Path:
    """Save fp32 CPU copies of `tensors` with `metadata`: a temp file in the same folder, then a rename."""
    from safetensors.torch import save_file

    from flashcli.core.permissions import make_public

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        cpu = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in tensors.items()}
        save_file(cpu, staging, metadata=dict(metadata))
        make_public(staging)  # mkstemp made it 0600
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return target
