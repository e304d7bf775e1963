#!/usr/bin/env python3
"""Set up, build and test the course. Needs only Python 3.11 (standard library) to start.

    python3 tasks.py book        # build the HTML book into _build/html and open it
    python3 tasks.py test        # run the whole test suite (what CI runs)

Both create ./.venv and install everything on first use (and again whenever
requirements.txt or pyproject.toml change). Other commands, for authors and instructors:

    python3 tasks.py homework    # student notebooks + autograders into _build/homework/
    python3 tasks.py grade HW SUBMISSIONS...   # grade submissions, write a score report
    python3 tasks.py notebooks   # only execute and validate the notebooks (nbval)
    python3 tasks.py bench [--quick]    # attention benchmarks (benchmarks/attention.py, multihead.py)
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
HOMEWORK_DIR = BOOK_DIR / "homework"  # master notebooks: questions, solutions, tests
HOMEWORK_BUILD = BUILD / "homework"  # generated: student notebooks and autograders
HOMEWORK_PAGES = HOMEWORK_DIR / "_student"  # generated: the student notebooks the book shows
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
    """The committed notebooks: chapters and homework masters (not generated copies)."""
    return sorted(
        p for p in BOOK_DIR.rglob("*.ipynb")
        if not any(part.startswith((".", "_")) for part in p.relative_to(BOOK_DIR).parts)
    )


# --- homework ------------------------------------------------------------------------


def homework_masters() -> list[Path]:
    return sorted(HOMEWORK_DIR.glob("hw*.ipynb"))


def venv_tool(name: str) -> Path:
    return venv_python().parent / name


PUBLIC_TESTS_CELL = """\
#@title Public tests for `grader.check` (run this cell; no need to read it)
# Generated by `python3 tasks.py homework`: writes the public tests next to this notebook,
# so that the self-checks work in Colab and in Jupyter without any download.
import os
PUBLIC_TESTS = {tests!r}
os.makedirs("tests", exist_ok=True)
for _name, _text in PUBLIC_TESTS.items():
    with open(os.path.join("tests", _name), "w", encoding="utf-8") as _file:
        _file.write(_text)
"""


def embed_public_tests(notebook: Path, tests_dir: Path) -> None:
    """Insert a cell that writes the public tests, just before the ``otter.Notebook`` cell."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    tests = {p.name: p.read_text(encoding="utf-8") for p in sorted(tests_dir.glob("*.py"))}
    where = next(
        (i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and "otter.Notebook(" in "".join(c["source"])),
        None,
    )
    if where is None:
        sys.exit(f"{notebook}: no cell creates otter.Notebook; cannot add the public tests")
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "public-tests",
        "metadata": {"cellView": "form", "tags": ["hide-input"]},
        "outputs": [],
        "source": PUBLIC_TESTS_CELL.format(tests=tests).splitlines(keepends=True),
    }
    nb["cells"].insert(where, cell)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def generate_homework() -> list[Path]:
    """Run Otter Assign on every master; return the autograder zips.

    For each book/homework/hwNN_*.ipynb, writes _build/homework/hwNN_*/ with
    student/ (the notebook without solutions, its public tests embedded, plus tests/),
    autograder/ (solutions and all tests, as Otter writes it), hwNN_*-autograder.zip
    (for `tasks.py grade` or Gradescope) and hwNN_*-student.zip; and copies the student
    notebook to book/homework/_student/ for the book. Otter Assign also runs every test
    against the solutions and fails if one does not pass.
    """
    zips = []
    HOMEWORK_PAGES.mkdir(exist_ok=True)
    for master in homework_masters():
        name = master.stem
        out = HOMEWORK_BUILD / name
        shutil.rmtree(out, ignore_errors=True)
        run([venv_tool("otter"), "assign", master, out])
        student = out / "student"
        embed_public_tests(student / f"{name}.ipynb", student / "tests")
        shutil.make_archive(str(out / f"{name}-student"), "zip", student)
        (made,) = (out / "autograder").glob(f"{name}-autograder_*.zip")
        zips.append(shutil.copy2(made, out / f"{name}-autograder.zip"))
        shutil.copy2(student / f"{name}.ipynb", HOMEWORK_PAGES / f"{name}.ipynb")
    return [Path(z) for z in zips]


