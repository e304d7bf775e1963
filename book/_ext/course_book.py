"""Sphinx tweaks for the course book: local MathJax, and no duplicate page scripts.

1. Serve MathJax from the built book itself instead of a CDN. The book must typeset its formulas offline (in the test suite's browser check, on a
laptop without network, on a course server behind a firewall). MathJax 3's files come
from the pinned PyPI package ``django-static-mathjax`` (a plain copy of MathJax's
release; importable as ``mathjax``). This extension points Sphinx's ``mathjax_path``
at ``_static/mathjax/`` and copies the few parts MathJax needs there after the build.

2. sphinx-thebe (loaded by Jupyter Book 1 whether or not live code is used) registers
its inline configuration script twice, and the second ``const THEBE_JS_URL = ...``
is a JavaScript error on every page. Before a page is written, identical script
entries are dropped, keeping the first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

ENTRY = "tex-mml-chtml.js"
# What tex-mml-chtml.js loads at run time: the CommonHTML fonts, the menu's lazily
# loaded accessibility and UI components, and TeX extensions pulled in by \require.
PARTS = (ENTRY, "output/chtml/fonts/woff-v2", "a11y", "ui", "input/tex/extensions")


def _mathjax_es5() -> Path | None:
    try:
        import mathjax  # the django-static-mathjax distribution
    except ImportError:
        return None
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    return es5 if (es5 / ENTRY).is_file() else None


def _configure(app: Sphinx, config: Config) -> None:
    if _mathjax_es5() is None:
        logger.info("local_mathjax: package 'django-static-mathjax' not found; MathJax comes from its CDN")
        return
    config.mathjax_path = f"mathjax/{ENTRY}"  # relative paths are relative to _static/


def _copy(app: Sphinx, exception: Exception | None) -> None:
    es5 = _mathjax_es5()
    if exception is not None or es5 is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in PARTS:
        src, dst = es5 / part, target / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)


def _drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # The two copies differ only in filename None vs "": treat both as "inline".
        key = (getattr(js, "filename", None) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    # In place: it is the builder's own list, which later handlers (MathJax's) append to.
    scripts[:] = unique


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy)
    # Early: the event stops at the first handler that returns a template name.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
