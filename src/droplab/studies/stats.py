"""Confidence intervals for study analyses.

Trials are paired by seed: for seed s, both arms of a comparison share the training subset,
the initialization stream and the batch order, so the per-seed difference d_s = a_s - b_s
removes most of the seed-to-seed variance. With n seeds,

    mean  = (1/n) sum_s d_s
    CI    = mean +- t_{n-1, (1+level)/2} * sd(d) / sqrt(n)      (Student t, sd with n-1)

which is exact when the d_s are i.i.d. normal and a good approximation for the smooth
test metrics here (error, NLL, ECE averaged over a test set).

Every comparison of a study is called by :func:`compare` / :func:`compare_diffs` and the
study's list is then passed once through :func:`adjust` (docs/statistics.md):

* ``lowers`` / ``raises``: the paired t-test of mean(d) = 0 rejects at alpha = 1 - level
  (primary contrast: unadjusted, i.e. the CI excludes 0; secondary contrasts: Holm-adjusted
  over the study's secondaries); the sign of the estimate says which.
* else ``equivalent``: TOST (Schuirmann 1987) at margin m rejects |mean(d)| >= m at alpha,
  i.e. the (1 - 2 alpha) CI lies inside (-m, m) (Holm-adjusted among the secondaries);
* else ``inconclusive``, reported with the minimum detectable effect :func:`mde`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from droplab.findings import CALLS, Contrast

__all__ = [
    "DEFAULT_MARGINS",
    "adjust",
    "call_of",
    "compare",
    "compare_diffs",
    "fmt_ci",
    "holm",
    "mde",
    "mean_ci",
    "paired_ci",
    "paired_p",
    "tost_p",
]

#: Equivalence margins m by display unit (docs/statistics.md, "Margins"): a difference
#: within +-m is too small to matter for these benchmarks.
#: ``"points"``: test error in percentage points; 1 point is about the binomial standard
#: error of the error rate on a 1000-example test set (sqrt(p (1 - p) / 1000) = 0.9-1.5
#: points for p = 10-40%), i.e. the seed-to-seed noise of a single measurement.
#: ``"nats"``: mean test NLL; 0.02 nats is 1.5-2% of the MNIST-1D NLLs (1.0-1.4 nats) and
#: a fraction of the NLL differences the studies report as findings (0.07-0.27 nats).
DEFAULT_MARGINS: dict[str, float] = {"points": 1.0, "nats": 0.02}


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
    return _ttest_p(a_arr - b_arr)


def _ttest_p(d: np.ndarray) -> float:
    """Two-sided one-sample t-test p of mean(d) = 0 (the engine of :func:`paired_p`)."""
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


# --- the protocol: TOST, MDE, calls, contrasts and Holm over a study's secondaries ---------


def _clean(d: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = _as_1d(d, "d")
    return arr[~np.isnan(arr)]


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {alpha!r}")


def _check_margin(margin: float) -> None:
    if not (math.isfinite(margin) and margin >= 0.0):
        raise ValueError(f"margin must be finite and >= 0, got {margin!r}")


def _tost_from_se(mean: float, se: float, n: int, margin: float) -> float:
    """TOST p from the summary (mean, se = sd / sqrt(n), n) of the differences.

    ``max(P(T >= (mean + m) / se), P(T >= (m - mean) / se))`` with T ~ t_{n-1}; with
    se = 0 the two tests are decided exactly: 0 when |mean| < m, else 1. NaN for n < 2.
    """
    if n < 2 or not (math.isfinite(mean) and math.isfinite(se)):
        return math.nan
    if se == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    from scipy import stats as _st

    p_low = float(_st.t.sf((mean + margin) / se, df=n - 1))  # H0: mean <= -m
    p_high = float(_st.t.sf((margin - mean) / se, df=n - 1))  # H0: mean >= +m
    return max(p_low, p_high)


def _raw_tost(c: Contrast) -> float:
    """The unadjusted TOST p of a contrast, recomputed from the fields it carries.

    Its interval is ``estimate +- t_{n-1,(1+ci_level)/2} se``, so se = (hi - lo) / (2 t):
    the estimate, interval, n_seeds, ci_level and margin determine the raw TOST p exactly.
    """
    n = c.n_seeds
    if n < 2 or not (math.isfinite(c.ci_low) and math.isfinite(c.ci_high)):
        return math.nan

    return _tost_from_se(c.estimate, _se(c), n, c.margin)


def _se(c: Contrast) -> float:
    """The standard error of a contrast's estimate, from its interval and ci_level."""
    from scipy import stats as _st

    t = float(_st.t.ppf(0.5 + c.ci_level / 2, df=c.n_seeds - 1))
    return (c.ci_high - c.ci_low) / (2.0 * t)


