"""Homework: generation, self-checks, and grading without containers (Otter-Grader 7).

For every master notebook in book/homework/: the student version has no solutions and
carries only public tests, in a tests folder of its own; its self-checks fail before and
pass after answering. Graded by the autograder, the master's solutions and correct
answers written another way get full marks and the untouched student notebook zero.
Every coding question has a slip table (tests/homework_slips/<homework>.py): each slip
loses points on its question and the hidden tests' feedback names the mistake, and
trivial answers fail the public check. The slips of SLIPS go through the real autograder,
one submission per round; those of MORE_SLIPS, and more correct answers, through the
autograder's test files in this process. The grading helpers that every hidden test
carries (tests/homework_slips/grading.py) are tested here once, and every copy must match.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from otter.test_files import OKTestFile

import tasks

HOMEWORKS = [m.stem for m in tasks.homework_masters()]
TABLES = {hw: importlib.import_module(f"homework_slips.{hw}") for hw in HOMEWORKS}


def master_cells(hw: str) -> list[dict]:
    return json.loads((tasks.HOMEWORK_DIR / f"{hw}.ipynb").read_text())["cells"]


def coding_questions(hw: str) -> list[str]:
    """The auto-graded questions of a master notebook (not the ``manual: true`` ones)."""
    found = []
    for cell in master_cells(hw):
        src = "".join(cell["source"])
        if cell["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION") and "manual: true" not in src:
            found.append(re.search(r"^name:\s*(\w+)", src, re.M).group(1))
    return found


def slip_rounds(hw: str) -> list[dict[str, tuple]]:
    """The slips grouped into submissions: round r holds the r-th slip of every question."""
    slips = TABLES[hw].SLIPS
    return [{q: table[r] for q, table in slips.items() if r < len(table)} for r in range(max(map(len, slips.values())))]


def slip_cases() -> list[tuple[str, int, str]]:
    return [(hw, r, q) for hw in HOMEWORKS for r, round_ in enumerate(slip_rounds(hw)) for q in round_]


def test_every_coding_question_has_a_slip_table_and_alternatives():
    assert HOMEWORKS
    for hw in HOMEWORKS:
        table, questions = TABLES[hw], coding_questions(hw)
        assert questions and sorted(table.SLIPS) == sorted(questions) == sorted(table.TRIVIAL), hw
        assert all(len(table.SLIPS[q]) >= 3 for q in questions), hw
        assert set(table.ALTERNATIVES) == set(answer_functions(hw)), hw


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


def answer_functions(hw: str) -> list[str]:
    """Names of the functions students write: those defined in the master's solution cells."""
    names = []
    for cell in master_cells(hw):
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and "# BEGIN SOLUTION" in src:
            names += re.findall(r"^def (\w+)\(", src, re.M)
    return names


@pytest.fixture(scope="module")
def generated(homework_zips) -> dict[str, Path]:
    return {hw: tasks.HOMEWORK_BUILD / hw for hw in HOMEWORKS}


def public_tests_dir(out: Path, hw: str) -> Path:
    return out / "student" / "tests" / hw


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
    # ... and go to a folder of this homework's own, where its grader looks for them
    assert f'otter.Notebook(tests_dir="tests/{hw}")' in code and f"os.makedirs('tests/{hw}'" in code
    questions = set(re.findall(r'^grader\.check\("(q\d+)"\)', code, re.M))
    assert questions == set(coding_questions(hw))
    assert {p.stem for p in public_tests_dir(out, hw).glob("q*.py")} == questions
    assert not list((out / "student" / "tests").glob("*.py"))
    nb = json.loads(student.read_text())
    written = [c for c in nb["cells"] if c["cell_type"] == "markdown" and "Type your answer here" in "".join(c["source"])]
    assert written, "the written questions' answers must be blanked"


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_homework_page_states_points_and_what_is_checked(generated, hw):
    """The student notebook says what each question is worth and what the checks cover."""
    nb = json.loads((generated[hw] / "student" / f"{hw}.ipynb").read_text())
    intro = "".join(nb["cells"][0]["source"])
    assert "| points |" in intro and "public check" in intro and "hidden" in intro
    total = sum(int(p) for p in re.findall(r"^\| \d+ \|[^|]*\| (\d+) \|", intro, re.M))
    points = [int(p) for c in master_cells(hw) for p in re.findall(r"^points:\s*(\d+)", "".join(c["source"]), re.M)]
    assert total == sum(points) > 0


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


