"""Device choice: clear errors, and the allocator setting for CPU tensor work."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from dora_clean.device import resolve_device
from dora_clean.errors import DoraError


def test_devices_and_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DoraError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DoraError, match="CUDA is not available here"):
            resolve_device("cuda")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_allocator_setting_takes_in_a_fresh_process():
    code = "from dora_clean.device import tune_allocator as t; print(t(), t())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
