"""Copies of the notebooks, executed: with other seeds, and in a clean, Colab-like environment.

``python3 tasks.py robustness`` and ``python3 tasks.py colab-check``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path

from course_tasks.environment import (
    BOOK_DIR, BUILD, HOMEWORK_DIR, ROOT, ensure_venv, install_torch, log, notebooks, print_table, pytest_env, run,
    venv_python,
)
from course_tasks.homework import homework_masters
from course_tasks.testing import validation_env


# Executes one notebook with nbclient and writes a JSON report; run by the .venv's Python
# (tasks.py itself needs only the standard library). allow_errors=True: every cell runs,
# so every failing cell is reported, not only the first.
#   argv: notebook to execute (rewritten in place, executed), working directory,
#         kernel name, timeout per cell (s), report path
NOTEBOOK_RUNNER = r'''
import json, re, sys, time
import nbformat
from nbclient import NotebookClient

path, cwd, kernel, timeout, report = sys.argv[1:6]
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def first_line(text):
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def describe(out):
    """The error's first line; for a bare `assert`, the assert line from the traceback."""
    message = first_line(out.get("evalue", ""))
    if message:
        return message
    arrows = [ANSI.sub("", line) for line in "\n".join(out.get("traceback", [])).splitlines()]
    arrows = [line for line in arrows if line.lstrip().startswith("---->")]
    return re.sub(r"^\s*---->\s*\d*\s*", "", arrows[-1]).strip() if arrows else ""


nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=int(timeout), kernel_name=kernel, allow_errors=True,
                        resources={"metadata": {"path": cwd}})
start, crash = time.time(), None
try:
    client.execute()
except Exception as exc:  # a cell timed out, the kernel died or did not start
    crash = f"{type(exc).__name__}: {first_line(str(exc))}"
seconds = time.time() - start
nbformat.write(nb, path)
failures, number = [], 0
for cell in nb.cells:
    if cell.cell_type != "code":
        continue
    number += 1
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            failures.append({"cell": number, "ename": out.get("ename", "?"), "message": describe(out)})
with open(report, "w") as f:
    json.dump({"seconds": seconds, "failures": failures, "crash": crash}, f)
