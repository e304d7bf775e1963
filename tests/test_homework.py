"""Homework: generation, self-checks, and grading without containers (Otter-Grader 7).

For every master notebook in book/homework/: the student version has no solutions and
carries only public tests; its self-checks fail before and pass after answering; graded
by the autograder, the master's solutions get full marks, the untouched student
notebook zero, and a deliberately wrong answer fails the hidden test written to catch it.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import tasks

HOMEWORKS = [m.stem for m in tasks.homework_masters()]

# One classic mistake per homework: (function, line to drop or (old, new), the question
# whose hidden test must catch it, its failure message, questions that build on it).
WRONG_ANSWERS = {
    "hw01_attention_pooling": (
        "loo_mse", "masked_fill", "q3", "loo_mse must predict each point from the OTHER points only", ()
    ),
    "hw02_attention_scoring": (
        "my_masked_softmax",
        ("torch.finfo(X.dtype).min", "-10.0"),
        "q1",
        "masked keys must get exactly zero weight, whatever the scores",
        ("q2",),  # my_dot_product_attention calls my_masked_softmax
    ),
    "hw03_seq2seq_attention": (
        "dot_product_context",
        (" / math.sqrt(query.shape[-1])", ""),
        "q1",
        "scaled dot-product attention divides the scores by sqrt(H)",
        (),
    ),
    "hw04_self_attention": (
        "heads_to_batch",
        "X = X.permute(0, 2, 1, 3)",  # reshape without moving the head axis: heads get mixed-up features
        "q1",
        "row b * num_heads + i must hold head i of sequence b",
        ("q2",),  # multihead_self_attention calls heads_to_batch
    ),
}


def test_every_homework_has_a_wrong_answer_case():
    assert HOMEWORKS and set(HOMEWORKS) == set(WRONG_ANSWERS)


def master_cells(hw: str) -> list[dict]:
    return json.loads((tasks.HOMEWORK_DIR / f"{hw}.ipynb").read_text())["cells"]


def solution_lines(hw: str) -> list[str]:
    """Code lines between # BEGIN SOLUTION and # END SOLUTION comments in the master."""
    lines, inside = [], False
    for cell in master_cells(hw):
        for line in "".join(cell["source"]).splitlines() if cell["cell_type"] == "code" else []:
            if line.strip() == "# BEGIN SOLUTION":
                inside = True
            elif line.strip() == "# END SOLUTION":
                inside = False
            elif inside and len(line.strip()) > 12:
                lines.append(line.strip())
    return lines


def hidden_test_names(hw: str) -> list[str]:
    names = []
    for cell in master_cells(hw):
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and re.search(r"^hidden:\s*true", src, re.M):
            names += re.findall(r"^def (test_\w+)", src, re.M)
    return names


