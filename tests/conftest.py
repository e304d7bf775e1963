"""Shared fixtures. Tests run on the CPU, offline, with tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from d2l_oracle import load_d2l  # noqa: E402

sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402  (the project's own commands: homework generation and grading)


@pytest.fixture(scope="session")
def d2l():
    """d2l 1.0.3's ``d2l.torch``, the oracle for functions both packages have."""
    return load_d2l()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def homework_zips() -> list[Path]:
    """Generate every homework's student notebook and autograder once per session."""
    return tasks.generate_homework()


@pytest.fixture(scope="session")
def built_book(homework_zips) -> Path:
    """Build the HTML book once per session, warnings as errors; return _build/html."""
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(ROOT), "--all", "--builder", "html", "--keep-going", "--warningiserror", "--nitpick"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        pytest.fail(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return ROOT / "_build" / "html"
