import math

import pytest
import torch
import torch.nn.functional as F

from droplab.train import metrics


def _probs(n=50, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g).softmax(-1), torch.randint(0, c, (n,), generator=g)


def test_accuracy_and_nll_match_torch():
    p, y = _probs()
    assert metrics.accuracy(p, y) == pytest.approx((p.argmax(1) == y).float().mean().item())
    assert metrics.nll(p, y) == pytest.approx(F.nll_loss(p.log(), y).item(), rel=1e-6)


def test_batched_metrics_equal_per_member():
    ps, ys = zip(*[_probs(seed=s) for s in range(3)])
    y = ys[0]
    p = torch.stack(ps)  # (K, n, C)
    for fn in (metrics.accuracy, metrics.nll, metrics.ece):
        batched = fn(p, y)
        assert batched.shape == (3,)
        for k in range(3):
            assert batched[k].item() == pytest.approx(fn(p[k], y), rel=1e-6)


def test_ece_by_hand():
    # two rows in bin (0.6, 0.6667], one right; one row in bin (0.9333, 1], wrong
    p = torch.tensor([[0.65, 0.35], [0.62, 0.38], [0.05, 0.95]])
    y = torch.tensor([0, 1, 0])
    want = (abs(0.5 - (0.65 + 0.62) / 2) * 2 + abs(0.0 - 0.95) * 1) / 3
    assert metrics.ece(p, y, bins=15) == pytest.approx(want, rel=1e-6)
    # perfectly calibrated confident predictions have ECE 0
    assert metrics.ece(torch.eye(3), torch.arange(3)) == pytest.approx(0.0)


def test_rmse():
    pred = torch.tensor([1.0, 2.0, 4.0])
    y = torch.tensor([1.0, 0.0, 0.0])
    assert metrics.rmse(pred, y) == pytest.approx(math.sqrt(20 / 3))
    assert metrics.rmse(pred.view(3, 1), y) == pytest.approx(math.sqrt(20 / 3))


def test_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        metrics.accuracy(torch.rand(5, 3), torch.zeros(4, dtype=torch.long))
