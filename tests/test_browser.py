"""A real browser reads every page of the built book, as a phone (400 px) and as a desktop (1400 px).

Headless Chromium (Debian's chromium and chromium-driver, installed by tasks.py) loads
each page of the table of contents in turn, in one browser session, at each width, from
the server that ``python3 tasks.py book`` runs (``tasks.book_server``). On every page,
at both widths, it records:

* formulas: every one typeset by MathJax (served from the book), without TeX errors;
* display equations: no glyph (nor equation number) outside a box that cannot scroll
  to it, i.e. cut off: left of a scrolling box's start, or beyond the edge of a box
  that does not scroll, or off the screen;
* width: the page is no wider than the screen, and no element of the article sticks
  out of it unless a scrolling box holds it;
* images: every one loaded, and shown in its own proportions (not squeezed);
* the console: no error;

and, on the desktop, the size at which each figure's smallest text is shown. The PNGs
that ``course_lib`` makes in a notebook record the size in points of their smallest
text (``course_lib.plotting.TEXT_SIZE_KEY``; their dpi is in the PNG too): shown at
``clientWidth / naturalWidth`` of its pixel size, that text is
``points / 72 * dpi * scale`` CSS pixels high, which must be about 9 px or more.

The tests below assert on what was recorded, page by page. Screenshots, for a person
to look at: ``_build/screenshots/{phone,desktop,dark-phone,dark-desktop}/<page>.png``
(the top of every page; dark mode follows the system setting, emulated here), one per
section of every chapter at both widths (``<page>_sections/``), and one of every
problem found (``problems/``). Set ``COURSE_SCREENSHOTS=0`` to skip the section
screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tasks

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = {"phone": 400, "desktop": 1400}
HEIGHT = 900
MIN_TEXT_PX = tasks.MIN_FIGURE_TEXT_PX  # the smallest text a figure may show on the desktop page, in CSS px
TEXT_PX_SLACK = 0.05                     # "about 9 px": rounding of the recorded size


def toc_pages() -> list[str]:
    """The built pages of the table of contents, in its order (``book/x.html``)."""
    toc = (ROOT / "_toc.yml").read_text()
    docs = re.findall(r"^root:\s*(\S+)", toc, re.M) + re.findall(r"^\s*-\s*file:\s*(\S+)", toc, re.M)
    return [f"{doc}.html" for doc in docs]


PAGES = toc_pages()
CHAPTERS = [p for p in PAGES if re.match(r"book/chapter_\d+_", p)]


@dataclass
class PageRecord:
    """What one page showed at one width."""

    mathjax: dict | None = None
    equations: list[str] = field(default_factory=list)   # cut-off equations, described
    overflow: list[str] = field(default_factory=list)    # what makes the page wider than the screen
    images: list[list] = field(default_factory=list)     # [src, loaded, naturalWidth, clientWidth, caption]
    distorted: list[str] = field(default_factory=list)   # images not shown in their own proportions
    console: list[dict] = field(default_factory=list)
    title: str = ""
    column: float | None = None                          # width of a code cell's output box
    tables: list[int] = field(default_factory=list)      # px each table hides (it scrolls to them)
    seconds: float = 0.0


# JavaScript run on each page once MathJax is done. It returns what the checks need.
SURVEY = r"""
const vw = document.documentElement.clientWidth;
const round = v => Math.round(v);
const describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
  (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\s+/).join('.') : '');
