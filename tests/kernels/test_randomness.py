"""Statistical quality of the counter-based masks (fixed seeds, 5-sigma bounds).

Every bound is a two-sided 5-sigma tail (alpha = 5.7e-7): a correct generator fails one
of these tests with probability ~1e-6 per test, a broken one fails them reliably.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from droplab import kernels

ALPHA = 2 * stats.norm.sf(5.0)  # 5.7e-7, the two-sided 5-sigma tail
N_BIG = 10_000_000
N_PAIRS = 1_000_000


def mask(shape, keep, seed, offset=0, **kw) -> np.ndarray:
    x = torch.ones(shape)
    return (kernels.bernoulli(x, keep, seed, offset, **kw) != 0).numpy()


def exact_keep(keep: float) -> float:
    """The kernel's exact keep probability ceil(keep 2^24) / 2^24."""
    return math.ceil(np.float32(keep) * 2.0**24) / 2.0**24


def chi2_pairs(a: np.ndarray, b: np.ndarray, pa: float, pb: float) -> float:
    """Chi-square (3 dof) of the 2x2 table of (a, b) against independent Bernoullis."""
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    observed = np.bincount(2 * a + b, minlength=4)
    probs = np.array([(1 - pa) * (1 - pb), (1 - pa) * pb, pa * (1 - pb), pa * pb])
    expected = probs * a.size
    return float(((observed - expected) ** 2 / expected).sum())


def assert_independent(a: np.ndarray, b: np.ndarray, keep: float) -> None:
    p = exact_keep(keep)
    assert a.size >= N_PAIRS
    chi2 = chi2_pairs(a, b, p, p)
    assert chi2 < stats.chi2.isf(ALPHA, 3), f"chi2={chi2:.1f} over {a.size} pairs"
    # correlation of independent pairs is ~N(0, 1/n): bound 5/sqrt(n)
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert abs(r) < 5 / math.sqrt(a.size), f"r={r:.2e}"


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.9])
def test_keep_fraction_within_5_sigma(keep):
    m = mask((N_BIG,), keep, seed=123, offset=4)
    p = exact_keep(keep)
    # Binomial(n, p): the kept fraction has sd sqrt(p (1 - p) / n)
    bound = 5 * math.sqrt(p * (1 - p) / N_BIG)
    assert abs(m.mean() - p) < bound, (m.mean(), p, bound)


def test_per_member_keep_fractions():
    keeps = torch.tensor([0.2, 0.5, 0.75, 1.0]).view(4, 1, 1)
    m = mask((4, 1000, 1001), keeps, seed=9)
    for k, keep in enumerate(keeps.flatten().tolist()):
        p = exact_keep(keep)
        n = m[k].size
        assert abs(m[k].mean() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12


@pytest.mark.parametrize("lag", [1, 2, 256, 65536, 1001])
def test_serial_independence_within_a_mask(lag):
    # lag 1: neighbours; powers of two: index bits that a weak hash would leak;
    # 1001: the row length below, i.e. vertical neighbours
    m = mask((2 * N_PAIRS + lag,), 0.5, seed=5).astype(np.int64)
    assert_independent(m[: 2 * N_PAIRS : 2], m[lag : 2 * N_PAIRS + lag : 2], 0.5)
    # lag-1 serial correlation over all overlapping pairs as well
    r = np.corrcoef(m[:-lag], m[lag:])[0, 1]
    assert abs(r) < 5 / math.sqrt(m.size - lag)


def test_neighbouring_rows_independent():
    # odd, non-square rows; pairs rows (2i, 2i+1) so the pairs are disjoint
    m = mask((2000, 1001), 0.3, seed=77)
    assert_independent(m[0::2], m[1::2], 0.3)


def test_2x2_block_patterns_uniform():
    # 16 patterns of a 2x2 block of neighbours, each with probability 1/16 at keep 1/2
    m = mask((2000, 2002), 0.5, seed=3).astype(np.int64)
    code = m[0::2, 0::2] + 2 * m[0::2, 1::2] + 4 * m[1::2, 0::2] + 8 * m[1::2, 1::2]
    counts = np.bincount(code.ravel(), minlength=16)
    expected = code.size / 16
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert code.size >= N_PAIRS
    assert chi2 < stats.chi2.isf(ALPHA, 15), chi2


def test_consecutive_calls_independent():
    # consecutive offsets, as a layer uses them step after step
    a = mask((1000, 1001), 0.5, seed=11, offset=41)
    b = mask((1000, 1001), 0.5, seed=11, offset=42)
    assert_independent(a, b, 0.5)


@pytest.mark.parametrize(("s1", "o1", "s2", "o2"), [(0, 0, 1, 0), (7, 3, 8, 3), (0, 0, 0, 1)])
def test_different_seeds_and_offsets_independent(s1, o1, s2, o2):
    a = mask((N_PAIRS + 1,), 0.5, seed=s1, offset=o1)
    b = mask((N_PAIRS + 1,), 0.5, seed=s2, offset=o2)
    assert_independent(a, b, 0.5)
    # nor a shifted copy: offset is hashed into the key, not added to the counter
    assert_independent(a[1:], b[:-1], 0.5)


def test_adjacent_member_seeds_independent():
    ms = torch.tensor([100, 101])
    m = mask((2, N_PAIRS), 0.5, seed=0, member_seeds=ms)
    assert_independent(m[0], m[1], 0.5)


def test_uniforms_are_uniform():
    # a general (per-element) keep grid exposes the 24-bit uniforms: P(u < q) = q
    n = N_PAIRS
    qs = torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99])
    x = torch.ones(5, n)
    kept = (kernels.bernoulli(x, qs.view(5, 1).expand(5, n).contiguous(), seed=1) != 0).numpy()
    for q, row in zip(qs.tolist(), kept):
        p = exact_keep(q)
        assert abs(row.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_gaussian_noise_is_standard_normal():
    n = N_PAIRS
    x = torch.ones(n)
    z = (kernels.gaussian(x, 1.0, seed=21) - 1).double().numpy()
    # mean ~ N(0, 1/n), variance ~ N(1, 2/n): 5-sigma bounds
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    # Kolmogorov-Smirnov against N(0, 1) at the 5-sigma level
    assert stats.kstest(z, "norm").pvalue > ALPHA
    # neighbours uncorrelated
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n - 1)
    # Box-Muller with 24-bit uniforms truncates at sqrt(48 ln 2)
    assert np.abs(z).max() <= math.sqrt(48 * math.log(2)) + 1e-5
