"""Device choice: auto picks what exists; asking for a missing GPU is an error, not a silent fallback."""

from __future__ import annotations

import pytest
import torch

from flashcli.core.devices import autocast_dtype, default_dtype, resolve_device


def test_auto_picks_cuda_only_when_present() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_is_an_error() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_choices_and_fp16_on_cpu_are_refused() -> None:
    with pytest.raises(ValueError, match="auto, cuda, cpu"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        autocast_dtype(torch.device("cpu"), "fp16")


def test_precision_defaults() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_dtype(cpu) == torch.float32 and default_dtype(cuda) == torch.bfloat16
    assert autocast_dtype(cpu, "auto") is None and autocast_dtype(cuda, "auto") == torch.bfloat16
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
