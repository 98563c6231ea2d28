"""slack_measures: unit importance and its spread, slack units, pruning, unit ablation and
normalized retention, checked against hand-computed oracles on odd, non-square nets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from droplab.studies import slack_measures as M


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.ReLU(), nn.Linear(3, 4))


def test_unit_importance_is_the_product_of_in_and_out_norms():
    net = _net()
    p = M.unit_importance(net)
    assert [q.shape for q in p] == [(7,), (3,)]
    w0, w1, w2 = (net[i].weight.detach().double() for i in (0, 2, 4))
    for j in range(7):
        assert float(p[0][j]) == pytest.approx(float(w0[j].norm() * w1[:, j].norm()))
    for j in range(3):
        assert float(p[1][j]) == pytest.approx(float(w1[j].norm() * w2[:, j].norm()))
    with pytest.raises(ValueError, match="hidden layer"):
        M.unit_importance(nn.Sequential(nn.Linear(3, 2)))


def test_activation_importance_is_rms_activation_times_out_norm_and_zero_when_dead():
    net = _net(4)
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(1))
    acts = M.hidden_activations(net, x)
    a = M.activation_importance(net, acts)
    w1 = net[2].weight.detach().double()
    for j in range(7):
        rms = float(acts[0][:, j].double().pow(2).mean().sqrt())
        assert float(a[0][j]) == pytest.approx(rms * float(w1[:, j].norm()))
    dead = [torch.zeros_like(acts[0]), acts[1]]
    assert float(M.activation_importance(net, dead)[0].abs().max()) == 0.0
    with pytest.raises(ValueError, match="one"):
        M.activation_importance(net, acts[:1])


def test_unit_cv_is_zero_for_equal_units_and_scale_free():
    assert M.unit_cv([torch.ones(6, dtype=torch.float64)]) == 0.0
    q = torch.tensor([1.0, 3.0], dtype=torch.float64)  # mean 2, population std 1
    assert M.unit_cv([q]) == pytest.approx(0.5)
    assert M.unit_cv([q, 10 * q]) == pytest.approx(0.5)  # averaged over layers, scale-free
    net = _net()
    with torch.no_grad():
        for lin in M.linears(net):
            lin.weight.mul_(3.0)
    assert M.unit_cv(M.unit_importance(net)) == pytest.approx(M.unit_cv(M.unit_importance(_net())))


def test_slack_units_counts_dead_or_tiny_units():
    p = [torch.tensor([1.0, 1.0, 1e-4, 1.0], dtype=torch.float64), torch.ones(2)]
    dead = [torch.tensor([False, True, False, False]), torch.tensor([False, False])]
    assert M.slack_units(p, dead) == pytest.approx(2 / 6)  # one dead, one tiny
    with pytest.raises(ValueError, match="same layers"):
        M.slack_units(p, dead[:1])


def test_dead_and_coadaptation():
    a = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0], [0.0, 3.0, 6.1]])  # unit 0 dead
    assert M.dead_units([a])[0].tolist() == [True, False, False]
    assert M.coadaptation([a]) == pytest.approx(1.0, abs=1e-3)  # the live pair is collinear
    g = torch.Generator().manual_seed(0)
    # independent units: each |r| ~ sqrt(2/pi)/sqrt(n) = 0.0056 at n = 20000; 0.03 is > 5 sigma
    assert M.coadaptation([torch.randn(20000, 4, generator=g)]) < 0.03


def test_prune_zeroes_the_smallest_fraction_per_layer():
    net = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(60.0).view(6, 10) - 29.5)  # distinct magnitudes
    M.prune_(net, 0.5)
    assert int((net[0].weight == 0).sum()) == 30 and int((net[2].weight == 0).sum()) == 9
    assert net[0].weight.abs()[net[0].weight != 0].min() > 14  # kept the 30 largest |w|
    with pytest.raises(ValueError, match=r"fraction must be a float in \[0, 1\), got 1.0"):
        M.prune_(net, 1.0)


def test_ablate_least_removes_the_smallest_importance_units():
    net = _net(1)
    p = M.unit_importance(net)
    M.ablate_units_(net, 0.43)  # round(0.43 * 7) = 3 of layer 1, round(1.29) = 1 of layer 2
    removed0 = (net[2].weight == 0).all(0)
    assert int(removed0.sum()) == 3
    assert set(torch.nonzero(removed0).flatten().tolist()) == set(torch.argsort(p[0])[:3].tolist())
    assert int((net[4].weight == 0).all(0).sum()) == 1
    assert (net[0].weight != 0).all()  # incoming weights are left alone


def test_ablate_random_is_reproducible_and_validated():
    a, b = _net(2), _net(2)
    M.ablate_units_(a, 0.5, order="random", generator=np.random.default_rng(5))
    M.ablate_units_(b, 0.5, order="random", generator=np.random.default_rng(5))
    assert torch.equal(a[2].weight, b[2].weight)
    assert int((a[2].weight == 0).all(0).sum()) == round(0.5 * 7)
    with pytest.raises(ValueError, match="generator"):
        M.ablate_units_(a, 0.5, order="random")
    with pytest.raises(ValueError, match="order must be 'least' or 'random', got 'top'"):
        M.ablate_units_(a, 0.5, order="top")


def test_retention_is_normalized_above_chance():
    assert M.retention(0.55, 0.9, 0.1) == pytest.approx(0.5625)
    assert M.retention(0.9, 0.9, 0.1) == 1.0
    assert math.isnan(M.retention(0.1, 0.1, 0.1))


def test_measure_restores_the_net_and_reports_every_fraction():
    net = _net(3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    with torch.no_grad():
        y = net(x).argmax(-1)  # the net is perfect on its own labels: acc0 = 1
    metrics, curves = M.measure(net, x, y, n_classes=4, seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert metrics["acc0"] == 1.0
    for f in M.PRUNE_FRACTIONS:
        assert f"prune_ret_{round(f * 100)}" in metrics
    for f in M.ABLATE_FRACTIONS:
        assert (
            f"least_ret_{round(f * 100)}" in metrics and f"random_ret_{round(f * 100)}" in metrics
        )
    assert metrics["least_ret"] <= 1.0 and metrics["prune_ret"] <= 1.0
    assert 0.0 <= metrics["slack_units"] <= 1.0 and metrics["unit_cv"] > 0
    q = curves["importance_quantiles"]
    assert len(q) == len(M.QUANTILES) and q == sorted(q)
    assert metrics == M.measure(net, x, y, n_classes=4, seed=0)[0]  # deterministic
