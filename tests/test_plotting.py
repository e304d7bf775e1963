"""Plotting helpers, with d2l's show_heatmaps as the oracle for the heatmap grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import plot, show_heatmaps


def heatmap_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_show_heatmaps_draws_what_d2l_draws(d2l):
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    m = torch.softmax(torch.randn(2, 3, 4, 5), dim=-1)
    ours = heatmap_axes(show_heatmaps(m, "keys", "queries", titles=["a", "b", "c"]))
    d2l.show_heatmaps(m, "keys", "queries", titles=["a", "b", "c"])
    theirs = heatmap_axes(plt.gcf())
    assert len(ours) == len(theirs) == 6
    for k, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a.images[0].get_array(), b.images[0].get_array())
        assert (a.get_xlabel(), a.get_ylabel()) == (b.get_xlabel(), b.get_ylabel())
        # d2l repeats the column titles on every row; ours names each column once, on top
        assert a.get_title() == (b.get_title() if k < 3 else "")


def test_show_heatmaps_uses_one_colour_scale_for_all_panels():
    m = torch.stack([torch.full((3, 3), 0.1), torch.eye(3)])  # (2, 3, 3)
    fig = show_heatmaps(m, "x", "y")
    limits = {ax.images[0].get_clim() for ax in heatmap_axes(fig)}
    assert limits == {(0.0, 1.0)}
    assert len(fig.axes) == 3  # two panels and the colour bar


def test_show_heatmaps_accepts_a_single_matrix_and_explicit_limits():
    fig = show_heatmaps(np.arange(6.0).reshape(2, 3), "x", "y", vmin=-1, vmax=10)
    (ax,) = heatmap_axes(fig)
    assert ax.images[0].get_clim() == (-1, 10)
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"


@pytest.mark.parametrize(
    "matrices, titles, message",
    [
        (torch.zeros(1, 1, 1, 2, 2), None, r"expects matrices of shape \(num_rows, num_cols, Q, K\)"),
        (torch.zeros(3), None, "got shape"),
        (torch.zeros(1, 2, 3, 3), ["only one"], "got 1 titles for 2 columns"),
    ],
)
def test_show_heatmaps_errors(matrices, titles, message):
    with pytest.raises(ValueError, match=message):
        show_heatmaps(matrices, "x", "y", titles=titles)


def test_plot_labels_its_own_lines_even_on_busy_axes():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    ax.plot([0, 1], [5, 5], "o", label="data drawn before")
    x = torch.linspace(0, 1, 11)
    plot(x, [x, x**2], "x", "y", legend=["linear", "square"], axes=ax)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["data drawn before", "linear", "square"]
    np.testing.assert_allclose(ax.lines[2].get_ydata(), (x**2).numpy())


def test_plot_single_series_against_index_and_scales():
    ax = plot(torch.tensor([3.0, 1.0, 2.0]), xscale="linear", yscale="log", title="t")
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0, 1, 2])
    assert ax.get_yscale() == "log" and ax.get_title() == "t"


@pytest.mark.parametrize(
    "X, Y, legend, message",
    [
        ([0, 1, 2], [0, 1], None, "x has 3 points but y has 2"),
        ([[0, 1], [0, 1], [0, 1]], [[0, 1], [0, 1]], None, "got 3 x series for 2 y series"),
        ([0, 1], [[0, 1], [1, 2]], ["one"], "legend has 1 entries for 2 series"),
        (np.zeros((2, 2, 2)), None, None, "2-D array"),
    ],
)
def test_plot_errors(X, Y, legend, message):
    with pytest.raises(ValueError, match=message):
        plot(X, Y, legend=legend)


def test_show_alignment_labels_are_generic_by_default_and_settable():
    import matplotlib.pyplot as plt

    from course_lib.plotting import show_alignment

    w = torch.softmax(torch.randn(3, 4), dim=-1)
    src, out = ["a", "b", "c", "<eos>"], ["x", "y", "<eos>"]
    ax = show_alignment(w, src, out, title="t")
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("source", "output", "t")
    assert [t.get_text() for t in ax.get_xticklabels()] == src
    assert [t.get_text() for t in ax.get_yticklabels()] == out
    _, given = plt.subplots()
    ax = show_alignment(w, src, out, axes=given, source_label="source (English)", output_label="output (French)")
    assert ax is given and (ax.get_xlabel(), ax.get_ylabel()) == ("source (English)", "output (French)")
    with pytest.raises(ValueError, match="do not match 2 output tokens x 4 source tokens"):
        show_alignment(w, src, out[:2])


# --- figures sized for the page ---------------------------------------------------------

from course_lib.plotting import (  # noqa: E402
    FIGURE_SIZE_KEY,
    PAGE_WIDTH,
    SMALLEST_FONT,
    TEXT_SIZE_KEY,
    figure_record,
    head_title,
    page_figsize,
    show_alignment,
    show_attention_heads,
    smallest_text,
)

# The book's text column on a desktop, in px (a figure at most this wide at 100 dpi is not shrunk).
COLUMN_PX = 770


def rendered_width(fig, dpi=100):
    """The width in px of the PNG a notebook stores (bbox_inches="tight", 0.1 inch of padding), once drawn."""
    return round((fig.get_tightbbox(fig.canvas.get_renderer()).width + 0.2) * dpi)


def row_gaps(fig, axes_grid):
    """Empty space in inches between the rows of a grid of axes (labels and titles included), once drawn."""
    renderer = fig.canvas.get_renderer()
    rows = [[ax.get_tightbbox(renderer) for ax in row] for row in axes_grid]
    gaps = []
    for upper, lower in zip(rows, rows[1:]):
        bottom_of_upper = min(b.y0 for b in upper)
        top_of_lower = max(b.y1 for b in lower)
        gaps.append((bottom_of_upper - top_of_lower) / fig.dpi)
    return gaps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smallest_text_is_the_smallest_visible_one(seed):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    tick, title, legend, note = (float(s) for s in rng.uniform(5, 14, size=4).round(1))
    fig, (ax, hidden) = plt.subplots(1, 2)
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("title", fontsize=title)
    ax.tick_params(labelsize=tick)
    ax.legend(fontsize=legend)
    ax.annotate("note", (0.5, 0.5), fontsize=note)
    ax.text(0, 0, "invisible", fontsize=2, visible=False)   # not shown: not counted
    ax.text(0, 0, "   ", fontsize=1)                        # blank: not counted
    hidden.set_visible(False)                               # a hidden axes' texts are not shown either
    hidden.set_title("hidden", fontsize=3)
    before = fig.get_size_inches().copy()
    assert smallest_text(fig) == pytest.approx(min(tick, title, legend, note))
    np.testing.assert_array_equal(fig.get_size_inches(), before)  # the figure is unchanged


def test_smallest_text_counts_tick_labels_made_at_draw_time_and_none_when_no_text():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.imshow(np.eye(3))
    ax.tick_params(axis="y", labelsize=5.5)  # no tick label exists before the figure is laid out
    assert smallest_text(fig) == 5.5
    ax.axis("off")
    assert smallest_text(fig) is None
    assert figure_record(fig) == {FIGURE_SIZE_KEY: "6.400 x 4.800"}
    with pytest.raises(ValueError, match="expects a matplotlib Figure; got Axes"):
        smallest_text(ax)


def test_figure_record_travels_in_the_png_for_plain_and_retina_output():
    import base64
    import functools
    import io

    from IPython.core.pylabtools import print_figure, retina_figure
    from PIL import Image

    from course_lib.plotting import _recording

    ax = plot([0, 1, 2], [1, 0, 1], "x", "y", figsize=(4, 2.5))
    ax.set_title("small title", fontsize=7.5)
    for formatter, dpi in [(functools.partial(print_figure, fmt="png", base64=True), 100),
                           (functools.partial(retina_figure, base64=True), 200)]:
        out = _recording(formatter)(ax.figure)
        data, meta = out if isinstance(out, tuple) else (out, None)
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.info[TEXT_SIZE_KEY] == "7.50" and image.info[FIGURE_SIZE_KEY] == "4.000 x 2.500"
        assert round(image.info["dpi"][0]) == dpi
        if meta is not None:  # retina: shown at half its pixel size, as big as the plain one
            assert meta == {"width": image.size[0] // 2, "height": image.size[1] // 2}


def test_outside_a_kernel_use_book_figures_changes_nothing():
    from course_lib.plotting import use_book_figures

    assert use_book_figures() is False


def test_a_notebook_kernel_stores_retina_figures_that_record_their_smallest_text(tmp_path):
    """End to end, in a real kernel: what `tasks.py execute` stores in the book's notebooks."""
    import base64
    import io
    import os

    import nbformat
    from nbclient import NotebookClient
    from PIL import Image

    cells = [
        "import matplotlib.pyplot as plt\nimport course_lib\n"
        "fig, ax = plt.subplots(figsize=(4, 2))\nax.plot([1, 2])\nax.set_title('t', fontsize=7)\nplt.show()",
        "%config InlineBackend.figure_formats = ['png']",
        "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([1, 2])\nax.tick_params(labelsize=8)\nplt.show()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel's own inline backend, as in Jupyter
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    figures = [(Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))), o.get("metadata", {}))
               for c in nb.cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 2
    (first, first_meta), (second, second_meta) = figures
    assert first.info[TEXT_SIZE_KEY] == "7.00" and round(first.info["dpi"][0]) == 200
    assert first_meta["image/png"]["width"] == first.size[0] // 2
    # after another format was chosen, the next cell's figure still records its text
    assert second.info[TEXT_SIZE_KEY] == "8.00" and round(second.info["dpi"][0]) == 100


