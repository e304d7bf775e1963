"""The HTML book: it builds with warnings as errors and contains what readers need."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.book

CHAPTER = "book/chapter_01_attention_pooling.html"


def test_pages_exist(built_book):
    for page in ("index.html", "book/preface.html", CHAPTER, "book/glossary.html", "book/bibliography.html"):
        assert (built_book / page).is_file(), page


@pytest.mark.parametrize(
    "chapter", ["chapter_01_attention_pooling", "chapter_02_attention_scoring", "chapter_03_seq2seq_attention",
     "chapter_04_self_attention"]
)
def test_notebook_pages_have_a_colab_button_to_their_notebook(built_book, chapter):
    html = (built_book / "book" / f"{chapter}.html").read_text()
    assert re.search(
        rf'href="https://colab\.research\.google\.com/github/[^"]+/blob/main/book/{chapter}\.ipynb"', html
    )


def test_chapter_shows_stored_outputs_and_citations(built_book):
    html = (built_book / CHAPTER).read_text()
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert len(images) >= 12, f"expected the chapter's figures, found {len(images)} images"
    for src in images:
        assert (built_book / "book" / src).resolve().is_file(), src
    assert "Nadaraya" in html and "bibliography.html#" in html  # citations resolve to the bibliography


def test_glossary_and_bibliography_content(built_book):
    glossary = (built_book / "book/glossary.html").read_text()
    for term in ("注意力", "查询", "键", "值", "注意力权重", "attention pooling"):
        assert term in glossary
    bib = (built_book / "book/bibliography.html").read_text()
    for author in ("Nadaraya", "Watson", "Vaswani", "Devlin", "Bahdanau"):
        assert author in bib


def test_no_page_declares_a_script_twice(built_book):
    for page in ("index.html", "book/preface.html", CHAPTER, "book/glossary.html"):
        if page == "index.html":
            continue  # a redirect page without scripts
        html = (built_book / page).read_text()
        inline = re.findall(r"<script>(.*?)</script>", html, re.S)
        assert len(inline) == len(set(inline)), f"{page} repeats an inline script"


def test_mathjax_is_served_from_the_book(built_book):
    html = (built_book / CHAPTER).read_text()
    assert re.search(r'src="[./]*_static/mathjax/tex-mml-chtml\.js(\?[^"]*)?"', html)
    assert (built_book / "_static/mathjax/tex-mml-chtml.js").is_file()
    assert list((built_book / "_static/mathjax/output/chtml/fonts/woff-v2").glob("*.woff"))
