"""Plotting helpers shared by all chapters: line plots, attention heatmaps, figures sized for the page.

Interfaces follow d2l's ``plot`` and ``show_heatmaps`` so that readers of both books
can call them the same way; both return the matplotlib objects they draw on, so a
notebook can add a caption, a title or more lines.

**Figures for the book's page.** The book shows a figure at its own size (100 pixels
per inch of ``figsize``) unless it is wider than the text column, which on a desktop is
about 770 px; a wider figure is shrunk to the column, and its text with it. So a figure
at most ``PAGE_WIDTH`` (7.5) inches wide shows its text at full size: 10 pt is 14 px on
the page, and the book's floor, 9 px, is 6.5 pt. A 13-inch figure is shrunk to 60 %,
and its 10 pt text to 8 px. ``page_figsize(height)`` gives the page's width;
``show_heatmaps``, ``show_attention_heads`` and ``show_alignment`` choose their size and
the size of their token labels to fit it.

**Heads and blocks are numbered from 1** in every figure and printout of the book:
index ``h`` of a weights tensor is "head h + 1" (``head_title``).

**In a notebook**, importing this module (``import course_lib`` does) makes the inline
backend store figures at twice their pixel density (crisp on phones and high-density
screens, shown at the same size), and records in each PNG's metadata the size in
points of the figure's smallest text (``TEXT_SIZE_KEY``; see ``use_book_figures``).
The book's browser test reads it to check that every figure's text is readable on the
page. That part is ``course_lib.notebook_figures``, whose names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch

from course_lib.notebook_figures import (  # noqa: F401  (re-exported; importing it sets up a notebook's figures)
    FIGURE_SIZE_KEY,
    TEXT_SIZE_KEY,
    _recording,
    figure_record,
    smallest_text,
    use_book_figures,
)
from course_lib.explorer import attention_explorer  # noqa: F401  (interactive explorer; see course_lib.explorer)

ArrayLike = Any  # a tensor, a NumPy array or a (nested) list of numbers

# The widest figure, in inches, that the book shows without shrinking it on a desktop
# (at 100 dpi, 750 px; the text column is about 770 px wide).
PAGE_WIDTH = 7.5
# The smallest font, in points, that the helpers below use: 6.5 pt is 9 px at full size.
SMALLEST_FONT = 6.5


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_series(data: ArrayLike | Sequence[ArrayLike] | None) -> list[np.ndarray] | None:
    """Turn one 1-D series, a list of them, or a 2-D array (one series per row) into a list."""
    if data is None:
        return None
    if isinstance(data, (list, tuple)) and len(data) > 0 and not np.isscalar(data[0]):
        return [_to_numpy(d).reshape(-1) for d in data]
    arr = _to_numpy(data)
    if arr.ndim == 1:
        return [arr]
    if arr.ndim == 2:
        return [row for row in arr]
    raise ValueError(f"plot expects 1-D series, a list of them or a 2-D array; got shape {arr.shape}")


def page_figsize(height: float, fraction: float = 1.0) -> tuple[float, float]:
    """``(width, height)`` in inches for a figure as wide as ``fraction`` of the page.

    ``plt.subplots(1, 3, figsize=page_figsize(2.6))`` makes a row of three panels that
    the book shows at full size on a desktop, so that text in points reads as set.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], the share of the page's width; got {fraction}")
    if height <= 0:
        raise ValueError(f"height must be positive (inches); got {height}")
    return (PAGE_WIDTH * fraction, height)


def head_title(head: int, block: int | None = None) -> str:
    """The book's name of a head, from 0-based indices: ``head_title(0)`` is "head 1",
    ``head_title(2, block=1)`` is "block 2, head 3"."""
    for name, value in (("head", head), ("block", block)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"{name} must be a 0-based index (an int >= 0); got {value!r}")
    return f"head {head + 1}" if block is None else f"block {block + 1}, head {head + 1}"


