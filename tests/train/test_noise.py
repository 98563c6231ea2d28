"""Batched dropout of the fast path: per-member streams, rates, and the fused ReLU op."""

from __future__ import annotations

import math

import pytest
import torch

from droplab.train.noise import MemberNoise, batched_dropout, fusable, relu_dropout

RATES = [0.0, 0.3, 0.5, 0.8]


def _noise(backend, rates=RATES, gaussian=None, spatial=None, seeds=None, blocks=None):
    seeds = seeds or list(range(len(rates)))
    return MemberNoise(
        seeds,
        [rates],
        gaussian or [False] * len(rates),
        scaling="inverted",
        device=torch.device("cpu"),
        spatial=spatial,
        blocks=blocks,
        backend=backend,
    )


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_rates_and_values(backend):
    x = torch.ones(4, 200, 100)
    noise = _noise(backend)
    noise.advance()
    y = batched_dropout(x, noise, 0)
    n = x[0].numel()
    for k, r in enumerate(RATES):
        nonzero = y[k][y[k] != 0]
        torch.testing.assert_close(nonzero, torch.full_like(nonzero, 1 / (1 - r)))
        kept = (y[k] != 0).float().mean().item()
        # 5 sigma of Binomial(n, keep) / n
        assert abs(kept - (1 - r)) <= 5 * math.sqrt(r * (1 - r) / n) + 1e-4


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_member_masks_do_not_depend_on_the_batch(backend):
    x = torch.randn(4, 30, 7)  # odd sizes
    batch = _noise(backend, seeds=[10, 11, 12, 13])
    batch.advance()
    yb = batched_dropout(x, batch, 0)
    for k in range(4):
        alone = _noise(backend, rates=[RATES[k]], seeds=[10 + k])
        alone.advance()
        torch.testing.assert_close(batched_dropout(x[k : k + 1], alone, 0)[0], yb[k])


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_gaussian_mean_and_variance(backend):
    x = torch.ones(2, 400, 250)
    noise = _noise(backend, rates=[0.5, 0.2], gaussian=[True, True])
    noise.advance()
    y = batched_dropout(x, noise, 0)
    n = x[0].numel()
    for k, r in enumerate([0.5, 0.2]):
        var = r / (1 - r)
        assert abs(y[k].mean().item() - 1) <= 5 * math.sqrt(var / n)
        # 5 sigma of the sample variance of a normal: var * sqrt(2 / n)
        assert abs(y[k].var().item() - var) <= 5 * var * math.sqrt(2 / n)


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_spatial_shares_the_mask_over_positions(backend):
    x = torch.ones(2, 5, 6, 9)  # (K, B, C, L)
    noise = _noise(backend, rates=[0.5, 0.5], spatial=[True])
    noise.advance()
    y = batched_dropout(x, noise, 0)
    assert (y == y[..., :1]).all()  # one value per (member, example, channel)
    assert 0 < (y[..., 0] == 0).float().mean() < 1


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_fused_relu_dropout_matches_composition(backend):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 13, 17, generator=g, requires_grad=True)
    up = torch.randn(4, 13, 17, generator=g)
    a, b = _noise(backend), _noise(backend)
    a.advance()
    b.advance()
    assert fusable(a, 0)
    y1 = relu_dropout(z, a, 0)
    (g1,) = torch.autograd.grad((y1 * up).sum(), z)
    y2 = batched_dropout(torch.relu(z), b, 0)
    (g2,) = torch.autograd.grad((y2 * up).sum(), z)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(g1, g2)
    assert not fusable(_noise(backend, gaussian=[False, True, False, False]), 0)


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_drop_block_rate_and_mean(backend):
    """Dropped fraction = rate and E[y] = x, per member (exact gamma of drop_block)."""
    b = 3
    x = torch.ones(3, 60, 8, 13, 7)  # (K, B, C, H, W), H != W
    noise = _noise(backend, rates=[0.0, 0.2, 0.5], blocks=[b])
    noise.advance()
    y = batched_dropout(x, noise, 0)
    n = x[0].numel()
    assert torch.equal(y[0], x[0])
    for k, r in ((1, 0.2), (2, 0.5)):
        dropped = (y[k] == 0).float().mean().item()
        # units within a block window are correlated: Var(fraction) <= (2b-1)^2 r(1-r)/n,
        # bound = 5 sigma of that
        assert abs(dropped - r) <= 5 * (2 * b - 1) * math.sqrt(r * (1 - r) / n)
        assert abs(y[k].mean().item() - 1) <= 5 * (2 * b - 1) * math.sqrt(r / (1 - r) / n)
    # zeros come in blocks: every dropped unit lies inside a fully dropped b x b window
    F = torch.nn.functional
    z = (y[2] == 0).float().reshape(-1, 1, 13, 7)  # (B*C, 1, H, W)
    full = (F.avg_pool2d(z, b, stride=1) > 1 - 1e-6).float()  # window starts, all dropped
    covered = F.max_pool2d(F.pad(full, (b - 1,) * 4), b, stride=1)  # (B*C, 1, H, W)
    assert z.sum() > 0 and bool((covered >= z).all())


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_drop_block_member_independent_of_batch(backend):
    x = torch.randn(2, 5, 3, 9)
    batch = _noise(backend, rates=[0.3, 0.4], seeds=[7, 8], blocks=[2])
    batch.advance()
    yb = batched_dropout(x, batch, 0)
    alone = _noise(backend, rates=[0.4], seeds=[8], blocks=[2])
    alone.advance()
    torch.testing.assert_close(batched_dropout(x[1:], alone, 0)[0], yb[1])


def test_inplace_relu_dropout_matches_composition():
    """The trainer's in-place fused path: same values and gradient, z's memory reused."""
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(4, 13, 17, generator=g, requires_grad=True)
    up = torch.randn(4, 13, 17, generator=g)
    a, b = _noise("kernel"), _noise("kernel")
    a.advance()
    b.advance()
    z = z0 * 1.0  # a non-leaf temporary, like a GEMM output
    y1 = relu_dropout(z, a, 0, inplace=True)
    assert y1.data_ptr() == z.data_ptr()
    (g1,) = torch.autograd.grad((y1 * up).sum(), z0)
    y2 = batched_dropout(torch.relu(z0), b, 0)
    (g2,) = torch.autograd.grad((y2 * up).sum(), z0)
    assert torch.equal(y1, y2)
    assert torch.equal(g1, g2)
    leaf = z0.detach().clone().requires_grad_(True)  # a leaf is never overwritten
    a.advance()
    y3 = relu_dropout(leaf, a, 0, inplace=True)
    assert y3.data_ptr() != leaf.data_ptr() and torch.equal(leaf, z0.detach())


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_subset_keeps_each_members_stream(backend):
    """After some passes, ``subset`` of members 3 and 1 draws exactly the masks those
    members draw in the full batch (same counter; on torch the same generators)."""
    x = torch.randn(4, 30, 7)
    full, part = _noise(backend), _noise(backend)
    for _ in range(3):
        full.advance()
        part.advance()
        batched_dropout(x, full, 0)
        batched_dropout(x, part, 0)
    part = part.subset([3, 1])
    assert part.K == 2 and part.rates == [[RATES[3], RATES[1]]] and part.counter == 3
    for _ in range(2):
        full.advance()
        part.advance()
        yf, yp = batched_dropout(x, full, 0), batched_dropout(x[[3, 1]], part, 0)
        assert torch.equal(yp, yf[[3, 1]])
