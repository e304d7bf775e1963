"""Homework: generation, self-checks, and grading without containers (Otter-Grader 7).

Graded submissions: the master's solutions (full marks), the untouched student notebook
(zero), and a deliberately wrong answer (fails the hidden test written to catch it).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import tasks

HW = "hw01_attention_pooling"
CODING = {"q1": 2, "q2": 3, "q3": 3, "q4": 2}


@pytest.fixture(scope="module")
def hw_dir(homework_zips) -> Path:
    return tasks.HOMEWORK_BUILD / HW


def code_sources(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_generation_writes_student_version_and_autograder(hw_dir):
    student = hw_dir / "student" / f"{HW}.ipynb"
    assert student.is_file() and (hw_dir / f"{HW}-autograder.zip").is_file() and (hw_dir / f"{HW}-student.zip").is_file()
    assert (tasks.HOMEWORK_PAGES / f"{HW}.ipynb").read_text() == student.read_text()
    code = code_sources(student)
    # No solution survives: the master's solution lines are gone, hidden tests are absent.
    for solution_line in ("clamp(1 - u.abs() ** 3", "masked_fill", "k / k.sum(dim=1", "(weights ** 2).sum"):
        assert solution_line not in code, solution_line
    assert "test_loo_excludes_each_point_itself" not in code
    assert sorted((hw_dir / "student" / "tests").glob("*.py")) != []
    for q in CODING:
        assert f'grader.check("{q}")' in code
    nb = json.loads(student.read_text())
    written = [c for c in nb["cells"] if c["cell_type"] == "markdown" and "Type your answer here" in "".join(c["source"])]
    assert len(written) == 2
    assert "Each training input is at distance zero" not in student.read_text()  # written solutions removed


def test_public_tests_are_embedded_and_hidden_ones_are_not(hw_dir):
    code = code_sources(hw_dir / "student" / f"{HW}.ipynb")
    assert "PUBLIC_TESTS = {" in code and "test_tricube_peak_and_outside" in code
    assert "test_tricube_formula_shape_and_mass" not in code


def run_notebook(path: Path, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def check_outputs(nb) -> dict[str, str]:
    out = {}
    for c in nb.cells:
        src = "".join(c.source) if c.cell_type == "code" else ""
        if src.startswith('grader.check("'):
            q = src.split('"')[1]
            out[q] = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in c.outputs)
    return out


def answered_student_notebook(hw_dir: Path, dest: Path) -> Path:
    """The student notebook with every answer cell replaced by the master's solution cell."""
    solution = nbformat.read(hw_dir / "autograder" / f"{HW}.ipynb", as_version=4)
    by_def = {}
    for c in solution.cells:
        if c.cell_type == "code" and c.source.startswith("def "):
            by_def[c.source.split("(")[0]] = c.source
    nb = nbformat.read(hw_dir / "student" / f"{HW}.ipynb", as_version=4)
    for c in nb.cells:
        if c.cell_type == "code" and "otter_answer_cell" in c.metadata.get("tags", []):
            c.source = by_def[c.source.split("(")[0]]
    nbformat.write(nb, dest)
    return dest


def test_self_checks_run_offline_in_the_student_notebook(hw_dir, tmp_path):
    """What a student sees: failing checks before answering, passing ones after."""
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(hw_dir / "student" / f"{HW}.ipynb", empty / f"{HW}.ipynb")
    before = check_outputs(run_notebook(empty / f"{HW}.ipynb", empty))
    assert set(before) == set(CODING)
    assert all("failed" in text.lower() for text in before.values()), before

    done = tmp_path / "done"
    done.mkdir()
    after = check_outputs(run_notebook(answered_student_notebook(hw_dir, done / f"{HW}.ipynb"), done))
    assert all("passed" in text.lower() and "failed" not in text.lower() for text in after.values()), after


@pytest.fixture(scope="module")
def graded(hw_dir, tmp_path_factory):
    subs = tmp_path_factory.mktemp("submissions")
    shutil.copy(hw_dir / "autograder" / f"{HW}.ipynb", subs / "correct.ipynb")  # the master's solutions
    shutil.copy(hw_dir / "student" / f"{HW}.ipynb", subs / "empty.ipynb")  # nothing answered
    wrong = nbformat.read(hw_dir / "autograder" / f"{HW}.ipynb", as_version=4)
    for c in wrong.cells:  # the classic mistake: each point among its own keys
        if c.cell_type == "code" and "def loo_mse" in c.source:
            lines = [ln for ln in c.source.splitlines() if "masked_fill" not in ln]
            assert len(lines) < len(c.source.splitlines())
            c.source = "\n".join(lines)
    nbformat.write(wrong, subs / "wrong_loo.ipynb")
    out = tmp_path_factory.mktemp("grades")
    report = tasks.grade_submissions(HW, [subs], out)
    rows = {r["submission"]: r for r in csv.DictReader(report.open())}
    return rows, out


def test_master_solutions_get_full_marks(graded):
    rows, _ = graded
    assert {q: float(rows["correct.ipynb"][q]) for q in CODING} == {q: float(p) for q, p in CODING.items()}
    assert float(rows["correct.ipynb"]["total"]) == float(rows["correct.ipynb"]["possible"]) == sum(CODING.values())


def test_unanswered_notebook_scores_zero(graded):
    rows, _ = graded
    assert all(float(rows["empty.ipynb"][q]) == 0 for q in CODING)
    assert float(rows["empty.ipynb"]["total"]) == 0


def test_wrong_answer_fails_the_test_meant_to_catch_it(graded):
    rows, out = graded
    row = rows["wrong_loo.ipynb"]
    assert float(row["q3"]) < CODING["q3"]
    assert all(float(row[q]) == CODING[q] for q in ("q1", "q2", "q4"))
    results = json.loads((out / "wrong_loo" / "results.json").read_text())
    q3 = next(t for t in results["tests"] if t.get("name") == "q3")
    assert "loo_mse must predict each point from the OTHER points only" in q3["output"]


def test_book_homework_page_has_no_solutions_and_opens_student_version(built_book):
    page = (built_book / "book/homework/_student" / f"{HW}.html").read_text()
    assert "Question 3" in page and "masked_fill" not in page and "clamp(1 - u.abs() ** 3" not in page
    assert f"/blob/gh-pages/homework/{HW}/{HW}.ipynb" in page
    published = built_book / "homework" / HW / f"{HW}.ipynb"
    assert published.is_file() and "masked_fill" not in published.read_text()
