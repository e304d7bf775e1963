"""The preface's list of chapters agrees with the book's table of contents (_toc.yml).

The table of contents decides which chapters the book has. The preface's table "What
you will learn" must have one row per chapter of the "Chapters" part of ``_toc.yml``, in
the same order, and must not call a chapter that is in the book unwritten. Adding a
chapter to ``_toc.yml`` therefore means adding its row to the preface too; the failure
message says which row is missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PREFACE = ROOT / "book" / "preface.md"
TOC = ROOT / "_toc.yml"
CHAPTER_FILE = re.compile(r"^book/chapter_(\d+)_\w+$")
UNWRITTEN = re.compile(r"being written|not yet written|in preparation|coming soon|to be written", re.I)


def toc_chapters(toc_text: str) -> list[tuple[int, str]]:
    """(number, file) of every chapter in the "Chapters" part of a _toc.yml, in order."""
    toc = yaml.safe_load(toc_text)
    parts = [p for p in toc.get("parts", []) if p.get("caption") == "Chapters"]
    assert len(parts) == 1, "_toc.yml needs exactly one part with caption 'Chapters'"
    chapters = []
    for entry in parts[0].get("chapters", []):
        match = CHAPTER_FILE.match(entry["file"])
        assert match, f"_toc.yml: {entry['file']!r} in 'Chapters' is not named book/chapter_NN_name"
        chapters.append((int(match.group(1)), entry["file"]))
    return chapters


def chapter_title(file: str) -> str:
    """The notebook's first heading without its number ("Attention scoring functions"), or
    the file name if the notebook does not exist yet."""
    path = ROOT / f"{file}.ipynb"
    if not path.exists():
        return file
    first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
    heading = "".join(first["source"]).splitlines()[0]
    return re.sub(r"^#\s*\d+\.\s*", "", heading)


def preface_rows(preface_text: str) -> list[tuple[int, list[str]]]:
    """(chapter number, cells) of each row of the table under '## What you will learn'."""
    section = re.search(r"^## What you will learn\n(.*?)(?=^## )", preface_text, re.S | re.M)
    assert section, "the preface has no section '## What you will learn'"
    rows = []
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.match(r"(\d+)\.\s", cells[0]) if line.startswith("|") else None
        if match:
            rows.append((int(match.group(1)), cells))
    return rows


def chapter_list_problems(toc_text: str, preface_text: str) -> list[str]:
    """Every disagreement between the preface and the table of contents, in words."""
    chapters = toc_chapters(toc_text)
    rows = preface_rows(preface_text)
    in_toc = [n for n, _ in chapters]
    in_preface = [n for n, _ in rows]
    problems = []
    for n, file in chapters:
        if n not in in_preface:
            problems.append(
                f"chapter {n} ({file}, {chapter_title(file)!r}) is in _toc.yml but the preface's "
                f"table 'What you will learn' has no row for it: add a line "
                f"'| {n}. {chapter_title(file)} | <the idea> | <what you build> |'"
            )
    for n in in_preface:
        if n not in in_toc:
            problems.append(f"the preface lists chapter {n}, which is not in the 'Chapters' part of _toc.yml")
    if not problems and in_preface != in_toc:
        problems.append(f"the preface lists the chapters in the order {in_preface}, _toc.yml in {in_toc}")
    for n, cells in rows:
        if len(cells) != 3 or not all(cells):
            problems.append(f"the preface's row for chapter {n} needs three non-empty cells, got {cells}")
    prose = " ".join(line for line in preface_text.splitlines() if not line.startswith("|"))
    for sentence in re.split(r"(?<=[.;])\s", " ".join(prose.split())):
        if UNWRITTEN.search(sentence):
            named = {int(x) for x in re.findall(r"\b(\d+)\b", sentence)}
            for n in sorted(named & set(in_toc)):
                problems.append(f"the preface says chapter {n} is not written, but it is in _toc.yml: {sentence!r}")
    return problems


def test_preface_lists_exactly_the_chapters_of_the_toc_in_order():
    problems = chapter_list_problems(TOC.read_text(encoding="utf-8"), PREFACE.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_every_chapter_of_the_toc_exists_and_its_heading_has_its_number():
    for n, file in toc_chapters(TOC.read_text(encoding="utf-8")):
        path = ROOT / f"{file}.ipynb"
        assert path.exists(), f"_toc.yml lists {file}, but {path.name} does not exist"
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
        assert "".join(first["source"]).startswith(f"# {n}. "), f"{path.name} does not start with '# {n}. '"


def test_a_chapter_added_to_the_toc_without_a_preface_row_is_reported():
    """The check itself can fail: a chapter 8 in the toc, but not in the preface."""
    toc_text = TOC.read_text(encoding="utf-8")
    toc = yaml.safe_load(toc_text)
    chapters = next(p for p in toc["parts"] if p["caption"] == "Chapters")["chapters"]
    chapters.append({"file": "book/chapter_08_next"})
    problems = chapter_list_problems(yaml.safe_dump(toc), PREFACE.read_text(encoding="utf-8"))
    assert len(problems) == 1 and problems[0].startswith("chapter 8 (book/chapter_08_next")
    assert "| 8. " in problems[0]


def test_a_preface_that_calls_a_listed_chapter_unwritten_is_reported():
    preface = PREFACE.read_text(encoding="utf-8")
    stale = preface.replace("## Prerequisites", "Chapters 5 and 6 are being written.\n\n## Prerequisites", 1)
    problems = chapter_list_problems(TOC.read_text(encoding="utf-8"), stale)
    assert [p.split(" is not written")[0] for p in problems] == [
        "the preface says chapter 5",
        "the preface says chapter 6",
    ]


def test_a_missing_or_reordered_preface_row_is_reported():
    preface = PREFACE.read_text(encoding="utf-8")
    row_2 = next(line for line in preface.splitlines() if line.startswith("| 2. "))
    row_3 = next(line for line in preface.splitlines() if line.startswith("| 3. "))
    toc_text = TOC.read_text(encoding="utf-8")
    assert "chapter 2" in chapter_list_problems(toc_text, preface.replace(row_2 + "\n", ""))[0]
    swapped = preface.replace(row_2, "@@").replace(row_3, row_2).replace("@@", row_3)
    assert "order" in chapter_list_problems(toc_text, swapped)[0]