def split_functions(source: str) -> dict[str, str]:
    """Top-level functions of a cell, name -> source (lines before the first def go with it)."""
    parts = re.split(r"(?m)^(?=def \w+\()", source.strip() + "\n")
    if len(parts) > 1 and not parts[0].lstrip().startswith("def "):
        parts = [parts[0] + parts[1], *parts[2:]]
    return {re.match(r"\s*def (\w+)\(", p).group(1): p.strip() + "\n" for p in parts if p.strip()}


def solution_functions(out: Path, hw: str) -> dict[str, str]:
    solution = nbformat.read(out / "autograder" / f"{hw}.ipynb", as_version=4)
    found = {}
    for c in solution.cells:
        if c.cell_type == "code" and c.source.startswith("def "):
            found.update(split_functions(c.source))
    return found


def student_with_answers(out: Path, hw: str, answers: dict[str, str], dest: Path) -> Path:
    """The student notebook, its answer cells filled with ``answers`` (function -> source)
    and, for the other functions, the master's solutions."""
    sources = {**solution_functions(out, hw), **answers}
    nb = nbformat.read(out / "student" / f"{hw}.ipynb", as_version=4)
    for c in nb.cells:
        if c.cell_type == "code" and "otter_answer_cell" in c.metadata.get("tags", []):
            c.source = "\n\n".join(sources[name].strip() for name in re.findall(r"^def (\w+)\(", c.source, re.M)) + "\n"
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
    after = check_outputs(run_notebook(student_with_answers(out, hw, {}, tmp_path / "done" / f"{hw}.ipynb"), tmp_path / "done"))
    assert set(after) == set(before)
    assert all("passed" in text.lower() and "failed" not in text.lower() for text in after.values()), after
    assert sorted(p.name for p in (tmp_path / "done" / "tests" / hw).glob("*.py")) == sorted(f"{q}.py" for q in after)


PRELUDE = "import math\nimport torch\nimport torch.nn.functional as F\nimport course_lib\n"


def public_check(out: Path, hw: str, question: str, answers: dict[str, str]) -> list[bool]:
    """What ``grader.check(question)`` reports for these answers: one pass/fail per public test."""
    env: dict = {}
    exec(PRELUDE + "\n".join({**solution_functions(out, hw), **answers}.values()), env)
    test = OKTestFile.from_file(str(public_tests_dir(out, hw) / f"{question}.py"))
    test.run(env)
    return [r.passed for r in test.test_case_results]


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_trivial_answers_fail_the_public_check(generated, hw):
    out = generated[hw]
    for question, trivial in TABLES[hw].TRIVIAL.items():
        assert all(public_check(out, hw, question, {})), f"{question}: the solutions must pass"
        for answers in trivial if isinstance(trivial, list) else [trivial]:
            assert not all(public_check(out, hw, question, answers)), f"{question}: a trivial answer passes the public check: {answers}"