def test_page_figsize_and_its_errors():
    assert page_figsize(3) == (PAGE_WIDTH, 3)
    assert page_figsize(2, fraction=0.5) == (PAGE_WIDTH / 2, 2)
    with pytest.raises(ValueError, match="fraction must be in"):
        page_figsize(3, fraction=1.5)
    with pytest.raises(ValueError, match="height must be positive"):
        page_figsize(0)


def test_head_title_numbers_from_one():
    assert [head_title(h) for h in range(3)] == ["head 1", "head 2", "head 3"]
    assert head_title(2, block=0) == "block 1, head 3"
    assert head_title(np.int64(1)) == "head 2"
    for bad in (-1, 1.0, True, "0"):
        with pytest.raises(ValueError, match="0-based index"):
            head_title(bad)


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 4), (2, 3), (3, 6)])
@pytest.mark.parametrize("q, k", [(2, 10), (12, 12), (30, 5)])
def test_default_heatmaps_fit_the_page_with_readable_text_and_no_empty_bands(rows, cols, q, k):
    torch.manual_seed(rows * 100 + cols * 10 + q + k)
    m = torch.softmax(torch.randn(rows, cols, q, k), dim=-1)
    fig = show_heatmaps(m, "keys", "queries", titles=[f"column {j}" for j in range(cols)],
                        row_titles=[f"row {i}" for i in range(rows)] if rows > 1 else None)
    assert fig.get_size_inches()[0] <= PAGE_WIDTH + 1e-9
    assert smallest_text(fig) >= SMALLEST_FONT  # (draws the figure)
    assert rendered_width(fig) <= COLUMN_PX, f"{rendered_width(fig)} px: the page would shrink it"
    panels = heatmap_axes(fig)
    grid = [panels[i * cols:(i + 1) * cols] for i in range(rows)]
    assert all(gap < 0.3 for gap in row_gaps(fig, grid)), row_gaps(fig, grid)
    for ax in panels:  # positions are integers, never 0.5 steps
        assert all(float(t).is_integer() for t in ax.get_xticks())


