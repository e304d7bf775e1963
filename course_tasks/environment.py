"""The project's paths and its pinned environment: ``.venv``, PyTorch's index, Chromium.

Also what every command group shares: logging and running a command, the list of
committed notebooks, the environment of the notebooks' processes, a Markdown table, and
the repository address of ``_config.yml`` (``sync-repo-url``). Standard library only.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (this file is course_tasks/environment.py)
VENV = ROOT / ".venv"
BUILD = ROOT / "_build"
BOOK_DIR = ROOT / "book"
STAMP = VENV / ".course-installed"
HOMEWORK_DIR = BOOK_DIR / "homework"  # master notebooks: questions, solutions, tests
HOMEWORK_BUILD = BUILD / "homework"  # generated: student notebooks and autograders
HOMEWORK_PAGES = HOMEWORK_DIR / "_student"  # generated: the student notebooks the book shows
# d2l 1.0.3 is a test oracle only. Its metadata hard-pins numpy==1.23.5, pandas==2.0.3
# and others that do not build on Python 3.12 and would downgrade our pinned stack, so
# it is installed without its dependencies; what it really imports is in requirements.txt.
D2L = "d2l==1.0.3"
INSTALL_INPUTS = ("requirements.txt", "pyproject.toml")
# A package index to install PyTorch from, e.g. https://download.pytorch.org/whl/cpu
# (PyTorch's CPU-only wheels). Unset: PyTorch comes from pip's default index like the rest.
TORCH_INDEX_ENV = "COURSE_TORCH_INDEX"


def log(msg: str) -> None:
    print(f"[tasks] {msg}", flush=True)


def run(cmd: list[str | os.PathLike], **kw) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, cwd=kw.pop("cwd", ROOT), **kw)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_fingerprint() -> str:
    h = hashlib.sha256(D2L.encode())
    for name in INSTALL_INPUTS:
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_venv() -> Path:
    """Create .venv and install the pinned environment, unless it is already current."""
    if sys.version_info[:2] < (3, 10):
        sys.exit(f"Python >= 3.10 is needed (3.11 recommended); this is {sys.version.split()[0]}")
    py = venv_python()
    if not py.exists():
        log(f"creating virtual environment in {VENV}")
        run([sys.executable, "-m", "venv", VENV])
    want = install_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return py
    t0 = time.time()
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    install_torch(pip)
    run(pip + ["-r", ROOT / "requirements.txt"])
    run(pip + ["--no-deps", D2L])
    run(pip + ["--no-deps", "-e", ROOT])  # course_lib itself, editable
    STAMP.write_text(want + "\n")
    log(f"environment ready in {time.time() - t0:.0f} s")
    return py


def pinned(name: str) -> str:
    """The line ``name==version`` of requirements.txt."""
    m = re.search(rf"^{re.escape(name)}==\S+", (ROOT / "requirements.txt").read_text(), re.M)
    if not m:
        sys.exit(f"requirements.txt does not pin {name}")
    return m.group(0)


def install_torch(pip: list[str | os.PathLike], requirement: str | None = None) -> None:
    """Install PyTorch from $COURSE_TORCH_INDEX first, if it is set.

    pip then finds the pinned version already installed (``2.13.0+cpu`` satisfies
    ``torch==2.13.0``) and takes everything else from its default index. Unset, this does
    nothing, and PyTorch comes from the default index with the rest.
    """
    index = os.environ.get(TORCH_INDEX_ENV, "").strip()
    if index:
        log(f"{TORCH_INDEX_ENV}={index}: installing PyTorch from there")
        run(pip + ["--index-url", index, requirement or pinned("torch")])


def ensure_chromium() -> None:
    """The browser test needs Debian's chromium and chromium-driver; install them if missing."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if os.environ.get("COURSE_SKIP_BROWSER") == "1":
        log("chromium is missing and COURSE_SKIP_BROWSER=1: the browser test will be skipped")
        return
    apt = shutil.which("apt-get")
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if apt is None or sudo is None:
        sys.exit(
            "The browser test needs Chromium and ChromeDriver, which are missing.\n"
            "Install them (Debian/Ubuntu: apt-get install chromium chromium-driver), or set\n"
            "COURSE_SKIP_BROWSER=1 to skip that one test."
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(sudo + [apt, "update", "-q"], env=env)
    run(sudo + [apt, "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"], env=env)


def notebooks() -> list[Path]:
    """The committed notebooks: chapters and homework masters (not generated copies)."""
    return sorted(
        p for p in BOOK_DIR.rglob("*.ipynb")
        if not any(part.startswith((".", "_")) for part in p.relative_to(BOOK_DIR).parts)
    )


def venv_tool(name: str) -> Path:
    return venv_python().parent / name


def pytest_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("MPLBACKEND", None)  # notebooks need their inline backend to store figures
    env["PATH"] = f"{venv_python().parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |", flush=True)


# --- the repository's address ------------------------------------------------------------


def config_repo_url() -> str:
    text = (ROOT / "_config.yml").read_text()
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, re.M)
    if not m:
        sys.exit("_config.yml has no repository: url: entry")
    return m.group(1)


def config_repo_branch() -> str:
    m = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+branch:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    return m.group(1) if m else "main"


REPO_LINE = re.compile(r'^COURSE_REPO = "[^"]*"', re.M)
BRANCH_LINE = re.compile(r'^COURSE_BRANCH = "[^"]*"', re.M)


def cmd_sync_repo_url(args: argparse.Namespace) -> None:
    url, branch = config_repo_url(), config_repo_branch()
    req = HOMEWORK_DIR / "requirements-autograder.txt"
    req.write_text(re.sub(r"^course_lib @ git\+\S+$", f"course_lib @ git+{url}@{branch}", req.read_text(), flags=re.M))
    for path in notebooks():
        nb = json.loads(path.read_text())
        changed = False
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            new = REPO_LINE.sub(f'COURSE_REPO = "{url}"', src)
            new = BRANCH_LINE.sub(f'COURSE_BRANCH = "{branch}"', new)
            if new != src:
                cell["source"] = new.splitlines(keepends=True)
                changed = True
        if changed:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            log(f"updated {path.relative_to(ROOT)}")