def code_sources(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


@pytest.fixture(scope="module")
def generated(homework_zips) -> dict[str, Path]:
    return {hw: tasks.HOMEWORK_BUILD / hw for hw in HOMEWORKS}


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_generation_writes_student_version_without_solutions(generated, hw):
    out = generated[hw]
    student = out / "student" / f"{hw}.ipynb"
    assert student.is_file() and (out / f"{hw}-autograder.zip").is_file() and (out / f"{hw}-student.zip").is_file()
    assert (tasks.HOMEWORK_PAGES / f"{hw}.ipynb").read_text() == student.read_text()
    code = code_sources(student)
    lines = solution_lines(hw)
    assert len(lines) >= 4
    leaked = [line for line in lines if line in code]
    assert leaked == [], f"solution lines in the student notebook: {leaked}"
    hidden = hidden_test_names(hw)
    assert hidden and not [name for name in hidden if name in code], "hidden tests leaked"
    assert "PUBLIC_TESTS = {" in code  # the public tests travel inside the notebook
    questions = set(re.findall(r'^grader\.check\("(q\d+)"\)', code, re.M))
    assert questions and {p.stem for p in (out / "student" / "tests").glob("q*.py")} == questions
    nb = json.loads(student.read_text())
    written = [c for c in nb["cells"] if c["cell_type"] == "markdown" and "Type your answer here" in "".join(c["source"])]
    assert written, "the written questions' answers must be blanked"


def run_notebook(path: Path, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def check_outputs(nb) -> dict[str, str]:
    out = {}
    for c in nb.cells:
        src = "".join(c.source) if c.cell_type == "code" else ""
        if src.startswith('grader.check("'):
            out[src.split('"')[1]] = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in c.outputs)
    return out


def answered_student_notebook(out: Path, hw: str, dest: Path) -> Path:
    """The student notebook with every answer cell replaced by the master's solution cell."""
    solution = nbformat.read(out / "autograder" / f"{hw}.ipynb", as_version=4)
    by_def = {c.source.split("(")[0]: c.source for c in solution.cells if c.cell_type == "code" and c.source.startswith("def ")}
    nb = nbformat.read(out / "student" / f"{hw}.ipynb", as_version=4)
    for c in nb.cells:
        if c.cell_type == "code" and "otter_answer_cell" in c.metadata.get("tags", []):
            c.source = by_def[c.source.split("(")[0]]
    nbformat.write(nb, dest)
    return dest


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_self_checks_run_offline_in_the_student_notebook(generated, hw, tmp_path):
    """What a student sees: failing checks before answering, passing ones after."""
    out = generated[hw]
    (tmp_path / "empty").mkdir()
    shutil.copy(out / "student" / f"{hw}.ipynb", tmp_path / "empty" / f"{hw}.ipynb")
    before = check_outputs(run_notebook(tmp_path / "empty" / f"{hw}.ipynb", tmp_path / "empty"))
    assert before and all("failed" in text.lower() for text in before.values()), before
    (tmp_path / "done").mkdir()
    after = check_outputs(run_notebook(answered_student_notebook(out, hw, tmp_path / "done" / f"{hw}.ipynb"), tmp_path / "done"))
    assert set(after) == set(before)
    assert all("passed" in text.lower() and "failed" not in text.lower() for text in after.values()), after


@pytest.fixture(scope="module")
def graded(generated, tmp_path_factory):
    """Grade a correct, an empty and a wrong submission of every homework."""
    results = {}
    for hw in HOMEWORKS:
        out = generated[hw]
        subs = tmp_path_factory.mktemp(f"{hw}-submissions")
        shutil.copy(out / "autograder" / f"{hw}.ipynb", subs / "correct.ipynb")  # the master's solutions
        shutil.copy(out / "student" / f"{hw}.ipynb", subs / "empty.ipynb")  # nothing answered
        function, change, _, _, _ = WRONG_ANSWERS[hw]
        wrong = nbformat.read(out / "autograder" / f"{hw}.ipynb", as_version=4)
        cell = next(c for c in wrong.cells if c.cell_type == "code" and f"def {function}(" in c.source)
        if isinstance(change, str):
            new = "\n".join(line for line in cell.source.splitlines() if change not in line)
        else:
            new = cell.source.replace(*change)
        assert new != cell.source
        cell.source = new
        nbformat.write(wrong, subs / "wrong.ipynb")
        grades = tmp_path_factory.mktemp(f"{hw}-grades")
        report = tasks.grade_submissions(hw, [subs], grades)
        results[hw] = ({r["submission"]: r for r in csv.DictReader(report.open())}, grades)
    return results


def coding_points(row: dict) -> dict[str, float]:
    return {q: float(v) for q, v in row.items() if q.startswith("q")}


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_master_solutions_get_full_marks_and_empty_gets_zero(graded, hw):
    rows, _ = graded[hw]
    correct, empty = rows["correct.ipynb"], rows["empty.ipynb"]
    assert float(correct["total"]) == float(correct["possible"]) > 0
    assert all(v == 0 for v in coding_points(empty).values()) and float(empty["total"]) == 0


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_wrong_answer_fails_the_test_meant_to_catch_it(graded, hw):
    rows, grades = graded[hw]
    _, _, question, message, dependents = WRONG_ANSWERS[hw]
    correct, wrong = coding_points(rows["correct.ipynb"]), coding_points(rows["wrong.ipynb"])
    assert wrong[question] < correct[question]
    untouched = [q for q in correct if q != question and q not in dependents]
    assert untouched and {q: wrong[q] for q in untouched} == {q: correct[q] for q in untouched}
    results = json.loads((grades / "wrong" / "results.json").read_text())
    feedback = next(t for t in results["tests"] if t.get("name") == question)["output"]
    assert message in feedback


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_book_homework_page_has_no_solutions_and_opens_student_version(built_book, hw):
    page = (built_book / "book/homework/_student" / f"{hw}.html").read_text()
    assert "Question 1" in page
    leaked = [line for line in solution_lines(hw) if line.replace("'", "&#39;") in page]
    assert leaked == []
    assert f"/blob/gh-pages/homework/{hw}/{hw}.ipynb" in page
    published = built_book / "homework" / hw / f"{hw}.ipynb"
    assert published.is_file() and published.read_text() == (tasks.HOMEWORK_PAGES / f"{hw}.ipynb").read_text()
