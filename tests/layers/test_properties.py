"""Property tests (hypothesis) over shapes and rates."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from droplab import functional as F
from droplab._validate import check_rate

from .specs import gen

FAST = settings(max_examples=40, deadline=None)
shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)
rates = st.floats(0.0, 1.0, allow_nan=False)
seeds = st.integers(0, 2**31 - 1)


@FAST
@given(shape=shapes, rate=rates, seed=seeds, data=st.data())
def test_dropout_outputs_zero_or_scaled_and_shares_masks(shape, rate, seed, data):
    dims = data.draw(st.sets(st.integers(0, len(shape) - 1)).map(tuple))
    x = torch.rand(shape, generator=gen(seed), dtype=torch.float64) + 0.5  # nonzero
    y = F.dropout(x, rate, broadcast_dims=dims, generator=gen(seed + 1))
    assert y.shape == x.shape
    if rate == 1.0:
        assert torch.equal(y, torch.zeros_like(x))
        return
    ratio = y / x
    zero = ratio == 0
    torch.testing.assert_close(ratio[~zero], torch.full_like(ratio[~zero], 1 / (1 - rate)))
    index = tuple(slice(0, 1) if d in dims else slice(None) for d in range(len(shape)))
    assert torch.equal(zero, zero[index].expand(shape))  # one mask along broadcast dims
    assert torch.equal(F.dropout(x, rate, training=False), x)


@FAST
@given(shape=shapes, rate=rates, seed=seeds)
def test_fixed_count_drops_exactly_round_rate_n(shape, rate, seed):
    x = torch.rand(shape, generator=gen(seed)) + 0.5
    y = F.fixed_count_dropout(x, rate, generator=gen(seed + 1))
    n = shape[-1]
    k = round(rate * n)
    assert ((y == 0).sum(dim=-1) == k).all()
    if k < n:
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] * n / (n - k))


spatial_cases = st.lists(st.integers(1, 12), min_size=1, max_size=2).flatmap(
    lambda sizes: st.tuples(st.just(tuple(sizes)), st.tuples(*[st.integers(1, s) for s in sizes]))
)


@FAST
@given(case=spatial_cases, rate=st.floats(0.001, 0.999))
def test_drop_block_gamma_hits_the_rate_exactly(case, rate):
    spatial, block = case
    gamma = F.drop_block_gamma(spatial, rate, block)
    assert 0.0 <= gamma <= 1.0
    dropped = 1 - F.drop_block_keep_prob(spatial, gamma, block).mean().item()
    assert dropped == pytest.approx(rate, abs=1e-9)
    assert F.drop_block_gamma(spatial, min(1.0, rate + 1e-3), block) >= gamma  # monotone


@FAST
@given(case=spatial_cases, rate=st.floats(0.0, 1.0), seed=seeds, n=st.integers(1, 3))
def test_drop_block_values_and_shape(case, rate, seed, n):
    spatial, block = case
    x = torch.rand((n, 2, *spatial), generator=gen(seed), dtype=torch.float64) + 0.5
    y = F.drop_block(x, rate, block, generator=gen(seed + 1))
    assert y.shape == x.shape
    if rate in (0.0, 1.0):
        assert torch.equal(y, x if rate == 0.0 else torch.zeros_like(x))
        return
    keep_u = F.drop_block_keep_prob(spatial, F.drop_block_gamma(spatial, rate, block), block)
    ratio = y / x  # either 0 or 1 / keep_u at every position
    zero = ratio == 0
    expected = (1 / keep_u).expand_as(ratio)
    torch.testing.assert_close(ratio[~zero], expected[~zero])


@FAST
@given(shape=st.lists(st.integers(1, 5), min_size=3, max_size=5).map(tuple), rate=rates)
def test_spatial_dropout_one_value_per_channel(shape, rate):
    y = F.spatial_dropout(torch.ones(shape), rate, generator=gen(3))
    flat = y.flatten(2)  # (N, C, prod(spatial))
    assert torch.equal(flat, flat[..., :1].expand_as(flat))


@FAST
@given(rate=st.floats(0.0, 0.999))
def test_gaussian_sigma_matches_bernoulli_variance(rate):
    sigma = F.gaussian_sigma(rate)
    assert sigma**2 == pytest.approx(rate / (1 - rate), rel=1e-12, abs=1e-15)
    # keep = 1 - rate loses the low bits of tiny rates, so compare variances absolutely
    assert F.gaussian_sigma(keep=1 - rate) ** 2 == pytest.approx(sigma**2, rel=1e-6, abs=1e-12)


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_check_rate_accepts_exactly_the_unit_interval(value):
    if not math.isnan(value) and 0.0 <= value <= 1.0:
        rate, keep = check_rate(value, None)
        assert rate == value and rate + keep == pytest.approx(1.0)
    else:
        with pytest.raises(ValueError, match="rate must be in"):
            check_rate(value, None)