function reach(rect, el, includeSelf) {
  // Why the box `rect` (inside element `el`) cannot be seen in full, or null if it can.
  let a = includeSelf ? el : el.parentElement;
  for (; a && a !== document.body && a !== document.documentElement; a = a.parentElement) {
    const s = getComputedStyle(a);
    if (s.overflowX === 'visible') continue;
    const scrolls = s.overflowX === 'auto' || s.overflowX === 'scroll';
    const r = a.getBoundingClientRect();
    const start = r.left + a.clientLeft - a.scrollLeft, end = r.left + a.clientLeft + a.clientWidth;
    if (rect.left < start - 1)
      return `starts ${round(start - rect.left)} px left of where ${describe(a)} can scroll`;
    if (!scrolls && rect.right > end + 1)
      return `ends ${round(rect.right - end)} px beyond ${describe(a)}, which does not scroll`;
    if (scrolls) return null;   // the reader can scroll this box to all of it
  }
  if (rect.left < -1) return `starts ${round(-rect.left)} px left of the screen`;
  if (rect.right > vw + 1) return `ends ${round(rect.right - vw)} px right of the screen`;
  return null;
}
const equationName = c => {
  const label = c.querySelector('mjx-labels, mjx-mlabeledtr mjx-mtd');
  const eqno = c.parentElement && c.parentElement.querySelector(':scope > span.eqno');
  const tex = (c.parentElement.getAttribute('data-tex') || '').slice(0, 40);
  return (label && label.textContent.trim()) || (eqno && eqno.textContent.trim()) ||
         'equation ' + (Array.from(document.querySelectorAll('mjx-container[display="true"]')).indexOf(c) + 1);
};
const equations = [];
document.querySelectorAll('mjx-container[display="true"]').forEach(c => {
  // the glyphs: every character MathJax drew
  let left = Infinity, right = -Infinity;
  c.querySelectorAll('mjx-c').forEach(g => {
    const r = g.getBoundingClientRect();
    if (r.width > 0) { left = Math.min(left, r.left); right = Math.max(right, r.right); }
  });
  if (left === Infinity) return;
  const why = reach({left, right}, c, true);
  if (why) { c.setAttribute('data-course-problem', equations.length); equations.push(`${equationName(c)}: ${why}`); }
});
document.querySelectorAll('div.math > span.eqno').forEach(e => {
  const why = reach(e.getBoundingClientRect(), e, false);
  if (why) equations.push(`equation number ${e.textContent.trim()}: ${why}`);
});
const overflow = [];
const root = document.documentElement;
if (root.scrollWidth > root.clientWidth + 1)
  overflow.push(`the page is ${root.scrollWidth} px wide on a ${root.clientWidth} px screen`);
const article = document.querySelector('article.bd-article') || document.querySelector('main');
const seen = new Set();
for (const el of article.querySelectorAll('*')) {
  if (el.closest('mjx-container, mjx-assistive-mml')) continue;
  const r = el.getBoundingClientRect();
  if (!r.width || r.right <= vw + 1) continue;
  const why = reach(r, el, false);
  if (why && !seen.has(why)) {
    seen.add(why);
    overflow.push(`${describe(el)} "${(el.textContent || '').trim().slice(0, 50)}" ${why}`);
  }
}
const caption = img => {
  // the figure's caption: the first paragraph after the image's cell that starts with "Figure"
  let at = img.closest('div.cell') || img;
  for (let k = 0; k < 4 && at; k++) {
    at = at.nextElementSibling;
    if (at && /^Figure\s+[\dA-Z]/.test(at.textContent.trim())) return at.textContent.trim().slice(0, 60);
  }
  return '(no caption found)';
};
const images = Array.from(article.querySelectorAll('img')).map(i =>
  [i.getAttribute('src'), i.complete && i.naturalWidth > 0, i.naturalWidth, i.getBoundingClientRect().width, caption(i)]);
// images shown with another shape than their own (a fixed height on a narrowed image)
const distorted = Array.from(article.querySelectorAll('img')).filter(i => i.complete && i.naturalWidth > 0)
  .map(i => [i.getAttribute('src'), i.naturalWidth / i.naturalHeight, i.getBoundingClientRect()])
  .filter(([, natural, r]) => r.width > 0 && r.height > 0 && Math.abs(r.width / r.height / natural - 1) > 0.02)
  .map(([src, natural, r]) => `${src}: shown ${round(r.width)} x ${round(r.height)} px, ` +
                              `its own shape ${natural.toFixed(2)} : 1`);
const h1 = document.querySelector('h1');
const output = document.querySelector('div.cell_output');
const tables = Array.from(document.querySelectorAll('.pst-scrollable-table-container'))
                    .map(b => b.scrollWidth - b.clientWidth);
return {equations, overflow, images, distorted, title: h1 ? h1.textContent.trim() : '', column: output ? output.clientWidth : null,
        tables};
