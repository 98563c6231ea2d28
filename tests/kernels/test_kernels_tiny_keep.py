"""Multipliers beyond x's dtype in ``droplab.kernels``: ``1/keep`` past float16's 65504,
or past float32 for keep < ~2.9e-39. Kept zeros must stay 0 (never ``0 * inf = NaN``).

``x * M`` is formed in float32 (float64 for float64 x and where float32 cannot hold M)
and rounded once, so a float16/bfloat16 result equals the float32 result for
``x.float()`` (same seed, so same mask) rounded to x's dtype, on every rate form.
"""

from __future__ import annotations

import pytest
import torch

from droplab import kernels

N = 1 << 20
HALF = [torch.float16, torch.bfloat16]
# Found once by search: kernel seed 74 keeps 2 of 2**20 elements at keep = 1e-7 (hence at
# every larger keep); seed 10 keeps 1 of 2**20 at keep = 1e-40 (threshold 1 of 2**24).
SEED, SEED_1E40 = 74, 10


def values(n: int = N) -> torch.Tensor:
    pattern = torch.tensor([0.0, 1.0, 0.0, -1.0, 0.01, 0.0, -0.003, 2.0**-14])
    return pattern.repeat(n // len(pattern))  # (n,)


def check_rounded_once(y: torch.Tensor, y32: torch.Tensor, x: torch.Tensor) -> None:
    assert y.dtype == x.dtype and not torch.isnan(y).any()
    assert torch.equal(y, y32.to(x.dtype))  # inf == inf; a NaN fails
    assert torch.equal(y[x == 0], torch.zeros_like(y[x == 0]))


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_bernoulli_half_tiny_keep_every_form(dtype, backend):
    x = values()
    kept = kernels.bernoulli(torch.ones(N), 1e-7, SEED) != 0
    assert kept.sum() >= 2  # not vacuous
    # the same counters (C-order index) and threshold in every form: the same mask
    forms = [
        (x, 1e-7, {}),  # scalar keep, fused pass
        (x.view(-1, 1).expand(-1, 3), 1e-7, {"broadcast_dims": (1,)}),  # mask (N, 1)
        (x.view(8, -1), torch.full((8, 1), 1e-7), {}),  # one keep per row
        (x.view(2, -1), torch.full((N // 2,), 1e-7), {}),  # general keep tensor
    ]
    for xf, keep, kw in forms:
        xh = xf.to(dtype)
        y = kernels.bernoulli(xh, keep, SEED, backend=backend, **kw)
        check_rounded_once(y, kernels.bernoulli(xh.float(), keep, SEED, **kw), xh)
        y1 = y if not kw else y[..., 0] if "broadcast_dims" in kw else y.reshape(-1)
        want = (x.to(dtype).float() * torch.tensor(1e7)).to(dtype)  # x * (1/keep), rounded
        want = torch.where(kept, want, torch.zeros((), dtype=dtype))
        assert torch.equal(y1.reshape(-1), want), kw


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_bernoulli_half_tiny_keep_backward(dtype):
    x = values().to(dtype).requires_grad_(True)
    y = kernels.bernoulli(x, 1e-6, SEED)
    (g,) = torch.autograd.grad(y, x, torch.zeros_like(y))
    assert torch.equal(g, torch.zeros_like(g))  # regenerated mask: 0 * 1e6 = 0, not NaN


@pytest.mark.parametrize("backend", ["torch", "auto", "numba"])
def test_bernoulli_float32_keep_beyond_float32(backend):
    # 1/keep = 1e40 > float32's max: formed in float64, rounded to float32
    x = values()
    kept = kernels.bernoulli(torch.ones(N, dtype=torch.float64), 1e-40, SEED_1E40) != 0
    assert kept.sum() >= 1
    for xx, keep in ((x, 1e-40), (x.view(2, -1), torch.tensor([1e-40, 0.5]).view(2, 1))):
        y = kernels.bernoulli(xx, keep, SEED_1E40, backend=backend)
        y64 = kernels.bernoulli(xx.double(), keep, SEED_1E40, backend=backend)
        assert not torch.isnan(y).any() and torch.equal(y, y64.float())
    zero = kernels.bernoulli(torch.zeros(N), 1e-40, SEED_1E40, backend=backend)
    assert torch.equal(zero, torch.zeros(N))  # a kept zero is 0; dropped ones too
    ones = kernels.bernoulli(torch.ones(N), 1e-40, SEED_1E40, backend=backend)
    assert torch.equal(torch.isinf(ones), kept) and not torch.isnan(ones).any()


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_gaussian_half_huge_sigma(dtype):
    x = values(1 << 16).to(dtype)
    for sigma in (1e3, 1e5, 1e20, torch.tensor([1e5, 0.5]).view(2, 1)):
        xx = x.view(2, -1) if isinstance(sigma, torch.Tensor) else x
        y = kernels.gaussian(xx, sigma, 3, backend="torch")
        check_rounded_once(y, kernels.gaussian(xx.float(), sigma, 3, backend="torch"), xx)
        assert not torch.isnan(kernels.gaussian(xx, sigma, 3)).any()


def test_gaussian_float32_sigma_beyond_float32():
    x = values(1 << 16)
    for backend in ("torch", "auto"):
        y = kernels.gaussian(x, 1e39, 3, backend=backend)  # float32 cannot hold sigma
        assert not torch.isnan(y).any()
        assert torch.equal(y[x == 0], torch.zeros_like(y[x == 0]))


def test_row_bernoulli_keep_beyond_float32():
    keep = [1e-40, 0.5]
    seeds = torch.tensor([SEED_1E40, 4])
    rows = kernels.RowBernoulli(keep, seeds, scaling="inverted")
    z = values(2 * N).view(2, -1)
    z[0] = 1.0  # relu(z) = 1 on member 0, so its kept units give 1e40 -> inf
    z[0, ::2] = 0.0
    y = rows.relu(z, 0)
    want = kernels.bernoulli(torch.relu(z), torch.tensor(keep).view(2, 1), 0, member_seeds=seeds)
    assert not torch.isnan(y).any() and torch.equal(y, want)
    kept = kernels.bernoulli(torch.ones(N), 1e-40, SEED_1E40) != 0  # member 0's mask
    assert torch.equal(torch.isinf(y[0]), kept & (z[0] > 0))
    assert torch.equal(y[0][~torch.isinf(y[0])], torch.zeros_like(y[0][~torch.isinf(y[0])]))
    g = rows.backward(torch.zeros_like(z), y)
    assert torch.equal(g, torch.zeros_like(g))  # 0 * 1e40 = 0, not NaN
