"""Timing and peak memory of a piece of code, on the CPU or a CUDA device.

Used by chapter 2's cost figure and by ``benchmarks/attention.py``. Timings are for
notes and figures only: never put them in pass/fail tests (shared machines are noisy).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

from course_lib._checks import check_device, is_int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device | str = "cpu", repeat: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs, after ``warmup`` runs."""
    if not callable(fn):
        raise TypeError(f"time_fn expects a function to call, got {type(fn).__name__}")
    device = check_device("device", device)
    if not is_int(repeat) or not is_int(warmup) or repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0 (ints), got {repeat!r} and {warmup!r}")
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def _silence_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's native library logs its
    start and stop there, which would show up in notebooks as stray output."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by tensors while ``fn()`` runs, above what was allocated before.

    On CUDA this is ``torch.cuda.max_memory_allocated``. On the CPU, PyTorch keeps no
    such counter, so the profiler records every allocation and free and the peak of
    their running sum is returned.
    """
    if not callable(fn):
        raise TypeError(f"peak_memory expects a function to call, got {type(fn).__name__}")
    device = check_device("device", device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with _silence_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage  # allocations > 0, frees < 0
        peak = max(peak, current)
    return peak


def benchmark_parser(description: str | None, dropout_help: str = "dropout during the training step"):
    """The command line shared by the repository's benchmarks (benchmarks/*.py)."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small configuration only, fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per configuration")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: course_lib.try_gpu())")
    parser.add_argument("--dropout", type=float, default=0.1, help=dropout_help)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    return parser


def benchmark_setup(args) -> tuple[torch.device, int, str]:
    """Apply ``--threads``; return the device, the number of timed rounds and a description of the device."""
    import platform

    from course_lib.utils import try_gpu

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else try_gpu()
    rounds = args.rounds or (5 if args.quick else 15)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return device, rounds, where