def grading_jobs() -> int:
    """Submissions graded at once: this worker's share of the CPUs (at least 2: a grading
    process spends part of its time starting a kernel, not computing)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(2, tasks.available_cpus() // workers)


class _GradedOnDemand(dict):
    """hw -> grading results, each homework graded on first use (so ``-k hw05`` grades only hw05)."""

    def __init__(self, grade):
        super().__init__()
        self._grade = grade

    def __missing__(self, hw):
        self[hw] = self._grade(hw)
        return self[hw]


@pytest.fixture(scope="module")
def graded(generated, tmp_path_factory):
    """Grade, for every homework (on first use): the master's solutions, the untouched student notebook,
    correct answers written another way, and one submission per round of slips."""

    def grade(hw):
        out = generated[hw]
        subs = tmp_path_factory.mktemp(f"{hw}-submissions")
        shutil.copy(out / "autograder" / f"{hw}.ipynb", subs / "correct.ipynb")  # the master's solutions
        shutil.copy(out / "student" / f"{hw}.ipynb", subs / "empty.ipynb")  # nothing answered
        student_with_answers(out, hw, TABLES[hw].ALTERNATIVES, subs / "alternative.ipynb")
        for r, round_ in enumerate(slip_rounds(hw)):
            answers = {f: src for _, changed, _ in round_.values() for f, src in changed.items()}
            student_with_answers(out, hw, answers, subs / f"slips_{r}.ipynb")
        grades = tmp_path_factory.mktemp(f"{hw}-grades")
        report = tasks.grade_submissions(hw, [subs], grades, jobs=grading_jobs())
        return {r["submission"]: r for r in csv.DictReader(report.open())}, grades

    return _GradedOnDemand(grade)


def coding_points(row: dict) -> dict[str, float]:
    return {q: float(v) for q, v in row.items() if q.startswith("q")}


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_master_solutions_get_full_marks_and_empty_gets_zero(graded, hw):
    rows, _ = graded[hw]
    correct, empty = rows["correct.ipynb"], rows["empty.ipynb"]
    assert float(correct["total"]) == float(correct["possible"]) > 0
    assert all(v == 0 for v in coding_points(empty).values()) and float(empty["total"]) == 0


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_correct_answers_written_another_way_get_full_marks(graded, hw):
    rows, grades = graded[hw]
    row = rows["alternative.ipynb"]
    assert float(row["total"]) == float(row["possible"]) > 0, feedback(grades, "alternative")


def feedback(grades: Path, submission: str) -> dict[str, str]:
    results = json.loads((grades / submission / "results.json").read_text())
    return {t["name"]: t.get("output", "") for t in results["tests"]}


@pytest.mark.parametrize(("hw", "r", "question"), slip_cases(), ids=[f"{hw[:4]}-{q}-{r}" for hw, r, q in slip_cases()])
def test_slip_loses_points_and_the_feedback_names_it(graded, hw, r, question):
    rows, grades = graded[hw]
    slip, _, words = slip_rounds(hw)[r][question]
    full = coding_points(rows["correct.ipynb"])[question]
    got = coding_points(rows[f"slips_{r}.ipynb"])[question]
    text = feedback(grades, f"slips_{r}")[question]
    assert got < full, f"{question}, {slip!r}: {got} of {full} points\n{text}"
    assert words in text, f"{question}, {slip!r}: the feedback does not say {words!r}:\n{text}"


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_book_homework_page_has_no_solutions_and_opens_student_version(built_book, hw):
    page = (built_book / "book/homework/_student" / f"{hw}.html").read_text()
    assert "Question 1" in page
    leaked = [line for line in solution_lines(hw) if line.replace("'", "&#39;") in page]
    assert leaked == []
    assert f"/blob/gh-pages/homework/{hw}/{hw}.ipynb" in page
    published = built_book / "homework" / hw / f"{hw}.ipynb"
    assert published.is_file() and published.read_text() == (tasks.HOMEWORK_PAGES / f"{hw}.ipynb").read_text()


# --- the autograder's tests, run in this process on many answers (no notebook, no kernel) ---
#
# The graded fixture above puts one submission per round of SLIPS through the real
# autograder. Here the same test files run directly, in an environment where the answers
# are defined as the notebook would define them, on every slip of SLIPS and MORE_SLIPS and
# on every correct answer of ALTERNATIVES and MORE_ALTERNATIVES: seconds, not minutes.


def question_results(out: Path, hw: str, question: str, answers: dict[str, str]) -> list:
    """Every test case of ``question`` (public and hidden), run on ``answers`` and the master's other solutions."""
    env: dict = {}
    exec(PRELUDE + "\n".join({**solution_functions(out, hw), **answers}.values()), env)
    test = OKTestFile.from_file(str(out / "autograder" / "tests" / f"{question}.py"))
    test.run(env)
    return test.test_case_results


def all_slips(hw: str) -> list[tuple[str, tuple]]:
    table = TABLES[hw]
    return [(q, slip) for slips in (table.SLIPS, getattr(table, "MORE_SLIPS", {})) for q, listed in slips.items() for slip in listed]


def every_slip() -> list[tuple[str, int]]:
    return [(hw, i) for hw in HOMEWORKS for i in range(len(all_slips(hw)))]


@pytest.mark.parametrize(("hw", "i"), every_slip(), ids=[f"{hw[:4]}-{all_slips(hw)[i][0]}-{i}" for hw, i in every_slip()])
def test_every_slip_fails_a_hidden_test_that_names_it(generated, hw, i):
    """Each slip of SLIPS and MORE_SLIPS fails its question, with feedback that names the mistake."""
    question, (slip, answers, words) = all_slips(hw)[i]
    failed = [r.message for r in question_results(generated[hw], hw, question, answers) if not r.passed]
    assert failed, f"{question}, {slip!r}: passes every test"
    assert any(words in m for m in failed), f"{question}, {slip!r}: the feedback does not say {words!r}:\n" + "\n".join(failed)


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_correct_answers_pass_every_test(generated, hw):
    """The solutions, ALTERNATIVES and every answer of MORE_ALTERNATIVES pass every test of every question."""
    table, out = TABLES[hw], generated[hw]
    for answers in ({}, table.ALTERNATIVES, *getattr(table, "MORE_ALTERNATIVES", [])):
        for question in coding_questions(hw):
            failed = [r.message for r in question_results(out, hw, question, answers) if not r.passed]
            assert not failed, f"{question} fails a correct answer {sorted(answers)}:\n" + "\n".join(failed)