def plot(
    X: ArrayLike | Sequence[ArrayLike],
    Y: ArrayLike | Sequence[ArrayLike] | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    legend: Sequence[str] | None = None,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    xscale: str = "linear",
    yscale: str = "linear",
    fmts: Sequence[str] = ("-", "m--", "g-.", "r:", "c-", "y--"),
    figsize: tuple[float, float] = (3.5, 2.5),
    axes: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """Draw one or more series and return the axes.

    ``plot(x, [y1, y2])`` draws y1 and y2 against the same x; ``plot(x)`` draws x
    against its index; ``plot([x1, x2], [y1, y2])`` pairs them up. Series may be
    tensors (detached and moved to the CPU here), arrays or lists.
    """
    if X is None:
        raise ValueError("plot needs the data to draw: X (and optionally Y), got X=None")
    xs = _as_series(X)
    ys = _as_series(Y)
    if ys is None:
        ys, xs = xs, [np.arange(len(s)) for s in xs]
    if len(xs) == 1 and len(ys) > 1:
        xs = xs * len(ys)
    if len(xs) != len(ys):
        raise ValueError(f"plot got {len(xs)} x series for {len(ys)} y series; expected 1 or {len(ys)}")
    for k, (x, y) in enumerate(zip(xs, ys)):
        if len(x) != len(y):
            raise ValueError(f"series {k}: x has {len(x)} points but y has {len(y)}")
    if legend is not None and len(legend) not in (0, len(ys)):
        raise ValueError(f"legend has {len(legend)} entries for {len(ys)} series")
    if axes is None:
        _, axes = plt.subplots(figsize=figsize)
    for k, (x, y) in enumerate(zip(xs, ys)):
        label = legend[k] if legend else None  # label our own lines, not whatever the axes holds
        axes.plot(x, y, fmts[k % len(fmts)], label=label)
    axes.set_xlabel(xlabel or "")
    axes.set_ylabel(ylabel or "")
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    if xlim is not None:
        axes.set_xlim(xlim)
    if ylim is not None:
        axes.set_ylim(ylim)
    if legend:
        axes.legend(fontsize="small")
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    return axes


def _label_font(pitch_inches: float) -> float:
    """Font size (pt) for token labels one ``pitch_inches`` apart: as large as fits, 6.5 to 10 pt."""
    return float(min(10.0, max(SMALLEST_FONT, round(0.8 * 72 * pitch_inches, 1))))


def _positions(most: int) -> matplotlib.ticker.Locator:
    """Ticks at row or column positions: at most ``most`` of them, integers, in steps of 1, 2, 5, 10, ..."""
    return matplotlib.ticker.MaxNLocator(most, integer=True, steps=[1, 2, 5, 10])


def _heatmap_layout(
    num_rows: int, num_cols: int, q: int, k: int, ticks: bool, colorbar: bool, row_titles: bool, titles: bool
) -> tuple[tuple[float, float], float, float]:
    """Figure size, panel width and panel height (inches) for a grid of (q, k) heatmaps.

    The grid fits the page and leaves no empty bands: square cells where the panels
    stay at least ``low`` inches on each side, stretched cells otherwise.
    """
    left = 0.7 + (0.5 if ticks else 0.0) + (0.3 if row_titles else 0.0)  # y label, tick labels
    right = 0.9 if colorbar else 0.1
    gap = 0.25 if ticks else 0.15
    side = max(2.5, 0.18 * max(q, k)) if ticks else 2.5                 # a panel's longer side
    low = 0.65 if row_titles else 0.45                                   # its shortest side
    panel_w = min(side if k >= q else side * k / q, (PAGE_WIDTH - left - right) / num_cols - gap)
    panel_h = min(side, panel_w * q / k)
    panel_w, panel_h = max(panel_w, min(low, panel_w * 4)), max(panel_h, low)
    bottom = 0.6 + (0.6 if ticks else 0.0)
    top = 0.35 if titles else 0.1
    width = left + right + num_cols * (panel_w + gap)
    height = bottom + top + num_rows * panel_h + (num_rows - 1) * 0.15  # titles: top row only
    return (round(min(width, PAGE_WIDTH), 2), round(height, 2)), panel_w, panel_h


def show_heatmaps(
    matrices: ArrayLike,
    xlabel: str,
    ylabel: str,
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
    cmap: str = "Reds",
    vmin: float | None = None,
    vmax: float | None = None,
    *,
    row_titles: Sequence[str] | None = None,
    xticks: Sequence[str] | None = None,
    yticks: Sequence[str] | None = None,
    colorbar: bool = True,
    colorbar_label: str | None = None,
) -> plt.Figure:
    """Draw a grid of heatmaps, one per matrix, with a shared colour bar.

    Args:
        matrices: shape ``(num_rows, num_cols, Q, K)``, as in d2l; a single ``(Q, K)``
            matrix or a row of them ``(num_cols, Q, K)`` is also accepted. For attention
            weights, rows are queries and columns are keys.
        xlabel, ylabel: labels of the bottom row's x axes and the left column's y axes.
        titles: one title per column, shown above the top row.
        figsize: by default, chosen from the grid's shape to fit the page
            (``PAGE_WIDTH``) with square cells and no empty bands. A size given here
            is filled: the cells stretch to it.
        vmin, vmax: colour limits; by default the smallest and largest entry over all
            panels, so that the one colour bar is true for every panel.
        row_titles: one name per row, shown left of the row (e.g. "block 1").
        xticks, yticks: a label for every column (K) and every row (Q) of a matrix,
            e.g. the tokens; their font is as large as the panel allows (6.5 to 10 pt).
        colorbar: draw the shared colour bar (right of the grid);
            ``colorbar_label`` names its scale.

    Returns the figure. It is laid out by matplotlib's constrained layout, which
    places the colour bar and the labels; do not call ``tight_layout`` on it.
    """
    m = _to_numpy(matrices)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[None]
    if m.ndim != 4:
        raise ValueError(
            "show_heatmaps expects matrices of shape (num_rows, num_cols, Q, K), "
            f"(num_cols, Q, K) or (Q, K); got shape {m.shape}"
        )
    if m.size == 0:
        raise ValueError(f"show_heatmaps needs at least one non-empty matrix, got an empty array of shape {m.shape}")
    num_rows, num_cols, q, k = m.shape
    if titles is not None and len(titles) != num_cols:
        raise ValueError(f"show_heatmaps got {len(titles)} titles for {num_cols} columns")
    if row_titles is not None and len(row_titles) != num_rows:
        raise ValueError(f"show_heatmaps got {len(row_titles)} row titles for {num_rows} rows")
    if xticks is not None and len(xticks) != k:
        raise ValueError(f"show_heatmaps got {len(xticks)} x tick labels for matrices with {k} columns (keys)")
    if yticks is not None and len(yticks) != q:
        raise ValueError(f"show_heatmaps got {len(yticks)} y tick labels for matrices with {q} rows (queries)")
    vmin = float(np.nanmin(m)) if vmin is None else vmin
    vmax = float(np.nanmax(m)) if vmax is None else vmax
    ticks = xticks is not None or yticks is not None
    auto, panel_w, panel_h = _heatmap_layout(num_rows, num_cols, q, k, ticks, colorbar, row_titles is not None,
                                             titles is not None)
    # square cells unless the panels had to be stretched to stay readable
    aspect = "equal" if abs(panel_h * k - panel_w * q) < 1e-6 * panel_w * q else "auto"
    if figsize is None:
        figsize = auto
    else:  # the caller's size: the panels fill it (cells stretch), so that no empty band is left
        panel_w, panel_h = panel_w * figsize[0] / auto[0], panel_h * figsize[1] / auto[1]
        aspect = "auto"
    fig, axes = plt.subplots(
        num_rows, num_cols, figsize=figsize, sharex=True, sharey=True, squeeze=False, layout="constrained"
    )
    label_font = _label_font(min(panel_w / k, panel_h / q))  # the distance between two labels decides their font
    most_ticks = max(2, int(panel_w / 0.35)), max(2, int(panel_h / 0.3))  # numbered ticks that do not collide
    image = None
    for i in range(num_rows):
        for j in range(num_cols):
            ax = axes[i, j]
            image = ax.imshow(m[i, j], cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect)
            if xticks is not None:
                ax.set_xticks(range(k), list(xticks), rotation=90, fontsize=label_font)
            else:
                ax.xaxis.set_major_locator(_positions(most_ticks[0]))
            if yticks is not None:
                ax.set_yticks(range(q), list(yticks), fontsize=label_font)
            else:
                ax.yaxis.set_major_locator(_positions(most_ticks[1]))
            if i == num_rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ylab = ylabel if row_titles is None else f"{row_titles[i]}\n{ylabel}"
                ax.set_ylabel(ylab)
            if titles is not None and i == 0:  # one title per column, on the top row
                ax.set_title(titles[j])
    if colorbar:
        short = figsize[1] < 2.5  # a short grid needs the bar's whole height for its numbers
        bar = fig.colorbar(image, ax=axes, shrink=1.0 if short else 0.8, aspect=15 if short else 25)
        if colorbar_label:
            bar.set_label(colorbar_label)
    return fig


def show_attention_heads(
    weights: ArrayLike,
    keys: Sequence[str] | None = None,
    queries: Sequence[str] | None = None,
    *,
    xlabel: str = "key",
    ylabel: str = "query",
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    cmap: str = "Reds",
) -> plt.Figure:
    """Attention weights of several heads (and blocks), numbered as the book numbers them.

    Args:
        weights: ``(H, Q, K)`` for the heads of one layer (one row of panels), or
            ``(L, H, Q, K)`` for L blocks (one row per block): the ``attention_weights``
            of one sequence. Panels are titled "head 1" to "head H" and rows named
            "block 1" to "block L"; the colour scale runs from 0 to 1.
        keys, queries: the tokens, as tick labels (optional).
        title: a title above the whole figure.

    Returns the figure.
    """
    w = _to_numpy(weights)
    if w.ndim == 3:
        w, row_titles = w[None], None
    elif w.ndim == 4:
        row_titles = [f"block {b + 1}" for b in range(w.shape[0])]
    else:
        raise ValueError(
            "show_attention_heads expects weights of shape (H, Q, K) or (L, H, Q, K) for one sequence; "
            f"got shape {w.shape}"
        )
    fig = show_heatmaps(
        w, xlabel, ylabel, titles=[head_title(h) for h in range(w.shape[1])], figsize=figsize, cmap=cmap,
        vmin=0.0, vmax=1.0, row_titles=row_titles, xticks=keys, yticks=queries, colorbar_label="weight",
    )
    if title:
        fig.suptitle(title)
    return fig


def show_alignment(
    weights: ArrayLike,
    source: Sequence[str],
    output: Sequence[str],
    title: str | None = None,
    axes: plt.Axes | None = None,
    cmap: str = "Reds",
    source_label: str = "source",
    output_label: str = "output",
    *,
    colorbar: bool = True,
) -> plt.Axes:
    """Attention weights of a translation, (output steps, source tokens), with the tokens as labels.

    Rows are the generated tokens, columns the source tokens; each row sums to one.
    ``source_label`` and ``output_label`` name the x and y axes, e.g.
    ``source_label="source (English)", output_label="output (French)"``. The colour
    scale runs from 0 to 1; ``colorbar`` shows it next to the panel. The figure is at
    most ``PAGE_WIDTH`` wide.
    """
    w = _to_numpy(weights)
    if w.shape != (len(output), len(source)):
        raise ValueError(
            f"weights of shape {w.shape} do not match {len(output)} output tokens x {len(source)} source tokens"
        )
    if axes is None:
        width = 0.42 * len(source) + 1.5 + (0.8 if colorbar else 0.0)
        _, axes = plt.subplots(figsize=(min(width, PAGE_WIDTH), 0.36 * len(output) + 1.2))
    image = axes.imshow(w, cmap=cmap, vmin=0, vmax=1)
    axes.set_xticks(range(len(source)), source, rotation=60, ha="right")
    axes.set_yticks(range(len(output)), output)
    axes.set_xlabel(source_label)
    axes.set_ylabel(output_label)
    if title:
        axes.set_title(title)
    if colorbar:
        axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="weight")
    return axes