"""

WAIT_FOR_MATHJAX = r"""
const done = arguments[arguments.length - 1];
const start = Date.now();
(function wait() {
  if (document.readyState === 'complete' && !document.querySelector('.math')) {
    done({typeset: 0, math: 0, raw: 0, errors: 0});             // a page without formulas
  } else if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done({
      typeset: document.querySelectorAll('mjx-container').length,
      math: document.querySelectorAll('.math').length,
      raw: Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container')).length,
      errors: document.querySelectorAll('mjx-merror').length,
    }));
  } else if (Date.now() - start > 30000) { done(null); } else { setTimeout(wait, 50); }
})();
"""


@pytest.fixture(scope="module")
def server(built_book):
    """The book served as `python3 tasks.py book` serves it."""
    httpd = tasks.book_server(built_book, port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        if os.environ.get("COURSE_SKIP_BROWSER") == "1":
            pytest.skip("COURSE_SKIP_BROWSER=1 and Chromium is not installed")
        pytest.fail("Chromium and ChromeDriver are needed: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="course-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--disable-component-update", "--no-first-run",
                f"--user-data-dir={profile}", f"--window-size=1400,{HEIGHT}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def load(browser, url: str) -> dict | None:
    browser.get(url)
    return browser.execute_async_script(WAIT_FOR_MATHJAX)


def set_width(browser, width: int) -> None:
    browser.set_window_size(width, HEIGHT)
    inner = browser.execute_script("return window.innerWidth")
    if inner != width:  # the window's frame: size the viewport itself to the width
        browser.set_window_size(2 * width - inner, HEIGHT)


def set_dark(browser, dark: bool) -> None:
    """Emulate the system's dark setting (the book follows it: default_mode auto)."""
    value = "dark" if dark else "light"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": value}]})


def screenshot(browser, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(path)), path


@pytest.fixture(scope="module")
def survey(browser, server, built_book) -> dict[tuple[str, str], PageRecord]:
    """Every page at both widths, once: what the tests below check, and the screenshots."""
    shots = built_book.parent / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    sections = os.environ.get("COURSE_SCREENSHOTS", "1") != "0"
    records: dict[tuple[str, str], PageRecord] = {}
    started = time.perf_counter()
    for device, width in WIDTHS.items():
        set_width(browser, width)
        set_dark(browser, False)
        for page in PAGES:
            t0 = time.perf_counter()
            browser.get_log("browser")  # drop the messages of earlier pages
            record = records[page, device] = PageRecord()
            record.mathjax = load(browser, f"{server}/{page}")
            found = browser.execute_script(SURVEY)
            record.equations, record.overflow = found["equations"], found["overflow"]
            record.images, record.title, record.column = found["images"], found["title"], found["column"]
            record.tables = found["tables"]
            record.distorted = found["distorted"]
            record.console = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            name = Path(page).stem
            screenshot(browser, shots / device / f"{name}.png")
            for k, _ in enumerate(record.equations):
                browser.execute_script(
                    "const e = document.querySelector(`[data-course-problem='${arguments[0]}']`);"
                    "if (e) e.scrollIntoView({block: 'center'});", k)
                screenshot(browser, shots / "problems" / f"{name}_{device}_equation{k}.png")
            if sections and page in CHAPTERS:
                ids = browser.execute_script(
                    "return Array.from(document.querySelectorAll('main section[id] > h2'))"
                    ".map(h => h.parentElement.id)")
                for k, sid in enumerate(ids):
                    browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", sid)
                    screenshot(browser, shots / device / f"{name}_sections" / f"{k:02d}-{sid}.png")
            record.seconds = time.perf_counter() - t0
    # dark mode: the top of every page at both widths
    set_dark(browser, True)
    for device, width in WIDTHS.items():
        set_width(browser, width)
        for page in PAGES:
            load(browser, f"{server}/{page}")
            assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
            screenshot(browser, shots / f"dark-{device}" / f"{Path(page).stem}.png")
    set_dark(browser, False)
    print(f"\n[browser] {len(PAGES)} pages at {len(WIDTHS)} widths (and in dark mode) "
          f"in {time.perf_counter() - started:.0f} s; screenshots in {shots}")
    return records


CASES = [(page, device) for device in WIDTHS for page in PAGES]
IDS = [f"{Path(p).stem}-{d}" for p, d in CASES]


@pytest.mark.parametrize("page, device", CASES, ids=IDS)
def test_formulas_are_typeset(survey, page, device):
    state = survey[page, device].mathjax
    assert state is not None, "MathJax never started: is _static/mathjax served?"
    assert state["raw"] == 0, f"{state['raw']} formulas were left as raw TeX"
    assert state["typeset"] >= state["math"]
    assert state["errors"] == 0, "MathJax reported TeX errors"


