"""Tiny keep probabilities in float16/bfloat16 (and float32): no NaN from ``0 * inf``.

``1/keep`` exceeds float16's largest value 65504 for keep < ~1.5e-5. The functional ops
form every multiplier in float32 (float64 where float32 cannot hold it) and round the
product once to x's dtype, so for a float16/bfloat16 ``x`` the output equals the
float32 output for ``x.float()`` (same seed, same mask) rounded to x's dtype: kept
zeros are exactly 0, and +-inf appears only where the exact value overflows the dtype.
"""

from __future__ import annotations

import pytest
import torch

from droplab import functional as F

N = 1 << 20
HALF = [torch.float16, torch.bfloat16]
# keep = 1.4e-5 (1/keep = 71429), 1e-6 and 1e-7 all have 1/keep > 65504 = float16's max.
KEEPS = [1.4e-5, 1e-6, 1e-7]
# Seeds found once by search: torch.Generator seed 84 draws 2 of its first 2**20 float32
# uniforms below 1e-7 (so below every keep in KEEPS); with backend="auto" the kernel seed
# drawn from generator seed 134 keeps 2 of 2**20 at keep = 1e-7.
SEED = {"torch": 84, "auto": 134}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def values(n: int = N) -> torch.Tensor:
    """Zeros, +-1 and small values (0.01 / keep is finite in float16 down to keep ~1.6e-7)."""
    pattern = torch.tensor([0.0, 1.0, 0.0, -1.0, 0.01, 0.0, -0.003, 2.0**-14])
    return pattern.repeat(n // len(pattern))  # (n,)


def check_rounded_once(y: torch.Tensor, y32: torch.Tensor, x: torch.Tensor) -> None:
    """y (low precision) is the float32 result rounded once; no NaN; zeros stay zero."""
    assert y.dtype == x.dtype
    assert not torch.isnan(y).any()
    assert torch.equal(y, y32.to(x.dtype))  # torch.equal: inf == inf, NaN fails
    assert torch.equal(y[x == 0], torch.zeros_like(y[x == 0]))


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("keep", KEEPS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_dropout_half_tiny_keep(dtype, keep, backend):
    x = values().to(dtype)
    kept = F.dropout(torch.ones(N), keep=keep, generator=gen(SEED[backend]), backend=backend) != 0
    assert kept.sum() >= 2  # the seed keeps some units, so the test is not vacuous
    y = F.dropout(x, keep=keep, generator=gen(SEED[backend]), backend=backend)
    y32 = F.dropout(x.float(), keep=keep, generator=gen(SEED[backend]), backend=backend)
    check_rounded_once(y, y32, x)
    # kept units: x * (1/keep) formed in float32, then rounded; dropped units: 0
    want = torch.where(kept, (x.float() * torch.tensor(1.0 / keep)).to(dtype), 0.0).to(dtype)
    assert torch.equal(y, want)
    if dtype == torch.float16:  # 1/keep itself overflows float16: kept ones give inf
        assert torch.isinf(y[kept & (x == 1)]).all()


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_dropout_half_tiny_keep_backward(dtype):
    x = values().to(dtype).requires_grad_(True)
    for backend in ("torch", "auto"):
        y = F.dropout(x, keep=1e-6, generator=gen(SEED[backend]), backend=backend)
        (g,) = torch.autograd.grad(y, x, torch.zeros_like(y))  # zero upstream gradient
        assert torch.equal(g, torch.zeros_like(g)), backend  # kept: 0 * 1e6 = 0, not NaN


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_broadcast_dims_and_spatial_half_tiny_keep(dtype):
    x = values().view(-1, 1).expand(-1, 3).to(dtype)  # (N, 3), one mask value per row
    kw = {"keep": 1e-6, "broadcast_dims": 1, "backend": "torch"}
    y = F.dropout(x, generator=gen(SEED["torch"]), **kw)
    check_rounded_once(y, F.dropout(x.float(), generator=gen(SEED["torch"]), **kw), x)
    xs = values().view(-1, 1, 2).to(dtype)  # (N/2, 1, 2): whole channels dropped
    ys = F.spatial_dropout(xs, keep=1e-6, generator=gen(SEED["torch"]))
    ys32 = F.spatial_dropout(xs.float(), keep=1e-6, generator=gen(SEED["torch"]))
    check_rounded_once(ys, ys32, xs)


@pytest.mark.parametrize("scale_by_keep", [True, False])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_drop_path_half_tiny_keep(dtype, scale_by_keep):
    x = values().view(-1, 1).to(dtype)  # (N, 1): one draw per example, as dropout's draws
    kw = {"keep": 1e-7, "scale_by_keep": scale_by_keep}
    kept = F.drop_path(torch.ones(N, 1), generator=gen(SEED["torch"]), **kw) != 0
    assert kept.sum() >= 2
    y = F.drop_path(x, generator=gen(SEED["torch"]), **kw)
    check_rounded_once(y, F.drop_path(x.float(), generator=gen(SEED["torch"]), **kw), x)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_fixed_count_half_tiny_kept_fraction(dtype):
    # n = 100_000 units, 99_999 dropped: kappa = 1e-5, 1/kappa = 1e5 > 65504
    x = torch.zeros(3, 100_000, dtype=dtype)
    x[1] = 1.0
    x[2, ::2] = 0.5
    y = F.fixed_count_dropout(x, 0.99999, generator=gen(0))
    y32 = F.fixed_count_dropout(x.float(), 0.99999, generator=gen(0))
    check_rounded_once(y, y32, x)
    assert (y32[1] != 0).sum() == 1  # exactly one kept unit per row, 1e5 in float32


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_gaussian_half_huge_sigma(dtype):
    x = values(1 << 14).to(dtype)
    for keep in (1e-6, 1e-10, 1e-40):  # sigma = sqrt(rate/keep) up to 1e20 > 65504
        kw = {"keep": keep, "backend": "torch"}
        y = F.gaussian_dropout(x, generator=gen(1), **kw)
        check_rounded_once(y, F.gaussian_dropout(x.float(), generator=gen(1), **kw), x)
        y_auto = F.gaussian_dropout(x, keep=keep, generator=gen(1))  # droplab.kernels
        assert not torch.isnan(y_auto).any() and torch.equal(y_auto[x == 0], y[x == 0])


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_alpha_half_tiny_keep(dtype):
    x = values(1 << 14).to(dtype)
    for keep in (1e-6, 1e-10, 1e-12):  # a, b > 65504 below keep ~2e-10
        y = F.alpha_dropout(x, keep=keep, generator=gen(2))
        y32 = F.alpha_dropout(x.float(), keep=keep, generator=gen(2))
        assert torch.isfinite(y32).all()
        assert torch.equal(y, y32.to(dtype)) and not torch.isnan(y).any()


@pytest.mark.parametrize("dtype", [*HALF, torch.float32, torch.float64], ids=str)
def test_drop_block_rate_near_one_no_nan(dtype):
    # keep_prob = (1 - gamma)^c underflows to 0 at some positions: 0/0 was NaN there
    x = values(64 * 4 * 81).view(64, 4, 9, 9).to(dtype)
    for rate in (1 - 1e-6, 1 - 1e-12):
        y = F.drop_block(x, rate, 3, generator=gen(3))
        assert not torch.isnan(y).any(), rate
        if dtype in HALF:
            y32 = F.drop_block(x.float(), rate, 3, generator=gen(3))
            assert torch.equal(y, y32.to(dtype))


@pytest.mark.parametrize("dtype", [*HALF, torch.float32, torch.float64], ids=str)
def test_alpha_dropped_value_has_no_cancellation_error(dtype):
    """A dropped unit is alpha' a + b = alpha' a keep (~-1e-6 at keep 1e-12): formed as
    the sum of two terms of size ~1e6 it came out 0.0625 in float32 (a fuzz finding)."""
    from droplab.functional import _ALPHA_PRIME

    x = values(1 << 12).to(dtype)
    for keep in (0.5, 1e-6, 1e-12):
        rate = 1.0 - keep
        a = (keep + _ALPHA_PRIME**2 * keep * rate) ** -0.5
        want = torch.tensor(_ALPHA_PRIME * a * keep, dtype=torch.float64)  # exact to ~1 ulp
        y = F.alpha_dropout(x, keep=keep, generator=gen(4)).double()
        kept = torch.isclose(y, x.double() * a - a * rate * _ALPHA_PRIME, rtol=1e-2, atol=0)
        dropped = y[~kept]
        assert dropped.numel() > 0
        fi = torch.finfo(dtype)  # rounding to dtype (twice), subnormal spacing included
        tol = 2 * fi.eps * max(abs(float(want)), fi.tiny)
        assert torch.allclose(dropped, want.expand_as(dropped), rtol=0, atol=tol), keep