def grading_helpers_text() -> str:
    lines = (Path(__file__).parent / "homework_slips" / "grading.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "# -- grading helpers" in line)
    end = next(i for i, line in enumerate(lines) if "# -- end of the grading helpers --" in line)
    return "\n".join(lines[start:end + 1])


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_every_hidden_test_carries_the_tested_grading_helpers(hw):
    """A hidden test runs alone in the autograder, so it carries its helpers: each copy is the one tested here."""
    helpers = grading_helpers_text()
    hidden = [c for c in master_cells(hw) if c["cell_type"] == "code" and re.search(r"^hidden:\s*true", "".join(c["source"]), re.M)]
    assert hidden
    for cell in hidden:
        src = "".join(cell["source"])
        assert helpers in src, (f"{re.findall(r'def (test_[a-z_0-9]+)', src)}: the grading helpers differ from "
                                "tests/homework_slips/grading.py (python3 tests/homework_slips/grading.py copies them)")


# --- the grading helpers themselves ---

import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import course_lib  # noqa: E402
from homework_slips.grading import grading_helpers  # noqa: E402

own_work, show, check = grading_helpers(torch)

# Each source defines f(X), the layer norm of X over its last axis, reaching a banned function another way.
ROUTES = {
    "its name": "def f(X): return F.layer_norm(X, X.shape[-1:])",
    "an alias": "ln = F.layer_norm\ndef f(X): return ln(X, X.shape[-1:])",
    "a default argument": "def f(X, norm=F.layer_norm): return norm(X, X.shape[-1:])",
    "a keyword-only default": "def f(X, *, norm=torch.layer_norm): return norm(X, X.shape[-1:])",
    "a closure": "def outer():\n    norm = F.group_norm\n    def f(X): return norm(X.reshape(-1, 1, X.shape[-1]), 1).reshape(X.shape)\n    return f\nf = outer()",
    "a global list": "NORMS = [F.layer_norm]\ndef f(X): return NORMS[0](X, X.shape[-1:])",
    "a helper's default": "def helper(X, norm=F.layer_norm): return norm(X, X.shape[-1:])\ndef f(X): return helper(X)",
    "a partial built in the call": "import functools\ndef f(X): return functools.partial(torch.layer_norm, normalized_shape=X.shape[-1:])(X)",
    "getattr": "def f(X): return getattr(F, 'layer' + '_norm')(X, X.shape[-1:])",
    "torch.ops.aten": "def f(X): return torch.ops.aten.native_layer_norm(X, list(X.shape[-1:]), None, None, 1e-5)[0]",
    "a module": "def f(X): return torch.nn.LayerNorm(X.shape[-1], elementwise_affine=False, dtype=X.dtype)(X)",
    "a subclass": "class Norm(torch.nn.LayerNorm):\n    pass\ndef f(X): return Norm(X.shape[-1], elementwise_affine=False, dtype=X.dtype)(X)",
}
BANNED = (F.layer_norm, torch.layer_norm, torch.native_layer_norm, torch.nn.LayerNorm, F.group_norm, torch.group_norm)


@pytest.mark.parametrize("route", ROUTES)
def test_own_work_catches_a_banned_function_by_every_route(route):
    env = {"torch": torch, "F": F}
    exec(ROUTES[route], env)
    X = torch.randn(3, 4, 5)
    torch.testing.assert_close(env["f"](X), F.layer_norm(X, (5,)), atol=1e-4, rtol=1e-4)   # the route works when nothing is banned
    with pytest.raises(AssertionError, match="this question asks you to write it yourself: do not (call|use) torch"):
        own_work(env["f"], *BANNED, ops={"native_layer_norm": "torch.nn.functional.layer_norm"})(X)
    # nothing is left behind: no profiler, no mode, and the banned function works again
    assert sys.getprofile() is None
    assert not torch.overrides._get_current_function_mode_stack()
    torch.testing.assert_close(F.layer_norm(X, (5,)), env["f"](X))


def test_own_work_catches_a_banned_module_and_a_copy_of_its_code():
    import inspect

    import course_lib.training
    copied = {"torch": torch, "F": F, "Tensor": torch.Tensor}
    exec("from __future__ import annotations\n" + inspect.getsource(course_lib.training.masked_ce_loss), copied)
    logits, tgt, lens = torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 3])
    for fn in (lambda *a: course_lib.training.masked_ce_loss(*a), copied["masked_ce_loss"]):
        with pytest.raises(AssertionError, match=r"course_lib\.masked_ce_loss \(nothing from course_lib is allowed here\)"):
            own_work(fn, course_lib)(logits, tgt, lens)