@pytest.mark.parametrize("page, device", CASES, ids=IDS)
def test_no_equation_is_cut_off(survey, page, device):
    cut = survey[page, device].equations
    assert cut == [], f"{len(cut)} display equations cut off at {WIDTHS[device]} px:\n" + "\n".join(cut)


@pytest.mark.parametrize("page, device", CASES, ids=IDS)
def test_page_is_no_wider_than_the_screen(survey, page, device):
    wide = survey[page, device].overflow
    assert wide == [], f"wider than a {WIDTHS[device]} px screen:\n" + "\n".join(wide)


@pytest.mark.parametrize("page, device", CASES, ids=IDS)
def test_images_load_and_console_is_clean(survey, page, device):
    record = survey[page, device]
    broken = [src for src, loaded, *_ in record.images if not loaded]
    assert broken == [], f"images that failed to load: {broken}"
    assert record.console == [], record.console


@pytest.mark.parametrize("page, device", CASES, ids=IDS)
def test_images_keep_their_proportions(survey, page, device):
    """A figure narrowed to fit the column keeps its shape (its height follows its width)."""
    bad = survey[page, device].distorted
    assert bad == [], f"images squeezed out of shape at {WIDTHS[device]} px:\n" + "\n".join(bad)


HOMEWORK = [p for p in PAGES if "/_student/hw" in p]


@pytest.mark.parametrize("page", HOMEWORK, ids=[Path(p).stem for p in HOMEWORK])
def test_homework_table_of_questions_fits_a_phone(survey, page):
    """The first table of a homework page lists its questions and points: on a phone it shows whole."""
    tables = survey[page, "phone"].tables
    assert tables and tables[0] <= 1, f"the table of questions hides {tables[0] if tables else '?'} px"


def figure_text_px(built_book: Path, page: str, image: list) -> tuple[float | None, str]:
    """The size in CSS px at which a figure's smallest text is shown, and how it was found."""
    src, _, natural, shown, _ = image
    _, dpi, texts = tasks.png_info(((built_book / page).parent / src).read_bytes())
    points = texts.get(tasks.TEXT_SIZE_KEY)
    if points is None or not dpi:
        return None, f"{Path(src).name}: no record of its text size (made before course_lib recorded it)"
    px = float(points) / 72 * float(dpi) * shown / natural
    return px, f"{float(points):g} pt at {float(dpi):.0f} dpi, shown at {shown / natural:.2f} of its size"


@pytest.mark.parametrize("page", PAGES, ids=[Path(p).stem for p in PAGES])
def test_figure_text_is_readable_on_the_desktop(survey, built_book, page):
    problems = []
    for image in survey[page, "desktop"].images:
        if "_images/" not in image[0]:
            continue
        px, how = figure_text_px(built_book, page, image)
        if px is None or px < MIN_TEXT_PX - TEXT_PX_SLACK:
            shown = "unknown size" if px is None else f"{px:.1f} px"
            problems.append(f"{image[4][:40]}: smallest text {shown} ({how})")
    assert problems == [], (f"figure text below {MIN_TEXT_PX:g} px on the desktop page:\n" + "\n".join(problems))


def stored_figures(page: str) -> int:
    import json

    nb = json.loads((ROOT / page).with_suffix(".ipynb").read_text())
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for o in c["outputs"])


@pytest.mark.parametrize("page", CHAPTERS, ids=[Path(p).stem for p in CHAPTERS])
def test_chapter_shows_its_figures_and_number(survey, page):
    record = survey[page, "desktop"]
    figures = [src for src, *_ in record.images if "_images/" in src]
    assert len(figures) == stored_figures(page), f"{len(figures)} figures on the page: {record.images}"
    number = int(re.match(r"book/chapter_(\d+)_", page).group(1))
    assert record.title.startswith(f"{number}. "), record.title
    assert record.mathjax and record.mathjax["typeset"] >= 20
    # `python3 tasks.py figures` assumes this column width when it estimates figure text
    assert abs(record.column - tasks.DESKTOP_COLUMN_PX) <= 2, record.column


def test_every_page_of_the_table_of_contents_was_read_at_both_widths(survey, built_book):
    assert set(survey) == {(page, device) for page in PAGES for device in WIDTHS}
    assert len(PAGES) >= 16 and all((built_book / page).is_file() for page in PAGES)
    # how long it took, for the record (timings are not checked: the machine may be busy)
    seconds = sum(r.seconds for r in survey.values())
    slowest = max(survey.items(), key=lambda kv: kv[1].seconds)
    print(f"\n[browser] pages read in {seconds:.0f} s; slowest: {slowest[0]} ({slowest[1].seconds:.1f} s)")