@pytest.mark.parametrize("heads, blocks, tokens", [(4, None, 6), (4, 2, 11), (12, None, 20)])
def test_show_attention_heads_numbers_from_one_and_fits_the_page(heads, blocks, tokens):
    torch.manual_seed(heads + tokens)
    shape = (heads, tokens, tokens) if blocks is None else (blocks, heads, tokens, tokens)
    w = torch.softmax(torch.randn(shape), dim=-1)
    labels = [f"w{i}" for i in range(tokens)]
    before = w.clone()
    fig = show_attention_heads(w, labels, labels, title="a sentence")
    torch.testing.assert_close(w, before)  # the input is not changed
    panels = heatmap_axes(fig)
    flat = w.reshape(-1, tokens, tokens)
    assert len(panels) == flat.shape[0]
    for ax, m in zip(panels, flat):
        np.testing.assert_allclose(ax.images[0].get_array(), m.numpy())
        assert ax.images[0].get_clim() == (0.0, 1.0)
    assert [ax.get_title() for ax in panels[:heads]] == [f"head {h + 1}" for h in range(heads)]
    if blocks is not None:
        assert [panels[b * heads].get_ylabel().split("\n")[0] for b in range(blocks)] == [
            f"block {b + 1}" for b in range(blocks)]
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == labels
    assert fig.get_suptitle() == "a sentence"
    assert smallest_text(fig) >= SMALLEST_FONT
    assert rendered_width(fig) <= COLUMN_PX


def test_show_attention_heads_errors():
    with pytest.raises(ValueError, match=r"\(H, Q, K\) or \(L, H, Q, K\) for one sequence; got shape \(2, 3\)"):
        show_attention_heads(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="got 2 x tick labels for matrices with 3 columns"):
        show_attention_heads(torch.zeros(2, 3, 3), keys=["a", "b"])


