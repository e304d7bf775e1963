"""Plotting helpers shared by all chapters: line plots and attention heatmaps.

Interfaces follow d2l's ``plot`` and ``show_heatmaps`` so that readers of both books
can call them the same way; both return the matplotlib objects they draw on, so a
notebook can add a caption, a title or more lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

ArrayLike = Any  # a tensor, a NumPy array or a (nested) list of numbers


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


def show_heatmaps(
    matrices: ArrayLike,
    xlabel: str,
    ylabel: str,
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] = (2.5, 2.5),
    cmap: str = "Reds",
    vmin: float | None = None,
    vmax: float | None = None,
) -> plt.Figure:
    """Draw a grid of heatmaps, one per matrix, with a shared colour bar.

    Args:
        matrices: shape ``(num_rows, num_cols, Q, K)``, as in d2l; a single ``(Q, K)``
            matrix or a row of them ``(num_cols, Q, K)`` is also accepted. For attention
            weights, rows are queries and columns are keys.
        xlabel, ylabel: labels of the bottom row's x axes and the left column's y axes.
        titles: one title per column, shown above the top row.
        vmin, vmax: colour limits; by default the smallest and largest entry over all
            panels, so that the one colour bar is true for every panel.

    Returns the figure.
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
        raise ValueError(f"show_heatmaps needs at least one non-empty matrix, got shape {m.shape}")
    num_rows, num_cols = m.shape[:2]
    if titles is not None and len(titles) != num_cols:
        raise ValueError(f"show_heatmaps got {len(titles)} titles for {num_cols} columns")
    vmin = float(np.nanmin(m)) if vmin is None else vmin
    vmax = float(np.nanmax(m)) if vmax is None else vmax
    fig, axes = plt.subplots(
        num_rows, num_cols, figsize=figsize, sharex=True, sharey=True, squeeze=False
    )
    image = None
    for i in range(num_rows):
        for j in range(num_cols):
            ax = axes[i, j]
            image = ax.imshow(m[i, j], cmap=cmap, vmin=vmin, vmax=vmax)
            if i == num_rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None and i == 0:  # one title per column, on the top row
                ax.set_title(titles[j])
    fig.colorbar(image, ax=axes, shrink=0.6)
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
) -> plt.Axes:
    """Attention weights of a translation, (output steps, source tokens), with the tokens as labels.

    Rows are the generated tokens, columns the source tokens; each row sums to one.
    ``source_label`` and ``output_label`` name the x and y axes, e.g.
    ``source_label="source (English)", output_label="output (French)"``.
    """
    w = _to_numpy(weights)
    if w.shape != (len(output), len(source)):
        raise ValueError(
            f"weights of shape {w.shape} do not match {len(output)} output tokens x {len(source)} source tokens"
        )
    if axes is None:
        _, axes = plt.subplots(figsize=(0.42 * len(source) + 1.5, 0.36 * len(output) + 1.2))
    axes.imshow(w, cmap=cmap, vmin=0, vmax=1)
    axes.set_xticks(range(len(source)), source, rotation=60, ha="right")
    axes.set_yticks(range(len(output)), output)
    axes.set_xlabel(source_label)
    axes.set_ylabel(output_label)
    if title:
        axes.set_title(title)
    return axes
