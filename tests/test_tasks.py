"""``tasks.py`` and its package ``course_tasks``: standard library only, one namespace.

``python3 tasks.py ...`` runs before the environment exists, so it and every module of
``course_tasks`` may import the standard library only. The commands are written in
``course_tasks``' modules, but ``tasks`` stays the one namespace the tests patch
(``monkeypatch.setattr(tasks, "BUILD", ...)``): a value set there must reach the command
that reads it, and come back when the patch is undone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tasks
from course_tasks import book, environment, homework, robustness, testing

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "tasks.py", *sorted((ROOT / "course_tasks").glob("*.py"))]
COMMANDS = ["book", "test", "homework", "grade", "notebooks", "bench", "execute", "robustness", "colab-check",
            "figures", "sync-repo-url"]


def module_level_imports(path: Path) -> list[str]:
    """The top-level modules imported anywhere in ``path`` (inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module.split(".")[0])
    return found


def test_the_package_holds_the_commands():
    assert len(SOURCES) >= 6, SOURCES  # tasks.py, __init__.py and the command groups


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_tasks_imports_only_the_standard_library(path):
    others = [m for m in module_level_imports(path)
              if m not in sys.stdlib_module_names and m not in ("course_tasks", "__future__")]
    assert not others, f"{path.relative_to(ROOT)} imports {others}: tasks.py runs before the environment exists"


def test_tasks_starts_without_site_packages_from_another_folder(tmp_path):
    """-S: no site-packages; -I: no PYTHONPATH, no script folder on the path; another cwd."""
    done = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "tasks.py"), "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert command in done.stdout, command
    assert "python3 tasks.py book" in done.stdout  # the module's docstring is the description


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help(command, tmp_path):
    done = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "tasks.py"), command, "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"tasks.py {command}" in done.stdout, done.stdout + done.stderr


def test_a_name_set_on_tasks_reaches_every_command_module(tmp_path, monkeypatch):
    before = tasks.BUILD
    holders = [m for m in (environment, homework, book, robustness) if m.BUILD is before]
    assert len(holders) == 4  # the name is shared by these modules
    monkeypatch.setattr(tasks, "BUILD", tmp_path)
    assert tasks.BUILD is tmp_path and all(m.BUILD is tmp_path for m in holders)
    monkeypatch.undo()
    assert tasks.BUILD is before and all(m.BUILD is before for m in holders)


def test_a_patched_function_is_the_one_the_commands_call(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks, "run", lambda cmd, **kw: calls.append([str(c) for c in cmd]))
    assert environment.run is tasks.run and testing.run is tasks.run and robustness.run is tasks.run
    monkeypatch.setattr(tasks, "venv_python", lambda: Path("venv-python"))
    monkeypatch.setattr(tasks, "ensure_venv", lambda: Path("venv-python"))
    tasks.cmd_bench(tasks.argparse.Namespace(bench_args=["--quick"]))
    scripts = sorted(p.name for p in (tasks.ROOT / "benchmarks").glob("*.py"))
    assert sorted(Path(c[1]).name for c in calls) == scripts  # every script in benchmarks/ runs
    assert [c[0] for c in calls] == ["venv-python"] * len(scripts) and all(c[-1] == "--quick" for c in calls)


def test_a_new_name_set_on_tasks_stays_on_tasks(monkeypatch):
    monkeypatch.setattr(tasks, "SOMETHING_NEW", 1, raising=False)
    assert tasks.SOMETHING_NEW == 1
    assert not any(hasattr(m, "SOMETHING_NEW") for m in (environment, homework, book, robustness, testing))


def test_only_the_holders_of_the_same_object_change(monkeypatch):
    """A name two modules hold with different values is not mixed up: only tasks' own value is replaced."""
    monkeypatch.setattr(testing, "ROOT", Path("elsewhere"))  # testing holds another object now
    monkeypatch.setattr(tasks, "ROOT", Path("patched"))
    assert environment.ROOT == Path("patched") and testing.ROOT == Path("elsewhere")
