"""The module tables of course_lib/__init__.py, the README and course_tasks/__init__.py list every module.

A reader finds a module from these tables; a module missing from them is one nobody
finds, and a row left for a module that is gone sends the reader nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import course_lib
import course_tasks

ROOT = Path(__file__).resolve().parents[1]
LIB_MODULES = sorted(p.stem for p in (ROOT / "course_lib").glob("*.py") if not p.stem.startswith("_"))
TASK_MODULES = sorted(p.stem for p in (ROOT / "course_tasks").glob("*.py") if not p.stem.startswith("_"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def named(text: str, package: str) -> set[str]:
    """Modules of ``package`` that ``text`` names: ``package.x`` or `x` in backquotes."""
    full = set(re.findall(rf"{package}\.(\w+)", text))
    short = set(re.findall(r"`+(\w+)`+", text))
    return full | short


def test_there_are_modules_to_check():
    assert len(LIB_MODULES) > 20 and len(TASK_MODULES) >= 5


@pytest.mark.parametrize("module", LIB_MODULES)
def test_the_package_docstring_names_every_course_lib_module(module):
    assert module in named(course_lib.__doc__, "course_lib"), f"course_lib/__init__.py's table lacks {module}"


@pytest.mark.parametrize("module", LIB_MODULES)
def test_the_readme_names_every_course_lib_module(module):
    chapters = README.split("## The course corpus")[0]  # the chapter table and the paragraph after it
    assert module in named(chapters, "course_lib"), f"the README's module table lacks {module}"


def test_the_tables_name_no_module_that_is_gone():
    listed = set(re.findall(r"``course_lib\.(\w+)``", course_lib.__doc__))
    table = README.split("## The course corpus")[0]
    rows = [line.split("|")[-2] for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    listed |= {m for row in rows for m in re.findall(r"`(\w+)`", row)}
    assert listed and listed <= set(LIB_MODULES), sorted(listed - set(LIB_MODULES))


@pytest.mark.parametrize("module", TASK_MODULES)
def test_course_tasks_names_every_module(module):
    assert f"``course_tasks.{module}``" in course_tasks.__doc__
