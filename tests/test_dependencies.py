"""Every module that course_lib or a notebook imports is declared where it will be installed.

A notebook runs in Colab or a fresh Jupyter after its first cell has installed course_lib
(with the dependencies pyproject.toml declares) and whatever else that cell installs. An
import that is satisfied only by the course's own pinned environment (requirements.txt)
would pass the test suite and fail for a student, so each import must be:

* in the standard library;
* course_lib itself;
* IPython, which the Jupyter kernel brings (course_lib: only inside a function);
* a distribution pyproject.toml declares: ``dependencies`` (for course_lib's own modules,
  whatever they import at module level), or an extra in ``[project.optional-dependencies]``
  (imports inside functions, made only when an optional feature is used);
* or, for a notebook, a package its own install cell (``pip install`` via subprocess in
  the first code cells) installs.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

import tasks

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "course_lib"
NOTEBOOKS = tasks.notebooks()  # chapters and homework masters, not generated copies
MODULES = sorted((ROOT / PACKAGE).rglob("*.py"))
# Test oracles: the tests use them, course_lib must never import them (see
# test_repository.py), and nothing installs them for a student.
NEVER_IN_COURSE_LIB = {"d2l", "torchvision"}
# Present wherever a notebook runs: the Jupyter kernel is IPython. A notebook may import
# it, and course_lib may, inside a function that runs only in a kernel (the live progress
# display of course_lib.seq2seq), but not at module level: course_lib runs in plain Python.
PROVIDED_BY_THE_KERNEL = {"IPython"}


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


@lru_cache
def declared() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """pyproject.toml's ``dependencies`` and its extras, as normalized distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = frozenset(requirement_name(r) for r in project.get("dependencies", []))
    extras = {extra: frozenset(requirement_name(r) for r in reqs)
              for extra, reqs in project.get("optional-dependencies", {}).items()}
    return deps, extras


@lru_cache
def distributions_of(module: str) -> frozenset[str]:
    """The distributions that provide a top-level module (its own name if none installed does)."""
    found = importlib.metadata.packages_distributions().get(module)
    return frozenset(normalize(d) for d in found) if found else frozenset({normalize(module)})


@dataclass(frozen=True)
class Import:
    module: str  # top-level name
    where: str  # "cell 3, line 2" or "line 14"
    lazy: bool  # inside a function: made only when that function runs


def imports_in(tree: ast.AST, where) -> list[Import]:
    """Absolute imports in ``tree`` (also importlib.import_module("x")), top-level names.

    Imports under ``if TYPE_CHECKING:`` are skipped: they never run.
    """
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, lazy)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            names = [node.args[0].value]
        for name in names:
            found.append(Import(name.split(".")[0], where(node.lineno), lazy))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


def cell_tree(source: str) -> ast.AST:
    """A code cell's syntax tree; IPython magics and shell escapes (% and !) are blanked."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def code_cells(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def notebook_imports(nb_path: Path) -> list[Import]:
    found = []
    for number, source in enumerate(code_cells(nb_path), start=1):
        try:
            tree = cell_tree(source)
        except SyntaxError as e:
            pytest.fail(f"{nb_path.relative_to(ROOT)}: code cell {number} does not parse: {e}")
        found += imports_in(tree, lambda line, n=number: f"code cell {n}, line {line}")
    return found


def installed_by_notebook(nb_path: Path) -> set[str]:
    """Distributions the notebook's own install cell(s) `pip install` (normalized names).

    An install from git+{COURSE_REPO}... (the course repository) installs course_lib.
    Only the leading code cells that call pip are install cells; the first one that does
    not ends them.
    """
    names: set[str] = set()
    for source in code_cells(nb_path):
        calls = [node for node in ast.walk(cell_tree(source))
                 if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.List)]
        commands = [call.args[0].elts for call in calls]
        pip_commands = [c for c in commands if any(isinstance(e, ast.Constant) and e.value == "pip" for e in c)]
        if not pip_commands:
            break
        for elements in pip_commands:
            words = [e.value if isinstance(e, ast.Constant) else ast.unparse(e) for e in elements]
            for word in words[words.index("install") + 1:] if "install" in words else []:
                if not isinstance(word, str) or word.startswith("-"):
                    continue
                if "COURSE_REPO" in word or word.startswith(("git+", "/", ".")):
                    names.add(normalize(PACKAGE))
                else:
                    names.add(requirement_name(word))
    return names


def advice(imp: Import, dists: frozenset[str]) -> str:
    dist = ", ".join(sorted(dists))
    return (f"imports {imp.module!r} ({imp.where}), from the distribution {dist}, which is not declared: add "
            f"{dist!r} to [project] dependencies in pyproject.toml")


def test_the_checks_have_something_to_check():
    assert NOTEBOOKS and MODULES
    assert installed_by_notebook(NOTEBOOKS[0]) >= {normalize(PACKAGE)}, "the first cell should install course_lib"


@pytest.mark.parametrize("module_path", MODULES, ids=lambda p: p.stem)
def test_course_lib_imports_are_declared_in_pyproject(module_path):
    deps, extras = declared()
    in_extras = frozenset().union(*extras.values())
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    problems = []
    for imp in imports_in(tree, lambda line: f"line {line}"):
        if imp.module in sys.stdlib_module_names or imp.module == PACKAGE:
            continue
        if imp.module in NEVER_IN_COURSE_LIB:
            problems.append(f"imports {imp.module!r} ({imp.where}): course_lib must never import a test oracle")
            continue
        if imp.lazy and imp.module in PROVIDED_BY_THE_KERNEL:
            continue
        dists = distributions_of(imp.module)
        if dists & deps:
            continue
        if imp.lazy and dists & in_extras:
            continue  # imported only inside a function, for an optional feature
        if dists & in_extras:
            extra = next(e for e, reqs in extras.items() if dists & reqs)
            problems.append(f"imports {imp.module!r} at module level ({imp.where}), but it is only in the extra "
                            f"[{extra}]: move it to [project] dependencies, or import it inside the function that "
                            "needs it")
        else:
            problems.append(advice(imp, dists) + (" (or, as it is imported inside a function, to an extra in "
                                                  "[project.optional-dependencies])" if imp.lazy else ""))
    where = module_path.relative_to(ROOT)
    assert not problems, f"{where}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_are_installed_by_its_first_cell_or_declared(nb_path):
    deps, extras = declared()
    installs = installed_by_notebook(nb_path)
    available = set(installs)
    if normalize(PACKAGE) in installs:
        available |= deps.union(*extras.values())
    problems = []
    for imp in notebook_imports(nb_path):
        if imp.module in sys.stdlib_module_names or imp.module == PACKAGE or imp.module in PROVIDED_BY_THE_KERNEL:
            continue
        dists = distributions_of(imp.module)
        if not dists & available:
            problems.append(advice(imp, dists) + " (or an extra), or install it in the notebook's first cell "
                            "(pinned, like otter-grader==7.0.0 in the homework)")
    where = nb_path.relative_to(ROOT)
    assert not problems, f"{where} (installs {sorted(installs)}):\n  " + "\n  ".join(problems)
