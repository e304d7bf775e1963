"""The project's own promises: notebooks, configuration, README and package boundaries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tasks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = tasks.notebooks()  # chapters and homework masters; not generated copies
CHAPTERS = [p for p in NOTEBOOKS if p.parent.name == "book"]


def config_value(key: str) -> str:
    text = (ROOT / "_config.yml").read_text()
    m = re.search(rf"^repository:\n(?:\s+.*\n)*?\s+{key}:\s*(\S+)", text, re.M)
    assert m, f"_config.yml has no repository.{key}"
    return m.group(1)


def load(nb_path: Path) -> dict:
    return json.loads(nb_path.read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks_and_toc_lists_each_chapter():
    assert CHAPTERS, "book/ has no chapters"
    toc = (ROOT / "_toc.yml").read_text()
    for nb in CHAPTERS:
        assert f"file: {nb.relative_to(ROOT).with_suffix('').as_posix()}" in toc, f"{nb.name} missing from _toc.yml"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_executed_in_order_without_errors(nb_path):
    cells = code_cells(load(nb_path))
    counts = [c["execution_count"] for c in cells]
    assert None not in counts, "some code cells were never executed"
    assert counts == list(range(1, len(cells) + 1)), f"not executed top to bottom in one kernel: {counts}"
    for c in cells:
        for out in c["outputs"]:
            assert out["output_type"] != "error", f"stored error output: {out.get('ename')}"
            assert not (out["output_type"] == "stream" and out["name"] == "stderr"), f"stderr output: {out['text']}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_has_a_caption_right_after_it(nb_path):
    cells = load(nb_path)["cells"]
    for i, c in enumerate(cells):
        has_image = c["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in c["outputs"])
        if has_image:
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            assert nxt and nxt["cell_type"] == "markdown" and "".join(nxt["source"]).lstrip().startswith("*Figure"), (
                f"cell {i} draws a figure but is not followed by a '*Figure ...' caption"
            )


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_installs_course_lib_from_the_configured_repository(nb_path, monkeypatch):
    source = "".join(code_cells(load(nb_path))[0]["source"])
    assert f'COURSE_REPO = "{config_value("url")}"' in source, "run `python3 tasks.py sync-repo-url`"
    assert f'COURSE_BRANCH = "{config_value("branch")}"' in source, "run `python3 tasks.py sync-repo-url`"

    calls = []
    fake_subprocess = types.SimpleNamespace(run=lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setitem(sys.modules, "subprocess", fake_subprocess)
    exec(compile(source, "first cell", "exec"), {})  # course_lib is installed: nothing to do
    assert calls == []

    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as on a fresh Colab
    exec(compile(source, "first cell", "exec"), {})
    assert calls and all(c[1:4] == ["-m", "pip", "install"] for c in calls)
    assert calls[0][-1] == f"git+{config_value('url')}@{config_value('branch')}"
    assert all("==" in c[-1] for c in calls[1:]), "other packages a notebook installs must be pinned"


def test_autograder_requirements_install_course_lib_from_the_configured_repository():
    req = (ROOT / "book" / "homework" / "requirements-autograder.txt").read_text()
    assert f"course_lib @ git+{config_value('url')}@{config_value('branch')}" in req


def test_course_lib_never_imports_d2l():
    for path in (ROOT / "course_lib").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+d2l\b", path.read_text(), re.M), f"{path} imports d2l"
    code = "import sys, course_lib; print(sorted(m for m in sys.modules if m.split('.')[0] in ('d2l', 'torchvision')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pins_strict_for_the_book_and_loose_for_the_package():
    req = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", req, re.M)
    m = re.search(r"^jupyter-book==(\d+)\.(\d+)\.(\d+)", req, re.M)
    assert m and (1, 0, 4) <= tuple(map(int, m.groups())) < (2, 0, 0)
    assert not re.search(r"^d2l", req, re.M), "d2l must be installed with --no-deps, not from requirements.txt"
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1)
    assert "==" not in deps and "torch" in deps


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "python3 tasks.py book" in readme and "python3 tasks.py test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert commands == ["python3 tasks.py test"], commands


def test_readme_addresses_follow_the_configured_repository():
    """The site, Colab and homework addresses the README gives are those _config.yml's repository implies."""
    readme = (ROOT / "README.md").read_text()
    owner, name = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", tasks.config_repo_url()).groups()
    branch = tasks.config_repo_branch()
    site = f"https://{owner}.github.io/{name}/"
    colab = f"https://colab.research.google.com/github/{owner}/{name}/blob/"
    assert f"<{site}>" in readme, f"the README does not give the published site, {site}"
    chapters = re.findall(re.escape(colab) + rf"{re.escape(branch)}/(book/[\w/]+\.ipynb)", readme)
    assert chapters and all((ROOT / c).is_file() for c in chapters), chapters
    pages = re.findall(re.escape(site) + r"(book/homework/_student/(hw\d+_\w+)\.html)", readme)
    assert pages, "the README does not give a homework page's address on the published site"
    for page, hw in pages:  # generated pages: the master exists and the table of contents lists the page
        assert (ROOT / "book" / "homework" / f"{hw}.ipynb").is_file(), page
        assert f"- file: {page[:-len('.html')]}" in (ROOT / "_toc.yml").read_text(), page
        assert f"{colab}gh-pages/homework/{hw}/{hw}.ipynb" in readme, hw


def test_course_lib_builds_as_a_wheel_with_loose_dependencies(tmp_path):
    """What `pip install git+<repository>` does in Colab, offline: build course_lib's wheel."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("course_lib-*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "course_lib/kernel_regression.py" in names and "course_lib/plotting.py" in names
    assert not any(n.startswith(("tests/", "book/")) for n in names)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # Loose versions everywhere; the marker of an optional extra (`; extra == "hf"`) is not a pin.
    specifiers = [r.split(";")[0] for r in requires]
    core = [r for r in requires if "extra ==" not in r]
    assert any("torch" in r for r in core) and not any("==" in r for r in specifiers), requires
    assert all(r.endswith('extra == "hf"') for r in requires if r not in core), requires


def test_the_serial_run_loads_the_test_configuration_without_pytest_xdist():
    """`tasks.py test -n 1` runs pytest with `-p no:xdist`: conftest.py must not need it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "--collect-only",
                           str(Path(__file__).parent / "test_stats.py")],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