def grade_submissions(homework: str, submissions: list[Path], out_dir: Path | None = None) -> Path:
    """Grade each submission with `otter run` (no container); write and return a CSV report."""
    autograder = HOMEWORK_BUILD / homework / f"{homework}-autograder.zip"
    if not autograder.is_file():
        known = [m.stem for m in homework_masters()]
        if homework not in known:
            sys.exit(f"unknown homework {homework!r}; expected one of {known}")
        generate_homework()
    out_dir = out_dir or BUILD / "grades" / homework
    files = []
    for path in submissions:
        files += sorted(p for p in path.iterdir() if p.suffix in (".ipynb", ".zip")) if path.is_dir() else [path]
    if not files:
        sys.exit(f"no submissions (.ipynb or .zip files) found in {[str(p) for p in submissions]}")
    rows, questions = [], []
    for sub in files:
        result_dir = out_dir / sub.stem
        shutil.rmtree(result_dir, ignore_errors=True)
        result_dir.mkdir(parents=True)
        run([venv_tool("otter"), "run", "--no-logo", "-a", autograder, "-o", result_dir, sub])
        results = json.loads((result_dir / "results.json").read_text())
        # One entry per question; otter adds a "Public Tests" summary entry without a score.
        scores = {t["name"]: (t["score"], t["max_score"]) for t in results["tests"] if "score" in t}
        questions = questions or list(scores)
        rows.append((sub.name, scores))
    report = out_dir / "grades.csv"
    header = ["submission", *questions, "total", "possible"]
    lines = [",".join(header)]
    for name, scores in rows:
        got = [scores.get(q, (0.0, 0.0))[0] for q in questions]
        possible = sum(scores.get(q, (0.0, 0.0))[1] for q in questions)
        lines.append(",".join([name, *(f"{g:g}" for g in got), f"{sum(got):g}", f"{possible:g}"]))
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    log(f"score report: {report} (autograded questions only; written questions are graded by hand)")
    return report


def cmd_homework(args: argparse.Namespace) -> None:
    ensure_venv()
    for z in generate_homework():
        log(f"autograder: {z}")
    log(f"student notebooks: {HOMEWORK_BUILD}/*/student/  (zipped: {HOMEWORK_BUILD}/*/*-student.zip)")


def cmd_grade(args: argparse.Namespace) -> None:
    ensure_venv()
    grade_submissions(args.homework, [Path(p).resolve() for p in args.submissions])


def build_book(py: Path, warnings_as_errors: bool = True) -> Path:
    """Build the HTML book from the notebooks' stored outputs into _build/html."""
    generate_homework()  # the book shows the student versions of the homework
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


def cmd_bench(args: argparse.Namespace) -> None:
    py = ensure_venv()
    for script in ("attention.py", "multihead.py"):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("book", help="build the HTML book and open it")
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    p.set_defaults(func=cmd_book)
    p = sub.add_parser("test", help="run the whole test suite")
    p.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("homework", help="generate student notebooks and autograders")
    p.set_defaults(func=cmd_homework)
    p = sub.add_parser("grade", help="grade submissions of one homework with its autograder")
    p.add_argument("homework", help="the homework's name, e.g. hw01_attention_pooling")
    p.add_argument("submissions", nargs="+", help="submission files (.ipynb or .zip) or folders of them")
    p.set_defaults(func=cmd_grade)
    p = sub.add_parser("notebooks", help="execute and validate the notebooks only")
    p.add_argument("pytest_args", nargs="*")
    p.set_defaults(func=cmd_notebooks)
    p = sub.add_parser("bench", help="time course_lib's attention against PyTorch and d2l")
    p.add_argument("bench_args", nargs="*", help="arguments for benchmarks/attention.py and multihead.py (after --)")
    p.set_defaults(func=cmd_bench)
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