def test_show_heatmaps_row_titles_and_tick_labels():
    m = torch.rand(2, 1, 3, 4)
    fig = show_heatmaps(m, "k", "q", row_titles=["first", "second"], xticks=list("abcd"), yticks=list("xyz"),
                        colorbar_label="weight")
    panels = heatmap_axes(fig)
    assert [ax.get_ylabel() for ax in panels] == ["first\nq", "second\nq"]
    assert [t.get_text() for t in panels[1].get_xticklabels()] == list("abcd")
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list("xyz")
    (bar,) = [ax for ax in fig.axes if not ax.images]
    assert bar.get_ylabel() == "weight"
    assert len(show_heatmaps(m, "k", "q", colorbar=False).axes) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(row_titles=["one"]), "got 1 row titles for 2 rows"),
        (dict(xticks=list("abc")), "got 3 x tick labels for matrices with 4 columns"),
        (dict(yticks=list("ab")), "got 2 y tick labels for matrices with 3 rows"),
    ],
)
def test_show_heatmaps_label_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        show_heatmaps(torch.rand(2, 1, 3, 4), "k", "q", **kwargs)


def test_show_heatmaps_rejects_an_empty_array():
    with pytest.raises(ValueError, match=r"empty array of shape \(1, 1, 0, 3\)"):
        show_heatmaps(torch.zeros(0, 3), "k", "q")


@pytest.mark.parametrize("length", [3, 10, 25])
def test_show_alignment_has_a_colour_scale_and_fits_the_page(length):
    torch.manual_seed(length)
    w = torch.softmax(torch.randn(length, length + 1), dim=-1)
    src, out = [f"s{i}" for i in range(length + 1)], [f"o{i}" for i in range(length)]
    ax = show_alignment(w, src, out)
    bars = [a for a in ax.figure.axes if a is not ax]
    assert len(bars) == 1 and bars[0].get_ylabel() == "weight"
    assert ax.images[0].get_clim() == (0, 1)
    assert ax.figure.get_size_inches()[0] <= PAGE_WIDTH
    import matplotlib.pyplot as plt

    _, given = plt.subplots()
    assert len(show_alignment(w, src, out, axes=given, colorbar=False).figure.axes) == 1


def test_tasks_figures_reads_the_record_and_the_page_scale(tmp_path):
    """`python3 tasks.py figures`: the smallest text of each stored figure on the desktop page."""
    import base64
    import functools
    import json

    from IPython.core.pylabtools import print_figure, retina_figure

    import tasks
    from course_lib.plotting import _recording

    outputs = []
    for figsize, fmt in [((4, 2.5), "png"), ((13, 3), "png"), ((13, 3), "retina")]:
        ax = plot([0, 1, 2], [1, 0, 1], "x", "y", figsize=figsize)
        ax.set_title("t", fontsize=8)
        formatter = (functools.partial(print_figure, fmt="png", base64=True) if fmt == "png"
                     else functools.partial(retina_figure, base64=True))
        out = _recording(formatter)(ax.figure)
        data, meta = out if isinstance(out, tuple) else (out, {})
        outputs.append({"output_type": "display_data", "data": {"image/png": data},
                        "metadata": {"image/png": meta} if meta else {}})
    cells = [{"cell_type": "code", "source": [], "outputs": [o], "metadata": {}} for o in outputs]
    cells = [c for cell in cells for c in (cell, {"cell_type": "markdown", "source": ["*Figure 9.1. A caption.*"],
                                                   "metadata": {}})]
    nb = tmp_path / "chapter.ipynb"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (small, px_small, _), (wide, px_wide, _), (retina, px_retina, how) = tasks.figure_text_sizes(nb, column_px=784)
    assert small == "Figure 9.1."
    assert px_small == pytest.approx(8 / 72 * 100, rel=0.01)             # shown at full size: 11.1 px
    # 13 inches at 100 dpi, about 1300 px, shrunk to the 784 px column (retina or not)
    width = tasks.png_info(base64.b64decode(outputs[1]["data"]["image/png"]))[0]
    assert px_wide == pytest.approx(8 / 72 * 100 * 784 / width, rel=0.01)
    assert px_retina == pytest.approx(px_wide, rel=0.02) and "200 dpi" in how
    with pytest.raises(ValueError, match="not a PNG"):
        tasks.png_info(b"GIF89a" + bytes(40))
