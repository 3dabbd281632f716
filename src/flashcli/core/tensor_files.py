"""Saving tensors: CPU copies (fp32 unless asked to keep their dtypes) in one safetensors file, written
through the one atomic writer.

Here rather than in `flashcli.files`, which stays free of torch (the procedural generator writes
through it and knows no model).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from flashcli.files import atomic_path


def save_safetensors_atomic(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    *,
    keep_dtype: bool = False,
) -> Path:
    """Save CPU copies of `tensors` with `metadata`, in fp32 unless `keep_dtype` (safetensors stores bf16
    and fp16 as they are); readers see the old file or the whole new one."""
    from safetensors.torch import save_file

    target = Path(path)
    cpu = {
        name: t.detach().to("cpu", None if keep_dtype else torch.float32).contiguous()
        for name, t in tensors.items()
    }
    with atomic_path(target) as staging:
        save_file(cpu, str(staging), metadata=dict(metadata))
    return target
