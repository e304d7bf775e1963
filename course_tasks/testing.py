"""The test suite, the notebooks under nbval, the benchmarks, and executing notebooks in place.

``python3 tasks.py test``, ``notebooks``, ``bench`` and ``execute``; the numerical
configuration they validate under (:data:`VALIDATION_ENV`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from course_tasks.environment import ROOT, ensure_chromium, ensure_venv, log, notebooks, pytest_env, run
from course_tasks.homework import generate_homework


# The numerical configuration of validation (`test`, `notebooks`). `execute` stores the
# notebooks' outputs with the machine's native one: the fastest vectorised kernels
# (AVX2 or AVX-512), all cores. A student's laptop or Colab may pick other kernels and
# another number of threads, and floating-point sums then differ in the last bits. So the
# notebooks are validated under a different configuration: ATen's generic kernels instead
# of the vectorised ones, Intel MKL in its reproducible "compatible" code path, and one
# thread (another summation order). An output or an asserted claim that depends on the
# kernels fails here first, not on a student's machine. A variable already set in the
# environment wins: `ATEN_CPU_CAPABILITY=avx2 python3 tasks.py test` validates with AVX2.
VALIDATION_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def validation_env() -> dict[str, str]:
    """pytest_env() under VALIDATION_ENV, except for the variables the user set."""
    env = pytest_env()
    chosen = {name: env.setdefault(name, value) for name, value in VALIDATION_ENV.items()}
    log("numerical configuration: " + " ".join(f"{k}={v}" for k, v in chosen.items()))
    return env


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parallel_args(workers: int | None, dist: str) -> list[str]:
    """pytest-xdist's arguments for ``workers`` processes (default: one per CPU); none for 1.

    Each worker is a separate process under the validation configuration (one thread
    each), so N workers use N cores and compute exactly what a serial run computes.
    """
    workers = available_cpus() if workers is None else workers
    if workers < 1:
        sys.exit(f"-n must be at least 1 (1 runs the tests one at a time), got {workers}")
    if workers == 1:
        return ["-p", "no:xdist"]
    return ["-n", str(workers), "--dist", dist, "--no-loadscope-reorder"]


def cmd_test(args: argparse.Namespace) -> None:
    """Run the whole suite: unit tests, every notebook under nbval, book, homework, browser.

    On N workers (pytest-xdist, default one per CPU): tests/conftest.py puts each
    notebook's cells in one group, so a notebook runs whole in one kernel on one worker,
    and orders the groups longest first, so that the run ends with short items.
    """
    t0 = time.time()
    py = ensure_venv()
    ensure_chromium()
    generate_homework()  # once, before the workers start; they find it up to date
    paths = ["tests", *[str(p.relative_to(ROOT)) for p in notebooks()]]
    cmd = [py, "-m", "pytest", "--nbval-lax", "--durations=10", *parallel_args(args.workers, "loadgroup"),
           *paths, *args.pytest_args]
    try:
        run(cmd, env=validation_env())
    finally:
        seconds = time.time() - t0
        log(f"test command took {seconds:.0f} s ({seconds / 60:.1f} min)")


def cmd_notebooks(args: argparse.Namespace) -> None:
    py = ensure_venv()
    named = any(a.split("::")[0].endswith(".ipynb") for a in args.pytest_args)  # notebooks named after --
    paths = [] if named else [str(p.relative_to(ROOT)) for p in notebooks()]
    # loadfile: every notebook runs whole on one worker, in its own kernel
    run([py, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", *parallel_args(args.workers, "loadfile"),
         *paths, *args.pytest_args], env=validation_env())


def cmd_bench(args: argparse.Namespace) -> None:
    py = ensure_venv()
    for script in ("attention.py", "multihead.py", "transformer.py", "bert.py", "tiled.py"):
        run([py, ROOT / "benchmarks" / script, *args.bench_args], env=pytest_env())


def cmd_execute(args: argparse.Namespace) -> None:
    """Re-execute notebooks in place, top to bottom in one fresh kernel, and save them."""
    py = ensure_venv()
    targets = [Path(p).resolve() for p in args.notebooks] or notebooks()
    code = (
        "import sys, time, nbformat\n"
        "from nbclient import NotebookClient\n"
        "for path in sys.argv[1:]:\n"
        "    nb = nbformat.read(path, as_version=4)\n"
        "    t0 = time.time()\n"
        "    NotebookClient(nb, timeout=600, kernel_name='python3',\n"
        "                   resources={'metadata': {'path': str(__import__('pathlib').Path(path).parent)}}).execute()\n"
        "    nbformat.write(nb, path)\n"
        "    print(f'executed {path} in {time.time() - t0:.1f} s', flush=True)\n"
    )
    run([py, "-c", code, *targets], env=pytest_env())
