"""The book: build it, serve it on this machine, and measure its figures' text on the page.

``python3 tasks.py book`` and ``python3 tasks.py figures``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import http.server
import json
import os
import struct
import sys
import webbrowser
from pathlib import Path

from course_tasks.environment import BUILD, HOMEWORK_DIR, ROOT, ensure_venv, log, notebooks, print_table, run
from course_tasks.homework import generate_homework


def build_book(py: Path, warnings_as_errors: bool = True) -> Path:
    """Build the HTML book from the notebooks' stored outputs into _build/html."""
    generate_homework()  # the book shows the student versions of the homework
    jb = py.parent / ("jupyter-book.exe" if os.name == "nt" else "jupyter-book")
    cmd = [jb, "build", ROOT, "--builder", "html", "--keep-going"]
    if warnings_as_errors:
        cmd += ["--warningiserror", "--nitpick"]
    run(cmd)
    return BUILD / "html" / "index.html"


BOOK_HOST, BOOK_PORT = "127.0.0.1", 8000


class BookRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built book; logs failed requests only."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript", ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2",
        ".ipynb": "application/x-ipynb+json",
    }

    def log_request(self, code="-", size="-"):
        if str(getattr(code, "value", code)).startswith(("4", "5")):
            super().log_request(code, size)


def book_server(directory: Path, port: int = BOOK_PORT) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the built book on this machine only, at ``port`` or the next free one (0: any)."""
    handler = functools.partial(BookRequestHandler, directory=str(directory))
    for candidate in [port + k for k in range(20)] if port else [0]:
        try:
            return http.server.ThreadingHTTPServer((BOOK_HOST, candidate), handler)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
    sys.exit(f"ports {port} to {port + 19} are all in use: choose another with --port")


def serve_book(directory: Path, port: int = BOOK_PORT, open_browser: bool = False) -> None:
    """Serve ``directory`` until Ctrl-C (searching the book needs a server: browsers block it on file://)."""
    httpd = book_server(directory, port)
    url = f"http://{BOOK_HOST}:{httpd.server_address[1]}/"
    log(f"the book is at {url}  (Ctrl-C stops the server)")
    if open_browser:
        webbrowser.open(url)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print(flush=True)
        log("server stopped")
    finally:
        httpd.server_close()


def cmd_book(args: argparse.Namespace) -> None:
    site = BUILD / "html"
    if args.no_build:
        if not (site / "index.html").is_file():
            sys.exit(f"there is no built book in {site.relative_to(ROOT)}: run python3 tasks.py book")
    else:
        py = ensure_venv()
        build_book(py)
        log(f"book built: {site.relative_to(ROOT)}/")
    if args.no_serve or os.environ.get("CI"):
        log("to read it, serve it: python3 tasks.py book --no-build")
        return
    serve_book(site, args.port, open_browser=not args.no_open and sys.stdout.isatty())


# --- figures on the page ---------------------------------------------------------------

# The width of a chapter's text column (a code cell's output box) in a 1400 px desktop
# window with a classic scroll bar (784 px where scroll bars overlay the page), and the
# smallest text a figure may show there, in CSS px. tests/test_browser.py measures the
# column and checks every figure in a real browser; `figures` estimates the same from
# the notebooks alone, before the book is built.
DESKTOP_COLUMN_PX = 772
MIN_FIGURE_TEXT_PX = 9.0
TEXT_SIZE_KEY = "course_lib:smallest_text_pt"  # course_lib.plotting.TEXT_SIZE_KEY


def png_info(data: bytes) -> tuple[int, float | None, dict[str, str]]:
    """A PNG's width in pixels, its dpi (pHYs chunk; None if absent) and its text chunks."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width = struct.unpack(">I", data[16:20])[0]
    pos, dpi, texts = 8, None, {}
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"pHYs":
            per_unit, _, unit = struct.unpack(">IIB", body)
            dpi = per_unit * 0.0254 if unit == 1 else None
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"IEND":
            break
        pos += 12 + length
    return width, dpi, texts


def figure_text_sizes(notebook: Path, column_px: int = DESKTOP_COLUMN_PX) -> list[tuple[str, float | None, str]]:
    """For each stored figure: its caption's start, its smallest text on the desktop page (CSS px), and how.

    The page shows a PNG at the width its output asks for (retina figures ask for half
    their pixels), or at its own width, but never wider than the column. None: the PNG
    does not record its text size (made before course_lib recorded it).
    """
    import base64

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cells = nb["cells"]
    found = []
    for k, cell in enumerate(cells):
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            if "image/png" not in out.get("data", {}):
                continue
            caption = next((c for c in cells[k + 1:k + 4] if c["cell_type"] == "markdown"
                            and "".join(c["source"]).lstrip("*_ ").startswith("Figure")), None)
            name = ("".join(caption["source"]).lstrip("*_ ")[:12].rstrip() if caption else f"cell {k}")
            width, dpi, texts = png_info(base64.b64decode(out["data"]["image/png"]))
            asked = out.get("metadata", {}).get("image/png", {}).get("width", width)
            scale = min(float(asked), column_px) / width
            points = texts.get(TEXT_SIZE_KEY)
            if points is None or not dpi:
                found.append((name, None, f"{width} px wide, no record of its text size"))
                continue
            px = float(points) / 72 * dpi * scale
            found.append((name, px, f"{float(points):g} pt at {dpi:.0f} dpi, shown at {scale:.2f} of its size"))
    return found


def cmd_figures(args: argparse.Namespace) -> None:
    """List the smallest text of every stored figure as the desktop page shows it."""
    targets = [Path(p).resolve() for p in args.notebooks] or [p for p in notebooks() if HOMEWORK_DIR not in p.parents]
    rows, failed = [], 0
    for path in targets:
        for name, px, how in figure_text_sizes(path):
            bad = px is None or px < MIN_FIGURE_TEXT_PX - 0.05
            failed += bad
            verdict = "no record" if px is None else "too small" if bad else "ok"
            rows.append([path.stem, name, "?" if px is None else f"{px:.1f} px", verdict, how])
    print_table(["notebook", "figure", "smallest text", f">= {MIN_FIGURE_TEXT_PX:g} px", "from"], rows)
    if failed:
        sys.exit(f"figures: {failed} of {len(rows)} figures show text below {MIN_FIGURE_TEXT_PX:g} px on the "
                 f"desktop page, or do not record it (re-execute the notebook)")
