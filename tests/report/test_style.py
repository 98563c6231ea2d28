"""The shared figure style: palette, figure factory, band and bars helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from droplab.report import style


def test_palette_is_okabe_ito_and_distinct():
    assert len(set(style.PALETTE)) == len(style.PALETTE) == 8
    assert style.color(0) == style.PALETTE[0]
    assert style.color(8) == style.PALETTE[0]  # wraps around
    for c in style.PALETTE:
        to_rgb(c)  # valid colour


def test_band_draws_line_and_fill_and_saves_png():
    fig, ax = style.figure()
    x = np.array([1.0, 2.0, 4.0])
    line = style.band(ax, x, [0.3, 0.2, 0.1], [0.25, 0.15, 0.05], [0.35, 0.25, 0.15], label="a")
    assert line.get_color() == style.PALETTE[0]  # first colour of the cycle
    assert len(ax.collections) == 1  # the shaded band
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_band_rejects_unequal_lengths():
    _, ax = style.figure()
    with pytest.raises(ValueError, match="lo has 2 points but x has 3"):
        style.band(ax, [1, 2, 3], [1, 2, 3], [1, 2], [1, 2, 3])


def test_bars_whiskers_and_errors():
    _, ax = style.figure(ncols=2)
    assert ax.shape == (2,)
    bars = style.bars(ax[0], ["a", "b"], [1.0, 2.0], [0.5, 1.5], [1.5, 3.0])
    assert [b.get_height() for b in bars] == [1.0, 2.0]
    with pytest.raises(ValueError, match="equal lengths"):
        style.bars(ax[1], ["a"], [1.0, 2.0], [0.5, 1.5], [1.5, 3.0])
    with pytest.raises(ValueError, match="ncols"):
        style.figure(ncols=0)


def test_forest_draws_one_interval_per_contrast_and_the_margin():
    import matplotlib.pyplot as plt

    from droplab.findings import Contrast

    def c(name, est, primary):
        return Contrast(
            name,
            name,
            primary,
            "test_error",
            "points",
            est,
            est - 1,
            est + 1,
            "inconclusive",
            1.5,
            5,
        )

    fig = style.forest([c("a", -0.5, True), c("b", 2.0, False)], xlabel="x")
    ax = fig.axes[0]
    at = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert at["a"] > at["b"]  # the given order, top to bottom
    assert len(ax.containers) == 2  # one errorbar each
    assert ax.patches[0].get_x() == -1.5  # the margin band starts at -m
    plt.close(fig)
    plt.close(style.forest([], xlabel="x"))
