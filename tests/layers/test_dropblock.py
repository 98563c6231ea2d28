"""DropBlock: gamma, border behaviour, block shape and unbiasedness on non-square maps."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import droplab as dl
from droplab import functional as F

from .specs import gen


def _coverage(spatial, blocks):
    """c(u): number of valid block starts covering u, by brute force over the starts."""
    c = torch.zeros(spatial, dtype=torch.float64)
    ranges = [range(s - b + 1) for s, b in zip(spatial, blocks)]
    for start in itertools.product(*ranges):
        c[tuple(slice(s, s + b) for s, b in zip(start, blocks))] += 1
    return c


@pytest.mark.parametrize(
    ("spatial", "block"), [((13, 7), (3, 3)), ((7, 13), (3, 2)), ((5, 4), (5, 1)), ((11,), (4,))]
)
def test_keep_prob_matches_brute_force_coverage(spatial, block):
    gamma = 0.07
    expected = (1 - gamma) ** _coverage(spatial, block)
    torch.testing.assert_close(F.drop_block_keep_prob(spatial, gamma, block), expected)


def test_exact_gamma_by_enumerating_every_seed_pattern():
    # 4 x 3 map, 2 x 2 blocks: 3 x 2 = 6 possible starts, 2^6 seed patterns, exact expectation
    spatial, block, rate = (4, 3), (2, 2), 0.35
    gamma = F.drop_block_gamma(spatial, rate, block)
    starts = list(itertools.product(range(3), range(2)))
    expected = 0.0
    for pattern in itertools.product([0, 1], repeat=len(starts)):
        dropped = torch.zeros(spatial, dtype=torch.bool)
        for on, (i, j) in zip(pattern, starts):
            if on:
                dropped[i : i + 2, j : j + 2] = True
        k = sum(pattern)
        expected += gamma**k * (1 - gamma) ** (6 - k) * dropped.double().mean().item()
    assert expected == pytest.approx(rate, abs=1e-12)


def test_ghiasi_gamma_is_the_small_rate_limit_and_undershoots_at_large_rate():
    spatial, block = (13, 7), 3
    small = 1e-4
    exact = F.drop_block_gamma(spatial, small, block)
    ghiasi = F.drop_block_gamma(spatial, small, block, exact=False)
    assert exact == pytest.approx(ghiasi, rel=1e-2)  # first-order agreement
    ghiasi_half = F.drop_block_gamma(spatial, 0.5, block, exact=False)
    dropped = 1 - F.drop_block_keep_prob(spatial, ghiasi_half, block).mean().item()
    assert dropped < 0.45  # Ghiasi's closed form counts overlaps twice
    # Ghiasi et al. 2018, eq. 1 with valid-region correction, written out by hand
    assert ghiasi_half == pytest.approx(0.5 / 9 * (13 * 7) / (11 * 5))


CASES = [
    # (input shape, block_size, rate); >= 10^6 units each
    ((3001, 4, 13, 7), (3, 3), 0.1),
    ((3001, 4, 7, 13), (3, 2), 0.3),
    ((2003, 2, 19, 27), 5, 0.6),
    ((20011, 5, 11), 4, 0.25),
    ((1001, 2, 5, 9, 7), (2, 3, 2), 0.2),  # 3-D maps
]


@pytest.mark.parametrize(("shape", "block", "rate"), CASES)
def test_dropped_fraction_equals_rate_and_output_is_unbiased_everywhere(shape, block, rate):
    x = torch.ones(shape)
    y = F.drop_block(x, rate, block, generator=gen(21))
    dropped = (y == 0).double()  # (N, C, *spatial)
    maps = dropped.flatten(0, 1)  # (M, *spatial), independent maps
    m = maps.shape[0]
    spatial = tuple(shape[2:])
    # 1) overall dropped fraction: mean of M i.i.d. per-map fractions, 5 sigma of that mean
    per_map = maps.flatten(1).mean(dim=1)
    assert abs(per_map.mean().item() - rate) <= 5 * per_map.std().item() / math.sqrt(m)
    # 2) per position (corners and edges included): Binomial(M, p_u) with
    #    p_u = 1 - (1 - gamma)^c(u)
    gamma = F.drop_block_gamma(spatial, rate, block)
    keep_u = F.drop_block_keep_prob(spatial, gamma, block)
    p_u = 1 - keep_u
    freq = maps.mean(dim=0)
    assert ((freq - p_u).abs() <= 5 * torch.sqrt(p_u * (1 - p_u) / m)).all()
    corner = (0,) * len(spatial)
    assert p_u[corner] < p_u.max()  # borders really are dropped less often
    # 3) E[y] = x at every position: y_u = m_u / keep_u has variance (1 - keep_u) / keep_u
    mean_y = y.double().flatten(0, 1).mean(dim=0)
    assert ((mean_y - 1).abs() <= 5 * torch.sqrt((1 - keep_u) / keep_u / m)).all()


@pytest.mark.parametrize(("shape", "block"), [((64, 3, 13, 7), (3, 2)), ((64, 3, 17), 5)])
def test_dropped_units_form_whole_blocks_inside_the_map(shape, block):
    y = F.drop_block(torch.ones(shape), 0.3, block, generator=gen(22))
    dropped = (y == 0).double()
    blocks = (block,) if isinstance(block, int) else block
    blocks = blocks * (len(shape) - 2) if len(blocks) == 1 else blocks
    if len(shape) == 3:
        full = torch.nn.functional.avg_pool1d(dropped, blocks, stride=1) > 1 - 1e-9
        pad = (blocks[0] - 1, blocks[0] - 1)
        cover = torch.nn.functional.max_pool1d(
            torch.nn.functional.pad(full.double(), pad), blocks, stride=1
        )
    else:
        full = torch.nn.functional.avg_pool2d(dropped, blocks, stride=1) > 1 - 1e-9
        pad = (blocks[1] - 1, blocks[1] - 1, blocks[0] - 1, blocks[0] - 1)
        cover = torch.nn.functional.max_pool2d(
            torch.nn.functional.pad(full.double(), pad), blocks, stride=1
        )
    # every dropped unit lies in some fully dropped in-map block (morphological opening)
    assert torch.equal(cover, dropped)
    assert dropped.sum() > 0


def test_module_and_eval():
    layer = dl.DropBlock(0.2, 3)
    x = torch.randn(2, 3, 9, 5)
    assert torch.equal(layer.eval()(x), x)
    assert "block_size=3" in repr(layer)
    assert dl.DropBlock(None, (3, 2), keep=0.8).rate == pytest.approx(0.2)


def test_couple_channels_shares_one_block_mask_per_example():
    # the statistics of the shared mask: per-map fractions over N maps, 5 sigma of the mean
    n, rate = 4001, 0.3
    y = F.drop_block(torch.ones(n, 3, 11, 8), rate, (3, 2), couple_channels=True, generator=gen(23))
    dropped = y == 0
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # same for every channel
    per_map = dropped[:, 0].double().flatten(1).mean(dim=1)  # (N,)
    assert abs(per_map.mean().item() - rate) <= 5 * per_map.std().item() / math.sqrt(n)
    layer = dl.DropBlock(rate, 3, couple_channels=True)
    assert repr(layer) == "DropBlock(rate=0.3, keep=0.7, block_size=3, couple_channels=True)"


def test_scale_by_keep_false_leaves_kept_units_unscaled():
    x = torch.randn(8, 3, 9, 10, generator=gen(24))
    y = F.drop_block(x, 0.4, 3, scale_by_keep=False, generator=gen(25))
    kept = y != 0
    assert 0 < kept.sum() < x.numel()
    assert torch.equal(y[kept], x[kept])
    assert "scale_by_keep=False" in repr(dl.DropBlock(0.4, 3, scale_by_keep=False))


def test_drop_block_schedule_is_linear_from_zero():
    net = torch.nn.Sequential(dl.DropBlock(0.0, 3), torch.nn.ReLU(), dl.DropBlock(0.0, (2, 2)))
    assert dl.drop_block_schedule(net, 0.2, step=0, total_steps=100) == 0.0
    assert dl.drop_block_schedule(net, 0.2, step=50, total_steps=100) == pytest.approx(0.1)
    assert net[2].rate == pytest.approx(0.1) and net[2].keep == pytest.approx(0.9)
    assert dl.drop_block_schedule(net, 0.2, step=500, total_steps=100) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="step must be an int >= 0, got -1"):
        dl.drop_block_schedule(net, 0.2, step=-1, total_steps=100)
    with pytest.raises(ValueError, match="found no DropBlock module in ReLU"):
        dl.drop_block_schedule(torch.nn.ReLU(), 0.2, step=1, total_steps=2)
