"""How much is a regularizer worth in training data? The data-equivalent gain.

Given the learning curve of the baseline, ``e_b(n)`` (test error after training on n
examples), and the regularized net's error ``e_r(n0)`` at one size ``n0``, the
data-equivalent gain is the factor g such that the baseline trained on ``g * n0``
examples matches it:

    e_b(g * n0) = e_r(n0)

``e_b`` is the mean over seeds at each measured size, made non-increasing (a running
minimum: more data does not hurt a tuned net, and this keeps the inverse unique), and
interpolated linearly in ``log n``. A g outside the measured sizes is *censored*: the
answer is only "at least nK / n0" (or "at most n1 / n0"), reported as ``inf`` (``0``).

The interval is a percentile bootstrap over seeds: seeds are resampled with replacement,
the same draw for both curves (they are paired), and g recomputed; the bounds are order
statistics (no interpolation, so censored values stay censored) at the tails of the
*expanded* percentile interval (:func:`expanded_alpha`): the plain 2.5%/97.5% interval
covers only ~90% with 10 seeds (tests/studies/test_learning_curve.py measures both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["data_equivalent", "expanded_alpha", "gain_at"]


def gain_at(sizes: np.ndarray, baseline: np.ndarray, target: float, n0: float) -> float:
    """g with ``e_b(g n0) = target`` on the curve ``baseline`` (shape (K,)) at ``sizes``
    (shape (K,), increasing); 0 / inf when the crossing lies below / above the sizes."""
    curve = np.minimum.accumulate(np.asarray(baseline, dtype=float))  # non-increasing
    logn = np.log(np.asarray(sizes, dtype=float))
    if not math.isfinite(target) or np.isnan(curve).any():
        return math.nan
    if target > curve[0]:
        return 0.0  # worse than the baseline at its smallest size
    if target < curve[-1]:
        return math.inf  # better than the baseline at its largest size
    for k in range(len(curve) - 1):
        hi, lo = curve[k], curve[k + 1]
        if lo <= target <= hi:
            if hi == lo:
                x = logn[k]
            else:
                x = logn[k] + (hi - target) / (hi - lo) * (logn[k + 1] - logn[k])
            return float(math.exp(x) / n0)
    return float(sizes[-1] / n0)  # target == curve[-1] exactly (flat end)


def data_equivalent(
    baseline: Mapping[int, np.ndarray],
    regularized: np.ndarray,
    n0: int,
    *,
    boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The data-equivalent gain of ``regularized`` (errors per seed at size ``n0``, shape
    (S,)) over the ``baseline`` curve (size -> errors per seed, each shape (S,), the same
    seeds in the same order), with its bootstrap interval: ``(g, lo, hi)``.

    Seeds with a NaN anywhere are dropped; NaNs when fewer than 2 remain.
    """
    sizes = np.array(sorted(baseline), dtype=float)
    curves = np.stack([np.asarray(baseline[int(n)], dtype=float) for n in sizes], 1)  # (S, K)
    reg = np.asarray(regularized, dtype=float)  # (S,)
    if curves.shape[0] != reg.shape[0]:
        raise ValueError(
            f"regularized has {reg.shape[0]} seeds but the baseline curve {curves.shape[0]}"
        )
    ok = ~np.isnan(curves).any(1) & ~np.isnan(reg)
    curves, reg = curves[ok], reg[ok]
    S = reg.shape[0]
    if S < 2:
        return math.nan, math.nan, math.nan
    g = gain_at(sizes, curves.mean(0), float(reg.mean()), n0)
    gen = np.random.default_rng(seed)
    idx = gen.integers(0, S, size=(boot, S))  # (boot, S): resampled seeds
    draws = np.array(
        [gain_at(sizes, curves[i].mean(0), float(reg[i].mean()), n0) for i in idx]
    )  # (boot,)
    alpha = expanded_alpha(S, level)
    lo = float(np.quantile(draws, alpha, method="lower"))
    hi = float(np.quantile(draws, 1 - alpha, method="higher"))
    return g, lo, hi


def expanded_alpha(n: int, level: float = 0.95) -> float:
    """The tail probability of the *expanded* percentile interval (Hesterberg 2015, "What
    teachers should know about the bootstrap"): ``Phi(-sqrt(n / (n - 1)) t_{n-1, (1+level)/2})``
    instead of ``(1 - level) / 2``, which corrects the plain percentile interval's
    narrowness for small n (0.0085 instead of 0.025 for n = 10)."""
    from scipy import stats as st

    t = float(st.t.ppf(0.5 + level / 2, df=n - 1))
    return float(st.norm.cdf(-math.sqrt(n / (n - 1)) * t))