def _equivalence_p(raw_tost: float, factor: float = 1.0) -> float:
    """p of "equivalent" at the shown interval: ``min(1, 2 factor raw_tost)``, below alpha
    exactly when the interval at level ``1 - alpha / factor`` lies inside ±margin (each
    one-sided test at alpha / (2 factor))."""
    return min(1.0, 2.0 * factor * raw_tost) if math.isfinite(raw_tost) else math.nan


def tost_p(d: Sequence[float] | np.ndarray, margin: float) -> float:
    """p-value of the two one-sided tests (TOST, Schuirmann 1987) for equivalence within
    ``+-margin`` of the mean of the paired differences ``d`` (shape (n,), NaNs dropped).

    With mean d̄, se = sd(d) / sqrt(n) (sd with n - 1) and T ~ t_{n-1}, the two tests

        H0_low:  mu <= -m   p_low  = P(T >= (d̄ + m) / se)
        H0_high: mu >= +m   p_high = P(T >= (m - d̄) / se)

    both reject at alpha exactly when the (1 - 2 alpha) t interval lies inside (-m, m);
    the TOST p is ``max(p_low, p_high)`` and "equivalent" means TOST p < alpha. Its size is
    at most alpha for every true mean with |mu| >= m.

    Edge cases: NaN with fewer than 2 differences; with zero spread (all d equal) the
    answer is exact: 0 when |d̄| < m, else 1. ``margin`` must be finite and >= 0 (m = 0
    never rejects).
    """
    _check_margin(margin)
    arr = _clean(d)
    n = arr.size
    if n < 2:
        return math.nan
    return _tost_from_se(float(arr.mean()), float(arr.std(ddof=1)) / math.sqrt(n), n, margin)


