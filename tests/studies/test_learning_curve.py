"""The data-equivalent gain: exact on constructed curves, censored outside them, and a
bootstrap interval whose coverage is measured by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from droplab.studies.learning_curve import data_equivalent, expanded_alpha, gain_at

SIZES = np.array([1200.0, 3600.0, 7200.0])


def _curve(n):
    return 0.6 - 0.05 * np.log(n)  # linear in log n: the interpolation is exact


def test_gain_is_exact_on_a_curve_linear_in_log_n():
    for g in (1.0, 1.5, 2.0, 5.9):
        assert gain_at(SIZES, _curve(SIZES), float(_curve(g * 1200)), 1200) == pytest.approx(g)


def test_gain_outside_the_curve_is_censored():
    assert math.isinf(gain_at(SIZES, _curve(SIZES), float(_curve(10 * 3600)), 3600))
    assert gain_at(SIZES, _curve(SIZES), float(_curve(100)), 1200) == 0.0
    # a non-monotone mean curve is made non-increasing first (more data never hurts)
    bumpy = np.array([0.30, 0.32, 0.20])
    assert gain_at(SIZES, bumpy, 0.30, 1200) == pytest.approx(1.0)


def test_expanded_alpha_for_ten_seeds():
    # Phi(-sqrt(10/9) * t_{9, .975}) = Phi(-2.384...) ~ 0.0086
    assert expanded_alpha(10) == pytest.approx(0.00856, abs=2e-4)
    assert expanded_alpha(10_000) == pytest.approx(0.025, abs=2e-4)


def test_bootstrap_interval_covers_the_true_gain():
    """600 simulated studies of 10 seeds, true gain 2 at n0 = 1200 on a curve linear in
    log n, per-seed noise shared by both arms plus own noise. Coverage of the nominal 95%
    interval must lie within 4 binomial standard errors (sqrt(.95 .05 / 600) = 0.9%): [91.4%,
    98.6%]. The plain percentile interval (2.5%/97.5%) measured 90.5% here and would fail."""
    gen = np.random.default_rng(1)
    hits, sims = 0, 600
    for sim in range(sims):
        common = gen.normal(0, 0.01, 10)
        base = {int(n): _curve(n) + common + gen.normal(0, 0.01, 10) for n in SIZES}
        reg = _curve(2.0 * 1200) + common + gen.normal(0, 0.01, 10)
        _, lo, hi = data_equivalent(base, reg, 1200, boot=500, seed=sim)
        hits += lo <= 2.0 <= hi
    assert 0.914 <= hits / sims <= 0.986, hits / sims


def test_too_few_seeds_gives_nan():
    g, lo, hi = data_equivalent(
        {1200: np.array([0.3]), 3600: np.array([0.2])}, np.array([0.25]), 1200
    )
    assert math.isnan(g) and math.isnan(lo) and math.isnan(hi)
