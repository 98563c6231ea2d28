"""The one figure style of every droplab report: use it for all study figures.

Small on purpose — six names:

- ``PALETTE``: the Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), ordered so the
  first colours are the most distinct on white (yellow last).
- ``color(i)``: the i-th palette colour (wraps around).
- ``apply()``: set matplotlib to the Agg backend and the report's rcParams (idempotent;
  ``figure()`` calls it for you).
- ``figure(ncols=1, nrows=1, *, width=None, height=None)``: a new ``Figure`` and its axes.
- ``band(ax, x, mean, lo, hi, *, color=None, label=None)``: a mean line with a shaded
  confidence band, e.g. a learning curve with its 95% CI.
- ``bars(ax, labels, mean, lo, hi, *, color=None)``: bars with confidence-interval
  whiskers, e.g. gradient bias / variance per estimator.

Example (a study's ``analyze``)::

    from droplab.report import style

    fig, ax = style.figure()
    style.band(ax, n_train, mean_err, lo, hi, label="dropout 0.5")
    style.band(ax, n_train, base_err, base_lo, base_hi, label="no dropout")
    ax.set(xscale="log", xlabel="training examples", ylabel="test error (%)")
    ax.legend()
    findings.figures["learning_curve"] = fig

Figures are plain ``matplotlib.figure.Figure`` objects made without pyplot, so nothing is
kept in pyplot's global figure list and no display is needed. The report saves each
figure as a PNG at 150 dpi; label axes with units ("test error (%)", "rate P(drop)").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

__all__ = ["PALETTE", "apply", "band", "bars", "color", "figure"]

#: Okabe-Ito colours: blue, vermillion, bluish green, orange, reddish purple, sky blue,
#: black, yellow. Distinguishable under the common colour-vision deficiencies.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#E69F00",
    "#CC79A7",
    "#56B4E9",
    "#000000",
    "#F0E442",
)

_RC: dict[str, Any] = {
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
    "errorbar.capsize": 3,
}


def apply() -> None:
    """Use the Agg backend (no display) and the report's rcParams. Idempotent."""
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update(_RC)


def color(i: int) -> str:
    """The ``i``-th colour of :data:`PALETTE` (wraps around), as ``"#RRGGBB"``."""
    return PALETTE[int(i) % len(PALETTE)]


def figure(
    ncols: int = 1,
    nrows: int = 1,
    *,
    width: float | None = None,
    height: float | None = None,
) -> tuple[Figure, Any]:
    """A new styled figure with an ``nrows x ncols`` grid of axes.

    Args:
        ncols, nrows: the axes grid; one axes is returned bare, several as a numpy array
            of shape ``(nrows, ncols)`` squeezed like ``plt.subplots``.
        width, height: inches; default 4.8 per column and 3.2 per row.

    Returns:
        ``(fig, ax)`` or ``(fig, axes)``.
    """
    if int(ncols) < 1 or int(nrows) < 1:
        raise ValueError(f"ncols and nrows must be >= 1, got ncols={ncols}, nrows={nrows}")
    apply()
    w = 4.8 * ncols if width is None else float(width)
    h = 3.2 * nrows if height is None else float(height)
    fig = Figure(figsize=(w, h), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def band(
    ax: Any,
    x: Sequence[float] | np.ndarray,
    mean: Sequence[float] | np.ndarray,
    lo: Sequence[float] | np.ndarray,
    hi: Sequence[float] | np.ndarray,
    *,
    color: str | None = None,
    label: str | None = None,
    marker: str | None = "o",
    alpha: float = 0.2,
) -> Any:
    """Plot ``mean`` against ``x`` with a shaded band from ``lo`` to ``hi``.

    All four arrays have shape ``(n,)``; points are drawn in the given order (sort ``x``
    first for a curve). NaNs leave gaps. Returns the mean line (``Line2D``).
    """
    arrays = [np.asarray(a, dtype=float).reshape(-1) for a in (x, mean, lo, hi)]
    n = arrays[0].shape[0]
    for name, a in zip(("mean", "lo", "hi"), arrays[1:]):
        if a.shape[0] != n:
            raise ValueError(
                f"band: {name} has {a.shape[0]} points but x has {n}; give equal lengths"
            )
    xs, m, lo_, hi_ = arrays
    (line,) = ax.plot(xs, m, color=color, label=label, marker=marker)
    ax.fill_between(xs, lo_, hi_, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def bars(
    ax: Any,
    labels: Sequence[str],
    mean: Sequence[float] | np.ndarray,
    lo: Sequence[float] | np.ndarray,
    hi: Sequence[float] | np.ndarray,
    *,
    color: str | None = None,
) -> Any:
    """Bars of height ``mean`` with whiskers from ``lo`` to ``hi``, one per label.

    Shapes: ``labels``, ``mean``, ``lo``, ``hi`` all ``(n,)``. Bars take successive palette
    colours unless ``color`` is given. Returns the ``BarContainer``.
    """
    m = np.asarray(mean, dtype=float).reshape(-1)
    lo_ = np.asarray(lo, dtype=float).reshape(-1)
    hi_ = np.asarray(hi, dtype=float).reshape(-1)
    labels = [str(s) for s in labels]
    if not len(labels) == m.shape[0] == lo_.shape[0] == hi_.shape[0]:
        raise ValueError(
            f"bars: labels, mean, lo, hi must have equal lengths, got "
            f"{len(labels)}, {m.shape[0]}, {lo_.shape[0]}, {hi_.shape[0]}"
        )
    pos = np.arange(m.shape[0])
    colors = (
        [color] * len(labels) if color is not None else [PALETTE[i % len(PALETTE)] for i in pos]
    )
    yerr = np.vstack([m - lo_, hi_ - m])  # (2, n): distances below and above the mean
    out = ax.bar(pos, m, color=colors, yerr=yerr, ecolor="#333333", capsize=3)
    ax.set_xticks(pos, labels)
    return out


def forest(contrasts: Sequence[Any], *, xlabel: str, fontsize: int = 8) -> Any:
    """A forest plot of ``contrasts`` (``droplab.findings.Contrast``, one unit): each
    estimate with its interval, top to bottom in the given order, the primary one in the
    first palette colour; a line at 0 and the equivalence margin ±m of the first contrast
    shaded. Returns the figure (empty axes for no contrasts)."""
    fig, ax = figure(width=6.6, height=0.33 * len(contrasts) + 1.2)
    y = np.arange(len(contrasts))[::-1]
    for yi, c in zip(y, contrasts):
        ax.errorbar(
            c.estimate,
            yi,
            xerr=[[c.estimate - c.ci_low], [c.ci_high - c.estimate]],
            fmt="o",
            color=color(0 if c.primary else 1),
            capsize=3,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    if contrasts:
        m = float(contrasts[0].margin)
        ax.axvspan(-m, m, color="#dddddd", alpha=0.5, linewidth=0)
    ax.set_yticks(y, [c.name for c in contrasts], fontsize=fontsize)
    ax.set(xlabel=xlabel)
    return fig
