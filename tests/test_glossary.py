"""The glossary covers every term the chapters introduce in bold, in English and Chinese.

Rule of the book: a term a chapter introduces is set in **bold** in its prose, and the
glossary (book/glossary.md) has an entry for it with its English and its Chinese name.
Bold text that is emphasis rather than a term goes into ``EMPHASIS`` below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"
CHAPTERS = sorted((ROOT / "book").glob("chapter_*.ipynb"))

# Bold text that stresses a word or phrase and is not a term (lower case, as written
# after trailing punctuation is removed). Bold that contains math ($...$) is a formula
# and is skipped by rule; a bold list of terms ("queries, keys and values") is checked
# term by term.
EMPHASIS = {
    # chapter 1
    "matches", "equal weights", "other",
    # chapter 2
    "vectors", "no", "a modest constant", "different sizes", "same size", "saturates", "compete", "stores",
    # chapter 3
    "attend", "same", "true", "batches of similar length", "both", "cue before", "only after",
    "one sense for every probe", "time",
    # chapter 4: run-in headings of lists
    "text", "audio", "images", "graphs", "one label per vector", "one label per sequence",
    "a sequence of any length",
    # chapter 4: stressed words and phrases
    "the same sentence", "that depends on the sentence", "learns", "learn", "set of vectors", "out",
    "from the same", "every output sees every input", "no loop over positions",
    "values are the embeddings themselves", "topic", "each word's", "food", "technology", "where to look",
    "no technology word", "split evenly", "disagree", "one", "in every head", "where", "not on pos",
    "measure", "saves nothing", "neighbours",
}

CJK = re.compile(r"[\u3400-\u9fff]")
TERM_LINE = re.compile(r"^(?P<en>[^()]*[A-Za-z][^()]*?) \((?P<zh>[^()]+)\)$")


def normalize(text: str) -> str:
    """Lower case, single spaces, one kind of dash, no trailing punctuation."""
    text = " ".join(text.split()).lower()
    text = re.sub(r"[\u2010-\u2015]", "-", text)  # hyphens and dashes: -, ‐, ‒, –, —
    return text.strip(" .,:;!?")


def singular(text: str) -> str:
    """A crude singular of the last word, applied to both sides of a comparison."""
    if text.endswith("ies"):
        return text[:-3] + "y"
    if text.endswith(("ches", "shes", "sses", "xes")):
        return text[:-2]
    if text.endswith("s") and not text.endswith("ss"):
        return text[:-1]
    return text


def glossary_entries() -> list[tuple[list[str], list[str]]]:
    """(term lines, definition lines) of each entry of the glossary directive."""
    text = GLOSSARY.read_text(encoding="utf-8")
    match = re.search(r"^```\{glossary\}\n(.*?)^```", text, re.S | re.M)
    assert match, "book/glossary.md has no ```{glossary} block"
    entries: list[tuple[list[str], list[str]]] = []
    terms: list[str] = []
    definition: list[str] = []
    for line in match.group(1).split("\n"):
        if not line.strip() or line.startswith(":"):  # blank lines and directive options
            continue
        if line[0].isspace():
            definition.append(line.strip())
            continue
        if definition:  # a term line after a definition starts the next entry
            entries.append((terms, definition))
            terms, definition = [], []
        terms.append(line.strip())
    entries.append((terms, definition))
    return entries


def glossary_terms() -> set[str]:
    names = set()
    for terms, _ in glossary_entries():
        for line in terms:
            match = TERM_LINE.match(line)
            if match:
                names.add(singular(normalize(match["en"])))
    return names


def bold_terms(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found = []
    for cell in cells:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"])
            found += re.findall(r"\*\*(?!\*)(.+?)\*\*", source, re.S)
    return found


def in_glossary(bold: str, names: set[str]) -> bool:
    text = normalize(bold)
    candidates = [text, normalize(re.sub(r"\([^)]*\)", " ", text))]  # "local (truncated) attention"
    if any(singular(c) in names for c in candidates):
        return True
    parts = [p for p in re.split(r",\s*|\s+and\s+", text) if p]  # "queries, keys and values"
    return len(parts) > 1 and all(singular(normalize(p)) in names for p in parts)


def test_every_entry_has_an_english_and_a_chinese_name():
    entries = glossary_entries()
    assert len(entries) > 20
    for terms, definition in entries:
        assert terms and definition, f"entry {terms} has no definition"
        for line in terms:
            match = TERM_LINE.match(line)
            assert match, f"glossary term {line!r} is not 'English name (中文名)'"
            assert CJK.search(match["zh"]), f"glossary term {line!r}: no Chinese name in the parentheses"
            assert not CJK.search(match["en"]), f"glossary term {line!r}: Chinese in the English name"


def test_no_term_is_defined_twice():
    names = [normalize(TERM_LINE.match(line)["en"]) for terms, _ in glossary_entries() for line in terms]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_helpers():
    names = {singular(normalize(n)) for n in ("attention weight", "query", "patch", "local attention", "key", "value")}
    assert in_glossary("attention weights", names) and in_glossary("Queries, keys and values", names)
    assert in_glossary("patches", names) and in_glossary("Local (truncated)\nattention", names)
    assert not in_glossary("not", names) and not in_glossary("attention", names)


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_bold_term_of_a_chapter_is_in_the_glossary(notebook):
    names = glossary_terms()
    missing = sorted(
        {
            " ".join(bold.split())
            for bold in bold_terms(notebook)
            if "$" not in bold and normalize(bold) not in EMPHASIS and not in_glossary(bold, names)
        }
    )
    assert not missing, (
        f"{notebook.name} introduces these bold terms that book/glossary.md lacks: {missing}. "
        "Add each as 'English name (中文名)' with a definition, or, if the bold is emphasis "
        "rather than a term, add it to EMPHASIS in tests/test_glossary.py."
    )
