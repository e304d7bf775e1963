"""Homework: student notebooks and autograders from the masters (Otter Assign), and grading.

``python3 tasks.py homework`` and ``python3 tasks.py grade HW SUBMISSIONS...``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from course_tasks.environment import (
    BUILD, HOMEWORK_BUILD, HOMEWORK_DIR, HOMEWORK_PAGES, ROOT, ensure_venv, log, run, venv_tool,
)


def homework_masters() -> list[Path]:
    return sorted(HOMEWORK_DIR.glob("hw*.ipynb"))


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
