"""Concrete dropout: the relaxed mask, the learned rate and the paper's regularizer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import droplab as dl

from .specs import gen, seeded_linear


def test_relaxed_mask_is_nearly_bernoulli_and_unbiased():
    # at t = 0.1 the relaxed keep factor (1 - z) is near 0 or 1 and E[(1 - z)] ~ 1 - p;
    # with y = x (1 - z) / (1 - p) through an identity layer, the mean of y over n units is
    # within 5 sigma of 1 plus the relaxation's bias (< 0.02 at p = 0.3, t = 0.1)
    layer = dl.ConcreteDropout(nn.Identity(), 0.3, generator=gen(1))
    n = 200_000
    y = layer(torch.ones(1, n)).detach()
    near = ((y < 0.05) | ((y - 1 / 0.7).abs() < 0.05)).double().mean().item()
    # z is within 0.035 of 0 or 1 unless |logit p + logit u| < 0.33 (t = 0.1): a band of
    # logit u of width 0.66 where the logistic density is <= 1/4, so near > 1 - 0.17
    assert near > 0.8
    sd = y.std().item()
    assert abs(y.mean().item() - 1) <= 5 * sd / math.sqrt(n) + 0.02
    assert torch.equal(layer.eval()(torch.ones(2, 3)), torch.ones(2, 3))


def test_regularizer_terms_push_the_rate_the_ways_the_paper_says():
    # the dropout term (-entropy) pulls p towards 1/2; the weight term ||W||^2 / (1 - p)
    # pushes p down: with N examples both scale as 1/N, so more data -> a smaller rate
    def grad_of_rate(wr, dr):
        layer = dl.ConcreteDropout(
            seeded_linear(16, 4), 0.1, weight_regularizer=wr, dropout_regularizer=dr
        )
        layer(torch.ones(2, 16))
        layer.regularization().backward()
        return layer.p_logit.grad.item()

    assert grad_of_rate(0.0, 1.0) < 0  # gradient descent raises p (from 0.1 towards 0.5)
    assert grad_of_rate(1.0, 0.0) > 0  # gradient descent lowers p


@pytest.mark.slow  # ~40-60 s of training on a loaded 2-core machine
def test_learned_rate_falls_with_data_size():
    # Gal et al. 2017, fig. 2/3: with the regularizers set from N (l^2 / N and 2 / N) the
    # learned rate is smaller for more data
    def fit(n):
        g = gen(0)
        x = torch.randn(n, 8, generator=g)
        y = x @ torch.randn(8, 1, generator=g) + 0.5 * torch.randn(n, 1, generator=g)
        torch.manual_seed(0)
        head = dl.ConcreteDropout(
            nn.Linear(64, 1), 0.1, weight_regularizer=1e-4 / n, dropout_regularizer=2 / n, seed=0
        )
        net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), head)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            (((net(x) - y) ** 2).mean() + head.regularization()).backward()
            opt.step()
        return head.rate

    assert fit(20) > fit(2000)


def test_concrete_errors():
    with pytest.raises(ValueError, match=r"init_rate must be in \(0, 1\), got 0"):
        dl.ConcreteDropout(nn.Linear(2, 2), 0)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        dl.ConcreteDropout(nn.Linear(2, 2), 0.1, temperature=0)
    with pytest.raises(TypeError, match=r"ConcreteDropout wraps an nn\.Module, got int"):
        dl.ConcreteDropout(3, 0.1)
