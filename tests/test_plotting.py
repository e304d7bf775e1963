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
