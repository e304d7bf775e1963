"""A real browser opens the built book: formulas typeset, figures load, no console errors.

Headless Chromium (Debian's chromium and chromium-driver, installed by tasks.py) loads
the chapter from a local HTTP server. A screenshot of the chapter page is saved in
_build/screenshots/ for a person to look at.
"""

from __future__ import annotations

import functools
import json
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("chapter_*.ipynb"))
HOMEWORKS = sorted(p.stem for p in (ROOT / "book" / "homework").glob("hw*.ipynb"))
PAGES = [
    *[f"book/{c}.html" for c in CHAPTERS],
    "book/preface.html",
    "book/glossary.html",
    "book/appendix_corpus.html",
    *[f"book/homework/_student/{h}.html" for h in HOMEWORKS],
]


def stored_figures(chapter: str) -> int:
    nb = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


@pytest.fixture(scope="module")
def server(built_book):
    handler = functools.partial(QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


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
                f"--user-data-dir={profile}", "--window-size=1280,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def load(browser, url):
    browser.get(url)
    # Wait until MathJax has finished typesetting the page (it loads asynchronously).
    return browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const start = Date.now();
        (function wait() {
          if (document.readyState === "complete" && !document.querySelector('.math')) {
            done({typeset: 0, math: 0, raw: 0, mjxErrors: 0});   // a page without formulas
          } else if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            MathJax.startup.promise.then(() => done({
              typeset: document.querySelectorAll('mjx-container').length,
              math: document.querySelectorAll('.math').length,
              raw: Array.from(document.querySelectorAll('.math'))
                         .filter(e => !e.querySelector('mjx-container')).length,
              mjxErrors: document.querySelectorAll('mjx-merror').length,
            }));
          } else if (Date.now() - start > 30000) { done(null); } else { setTimeout(wait, 100); }
        })();
        """
    )


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_math_and_has_no_console_errors(browser, server, page):
    browser.get_log("browser")  # drop messages from earlier pages
    state = load(browser, f"{server}/{page}")
    assert state is not None, "MathJax never started: is _static/mathjax served?"
    assert state["raw"] == 0, f"{state['raw']} formulas were left as raw TeX"
    assert state["typeset"] >= state["math"]
    assert state["mjxErrors"] == 0, "MathJax reported TeX errors"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    out = Path(__file__).resolve().parents[1] / "_build" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(out / f"page_{Path(page).stem}.png"))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_figures_load_and_screenshots(browser, server, built_book, chapter):
    state = load(browser, f"{server}/book/{chapter}.html")
    assert state and state["typeset"] >= 20, f"expected the chapter's formulas to be typeset, got {state}"
    images = browser.execute_script(
        "return Array.from(document.querySelectorAll('main img, article img'))"
        ".map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);"
    )
    figures = [src for src, _ in images if "_images/" in src]
    assert len(figures) == stored_figures(chapter), f"{len(figures)} figures on the page: {images}"
    broken = [src for src, ok in images if not ok]
    assert broken == [], f"images that failed to load: {broken}"
    title = browser.execute_script("return document.querySelector('h1').textContent")
    number = int(chapter.split("_")[1])
    assert title.startswith(f"{number}. "), title

    out = built_book.parent / "screenshots"
    out.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(out / f"{chapter}.png"))
    assert (out / f"{chapter}.png").stat().st_size > 20_000
    # One more screenshot per section, scrolled to its heading, for reviewing the page.
    sections = out / f"{chapter}_sections"
    shutil.rmtree(sections, ignore_errors=True)
    sections.mkdir()
    ids = browser.execute_script(
        "return Array.from(document.querySelectorAll('main section[id] > h2')).map(h => h.parentElement.id)"
    )
    assert len(ids) >= 8, ids
    for k, sid in enumerate(ids):
        browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", sid)
        assert browser.save_screenshot(str(sections / f"{k:02d}-{sid}.png"))
