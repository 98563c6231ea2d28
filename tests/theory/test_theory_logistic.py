"""Logistic regression: Wager et al.'s quadratic penalty, exact enumeration, unbiased MC."""

from __future__ import annotations

import pytest
import torch
from theory_mc import mc, within

from droplab import functional as F
from droplab import rng
from droplab.theory import (
    gaussian_sigma,
    logistic_dropout_penalty,
    logistic_expected_loss_exact,
    logistic_expected_loss_mc,
    logistic_loss,
)


@pytest.fixture
def logit_problem():
    g = rng.generator(0, "theory", "logistic")
    X = torch.randn(11, 5, generator=g, dtype=torch.float64)
    w = torch.randn(5, generator=g, dtype=torch.float64)
    y = (torch.rand(11, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w)).double()
    return X, y, w


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_mc_estimator_is_unbiased_for_the_exact_loss(logit_problem, keep):
    X, y, w = logit_problem
    exact = logistic_expected_loss_exact(X, y, w, keep, bias=0.3)
    mean, se = logistic_expected_loss_mc(
        X, y, w, keep, samples=20_000, bias=0.3, generator=rng.generator(1, "masks")
    )
    within(mean, se, exact)


def test_penalty_is_half_curvature_times_variance(logit_problem):
    """R = E sum_i 1/2 A''(z_i) delta_i^2 exactly, delta_i = (x~_i - x_i) . w (droplab masks)."""
    X, _, w = logit_problem
    keep, S = 0.6, 20_000
    Xt = F.dropout(X.expand(S, *X.shape), keep=keep, generator=rng.generator(2, "masks"))
    delta = (Xt - X) @ w  # (S, n)
    p = torch.sigmoid(X @ w)  # (n,)
    quad = (0.5 * p * (1 - p) * delta.pow(2)).sum(1)  # (S,)
    within(*mc(quad), logistic_dropout_penalty(X, w, keep))


def test_quadratic_approximation_error_vanishes_at_the_right_order(logit_problem):
    """exact - (clean + R) is the 3rd-cumulant term: relative error O(t) for weights t*w."""
    X, y, w = logit_problem
    keep = 0.7
    rel = []
    for t in (1.0, 0.25):
        wt = t * w
        exact = logistic_expected_loss_exact(X, y, wt, keep)
        approx = logistic_loss(X, y, wt) + logistic_dropout_penalty(X, wt, keep)
        rel.append(float((exact - approx).abs() / logistic_dropout_penalty(X, wt, keep)))
    assert rel[1] < 0.5 * rel[0], rel  # O(t) would give 0.25
    assert rel[1] < 0.05, rel


def test_penalty_matches_gaussian_and_autograd(logit_problem):
    X, _, w = logit_problem
    keep = 0.35
    assert torch.allclose(
        logistic_dropout_penalty(X, w, keep),
        logistic_dropout_penalty(X, w, sigma=gaussian_sigma(keep)),
    )
    wg = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(logistic_dropout_penalty(X, wg, keep), wg)
    assert torch.isfinite(grad).all()
    assert logistic_dropout_penalty(X, w, 1.0) == 0.0
    assert torch.allclose(
        logistic_dropout_penalty(X, w, keep, reduction="mean") * X.shape[0],
        logistic_dropout_penalty(X, w, keep),
    )


def test_bad_inputs(logit_problem):
    X, y, w = logit_problem
    with pytest.raises(ValueError, match="keep"):
        logistic_dropout_penalty(X, w, 0.0)
    with pytest.raises(ValueError, match="keep"):
        logistic_expected_loss_exact(X, y, w, 2.0)
    with pytest.raises(ValueError, match=r"w must have shape \(5,\)"):
        logistic_dropout_penalty(X, w[:2], 0.5)
    with pytest.raises(ValueError, match=r"y must have shape \(11,\)"):
        logistic_expected_loss_mc(X, y[:3], w, 0.5)
    with pytest.raises(ValueError, match="labels"):
        logistic_loss(X, 2 * y + 1, w)
    with pytest.raises(ValueError, match="samples"):
        logistic_expected_loss_mc(X, y, w, 0.5, samples=1)
    with pytest.raises(ValueError, match="max_features"):
        logistic_expected_loss_exact(torch.ones(2, 20), torch.ones(2), torch.ones(20), 0.5)
