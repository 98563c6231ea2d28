"""Confidence intervals for study analyses.

Trials are paired by seed: for seed s, both arms of a comparison share the training subset,
the initialization stream and the batch order, so the per-seed difference d_s = a_s - b_s
removes most of the seed-to-seed variance. With n seeds,

    mean  = (1/n) sum_s d_s
    CI    = mean +- t_{n-1, (1+level)/2} * sd(d) / sqrt(n)      (Student t, sd with n-1)

which is exact when the d_s are i.i.d. normal and a good approximation for the smooth
test metrics here (error, NLL, ECE averaged over a test set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["fmt_ci", "holm", "mean_ci", "paired_ci", "paired_p"]


def _as_1d(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def mean_ci(x: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x`` (shape (n,)) with its Student-t confidence interval.

    Returns ``(mean, lo, hi)``; ``lo``/``hi`` are NaN when n < 2 (no spread to estimate).
    NaNs in ``x`` are dropped.
    """
    _check_level(level)
    arr = _as_1d(x, "x")
    arr = arr[~np.isnan(arr)]
    n = arr.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if n < 2:
        return mean, math.nan, math.nan
    from scipy import stats as _st  # lazily: scipy.stats costs ~1 s to import

    half = float(_st.t.ppf(0.5 + level / 2, df=n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_ci(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean paired difference ``a - b`` with its Student-t confidence interval.

    Args:
        a, b: shape (n,), element i of both measured with the same seed.
        level: coverage of the interval.

    Returns:
        ``(mean_diff, lo, hi)``; NaN bounds when fewer than 2 complete pairs. Pairs with a
        NaN on either side are dropped.
    """
    a_arr, b_arr = _as_1d(a, "a"), _as_1d(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"a and b must have the same length (paired by seed), got {a_arr.size} and {b_arr.size}"
        )
    return mean_ci(a_arr - b_arr, level)


def paired_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the paired t-test of mean(a - b) = 0 (the test that matches
    :func:`paired_ci`: the CI at ``level`` excludes 0 exactly when p < 1 - level).

    Pairs with a NaN on either side are dropped; NaN with fewer than 2 pairs. When every
    difference is the same, p is 0 for a nonzero difference and 1 for zero.
    """
    a_arr, b_arr = _as_1d(a, "a"), _as_1d(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"a and b must have the same length (paired by seed), got {a_arr.size} and {b_arr.size}"
        )
    d = a_arr - b_arr
    d = d[~np.isnan(d)]
    n = d.size
    if n < 2:
        return math.nan
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if mean != 0.0 else 1.0
    from scipy import stats as _st

    t = mean / (sd / math.sqrt(n))
    return float(2.0 * _st.t.sf(abs(t), df=n - 1))


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (Holm 1979), shape (m,) -> (m,).

    With the m finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where the adjusted value is below
    alpha controls the family-wise error rate at alpha for any dependence between the
    tests. NaNs stay NaN and do not count in m.
    """
    arr = _as_1d(p, "p")
    out = np.full(arr.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(arr))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(arr[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * arr[order])  # (m - j + 1) p_(j), j from 1
    out[order] = np.maximum.accumulate(scaled)
    return out


def fmt_ci(mean: float, lo: float, hi: float, *, scale: float = 1.0, digits: int = 2) -> str:
    """``"-5.90 [-7.00, -4.80]"``: a number with its interval, each multiplied by ``scale``."""
    if math.isnan(lo) or math.isnan(hi):
        return f"{mean * scale:+.{digits}f} [n/a]"
    return f"{mean * scale:+.{digits}f} [{lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}]"