def mde(d: Sequence[float] | np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of the two-sided paired t-test on ``d`` (shape (n,), NaNs
    dropped), in the units of ``d``:

        mde = (t_{n-1, 1-alpha/2} + t_{n-1, power}) * sd(d) / sqrt(n)

    the true mean difference that a test at ``alpha`` with these n pairs and this spread
    would detect with probability ``power`` (the usual normal-theory formula with t
    quantiles; for n = 10 and power 0.8 its exact noncentral-t power is 0.799). NaN with
    fewer than 2 differences, 0 with zero spread.
    """
    _check_alpha(alpha)
    _check_alpha(power, "power")
    arr = _clean(d)
    n = arr.size
    if n < 2:
        return math.nan
    from scipy import stats as _st

    q = float(_st.t.ppf(1.0 - alpha / 2, df=n - 1)) + float(_st.t.ppf(power, df=n - 1))
    return q * float(arr.std(ddof=1)) / math.sqrt(n)


def call_of(estimate: float, p_diff: float, p_equiv: float, alpha: float = 0.05) -> str:
    """The call of one comparison a - b, one of :data:`droplab.findings.CALLS`.

    In this order (a significant difference wins even when it lies within the margin):

    1. ``p_diff < alpha``: ``"lowers"`` if estimate < 0 (a < b), ``"raises"`` if > 0;
    2. ``p_equiv < alpha``: ``"equivalent"``;
    3. otherwise ``"inconclusive"`` (also when the p-values are NaN, e.g. n < 2).

    ``p_diff`` and ``p_equiv`` are the (Holm-adjusted, for a secondary contrast) two-sided
    paired t p and TOST p. Raises ValueError for a significant p with a zero or NaN
    estimate, which no paired t-test produces.
    """
    _check_alpha(alpha)
    if p_diff < alpha:
        if estimate < 0:
            return CALLS[0]  # lowers
        if estimate > 0:
            return CALLS[1]  # raises
        raise ValueError(f"significant p = {p_diff!r} with estimate {estimate!r}")
    if p_equiv < alpha:
        return CALLS[2]  # equivalent
    return CALLS[3]  # inconclusive


def compare_diffs(
    name: str,
    d: Sequence[float] | np.ndarray,
    *,
    metric: str,
    unit: str,
    margin: float,
    primary: bool = False,
    scale: float = 1.0,
    description: str = "",
    root_seeds: Sequence[int] = (),
    level: float = 0.95,
) -> Contrast:
    """A called :class:`Contrast` from per-seed differences ``d`` (shape (n,), a_s - b_s
    for seed s; NaNs dropped).

    Everything is in display units: the differences are multiplied by ``scale`` (e.g. 100
    for error fractions -> percentage points) before the estimate, the ``level`` t interval
    (:func:`mean_ci`), the paired t p (:func:`paired_p`), the TOST p at ``margin`` (given in
    display units, :func:`tost_p`) and the MDE at 80% power (:func:`mde`) are computed, all
    at alpha = 1 - level. ``p_adjusted`` equals ``p_value`` and the call is the unadjusted
    one until :func:`adjust` runs over the study's list. Fewer than 2 pairs give NaN
    interval and p-values and the call "inconclusive".
    """
    _check_level(level)
    _check_margin(margin)
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    arr = _clean(d) * scale
    n = int(arr.size)
    alpha = 1.0 - level
    estimate, lo, hi = mean_ci(arr, level)
    p = _ttest_p(arr)
    c = Contrast(
        name=name,
        description=description,
        primary=primary,
        metric=metric,
        unit=unit,
        estimate=estimate,
        ci_low=lo,
        ci_high=hi,
        call=CALLS[3],
        margin=float(margin),
        n_seeds=n,
        root_seeds=tuple(root_seeds),
        level=level,
        ci_level=level,
        p_value=p,
        p_adjusted=p,
        mde=mde(arr, alpha=alpha),
    )
    p_eq = _equivalence_p(_raw_tost(c))  # the route adjust takes, so it reproduces it exactly
    return replace(c, p_equivalence=p_eq, call=call_of(estimate, p, p_eq, alpha))


def compare(
    name: str,
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    metric: str,
    unit: str,
    margin: float,
    primary: bool = False,
    scale: float = 1.0,
    description: str = "",
    root_seeds: Sequence[int] = (),
    level: float = 0.95,
) -> Contrast:
    """A called :class:`Contrast` of ``a - b``: ``a``, ``b`` shape (n,), element i of both
    measured with the same seed; pairs with a NaN on either side are dropped. See
    :func:`compare_diffs` for the rest (units, ``scale``, ``margin``)."""
    a_arr, b_arr = _as_1d(a, "a"), _as_1d(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"a and b must have the same length (paired by seed), got {a_arr.size} and {b_arr.size}"
        )
    return compare_diffs(
        name,
        a_arr - b_arr,
        metric=metric,
        unit=unit,
        margin=margin,
        primary=primary,
        scale=scale,
        description=description,
        root_seeds=root_seeds,
        level=level,
    )


def adjust(contrasts: Sequence[Contrast]) -> list[Contrast]:
    """Holm's correction over a study's secondary contrasts, with their intervals and
    calls made to agree with it.

    The family is the study's non-primary contrasts: their ``p_value`` s are Holm-adjusted
    into ``p_adjusted``. Each secondary's factor f = p_adjusted / p_value (>= 1) then
    widens its interval to level ``1 - alpha / f`` (so it excludes 0 exactly when
    p_adjusted < alpha) and multiplies its equivalence p (so "equivalent" means exactly
    that the widened interval lies inside ±margin). The call is :func:`call_of` with these
    values at alpha = 1 - level. The primary contrast (at most one) keeps f = 1.
    Returns new contrasts in the same order.

    Pass the study's full list, once assembled: adjusting parts separately makes the
    family too small. The function is idempotent: it reads ``p_value``, ``level`` (never
    changed) and the standard error implied by the interval and ``ci_level``.
    """
    from scipy import stats as _st

    cs = list(contrasts)
    if sum(c.primary for c in cs) > 1:
        raise ValueError("a study declares at most one primary contrast")
    p_adj = np.array([c.p_value for c in cs], dtype=np.float64)
    sec = np.array([not c.primary for c in cs], dtype=bool)
    if sec.any():
        p_adj[sec] = holm(p_adj[sec])
    out = []
    for c, pa in zip(cs, p_adj):
        pa = float(pa)
        alpha = 1.0 - c.level
        factor = pa / c.p_value if c.p_value > 0 and math.isfinite(pa) else 1.0
        raw_eq = _raw_tost(c)
        changes: dict = {"p_adjusted": pa, "p_equivalence": _equivalence_p(raw_eq, factor)}
        if c.n_seeds >= 2 and math.isfinite(c.ci_low) and math.isfinite(c.ci_high):
            ci_level = 1.0 - alpha / factor
            half = float(_st.t.ppf(0.5 + ci_level / 2, df=c.n_seeds - 1)) * _se(c)
            changes.update(ci_level=ci_level, ci_low=c.estimate - half, ci_high=c.estimate + half)
        changes["call"] = call_of(c.estimate, pa, changes["p_equivalence"], alpha)
        out.append(replace(c, **changes))
    return out
