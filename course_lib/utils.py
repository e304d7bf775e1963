"""Seeding and device choice, used by every chapter."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

#: Set this environment variable to ``1`` to make :func:`try_gpu` fail when no CUDA
#: device is available. Instructors validating the notebooks on a GPU runner set it so
#: that a run that silently fell back to the CPU does not count as a GPU validation.
REQUIRE_CUDA_ENV = "COURSE_REQUIRE_CUDA"


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators (CPU and CUDA).

    Two runs of the same code after ``set_seed(s)`` draw the same numbers on the same
    device. (GPU kernels may still differ from CPU ones in the last bits.)
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"set_seed expects an int, got {type(seed).__name__}: {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"set_seed expects 0 <= seed < 2**32, got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _cuda_required() -> bool:
    return os.environ.get(REQUIRE_CUDA_ENV, "").strip().lower() in {"1", "true", "yes"}


def try_gpu(i: int = 0) -> torch.device:
    """Return ``cuda:i`` if that GPU exists, else the CPU.

    Same contract as ``d2l.try_gpu``. If the environment variable
    ``COURSE_REQUIRE_CUDA=1`` is set and the GPU is missing, raise ``RuntimeError``
    instead of falling back to the CPU.
    """
    if not isinstance(i, int) or isinstance(i, bool) or i < 0:
        raise ValueError(f"try_gpu expects a GPU index >= 0, got {i!r}")
    if torch.cuda.is_available() and torch.cuda.device_count() > i:
        return torch.device(f"cuda:{i}")
    if _cuda_required():
        raise RuntimeError(
            f"{REQUIRE_CUDA_ENV}=1 is set but CUDA device {i} is not available "
            f"(torch {torch.__version__}, {torch.cuda.device_count()} CUDA device(s) visible). "
            "Unset the variable to run on the CPU."
        )
    return torch.device("cpu")
