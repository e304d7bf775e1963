#!/usr/bin/env python3
"""Set up, build and test the course. Needs only Python 3.11 (standard library) to start.

    python3 tasks.py book        # build the HTML book into _build/html and open it
    python3 tasks.py test        # run the whole test suite (what CI runs)

Both create ./.venv and install everything on first use (and again whenever
requirements.txt or pyproject.toml change). Other commands, for authors and instructors:

    python3 tasks.py notebooks   # only execute and validate the notebooks (nbval)
    python3 tasks.py execute [NB ...]   # re-execute notebooks in place, top to bottom
    python3 tasks.py sync-repo-url      # copy the repository URL from _config.yml into notebooks
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
import webbrowser
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BUILD = ROOT / "_build"
BOOK_DIR = ROOT / "book"
STAMP = VENV / ".course-installed"
# d2l 1.0.3 is a test oracle only. Its metadata hard-pins numpy==1.23.5, pandas==2.0.3
# and others that do not build on Python 3.12 and would downgrade our pinned stack, so
# it is installed without its dependencies; what it really imports is in requirements.txt.
D2L = "d2l==1.0.3"
INSTALL_INPUTS = ("requirements.txt", "pyproject.toml")


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
    run(pip + ["-r", ROOT / "requirements.txt"])
    run(pip + ["--no-deps", D2L])
    run(pip + ["--no-deps", "-e", ROOT])  # course_lib itself, editable
    STAMP.write_text(want + "\n")
    log(f"environment ready in {time.time() - t0:.0f} s")
    return py


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
    return sorted(p for p in BOOK_DIR.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def build_book(py: Path, warnings_as_errors: bool = True) -> Path:
    """Build the HTML book from the notebooks' stored outputs into _build/html."""
    jb = py.parent / ("jupyter-book.exe" if os.name == "nt" else "jupyter-book")
    cmd = [jb, "build", ROOT, "--builder", "html", "--keep-going"]
    if warnings_as_errors:
        cmd += ["--warningiserror", "--nitpick"]
    run(cmd)
    return BUILD / "html" / "index.html"


def cmd_book(args: argparse.Namespace) -> None:
    py = ensure_venv()
    index = build_book(py)
    log(f"book built: {index}")
    if not args.no_open and not os.environ.get("CI") and sys.stdout.isatty():
        webbrowser.open(index.as_uri())


def pytest_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("MPLBACKEND", None)  # notebooks need their inline backend to store figures
    env["PATH"] = f"{venv_python().parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def cmd_test(args: argparse.Namespace) -> None:
    t0 = time.time()
    py = ensure_venv()
    ensure_chromium()
    paths = ["tests", *[str(p.relative_to(ROOT)) for p in notebooks()]]
    cmd = [py, "-m", "pytest", "--nbval-lax", "--durations=10", *paths, *args.pytest_args]
    try:
        run(cmd, env=pytest_env())
    finally:
        log(f"test command took {time.time() - t0:.0f} s")


def cmd_notebooks(args: argparse.Namespace) -> None:
    py = ensure_venv()
    paths = [str(p.relative_to(ROOT)) for p in notebooks()]
    run([py, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", *paths, *args.pytest_args], env=pytest_env())


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


def config_repo_url() -> str:
    text = (ROOT / "_config.yml").read_text()
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, re.M)
    if not m:
        sys.exit("_config.yml has no repository: url: entry")
    return m.group(1)


REPO_LINE = re.compile(r'^COURSE_REPO = "[^"]*"', re.M)


def cmd_sync_repo_url(args: argparse.Namespace) -> None:
    url = config_repo_url()
    for path in notebooks():
        nb = json.loads(path.read_text())
        changed = False
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            new = REPO_LINE.sub(f'COURSE_REPO = "{url}"', src)
            if new != src:
                cell["source"] = new.splitlines(keepends=True)
                changed = True
        if changed:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            log(f"updated {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("book", help="build the HTML book and open it")
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    p.set_defaults(func=cmd_book)
    p = sub.add_parser("test", help="run the whole test suite")
    p.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("notebooks", help="execute and validate the notebooks only")
    p.add_argument("pytest_args", nargs="*")
    p.set_defaults(func=cmd_notebooks)
    p = sub.add_parser("execute", help="re-execute notebooks in place")
    p.add_argument("notebooks", nargs="*")
    p.set_defaults(func=cmd_execute)
    p = sub.add_parser("sync-repo-url", help="copy _config.yml's repository URL into the notebooks")
    p.set_defaults(func=cmd_sync_repo_url)
    args = parser.parse_args()
    try:
        args.func(args)
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode or 1)


if __name__ == "__main__":
    main()
