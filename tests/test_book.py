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


# --- navigation: chapters, their homework, one search box -----------------------------

import html as html_lib  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def toc_docs() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    return re.findall(r"^root:\s*(\S+)", toc, re.M) + re.findall(r"^\s*-\s*file:\s*(\S+)", toc, re.M)


def extension():
    spec = importlib.util.spec_from_file_location("course_book", ROOT / "book/_ext/course_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prev_next(built_book: Path, doc: str) -> dict[str, str | None]:
    """The documents that a page's "previous" and "next" links point to."""
    page = built_book / f"{doc}.html"
    text = page.read_text()
    found = {}
    for key, cls in (("prev", "left-prev"), ("next", "right-next")):
        m = re.search(rf'<a class="{cls}"\s+href="([^"]+)"', text)
        found[key] = None if m is None else str(
            (page.parent / m.group(1).split("#")[0]).resolve().relative_to(built_book.resolve()).with_suffix(""))
    return found


def test_previous_and_next_go_from_each_chapter_to_its_homework(built_book):
    docs = toc_docs()
    chapters = [d for d in docs if re.match(r"book/chapter_\d+_", d)]
    homework = {int(re.search(r"hw(\d+)_", d).group(1)): d for d in docs if "/_student/hw" in d}
    # every chapter has its homework (a homework may come before its chapter is written: it stays
    # where the table of contents puts it)
    assert len(chapters) >= 6 and {int(re.match(r"book/chapter_(\d+)_", c).group(1)) for c in chapters} <= set(homework)
    # following "next" from the first page visits every page once: each chapter, then its homework
    order, doc = [], docs[0]
    while doc is not None:
        assert doc not in order, f"'next' comes back to {doc}"
        order.append(doc)
        doc = prev_next(built_book, doc)["next"]
    assert sorted(order) == sorted(docs)
    for chapter in chapters:
        number = int(re.match(r"book/chapter_(\d+)_", chapter).group(1))
        assert order[order.index(chapter) + 1] == homework[number], f"'next' after {chapter}"
    # and "previous" walks the same way back
    for before, after in zip(order, order[1:]):
        assert prev_next(built_book, after)["prev"] == before
    assert prev_next(built_book, order[0])["prev"] is None


def test_reading_order_puts_each_homework_after_its_chapter_and_keeps_the_rest():
    toc = ["book/preface", "book/chapter_01_a", "book/chapter_02_b", "book/homework/_student/hw01_a",
           "book/homework/_student/hw02_b", "book/homework/_student/hw07_extra", "book/glossary"]
    assert extension().reading_order(toc) == [
        "book/preface", "book/chapter_01_a", "book/homework/_student/hw01_a", "book/chapter_02_b",
        "book/homework/_student/hw02_b", "book/homework/_student/hw07_extra", "book/glossary"]
    assert extension().reading_order(toc[:3]) == toc[:3]  # no homework: the table of contents' order


def test_each_chapter_ends_with_a_link_to_its_homework(built_book):
    for doc in toc_docs():
        m = re.match(r"book/chapter_(\d+)_", doc)
        if not m:
            continue
        text = (built_book / f"{doc}.html").read_text()
        boxes = re.findall(r'<div class="[^"]*\bcourse-homework\b[^"]*">(.*?)</div>', text, re.S)
        assert len(boxes) == 1, doc
        link = re.search(r'href="([^"]+)"', boxes[0]).group(1)
        target = (built_book / doc).parent / link
        assert target.is_file() and re.match(rf"hw{m.group(1)}_", target.name), (doc, link)
        title = re.search(r"<title>(.*?)(?: &#8212;| —)", target.read_text()).group(1)
        assert html_lib.unescape(title) in html_lib.unescape(re.sub(r"<[^>]+>", "", boxes[0]))
        # it comes after the chapter's last section (the exercises)
        assert text.index("course-homework") > text.rindex("<h2>")


def test_one_search_box_and_no_second_header_bar(built_book):
    for doc in ("book/preface", "book/chapter_01_attention_pooling", "book/homework/_student/hw01_attention_pooling"):
        text = (built_book / f"{doc}.html").read_text()
        header = re.search(r'<header id="pst-header"[^>]*>(.*?)</header>', text, re.S)
        assert header is None or header.group(1).strip() == "", f"{doc}: the theme's header bar is back"
        assert text.count("search-button-field") == 1, doc   # the sidebar's search box
        assert "navbar-persistent" not in text, doc


# --- code on a phone --------------------------------------------------------------------

def strip_tags(text: str) -> str:
    return html_lib.unescape(re.sub(r"<[^>]+>", "", text))


HIGHLIGHTED = [
    '<span></span><span class="n">x</span> <span class="o">=</span> <span class="mi">1</span>\n',
    '<span class="k">def</span> <span class="nf">f</span><span class="p">():</span>\n'
    '    <span class="sd">&quot;&quot;&quot;a docstring\n    over two lines&quot;&quot;&quot;</span>\n'
    '    <span class="k">return</span> <span class="n">x</span>  <span class="c1"># (B, T, D)</span>\n',
    "plain text\n\n   indented &lt;tag&gt;\nlast line without newline",
]


@pytest.mark.parametrize("code", HIGHLIGHTED)
def test_code_lines_keep_the_text_and_balance_the_tags(code):
    ext = extension()
    boxed = ext.code_lines(code)
    assert strip_tags(boxed) == strip_tags(code)  # the same text, so copying a cell copies the code
    lines = ext.split_lines(code)
    assert len(lines) == code.count("\n") + 1
    for line in lines:  # every line opens and closes its own spans
        assert line.count("<span") == line.count("</span>"), line
    boxes = [re.match(r'<span class="cl" style="--indent: (\d+)">(.*)</span>$', b) for b in boxed.split("\n")]
    assert sum(b is not None for b in boxes) >= len(lines) - 1  # every line but a last empty one is boxed
    for box in filter(None, boxes):
        text = strip_tags(box.group(2))
        assert int(box.group(1)) == len(text) - len(text.lstrip(" "))  # its indentation, in characters


def test_code_may_break_after_brackets_and_commas_and_before_dots_not_inside_names():
    code = ('<span class="n">attention</span> <span class="o">=</span> <span class="n">course_lib</span>'
            '<span class="o">.</span><span class="n">DotProductAttention</span><span class="p">(</span>'
            '<span class="n">dropout</span><span class="o">=</span><span class="mf">0.0</span><span class="p">,</span>'
            ' <span class="n">impl</span><span class="o">=</span><span class="s2">&quot;manual&quot;</span>'
            '<span class="p">)</span>\n')
    boxed = extension().code_lines(code)
    pieces = [strip_tags(p) for p in boxed.split("<wbr>")]
    assert pieces == ['attention = course_lib', '.DotProductAttention(', 'dropout=0.0,', ' impl="manual")\n']


def test_printed_tables_keep_their_columns_and_prose_wraps():
    ext = extension()
    table = "apple  train  116, probes 69\nsaw    train 1415, probes 70\n"
    prose = "test MSE, h = 1: {'gaussian': 0.428, 'boxcar': 0.211}\nanother line\n"
    assert ext.has_columns(ext.split_lines(table))
    assert not ext.has_columns(ext.split_lines(prose))


@pytest.mark.parametrize(
    "word, pieces",
    [
        ("torch.nn.functional.scaled_dot_product_attention",
         ["torch", ".nn", ".functional", ".scaled_", "dot_", "product_", "attention"]),
        ("course_lib.count_parameters(course_lib.build_transformer(", None),
        ("short.name", ["short.name"]),
        ("grader.check(...)", ["grader", ".check(...)"]),
        ('grader.check("q1")', ["grader", '.check("q1")']),
    ],
)
def test_long_inline_code_may_break_before_dots_and_after_underscores(word, pieces):
    out = extension().break_points(word)
    assert out.replace("<wbr>", "") == word
    if pieces is not None:
        assert out.split("<wbr>") == pieces


@pytest.mark.parametrize("tag", [r"\tag{4.1}", r"\tag*{A}"])
@pytest.mark.parametrize("where", ["end", "start"])
def test_a_tag_moves_out_of_the_split_environment_sphinx_adds(tag, where):
    ext = extension()
    lines = r"\begin{aligned} a &= b \\" + "\n" + r"c &= d \end{aligned}"
    inner = f"{lines}\n{tag}\n" if where == "end" else f"{tag}\n{lines}\n"
    page = '<p>x</p><div class="math">\\[\\begin{split}' + inner + '\\end{split}\\]</div><p>y</p>'
    out = ext.tags_outside_split(page)
    split = re.search(r"\\begin\{split\}(.*?)\\end\{split\}", out, re.S).group(1)
    assert r"\tag" not in split
    assert out.count(tag) == 1 and (r"\end{split}" + tag + r"\]") in out
    assert out.replace(tag, "") == page.replace(tag, "")        # nothing else changed
    untagged = page.replace(tag, "")
    assert ext.tags_outside_split(untagged) == untagged
    inline = r'<span class="math">\(\tag{1} x\)</span>'          # a tag outside any split is left alone
    assert ext.tags_outside_split(inline) == inline


def test_no_page_keeps_a_tag_inside_a_split_environment(built_book):
    """MathJax refuses \\tag inside split and shows an error instead of the equation."""
    bad = []
    for page in sorted(built_book.rglob("*.html")):
        for inner in re.findall(r"\\begin\{split\}(.*?)\\end\{split\}", page.read_text(), re.S):
            if "\\tag" in inner:
                bad.append(f"{page.relative_to(built_book)}: {inner.strip()[:60]}")
    assert bad == [], bad


def test_pages_box_code_lines_and_let_inline_code_break(built_book):
    text = (built_book / "book/chapter_02_attention_scoring.html").read_text()
    cells = re.findall(r'<div class="highlight-ipython3 notranslate"><div class="highlight"><pre>(.*?)</pre>', text, re.S)
    assert cells and all('<span class="cl"' in c for c in cells)
    assert "torch<wbr>.nn<wbr>.functional<wbr>.scaled_<wbr>dot_<wbr>product_<wbr>attention" in text
    assert 'course-columns' in (built_book / "book/chapter_06_bert.html").read_text()


# --- tasks.py book serves the site ------------------------------------------------------

def test_tasks_book_serves_the_pages_and_the_search_index_and_stops_on_ctrl_c(built_book):
    # A run started in the background (`cmd &` in a script) inherits an ignored SIGINT, and
    # Python then installs no handler for it: give the server the default, as in a terminal.
    # `CI` set in the environment (as on CI runners) means "never block": the test wants the server.
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tasks.py"), "book", "--no-build", "--port", "0", "--no-open"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if os.name == "posix" else None)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"no address printed: {line!r}"
        url = m.group(0)
        for path, expect in [("", "book/preface.html"), ("book/chapter_04_self_attention.html", "4. Self-attention"),
                             ("searchindex.js", "Search.setIndex("), ("search.html", "searchtools.js"),
                             ("_static/mathjax/tex-mml-chtml.js", "MathJax")]:
            with urllib.request.urlopen(url + path, timeout=10) as response:
                assert response.status == 200
                body = response.read().decode("utf-8", "replace")
                assert expect in body, (path, body[:200])
                if path.endswith(".js"):
                    assert response.headers["Content-Type"].startswith("text/javascript")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()  # leave no server behind
            out, err = proc.communicate()
            pytest.fail(f"the server did not stop within 20 s of Ctrl-C (SIGINT):\n{err[-2000:]}")
    assert proc.returncode == 0, err
    assert "server stopped" in out and "Traceback" not in err


def test_tasks_book_on_a_ci_runner_does_not_block_and_says_how_to_serve(built_book):
    env = dict(os.environ, CI="true")
    done = subprocess.run([sys.executable, str(ROOT / "tasks.py"), "book", "--no-build", "--port", "0", "--no-open"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "python3 tasks.py book --no-build" in done.stdout and "the book is at" not in done.stdout


def test_tasks_book_without_a_build_says_what_to_do(tmp_path, monkeypatch):
    import tasks

    monkeypatch.setattr(tasks, "BUILD", tmp_path / "_build")
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    args = tasks.argparse.Namespace(no_build=True, no_serve=False, no_open=True, port=0)
    with pytest.raises(SystemExit, match="there is no built book in _build/html: run python3 tasks.py book"):
        tasks.cmd_book(args)


# --- PyTorch from another index ---------------------------------------------------------

def test_course_torch_index_installs_the_pinned_torch_from_it_first(tmp_path, monkeypatch):
    import tasks

    commands = []
    monkeypatch.setattr(tasks, "run", lambda cmd, **kw: commands.append([str(c) for c in cmd]))
    monkeypatch.setattr(tasks, "VENV", tmp_path / "venv")
    monkeypatch.setattr(tasks, "STAMP", tmp_path / "stamp")
    pin = re.search(r"^torch==\S+", (ROOT / "requirements.txt").read_text(), re.M).group(0)

    monkeypatch.delenv(tasks.TORCH_INDEX_ENV, raising=False)
    tasks.ensure_venv()
    pips = [c for c in commands if "pip" in c]
    assert not any("--index-url" in c for c in pips)       # unset: the default index only
    assert any("-r" in c for c in pips)

    commands.clear()
    (tmp_path / "stamp").unlink()
    monkeypatch.setenv(tasks.TORCH_INDEX_ENV, "https://download.pytorch.org/whl/cpu")
    tasks.ensure_venv()
    pips = [c for c in commands if "pip" in c]
    assert pips[0][-3:] == ["--index-url", "https://download.pytorch.org/whl/cpu", pin]  # first, alone
    assert "-r" in pips[1] and not any("--index-url" in c for c in pips[1:])
