#!/usr/bin/env python3
"""Set up, build and test the course. Needs only Python 3.11 (standard library) to start.

    python3 tasks.py book        # build the HTML book into _build/html and serve it (Ctrl-C stops)
    python3 tasks.py test        # run the whole test suite (what CI runs)

Both create ./.venv and install everything on first use (and again whenever
requirements.txt or pyproject.toml change). On a machine without a GPU, set
COURSE_TORCH_INDEX=https://download.pytorch.org/whl/cpu before the first run: PyTorch
then comes from that index (its CPU build, about 200 MB) instead of the default one
(on Linux, the CUDA build and several GB of NVIDIA libraries).
Other commands, for authors and instructors:

    python3 tasks.py homework    # student notebooks + autograders into _build/homework/
    python3 tasks.py grade HW SUBMISSIONS...   # grade submissions, write a score report
    python3 tasks.py notebooks   # only execute and validate the notebooks (nbval)
    python3 tasks.py bench [--quick]    # benchmarks/attention.py, multihead.py, transformer.py, bert.py
    python3 tasks.py execute [NB ...]   # re-execute notebooks in place, top to bottom
    python3 tasks.py sync-repo-url      # copy the repository URL from _config.yml into notebooks
    python3 tasks.py figures [NB ...]   # the size of each stored figure's smallest text on the page
    python3 tasks.py robustness [NB ...] [--seeds 0 1 2]
                                 # run copies of the chapters with other values of SEED
    python3 tasks.py colab-check [NB ...] [--fresh]
                                 # run every notebook in a clean, Colab-like environment

`test`, `notebooks` and `robustness` validate under another numerical configuration than the one
`execute` stores outputs with (generic ATen kernels, MKL_CBWR=COMPATIBLE, one thread;
see VALIDATION_ENV), so that an output that depends on the kernels fails here first.
`robustness` and `colab-check` are not part of `test`: they take minutes, and
`colab-check` needs PyPI.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import webbrowser
from copy import deepcopy
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


# --- homework ------------------------------------------------------------------------


def homework_masters() -> list[Path]:
    return sorted(HOMEWORK_DIR.glob("hw*.ipynb"))


def venv_tool(name: str) -> Path:
    return venv_python().parent / name


PUBLIC_TESTS_CELL = """\
#@title Public tests for `grader.check` (run this cell; no need to read it)
# Writes this homework's public tests into their own folder next to this notebook, so that
# the self-checks work in Colab and in Jupyter without any download, and so that the tests
# of another homework run from the same folder (or the grader's own tests) are not touched.
import os
PUBLIC_TESTS = {tests!r}
os.makedirs({tests_dir!r}, exist_ok=True)
for _name, _text in PUBLIC_TESTS.items():
    with open(os.path.join({tests_dir!r}, _name), "w", encoding="utf-8") as _file:
        _file.write(_text)
