"""studies.stats: Student-t intervals, the paired t-test and Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from droplab.studies.stats import holm, mean_ci, paired_ci, paired_p


def test_paired_p_matches_scipy_and_the_interval():
    rng = np.random.default_rng(0)
    for n in (2, 4, 9):
        for shift in (0.0, 0.3, 1.0):
            a = rng.normal(shift, 1.0, n)
            b = rng.normal(0.0, 1.0, n)
            p = paired_p(a, b)
            assert p == pytest.approx(st.ttest_rel(a, b).pvalue, rel=1e-12)
            _, lo, hi = paired_ci(a, b)
            assert (p < 0.05) == (not lo <= 0 <= hi)  # the CI excludes 0 iff p < 1 - level


def test_paired_p_edge_cases():
    assert math.isnan(paired_p([1.0], [0.0]))
    assert math.isnan(paired_p([1.0, np.nan], [0.0, 2.0]))  # one complete pair
    assert paired_p([2.0, 3.0], [1.0, 2.0]) == 0.0  # constant nonzero difference
    assert paired_p([1.0, 2.0], [1.0, 2.0]) == 1.0
    with pytest.raises(ValueError, match="same length"):
        paired_p([1.0, 2.0], [1.0])


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 -> max(0.06, 0.04)
    np.testing.assert_allclose(holm(p)[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm(p)[4])
    assert np.all(holm([0.5, 0.9]) == [1.0, 1.0])  # capped at 1
    assert holm([]).shape == (0,)


def test_holm_controls_the_family_wise_error():
    """Under the null, P(any adjusted p < 0.05) <= 0.05 for m tests: simulated with
    independent paired t-tests. Bound: 0.05 + 5 sigma of a binomial proportion over R."""
    rng = np.random.default_rng(1)
    R, m, n = 1000, 10, 5
    d = rng.normal(size=(R, m, n))
    t = d.mean(-1) / (d.std(-1, ddof=1) / math.sqrt(n))  # (R, m)
    p = 2 * st.t.sf(np.abs(t), df=n - 1)
    any_raw = np.mean((p < 0.05).any(1))
    any_holm = np.mean([(holm(row) < 0.05).any() for row in p])
    bound = 0.05 + 5 * math.sqrt(0.05 * 0.95 / R)
    assert any_holm <= bound
    assert any_raw > 0.3  # uncorrected: about 1 - 0.95^10 = 0.40


def test_mean_ci_matches_scipy():
    x = np.array([1.0, 2.5, 2.0, 4.0])
    m, lo, hi = mean_ci(x)
    want = st.t.interval(0.95, df=3, loc=x.mean(), scale=st.sem(x))
    assert m == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx(want)
