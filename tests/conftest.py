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


# --- running on several workers (python3 tasks.py test -n N, pytest-xdist) -----------------
#
# The items of one group run on one worker, in order. A notebook's cells share one
# kernel, so each notebook is one group; the tests that use the built book share one
# build, so they are one group; the homework tests are one group per homework (a worker
# grades only the homeworks it runs); any other test file is one group (its module
# fixtures are built once). Groups start longest first, so that the run ends with short
# groups instead of one long notebook on one worker. A group's estimate is its time in
# the last run on this checkout (kept in pytest's cache), else a notebook's stored
# execution time (from its cells' timestamps) and fixed guesses for the rest.
#
# (xdist's own --dist loadgroup reads groups from node ids that its workers rewrite,
# which pytest 9 no longer allows; so the groups are computed from the node ids here,
# in the scheduler below, and in the workers' ordering hook, by the one function.)

GROUP_SECONDS_KEY = "course/group_seconds"
BOOK_TEST_FILES = ("tests/test_book.py", "tests/test_browser.py")
BOOK_TESTS = ("tests/test_homework.py::test_book_homework_page",)  # other tests that use built_book


def stored_execution_seconds(path: Path) -> float:
    """A notebook's stored execution time: first cell's start to last cell's end (0 if none)."""
    import datetime
    import json

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    times = [c.get("metadata", {}).get("execution", {}) for c in cells if c["cell_type"] == "code"]
    times = [t for t in times if "iopub.execute_input" in t and "shell.execute_reply" in t]
    if not times:
        return 0.0
    parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(times[-1]["shell.execute_reply"]) - parse(times[0]["iopub.execute_input"])).total_seconds()


def work_group(nodeid: str) -> str:
    """The group of a test, from its node id alone (the controller has nothing else)."""
    path, _, rest = nodeid.partition("::")
    if path.endswith(".ipynb"):
        return f"notebook:{path}"
    if path in BOOK_TEST_FILES or nodeid.startswith(BOOK_TESTS):
        return "book"
    if path.endswith("test_homework.py"):
        params = rest.partition("[")[2]
        if params[:4] in {f"hw{n:02d}" for n in range(1, 100)}:  # [hw05_transformer] or [hw05-q3-1]
            return f"homework:{params[:4]}"
    return f"file:{path}"


def group_estimate(group: str, measured: dict[str, float]) -> float:
    if group in measured:
        return float(measured[group])
    kind, _, path = group.partition(":")
    if kind == "notebook":  # validation (generic kernels, one thread) runs 2-3x slower than stored
        return 5 + 2.5 * stored_execution_seconds(ROOT / path)
    return {"book": 120.0, "homework": 60.0}.get(kind, 10.0)


def _in_parallel(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput") or config.getoption("dist", "no") != "no"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On each worker: order the items group by group, longest group first (the scheduler
    hands out groups in the order of this list)."""
    if not _in_parallel(config):
        return
    measured = config.cache.get(GROUP_SECONDS_KEY, {}) if getattr(config, "cache", None) else {}
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(work_group(item.nodeid), []).append(item)
    order = sorted(groups, key=lambda g: -group_estimate(g, measured))  # stable: ties keep collection order
    items[:] = [item for g in order for item in groups[g]]


@pytest.hookimpl(optionalhook=True)  # the hook exists only where pytest-xdist is loaded (not with -n 1)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup``: hand out whole groups (work_group), in the workers' order."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_group(nodeid)

    return GroupScheduling(config, log)


_group_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each group's seconds (setup, call and teardown), on the process that reports."""
    _group_seconds[work_group(report.nodeid)] = _group_seconds.get(work_group(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On the controller of a parallel run: keep each group's seconds for the next run's order."""
    config = session.config
    if _group_seconds and _in_parallel(config) and not hasattr(config, "workerinput") and getattr(config, "cache", None) is not None:
        measured = config.cache.get(GROUP_SECONDS_KEY, {})
        measured.update({name: round(seconds, 1) for name, seconds in _group_seconds.items()})
        config.cache.set(GROUP_SECONDS_KEY, measured)