'''


def execute_copy(nb: dict, copy: Path, cwd: Path, kernel: str, env: dict[str, str], timeout: int = 1800) -> dict:
    """Write ``nb`` to ``copy``, execute it there top to bottom (cwd: ``cwd``); return the report.

    The executed notebook stays at ``copy``. Report: seconds, failures (one per failing
    code cell: its number counted over code cells, as In [n] shows it, the exception type
    and the first line of the message) and crash (a timeout or a dead kernel), or None.
    """
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    report = copy.with_suffix(".report.json")
    report.unlink(missing_ok=True)
    cmd = [venv_python(), "-c", NOTEBOOK_RUNNER, copy, cwd, kernel, str(timeout), report]
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
    if proc.returncode != 0 or not report.is_file():
        return {"seconds": 0.0, "failures": [], "crash": f"the notebook runner exited with status {proc.returncode}"}
    return json.loads(report.read_text())


def shorten(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def summarize(result: dict, width: int | None = None) -> str:
    """'ok', or 'N failed: cell i (Error: message); ...'; messages cut to ``width`` characters."""
    parts = [f"cell {f['cell']} ({f['ename']}" + (f": {shorten(f['message'], width)})" if f["message"] else ")")
             for f in result["failures"]]
    if result["crash"]:
        parts.append(f"stopped: {result['crash']}")
    if not parts:
        return "ok"
    if not result["failures"]:
        return parts[0]
    return f"{len(result['failures'])} failed: " + "; ".join(parts)


SEED_LINE = re.compile(r"^SEED = \d+", re.M)


def code_source(nb: dict) -> str:
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def seeded_chapters() -> list[Path]:
    """Notebooks under book/ (not the homework) whose code has a line ``SEED = <int>``."""
    return [p for p in notebooks() if HOMEWORK_DIR not in p.parents
            and SEED_LINE.search(code_source(json.loads(p.read_text(encoding="utf-8"))))]


def cmd_robustness(args: argparse.Namespace) -> None:
    """Execute copies of the seeded chapters with other seeds; report every failing cell."""
    # --seeds takes every number after it, and any path that follows is a notebook
    seeds = [int(s) for s in args.seeds if re.fullmatch(r"\d+", s)]
    targets = [Path(p).resolve() for p in [*args.notebooks, *(s for s in args.seeds if not re.fullmatch(r"\d+", s))]]
    if not seeds:
        sys.exit("robustness: give at least one seed (--seeds 0 1 2)")
    ensure_venv()
    targets = targets or seeded_chapters()
    if not targets:
        sys.exit("robustness: no notebook under book/ has a line `SEED = <int>`; name the notebooks to run")
    out_dir = BUILD / "robustness"
    env = validation_env()  # the numerical configuration of `test`: one thread, generic kernels
    results: dict[tuple[Path, int], dict] = {}
    for path in targets:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if not SEED_LINE.search(code_source(nb)):
            sys.exit(f"robustness: {path} has no line `SEED = <int>` in its code cells")
        for seed in seeds:
            copy = deepcopy(nb)
            for cell in copy["cells"]:
                if cell["cell_type"] == "code":
                    src = SEED_LINE.sub(f"SEED = {seed}", "".join(cell["source"]))
                    cell["source"] = src.splitlines(keepends=True)
            executed = out_dir / f"{path.stem}_seed{seed}.ipynb"
            log(f"{path.name}, SEED = {seed}: executing a copy ({executed.relative_to(ROOT)})")
            result = execute_copy(copy, executed, path.parent, "python3", env, args.timeout)
            results[path, seed] = result
            log(f"{path.name}, SEED = {seed}: {summarize(result)} ({result['seconds']:.0f} s)")
    print()
    rows = [[p.name, *(f"{summarize(results[p, s], 40)} ({results[p, s]['seconds']:.0f} s)" for s in seeds)]
            for p in targets]
    print_table(["notebook", *(f"SEED = {s}" for s in seeds)], rows)
    failed = [(p, s) for (p, s), r in results.items() if summarize(r) != "ok"]
    log(f"executed copies: {out_dir.relative_to(ROOT)}/")
    if failed:
        sys.exit(f"robustness: {len(failed)} of {len(results)} runs failed")


# Google Colab, as far as course_lib's notebooks can tell: a Python with PyTorch, NumPy,
# Matplotlib, pandas and SciPy, and a Jupyter kernel, but no course_lib, no otter-grader,
# no sacrebleu. torch is pinned to the CPU wheel this machine's index serves (an unpinned
# torch pulls a multi-GB CUDA build).
COLAB_VENV = BUILD / "colab-venv"
COLAB_PACKAGES = ("torch==2.13.0", "numpy", "matplotlib", "pandas", "scipy", "ipykernel")
COLAB_KERNEL = "colab-check"
# What the notebooks' first cell installs course_lib from; colab-check replaces it with
# this working tree's path (pip then installs it non-editable, as from GitHub).
GIT_INSTALL_SOURCE = 'f"git+{COURSE_REPO}@{COURSE_BRANCH}"'


def pip_packages(py: Path) -> dict[str, str]:
    """Installed distributions of an environment: normalized name -> version."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    out = subprocess.run([str(py), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True, env=env).stdout  # not what PYTHONPATH adds
    return {re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in json.loads(out)}


def ensure_colab_venv(fresh: bool) -> Path:
    """Create _build/colab-venv with COLAB_PACKAGES only, unless it is already current."""
    py = COLAB_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp, baseline = COLAB_VENV / ".colab-check", COLAB_VENV / ".baseline.json"
    want = hashlib.sha256(f"{sys.version} {COLAB_PACKAGES}".encode()).hexdigest()
    if not fresh and py.exists() and baseline.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
        return py
    shutil.rmtree(COLAB_VENV, ignore_errors=True)
    t0 = time.time()
    log(f"creating the clean environment {COLAB_VENV.relative_to(ROOT)}")
    run([sys.executable, "-m", "venv", COLAB_VENV])
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    install_torch(pip, next(p for p in COLAB_PACKAGES if p.startswith("torch==")))  # $COURSE_TORCH_INDEX
    run(pip + list(COLAB_PACKAGES))
    baseline.write_text(json.dumps(pip_packages(py), indent=1) + "\n")
    stamp.write_text(want + "\n")
    log(f"clean environment ready in {time.time() - t0:.0f} s")
    return py


def reset_colab_venv(py: Path) -> None:
    """Uninstall whatever a notebook installed, and restore versions it changed."""
    baseline = json.loads((COLAB_VENV / ".baseline.json").read_text())
    now = pip_packages(py)
    extra = sorted((set(now) - set(baseline)) | ({"course-lib"} & set(now)))  # course_lib: never part of it
    changed = [f"{name}=={version}" for name, version in baseline.items() if now.get(name) != version]
    if extra:
        run([py, "-m", "pip", "uninstall", "-y", "-q", *extra])
    if changed:
        run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", *changed])


def cmd_colab_check(args: argparse.Namespace) -> None:
    """Run every chapter and homework master in a clean, Colab-like environment."""
    ensure_venv()  # nbclient, which drives the kernel, runs in .venv
    py = ensure_colab_venv(args.fresh)
    targets = [Path(p).resolve() for p in args.notebooks]
    targets = targets or [p for p in notebooks() if HOMEWORK_DIR not in p.parents] + homework_masters()
    out_dir = BUILD / "colab-check"
    results: dict[Path, dict] = {}
    with tempfile.TemporaryDirectory() as jupyter_path:
        spec = Path(jupyter_path) / "kernels" / COLAB_KERNEL
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (colab-check)", "language": "python",
        }))
        env = pytest_env()
        for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(var, None)
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [jupyter_path, env.get("JUPYTER_PATH")]))
        env["PATH"] = f"{py.parent}{os.pathsep}{env['PATH']}"
        for path in targets:
            name = str(path.relative_to(BOOK_DIR)) if BOOK_DIR in path.parents else str(path)
            t0 = time.time()
            reset_colab_venv(py)  # only this notebook's own first cell may install anything
            nb = json.loads(path.read_text(encoding="utf-8"))
            first = next(c for c in nb["cells"] if c["cell_type"] == "code")
            source = "".join(first["source"])
            if GIT_INSTALL_SOURCE not in source:
                results[path] = {"seconds": 0.0, "failures": [], "reset": time.time() - t0,
                                 "crash": f"its first code cell does not install {GIT_INSTALL_SOURCE}"}
                log(f"{name}: {summarize(results[path])}")
                continue
            first["source"] = source.replace(GIT_INSTALL_SOURCE, repr(str(ROOT))).splitlines(keepends=True)
            reset = time.time() - t0
            log(f"{name}: executing in the clean environment")
            result = execute_copy(nb, out_dir / path.name, path.parent, COLAB_KERNEL, env, args.timeout)
            results[path] = {**result, "reset": reset}
            log(f"{name}: {summarize(result)} ({result['seconds']:.0f} s)")
    print()
    rows = [[str(p.relative_to(BOOK_DIR)) if BOOK_DIR in p.parents else str(p), summarize(r, 60),
             f"{r['seconds']:.0f} s", f"{r['reset']:.0f} s"]
            for p, r in results.items()]
    print_table(["notebook", "result", "time", "reset before"], rows)
    log(f"executed copies: {out_dir.relative_to(ROOT)}/")
    failed = [p for p, r in results.items() if summarize(r) != "ok"]
    if failed:
        sys.exit(f"colab-check: {len(failed)} of {len(results)} notebooks failed")
