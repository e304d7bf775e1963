"""Figures in a notebook as the book stores them: twice the pixel density, and their text size recorded.

Importing this module (``import course_lib`` does, through ``course_lib.plotting``) runs
:func:`use_book_figures`: in an IPython kernel with the inline backend, the inline
backend stores figures at twice their pixel density (crisp on phones and high-density
screens, shown at the same size), and each PNG records in its metadata the size in
points of the figure's smallest text (:data:`TEXT_SIZE_KEY`, measured by
:func:`smallest_text`) and the figure's size in inches (:data:`FIGURE_SIZE_KEY`;
:func:`figure_record`). The book's browser test and ``python3 tasks.py figures`` read
them to check that every figure's text is readable on the page. Elsewhere (a script, the
tests, another backend) nothing changes. ``course_lib.plotting`` re-exports these names.
"""

from __future__ import annotations

import functools
import sys

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# PNG text chunk that records the size in points of a figure's smallest text.
TEXT_SIZE_KEY = "course_lib:smallest_text_pt"
# ... and the figure's size in inches, "width x height".
FIGURE_SIZE_KEY = "course_lib:figure_inches"


class _TextSizes:
    """Stands in for a figure's renderer: passes every call on, and notes the size of each text drawn."""

    def __init__(self, renderer):
        self._renderer = renderer
        self.sizes: list[float] = []

    def __getattr__(self, name):
        return getattr(self._renderer, name)

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if s.strip():
            self.sizes.append(prop.get_size_in_points())

    def draw_tex(self, gc, x, y, s, prop, angle, *, mtext=None):
        self.draw_text(gc, x, y, s, prop, angle)


def smallest_text(fig: Figure) -> float | None:
    """The size in points of the smallest text a figure shows (None if it shows none).

    Draws the figure once and notes every text actually drawn: titles, labels, tick
    labels, legends, annotations; not hidden or blank ones.
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"smallest_text expects a matplotlib Figure; got {type(fig).__name__}")
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    texts = _TextSizes(fig.canvas.get_renderer())
    fig.draw(texts)
    return float(min(texts.sizes)) if texts.sizes else None


def figure_record(fig: Figure) -> dict[str, str]:
    """The PNG text chunks that record a figure's smallest text (pt) and size (inches)."""
    size = smallest_text(fig)
    width, height = fig.get_size_inches()
    record = {FIGURE_SIZE_KEY: f"{width:.3f} x {height:.3f}"}
    if size is not None:
        record[TEXT_SIZE_KEY] = f"{size:.2f}"
    return record


def _recording(png_formatter):
    """Wrap IPython's PNG formatter of figures so that the PNG carries ``figure_record``."""

    @functools.wraps(png_formatter)
    def formatter(fig, *args, **kwargs):
        given = getattr(png_formatter, "keywords", {}).get("metadata") or {}
        try:
            record = figure_record(fig)
        except Exception:  # noqa: BLE001  (show the figure anyway; the book's check reports the missing record)
            record = {}
        metadata = {**given, **kwargs.pop("metadata", {}), **record}
        return png_formatter(fig, *args, metadata=metadata, **kwargs)

    formatter.course_lib_records_text = True
    return formatter


def _install_recording(shell) -> bool:
    """Make the shell's PNG formatter of figures record the text size; False if PNG output is off."""
    png = shell.display_formatter.formatters["image/png"]
    try:
        current = png.lookup_by_type(Figure)
    except KeyError:
        return False
    if not getattr(current, "course_lib_records_text", False):
        png.for_type(Figure, _recording(current))
    return True


def _shell():
    """The running IPython shell with the inline backend, or None (a script, a test, another backend)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return None
    if "inline" not in str(matplotlib.rcParams["backend"]).lower():
        return None
    return shell


_SHELLS_WITH_HOOK: set[int] = set()


def use_book_figures(retina: bool = True) -> bool:
    """Display this kernel's figures as the book stores them. Runs when the module is imported.

    In an IPython kernel with the inline backend (Jupyter, Colab): figures are stored as
    PNGs at twice their pixel density when the formats are still IPython's default
    (``retina``; shown at the same size, sharper), and each PNG records in its metadata
    the size in points of the figure's smallest text (``TEXT_SIZE_KEY``) and its size in
    inches (``FIGURE_SIZE_KEY``). A ``%config InlineBackend.figure_formats = ...`` line
    replaces the formatter: the recording comes back from the next cell on. Elsewhere
    (a script, the tests, another backend) nothing changes. Returns whether the kernel
    was set up.
    """
    shell = _shell()
    if shell is None:
        return False
    backend = str(matplotlib.rcParams["backend"])
    if backend.removeprefix("module://") not in sys.modules and not plt.get_fignums():
        plt.switch_backend(backend)  # load the inline backend now: loading it sets the formatters up
    # the inline backend's configuration (matplotlib_inline's InlineBackend), registered with the shell
    config = next((c for c in shell.configurables if type(c).__name__ == "InlineBackend"), None)
    if retina and config is not None and set(config.figure_formats) == {"png"}:
        config.figure_formats = {"retina"}  # re-registers the PNG formatter
    _install_recording(shell)
    if id(shell) not in _SHELLS_WITH_HOOK:
        # `%config InlineBackend.figure_formats = ...` registers a new formatter: wrap it too
        shell.events.register("pre_execute", lambda: _install_recording(shell))
        _SHELLS_WITH_HOOK.add(id(shell))
    return True


use_book_figures()