def test_search_finds_pages_over_http(browser, server):
    """Search needs the server (browsers refuse its requests on file://): results and their snippets."""
    set_width(browser, WIDTHS["desktop"])
    browser.get_log("browser")
    browser.get(f"{server}/search.html?q=positional+encoding")
    found = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const start = Date.now();
        let finished = null;   // the snippets load one by one, after the results are listed
        (function wait() {
          const items = Array.from(document.querySelectorAll('#search-results ul.search li'));
          const status = document.querySelector('#search-results .search-summary');
          if (finished === null && status && /found|did not match/i.test(status.textContent)) finished = Date.now();
          const loaded = items.filter(li => li.querySelector('p.context'));
          if (finished !== null && (loaded.length === items.length || Date.now() - finished > 10000)) {
            done({count: items.length, pages: items.map(li => li.querySelector('a').getAttribute('href')),
                  snippets: loaded.filter(li => li.querySelector('p.context').textContent.trim()).length});
          } else if (Date.now() - start > 40000) { done(null); } else { setTimeout(wait, 100); }
        })();
        """
    )
    assert found is not None, "search never finished"
    assert found["count"] >= 5, found
    assert any("chapter_04_self_attention" in p for p in found["pages"]), found["pages"]
    assert found["snippets"] == found["count"], "every result shows a snippet of its page"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_boxes_that_scroll_say_so(browser, server):
    """On a phone, a table wider than the column is marked (and faded) on the side that hides more."""
    set_width(browser, WIDTHS["phone"])
    load(browser, f"{server}/book/chapter_06_bert.html")
    state = browser.execute_script(
        """
        const box = Array.from(document.querySelectorAll('.pst-scrollable-table-container'))
                         .find(b => b.scrollWidth > b.clientWidth + 1);
        if (!box) return null;
        const before = Array.from(box.classList);
        box.scrollLeft = box.scrollWidth;
        return new Promise(resolve => setTimeout(() => resolve({before, after: Array.from(box.classList)}), 300));
        """
    )
    assert state is not None, "expected chapter 6's ELMo/GPT/BERT table to be wider than a phone's column"
    assert "course-more-right" in state["before"] and "course-more-left" not in state["before"]
    assert "course-more-left" in state["after"] and "course-more-right" not in state["after"]


# --- Attention explorers (course_lib.explorer) --------------------------------------------
#
# Every chapter page with an explorer, once at each width: the weights a reader sees
# after a hover or a click (desktop), a tap (phone) or the arrow keys equal those the notebook computed
# (exported to the output's metadata, read here from the .ipynb, not from the page), every
# row shown sums to one, another head, block or kind of attention shows other weights,
# the explorer fits the screen (scrolling inside its own box), its colours stay readable
# in dark mode, the console shows no error, and no request leaves the page.

EXPLORER_KEY = "course_lib/attention_explorer"


def stored_explorers(page: str) -> list[dict]:
    """The weights behind each explorer of a chapter, in page order, from its notebook."""
    import json

    nb = json.loads((ROOT / page).with_suffix(".ipynb").read_text())
    return [o["metadata"][EXPLORER_KEY] for c in nb["cells"] if c["cell_type"] == "code"
            for o in c["outputs"] if EXPLORER_KEY in o.get("metadata", {})]


EXPLORER_PAGES = [p for p in CHAPTERS if stored_explorers(p)]

# What the page shows: the explorer's state and the weights on its key tokens.
EXPLORER_STATE = r"""
const root = document.querySelectorAll('.attention-view')[arguments[0]];
const keys = Array.from(root.querySelectorAll('[data-side=key]'));
const active = document.activeElement;
return {sentence: +root.dataset.sentence, kind: +root.dataset.kind, block: +root.dataset.block,
        head: +root.dataset.head, query: +root.dataset.query,
        keys: keys.map(k => +k.dataset.tokenIndex), weights: keys.map(k => k.dataset.weight),
        queries: root.querySelectorAll('[data-side=query]').length,
        focused: active && root.contains(active) && active.dataset.side === 'query' ? +active.dataset.tokenIndex : null};
