"""Gaussian vs Bernoulli dropout: matched variance gives the same expected linear loss."""

from __future__ import annotations

import math

import pytest
import torch
from theory_mc import mc, within

from droplab import functional as F
from droplab import rng
from droplab.theory import (
    bernoulli_keep,
    gaussian_sigma,
    linear_dropout_solution,
    linear_expected_grad,
    linear_expected_loss,
    linear_gradient_moments,
)

S = 20_000


def test_conversion_values_and_roundtrip():
    assert gaussian_sigma(0.5) == pytest.approx(1.0)
    assert gaussian_sigma(1.0) == 0.0
    assert gaussian_sigma(0.8) == pytest.approx(math.sqrt(0.25))
    assert bernoulli_keep(1.0) == pytest.approx(0.5)
    assert bernoulli_keep(0.0) == 1.0
    keeps = torch.tensor([0.05, 0.3, 0.5, 0.99, 1.0], dtype=torch.float64)
    assert torch.allclose(bernoulli_keep(gaussian_sigma(keeps)), keeps)
    for k in (0.1, 0.37, 0.9):
        assert bernoulli_keep(gaussian_sigma(k)) == pytest.approx(k)


@pytest.mark.parametrize("keep", [0.4, 0.75])
def test_matched_gaussian_has_bernoulli_expected_loss(problem, keep):
    """MC with N(1, sigma^2) noise, sigma^2 = (1-keep)/keep, vs the Bernoulli closed form."""
    X, y, w = problem
    sigma = gaussian_sigma(keep)
    g = rng.generator(4, "masks", str(keep))
    Xt = F.gaussian_dropout(X.expand(S, *X.shape), sigma=sigma, generator=g)  # (S, n, d)
    r = y - Xt @ w  # (S, n)
    within(*mc(r.pow(2).sum(1)), linear_expected_loss(X, y, w, keep))
    within(*mc(-2.0 * (Xt * r.unsqueeze(-1)).sum(1)), linear_expected_grad(X, y, w, keep))
    # closed forms agree exactly, and so do the minimizers
    assert torch.allclose(
        linear_expected_loss(X, y, w, sigma=sigma), linear_expected_loss(X, y, w, keep)
    )
    assert torch.allclose(
        linear_dropout_solution(X, y, sigma=sigma), linear_dropout_solution(X, y, keep)
    )


def test_gaussian_gradient_noise_differs_from_bernoulli(problem):
    """Same mean gradient, different noise: the fourth moments of xi differ."""
    X, y, w = problem
    keep = 0.5
    sigma = gaussian_sigma(keep)
    gauss = linear_gradient_moments(X, y, w, sigma=sigma)
    bern = linear_gradient_moments(X, y, w, keep)
    assert torch.allclose(gauss.mean, bern.mean)
    assert gauss.noise_trace != pytest.approx(bern.noise_trace, rel=0.01)
    g = rng.generator(5, "masks")
    Xt = F.gaussian_dropout(X.expand(S, *X.shape), sigma=sigma, generator=g)  # (S, n, d)
    grad = -2.0 * (Xt * (y - Xt @ w).unsqueeze(-1)).sum(1)  # (S, d)
    within(*mc(grad), gauss.mean)
    dev2 = (grad - grad.mean(0)).pow(2).sum(1) * S / (S - 1)  # (S,)
    within(*mc(dev2), gauss.noise_trace)


def test_bad_inputs():
    for bad in (0.0, -0.5, 1.01, float("nan")):
        with pytest.raises(ValueError, match="keep"):
            gaussian_sigma(bad)
    with pytest.raises(ValueError, match="keep"):
        gaussian_sigma(torch.tensor([0.5, 0.0]))
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            bernoulli_keep(bad)
    with pytest.raises(TypeError, match="keep"):
        gaussian_sigma("0.5")
    with pytest.raises(ValueError, match="sigma"):
        linear_expected_loss(torch.ones(2, 2), torch.ones(2), torch.ones(2), sigma=-1.0)
    with pytest.raises(ValueError, match="scaling"):
        linear_expected_loss(
            torch.ones(2, 2), torch.ones(2), torch.ones(2), None, "classic", sigma=1.0
        )