def test_own_work_lets_the_allowed_functions_and_the_answers_own_code_run():
    scores, lens = torch.randn(2, 3, 4), torch.tensor([2, 4])
    # masked_softmax calls other course_lib functions inside: allowed, they are not the answer's calls
    got = own_work(lambda s, n: course_lib.masked_softmax(s, n), course_lib, allowed=[course_lib.masked_softmax])(scores, lens)
    torch.testing.assert_close(got, course_lib.masked_softmax(scores, lens))
    mine = own_work(lambda X: (X - X.mean(-1, keepdim=True)) / X.var(-1, correction=0, keepdim=True).add(1e-5).sqrt(), *BANNED)
    torch.testing.assert_close(mine(scores), F.layer_norm(scores, (4,)), atol=1e-5, rtol=1e-5)
    # a banned package's decorated functions share their decorator's code with everybody's: only their own code is banned
    import contextlib

    import torch.nn.attention as attention

    @contextlib.contextmanager
    def quiet():
        yield

    def uses_a_context_manager(X):
        with quiet():
            return torch.softmax(X, dim=-1)

    torch.testing.assert_close(own_work(uses_a_context_manager, attention)(scores), torch.softmax(scores, dim=-1))


def test_check_names_a_slip_only_when_the_answer_matches_it_everywhere_it_differs():
    cases = [dict(x=torch.tensor([1.0, -2.0, 3.0])), dict(x=torch.tensor([0.5])), dict(x=torch.tensor([-1.0, 4.0]))]
    double = lambda x: 2 * x
    slips = [(lambda x: 3 * x, "multiply by 2, not 3"), (lambda x: 2 * x.abs(), "keep the sign")]
    close = lambda a, b: a.shape == b.shape and torch.allclose(a, b)
    check(lambda x: x + x, cases, double, slips, close)                               # correct: silent
    with pytest.raises(AssertionError, match="multiply by 2, not 3"):
        check(lambda x: 3 * x, cases, double, slips, close)
    with pytest.raises(AssertionError, match="keep the sign"):                        # differs from the reference on cases 1 and 3 only
        check(lambda x: 2 * x.abs(), cases, double, slips, close)
    # equal to a slip on some cases only: no slip is named; the first wrong case is shown, expected and returned
    with pytest.raises(AssertionError) as failure:
        check(lambda x: 3 * x if len(x) == 3 else 2 * x + 1, cases, double, slips, close)
    text = str(failure.value)
    assert "not 3" not in text and "sign" not in text
    assert "x=tensor of shape (3,)" in text and "returned tensor of shape (3,), float32, values [3.0, -6.0, 9.0]" in text
    assert "expected tensor of shape (3,), float32, values [2.0, -4.0, 6.0]" in text and "largest difference is at index [2]" in text


def test_check_refuses_an_answer_that_changes_its_inputs():
    cases = [dict(x=torch.tensor([1.0, 2.0]))]

    def in_place(x):
        x.mul_(2)
        return x

    with pytest.raises(AssertionError, match="do not modify the inputs: f.* changed its argument x"):
        check(in_place, cases, lambda x: 2 * x, close=lambda a, b: torch.equal(a, b), name="f")
    assert torch.equal(cases[0]["x"], torch.tensor([1.0, 2.0]))    # the answer only ever gets copies


def public_test_sources(hw: str) -> list[str]:
    """The code of the public test cells of a master (between # BEGIN TESTS and # END TESTS, not hidden)."""
    found, inside = [], False
    for cell in master_cells(hw):
        src = "".join(cell["source"])
        if cell["cell_type"] == "raw" and src.startswith(("# BEGIN TESTS", "# END TESTS")):
            inside = src.startswith("# BEGIN TESTS")
        elif inside and cell["cell_type"] == "code" and not re.search(r"^hidden:\s*true", src, re.M):
            found.append(src)
    return found


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_every_public_assert_says_what_failed(hw):
    """A student who fails a public check is told what was expected and what came back: no bare assert."""
    import ast

    sources = public_test_sources(hw)
    assert len(sources) == len(coding_questions(hw))
    bare = [ast.unparse(node.test)[:80] for src in sources for node in ast.walk(ast.parse(src)) if isinstance(node, ast.Assert) and node.msg is None]
    assert bare == [], f"public asserts without a message: {bare}"