"""

CHOOSE = r"""
const root = document.querySelectorAll('.attention-view')[arguments[0]];
const select = root.querySelector(`select[data-role="${arguments[1]}"]`);
if (!select) return false;
select.value = String(arguments[2]);
select.dispatchEvent(new Event('change', {bubbles: true}));
return true;
"""

# Colours in the explorer: the contrast of its text (and of the selected token) with the
# background behind it, by WCAG's formula.
CONTRAST = r"""
const root = document.querySelectorAll('.attention-view')[arguments[0]];
const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
function background(el) {
  // the colour behind el's text: its own and its ancestors' backgrounds, composited
  const layers = [];
  for (let a = el; a; a = a.parentElement) {
    const c = rgb(getComputedStyle(a).backgroundColor);
    const alpha = c.length === 4 ? c[3] : 1;
    if (alpha > 0) layers.push([c.slice(0, 3), alpha]);
    if (alpha >= 1) break;
  }
  let colour = [255, 255, 255];
  for (const [c, alpha] of layers.reverse()) colour = colour.map((v, i) => alpha * c[i] + (1 - alpha) * v);
  return colour;
}
const lum = c => { const v = c.map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
                   return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
const ratio = el => { const a = lum(rgb(getComputedStyle(el).color).slice(0, 3)), b = lum(background(el));
                      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
const selected = root.querySelector('[data-side=query][aria-selected=true]');
const keys = Array.from(root.querySelectorAll('[data-side=key]'));
const strongest = keys.reduce((a, b) => (+b.dataset.weight > +a.dataset.weight ? b : a));   // the darkest tint
const token = strongest.querySelector('.av-word'), value = strongest.querySelector('.av-val');
const box = root.getBoundingClientRect(), scroller = root.querySelector('.av-scroll');
return {theme: document.documentElement.dataset.theme, selected: ratio(selected), token: ratio(token),
        value: ratio(value), right: box.right, width: document.documentElement.clientWidth,
        page: document.documentElement.scrollWidth, scrolls: getComputedStyle(scroller).overflowX};
"""


def exported_row(export: dict, state: dict) -> list[float]:
    s = export["sentences"][state["sentence"]]
    return s["weights"][state["kind"]][state["block"]][state["head"]][state["query"]]


def check_shown(browser, k: int, export: dict, problems: list[str], what: str) -> dict:
    """Compare the weights shown by explorer k with the exported ones; return the state."""
    state = browser.execute_script(EXPLORER_STATE, k)
    expected = exported_row(export, state)
    shown = [float(w) for w in state["weights"]]
    digits = export["digits"]
    where = (f"{what}: sentence {state['sentence'] + 1}, kind {state['kind']}, block {state['block'] + 1}, "
             f"head {state['head'] + 1}, query {state['query']}")
    if state["keys"] != list(range(len(expected))):
        problems.append(f"{where}: key tokens {state['keys']}, expected {len(expected)}")
    elif any(abs(a - b) >= 10 ** -digits + 1e-9 for a, b in zip(shown, expected)):
        problems.append(f"{where}: shown {shown}, computed {[round(v, 4) for v in expected]}")
    if abs(sum(shown) - 1) > 1e-9 * len(shown) + 10 ** -(digits + 3):
        problems.append(f"{where}: the weights shown sum to {sum(shown):.6f}")
    return state


def point_at(browser, element, how: str) -> None:
    """Select a token as a reader would: "hover" (mouse over it), "click" or "tap" (touch)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    if how == "tap":
        actions = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
        actions.pointer_action.move_to(element).pointer_down().pointer_up()
        actions.perform()
    elif how == "hover":
        # a real move onto the token. The explorer ignores a mouse event at the position of
        # the last one it saw (the browser sends one when the page scrolls under a resting
        # pointer), and scrolling put this token where the last click was, at its centre:
        # so come from above and stop a few pixels off the centre
        ActionChains(browser).move_to_element_with_offset(element, 0, -30) \
            .move_to_element_with_offset(element, 3, 2).perform()
    else:
        ActionChains(browser).move_to_element(element).click().perform()


def differing_row(export: dict, state: dict, field_name: str, count: int) -> int | None:
    """Another block or head (field_name) whose row for the current query differs from this one's."""
    here = exported_row(export, state)
    for other in range(count):
        if other != state[field_name]:
            row = exported_row(export, {**state, field_name: other})
            if max(abs(a - b) for a, b in zip(row, here)) > 2 * 10 ** -export["digits"]:
                return other
    return None


@pytest.mark.parametrize("page, device", [(p, d) for p in EXPLORER_PAGES for d in WIDTHS],
                         ids=[f"{Path(p).stem}-{d}" for p in EXPLORER_PAGES for d in WIDTHS])
def test_attention_explorers_show_the_notebooks_weights(browser, server, page, device):
    from selenium.webdriver.common.keys import Keys

    exports = stored_explorers(page)
    set_width(browser, WIDTHS[device])
    set_dark(browser, False)
    browser.get_log("browser")
    load(browser, f"{server}/{page}")
    count = browser.execute_script("return document.querySelectorAll('.attention-view').length")
    assert count == len(exports), f"{count} explorers on the page, {len(exports)} in the notebook"
    problems: list[str] = []
    for k, export in enumerate(exports):
        root = browser.find_elements("css selector", ".attention-view")[k]
        n_sentences = len(export["sentences"])
        for sentence in sorted({0, n_sentences // 2, n_sentences - 1}):
            browser.execute_script(CHOOSE, k, "sentence", sentence)
            state = check_shown(browser, k, export, problems, "first shown")
            assert state["sentence"] == sentence
            # click (desktop) or tap (phone) a few query tokens
            picks = list(dict.fromkeys([state["queries"] // 2, 0, state["queries"] - 1]))
            picks.sort(key=lambda q: q == state["query"])          # hover first on a token not yet selected
            for n, q in enumerate(picks):
                token = root.find_element("css selector", f'[data-side=query][data-token-index="{q}"]')
                how = "tap" if device == "phone" else "hover" if n == 0 else "click"
                point_at(browser, token, how)
                state = check_shown(browser, k, export, problems, f"after a {how}")
                assert state["query"] == q, f"{how} on query token {q} showed query {state['query']}"
            # the keyboard: the selected token has the focus; Up and Home move the selection
            token = root.find_element("css selector", f'[data-side=query][data-token-index="{state["queries"] - 1}"]')
            point_at(browser, token, "tap" if device == "phone" else "click")
            token.send_keys(Keys.ARROW_UP)
            state = check_shown(browser, k, export, problems, "after the Up key")
            if state["queries"] > 1:
                assert state["query"] == state["queries"] - 2 and state["focused"] == state["query"], state
            browser.switch_to.active_element.send_keys(Keys.HOME)
            state = check_shown(browser, k, export, problems, "after the Home key")
            assert state["query"] == 0 and state["focused"] == 0, state
        # another kind of attention, block or head shows other weights
        for role, field_name in (("attention", "kind"), ("block", "block"), ("head", "head")):
            kinds = export["kinds"]
            total = len(kinds) if field_name == "kind" else kinds[state["kind"]][field_name + "s"]
            if total < 2:
                continue
            if field_name == "kind":
                assert browser.execute_script(CHOOSE, k, role, 1)
                state = check_shown(browser, k, export, problems, "another kind of attention")
                assert state["kind"] == 1
                continue
            other = differing_row(export, state, field_name, total)
            if other is None:
                continue
            before = state["weights"]
            assert browser.execute_script(CHOOSE, k, role, other)
            state = check_shown(browser, k, export, problems, f"another {field_name}")
            assert state[field_name] == other and state["weights"] != before, (field_name, state)
        # fits the screen, and readable colours in both themes
        for dark in (False, True):
            set_dark(browser, dark)
            wanted = "dark" if dark else "light"
            for _ in range(50):   # the theme follows the system's setting on its change event
                if browser.execute_script("return document.documentElement.dataset.theme") == wanted:
                    break
                time.sleep(0.1)
            colours = browser.execute_script(CONTRAST, k)
            assert colours["theme"] == ("dark" if dark else "light"), colours
            assert colours["page"] <= colours["width"] + 1 and colours["right"] <= colours["width"] + 1, colours
            assert colours["scrolls"] in ("auto", "scroll"), colours
            for part in ("selected", "token", "value"):
                assert colours[part] >= 4.5, f"explorer {k}, {'dark' if dark else 'light'} theme: {part} contrast {colours}"
        set_dark(browser, False)
    assert problems == [], "\n".join(problems[:20])
    origin = server.rstrip("/")
    requests = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    outside = [r for r in requests if not r.startswith(origin) and not r.startswith("data:")]
    assert outside == [], f"requests that left the page: {outside}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