"""


def notebook_tests_dir(notebook: Path) -> str:
    """The ``tests_dir`` given to ``otter.Notebook`` in a homework notebook: ``tests/<homework>``.

    Each homework keeps its public tests in its own folder. With a shared ``tests/``, two
    homeworks run from one folder would run each other's tests, and while grading, the
    notebook would overwrite the autograder's ``tests/`` (hidden tests included) with its
    public ones, so that only the public tests counted.
    """
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    found = re.findall(r"otter\.Notebook\(\s*tests_dir\s*=\s*[\"']([^\"']+)[\"']", code)
    expected = f"tests/{notebook.stem}"
    if found != [expected]:
        sys.exit(f'{notebook}: create the grader with otter.Notebook(tests_dir="{expected}"), once; found {found}')
    return expected


def embed_public_tests(notebook: Path, tests_dir: Path) -> None:
    """Insert a cell that writes the public tests, just before the ``otter.Notebook`` cell.

    The cell writes them where the notebook's ``otter.Notebook(tests_dir=...)`` looks.
    """
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
        "source": PUBLIC_TESTS_CELL.format(tests=tests, tests_dir=notebook_tests_dir(notebook)).splitlines(keepends=True),
    }
    nb["cells"].insert(where, cell)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


@contextlib.contextmanager
def build_lock(name: str):
    """Hold ``_build/.<name>.lock`` (an exclusive file lock) while the block runs.

    The test suite runs on several pytest workers at once; each may ask for the
    generated homework. The lock makes one of them generate it while the others wait,
    and then find it up to date. Where ``fcntl`` is missing (Windows), nothing is locked.
    """
    BUILD.mkdir(exist_ok=True)
    with open(BUILD / f".{name}.lock", "w") as handle:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def homework_fingerprint(master: Path) -> str:
    """A hash of everything a homework's generated files depend on.

    The master notebook; this file (how the student version is made); the pinned
    environment (Otter's version); the autograder's requirements; and course_lib's
    sources, which Otter Assign runs the solutions and tests against.
    """
    h = hashlib.sha256()
    inputs = [master, Path(__file__).resolve(), ROOT / "requirements.txt", HOMEWORK_DIR / "requirements-autograder.txt",
              *sorted((ROOT / "course_lib").glob("*.py"))]
    for path in inputs:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0")
        h.update(path.read_bytes() if path.is_file() else b"(missing)")
    return h.hexdigest()


def generate_homework(force: bool = False) -> list[Path]:
    """Run Otter Assign on every master whose inputs changed; return the autograder zips.

    For each book/homework/hwNN_*.ipynb, writes _build/homework/hwNN_*/ with
    student/ (the notebook without solutions, its public tests embedded, plus
    tests/hwNN_*/, where the notebook's otter.Notebook looks for them),
    autograder/ (solutions and all tests, as Otter writes it), hwNN_*-autograder.zip
    (for `tasks.py grade` or Gradescope) and hwNN_*-student.zip; and copies the student
    notebook to book/homework/_student/ for the book. Otter Assign also runs every test
    against the solutions and fails if one does not pass.

    A homework whose inputs (:func:`homework_fingerprint`) are those of its last
    generation is not generated again, unless ``force``: Otter Assign executes the whole
    master, and the test suite's workers would otherwise each repeat that work.
    """
    zips = []
    HOMEWORK_PAGES.mkdir(exist_ok=True)
    with build_lock("homework"):
        for master in homework_masters():
            name = master.stem
            out = HOMEWORK_BUILD / name
            stamp, autograder = out / ".inputs-sha256", out / f"{name}-autograder.zip"
            student_nb = out / "student" / f"{name}.ipynb"
            want = homework_fingerprint(master)
            current = stamp.is_file() and stamp.read_text().strip() == want and autograder.is_file() and student_nb.is_file()
            if current and not force:
                log(f"{name}: generated files are up to date (inputs unchanged)")
            else:
                shutil.rmtree(out, ignore_errors=True)
                run([venv_tool("otter"), "assign", master, out])
                student = out / "student"
                public = student / notebook_tests_dir(student_nb)  # student/tests/<name>/
                public.mkdir(parents=True)
                for test in sorted((student / "tests").glob("*.py")):
                    test.rename(public / test.name)
                embed_public_tests(student_nb, public)
                shutil.make_archive(str(out / f"{name}-student"), "zip", student)
                (made,) = (out / "autograder").glob(f"{name}-autograder_*.zip")
                shutil.copy2(made, autograder)
                stamp.write_text(want + "\n")  # last: only a complete generation is reused
            page = HOMEWORK_PAGES / f"{name}.ipynb"
            if not page.is_file() or page.read_bytes() != student_nb.read_bytes():
                shutil.copy2(student_nb, page)
            zips.append(autograder)
    return zips


def grade_submissions(homework: str, submissions: list[Path], out_dir: Path | None = None, jobs: int | None = None) -> Path:
    """Grade each submission with `otter run` (no container); write and return a CSV report.

    Up to ``jobs`` submissions are graded at once (default: the number of CPUs, at most 4);
    each runs in its own process and its own folder.
    """
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

    def grade_one(sub: Path) -> dict:
        result_dir = out_dir / sub.stem
        shutil.rmtree(result_dir, ignore_errors=True)
        result_dir.mkdir(parents=True)
        cmd = [venv_tool("otter"), "run", "--no-logo", "-a", autograder, "-o", result_dir, sub]
        for attempt in (1, 2, 3):  # a kernel can fail to start (two picked the same port): try again
            try:
                run(cmd, stdout=subprocess.DEVNULL)
                break
            except subprocess.CalledProcessError:
                if attempt == 3:
                    raise
                log(f"grading {sub.name} failed before any test ran; trying again")
        results = json.loads((result_dir / "results.json").read_text())
        # One entry per question; otter adds a "Public Tests" summary entry without a score.
        return {t["name"]: (t["score"], t["max_score"]) for t in results["tests"] if "score" in t}

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs or min(4, os.cpu_count() or 1)) as pool:
        rows = list(zip((sub.name for sub in files), pool.map(grade_one, files)))
    questions = next((list(scores) for _, scores in rows if scores), [])
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
    for z in generate_homework(force=args.force):
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


BOOK_HOST, BOOK_PORT = "127.0.0.1", 8000


class BookRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built book; logs failed requests only."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript", ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2",
        ".ipynb": "application/x-ipynb+json",
    }

    def log_request(self, code="-", size="-"):
        if str(getattr(code, "value", code)).startswith(("4", "5")):
            super().log_request(code, size)


def book_server(directory: Path, port: int = BOOK_PORT) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the built book on this machine only, at ``port`` or the next free one (0: any)."""
    handler = functools.partial(BookRequestHandler, directory=str(directory))
    for candidate in [port + k for k in range(20)] if port else [0]:
        try:
            return http.server.ThreadingHTTPServer((BOOK_HOST, candidate), handler)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
    sys.exit(f"ports {port} to {port + 19} are all in use: choose another with --port")


def serve_book(directory: Path, port: int = BOOK_PORT, open_browser: bool = False) -> None:
    """Serve ``directory`` until Ctrl-C (searching the book needs a server: browsers block it on file://)."""
    httpd = book_server(directory, port)
    url = f"http://{BOOK_HOST}:{httpd.server_address[1]}/"
    log(f"the book is at {url}  (Ctrl-C stops the server)")
    if open_browser:
        webbrowser.open(url)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print(flush=True)
        log("server stopped")
    finally:
        httpd.server_close()


def cmd_book(args: argparse.Namespace) -> None:
    site = BUILD / "html"
    if args.no_build:
        if not (site / "index.html").is_file():
            sys.exit(f"there is no built book in {site.relative_to(ROOT)}: run python3 tasks.py book")
    else:
        py = ensure_venv()
        build_book(py)
        log(f"book built: {site.relative_to(ROOT)}/")
    if args.no_serve or os.environ.get("CI"):
        log("to read it, serve it: python3 tasks.py book --no-build")
        return
    serve_book(site, args.port, open_browser=not args.no_open and sys.stdout.isatty())


# --- figures on the page ---------------------------------------------------------------

# The width of a chapter's text column (a code cell's output box) in a 1400 px desktop
# window with a classic scroll bar (784 px where scroll bars overlay the page), and the
# smallest text a figure may show there, in CSS px. tests/test_browser.py measures the
# column and checks every figure in a real browser; `figures` estimates the same from
# the notebooks alone, before the book is built.
DESKTOP_COLUMN_PX = 772
MIN_FIGURE_TEXT_PX = 9.0
TEXT_SIZE_KEY = "course_lib:smallest_text_pt"  # course_lib.plotting.TEXT_SIZE_KEY


def png_info(data: bytes) -> tuple[int, float | None, dict[str, str]]:
    """A PNG's width in pixels, its dpi (pHYs chunk; None if absent) and its text chunks."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width = struct.unpack(">I", data[16:20])[0]
    pos, dpi, texts = 8, None, {}
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"pHYs":
            per_unit, _, unit = struct.unpack(">IIB", body)
            dpi = per_unit * 0.0254 if unit == 1 else None
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"IEND":
            break
        pos += 12 + length
    return width, dpi, texts


def figure_text_sizes(notebook: Path, column_px: int = DESKTOP_COLUMN_PX) -> list[tuple[str, float | None, str]]:
    """For each stored figure: its caption's start, its smallest text on the desktop page (CSS px), and how.

    The page shows a PNG at the width its output asks for (retina figures ask for half
    their pixels), or at its own width, but never wider than the column. None: the PNG
    does not record its text size (made before course_lib recorded it).
    """
    import base64

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cells = nb["cells"]
    found = []
    for k, cell in enumerate(cells):
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            if "image/png" not in out.get("data", {}):
                continue
            caption = next((c for c in cells[k + 1:k + 4] if c["cell_type"] == "markdown"
                            and "".join(c["source"]).lstrip("*_ ").startswith("Figure")), None)
            name = ("".join(caption["source"]).lstrip("*_ ")[:12].rstrip() if caption else f"cell {k}")
            width, dpi, texts = png_info(base64.b64decode(out["data"]["image/png"]))
            asked = out.get("metadata", {}).get("image/png", {}).get("width", width)
            scale = min(float(asked), column_px) / width
            points = texts.get(TEXT_SIZE_KEY)
            if points is None or not dpi:
                found.append((name, None, f"{width} px wide, no record of its text size"))
                continue
            px = float(points) / 72 * dpi * scale
            found.append((name, px, f"{float(points):g} pt at {dpi:.0f} dpi, shown at {scale:.2f} of its size"))
    return found


def cmd_figures(args: argparse.Namespace) -> None:
    """List the smallest text of every stored figure as the desktop page shows it."""
    targets = [Path(p).resolve() for p in args.notebooks] or [p for p in notebooks() if HOMEWORK_DIR not in p.parents]
    rows, failed = [], 0
    for path in targets:
        for name, px, how in figure_text_sizes(path):
            bad = px is None or px < MIN_FIGURE_TEXT_PX - 0.05
            failed += bad
            verdict = "no record" if px is None else "too small" if bad else "ok"
            rows.append([path.stem, name, "?" if px is None else f"{px:.1f} px", verdict, how])
    print_table(["notebook", "figure", "smallest text", f">= {MIN_FIGURE_TEXT_PX:g} px", "from"], rows)
    if failed:
        sys.exit(f"figures: {failed} of {len(rows)} figures show text below {MIN_FIGURE_TEXT_PX:g} px on the "
                 f"desktop page, or do not record it (re-execute the notebook)")


def pytest_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("MPLBACKEND", None)  # notebooks need their inline backend to store figures
    env["PATH"] = f"{venv_python().parent}{os.pathsep}{env.get('PATH', '')}"
    return env


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
    for script in ("attention.py", "multihead.py", "transformer.py", "bert.py"):
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


# --- robustness to the seed, and a Colab-like clean environment --------------------------

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


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |", flush=True)


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
    p = sub.add_parser("book", help="build the HTML book and serve it on this machine")
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    p.add_argument("--no-serve", action="store_true", help="build only (as in CI, where it never serves)")
    p.add_argument("--no-build", action="store_true", help="serve the book built last time")
    p.add_argument("--port", type=int, default=BOOK_PORT,
                   help=f"port of the server (default {BOOK_PORT}, or the next free one; 0: any)")
    p.set_defaults(func=cmd_book)
    p = sub.add_parser("test", help="run the whole test suite")
    p.add_argument("-n", "--workers", type=int, metavar="N",
                   help="pytest processes (default: one per CPU; -n 1 runs everything one at a time)")
    p.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("homework", help="generate student notebooks and autograders")
    p.add_argument("--force", action="store_true", help="generate every homework again, even if its inputs are unchanged")
    p.set_defaults(func=cmd_homework)
    p = sub.add_parser("grade", help="grade submissions of one homework with its autograder")
    p.add_argument("homework", help="the homework's name, e.g. hw01_attention_pooling")
    p.add_argument("submissions", nargs="+", help="submission files (.ipynb or .zip) or folders of them")
    p.set_defaults(func=cmd_grade)
    p = sub.add_parser("notebooks", help="execute and validate the notebooks only")
    p.add_argument("-n", "--workers", type=int, metavar="N", help="pytest processes (default: one per CPU)")
    p.add_argument("pytest_args", nargs="*", help="pytest arguments after --; notebooks named there are the only ones run")
    p.set_defaults(func=cmd_notebooks)
    p = sub.add_parser("bench", help="time course_lib's attention and Transformer against PyTorch and d2l")
    p.add_argument("bench_args", nargs="*", help="arguments for every benchmark script, e.g. --quick (after --)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("execute", help="re-execute notebooks in place")
    p.add_argument("notebooks", nargs="*")
    p.set_defaults(func=cmd_execute)
    p = sub.add_parser("robustness", help="execute copies of the seeded chapters with other seeds")
    p.add_argument("notebooks", nargs="*", help="notebooks (default: every chapter with a line `SEED = <int>`)")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"], metavar="SEED", help="seeds to try (default: 0 1 2)")
    p.add_argument("--timeout", type=int, default=1800, metavar="S", help="time limit of one cell (default: 1800 s)")
    p.set_defaults(func=cmd_robustness)
    p = sub.add_parser("colab-check", help="run every notebook in a clean, Colab-like environment")
    p.add_argument("notebooks", nargs="*", help="notebooks (default: every chapter and homework master)")
    p.add_argument("--fresh", action="store_true", help=f"rebuild {COLAB_VENV.relative_to(ROOT)} first")
    p.add_argument("--timeout", type=int, default=1800, metavar="S", help="time limit of one cell (default: 1800 s)")
    p.set_defaults(func=cmd_colab_check)
    p = sub.add_parser("figures", help="the smallest text of each stored figure as the desktop page shows it")
    p.add_argument("notebooks", nargs="*", help="notebooks (default: every chapter and the appendix)")
    p.set_defaults(func=cmd_figures)
    p = sub.add_parser("sync-repo-url", help="copy _config.yml's repository URL into the notebooks")
    p.set_defaults(func=cmd_sync_repo_url)
    args = parser.parse_args()
    try:
        args.func(args)
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode or 1)


if __name__ == "__main__":
    main()
