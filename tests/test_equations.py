"""Numbered display formulas reach the page with their numbers.

Sphinx's MathJax writer (``sphinx.ext.mathjax.html_visit_displaymath``) wraps every part
of a ``$$ ... $$`` block (parts are separated by blank lines) that contains a line break
``\\\\`` in ``\\begin{split} ... \\end{split}``, and MathJax refuses ``\\tag`` inside
``split``: the page shows the error "\\tag not allowed in split environment" instead of the
formula. A multi-line numbered formula is therefore written as an amsmath environment on
its own lines (``\\begin{align*} ... \\tag{4.1} \\end{align*}``, which the book's
``amsmath`` extension passes to MathJax as it is), and a one-line numbered formula may stay
in ``$$``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "book").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.md"))


def markdown_of(path: Path) -> list[str]:
    if path.suffix == ".md":
        return [path.read_text(encoding="utf-8")]
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def display_blocks(text: str) -> list[str]:
    """The contents of the ``$$ ... $$`` blocks of a markdown text."""
    return re.findall(r"\$\$(.*?)\$\$", text, re.S)


def sphinx_parts(block: str) -> list[str]:
    """The parts Sphinx typesets one by one (it splits a display block at blank lines)."""
    return [part for part in block.split("\n\n") if part.strip()]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_numbered_formula_is_wrapped_in_split(path):
    bad = [part.strip()[:80] for text in markdown_of(path) for block in display_blocks(text)
           for part in sphinx_parts(block) if "\\tag" in part and "\\\\" in part]
    assert not bad, (f"{path.name}: a $$ block with both \\tag and a line break \\\\ is typeset "
                     f"inside a split environment, where MathJax rejects \\tag; write it as "
                     f"\\begin{{align*}} ... \\tag{{n}} \\end{{align*}} outside $$: {bad}")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_amsmath_environments_stand_on_their_own_lines(path):
    """The amsmath extension takes an environment only where \\begin starts a line and
    \\end{...} ends one; elsewhere the formula would be printed as text."""
    for text in markdown_of(path):
        outside = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
        for env in re.findall(r"\\begin\{(align\*?|equation\*?|gather\*?|multline\*?)\}", outside):
            begin, end = f"\\begin{{{env}}}", f"\\end{{{env}}}"
            assert re.search(rf"^{re.escape(begin)}", outside, re.M), f"{path.name}: {begin} not at a line start"
            assert re.search(rf"{re.escape(end)}[ \t]*$", outside, re.M), f"{path.name}: {end} not at a line end"


def test_the_check_finds_the_old_form_of_equation_4_1():
    old = "$$\n\\begin{aligned}\nQ &= X W_Q, \\\\\nY &= Q.\n\\end{aligned}\n\\tag{4.1}\n$$"
    assert any("\\tag" in part and "\\\\" in part for block in display_blocks(old) for part in sphinx_parts(block))
    one_line = "$$\ny = x .\n\\tag{4.4}\n$$"
    assert not any("\\\\" in part for block in display_blocks(one_line) for part in sphinx_parts(block))
