"""Linear regression closed forms vs Monte Carlo with droplab's own dropout masks."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from theory_mc import mc, within

from droplab import functional as F
from droplab import rng
from droplab.theory import (
    equivalent_ridge,
    linear_dropout_solution,
    linear_expected_grad,
    linear_expected_loss,
    linear_gradient_moments,
)

S = 20_000  # masks per MC check


def _mc_loss_and_grad(X, y, w, keep, scaling, seed):
    """Per-mask loss ||y - X~ w||^2 (S,) and gradient -2 X~^T (y - X~ w) (S, d)."""
    g = rng.generator(seed, "masks")
    Xt = F.dropout(X.expand(S, *X.shape), keep=keep, scaling=scaling, generator=g)  # (S, n, d)
    r = y - Xt @ w  # (S, n)
    return r.pow(2).sum(1), -2.0 * (Xt * r.unsqueeze(-1)).sum(1)


@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_expected_loss_and_grad_match_monte_carlo(problem, scaling, keep):
    X, y, w = problem
    loss, grad = _mc_loss_and_grad(X, y, w, keep, scaling, seed=1)
    within(*mc(loss), linear_expected_loss(X, y, w, keep, scaling))
    within(*mc(grad), linear_expected_grad(X, y, w, keep, scaling))


@pytest.mark.parametrize("scaling", ["inverted", "classic"])
def test_gradient_moments_match_monte_carlo(problem, scaling):
    X, y, w = problem
    keep = 0.6
    _, grad = _mc_loss_and_grad(X, y, w, keep, scaling, seed=2)  # (S, d)
    mom = linear_gradient_moments(X, y, w, keep, scaling)
    within(*mc(grad), mom.mean)
    # trace of the sample covariance: the mean of the per-mask statistic
    # ||g - mean||^2 (S/(S-1)); its stderr is that statistic's sd / sqrt(S) (the estimation
    # error of the centre adds O(1/S), far below it)
    dev2 = (grad - grad.mean(0)).pow(2).sum(1) * S / (S - 1)  # (S,)
    within(*mc(dev2), mom.noise_trace)
    mu = 1.0 if scaling == "inverted" else keep  # the eval network scales inputs by mu
    var = (1 - keep) / keep if scaling == "inverted" else keep * (1 - keep)
    assert torch.allclose(mom.clean, -2 * mu * X.T @ (y - mu * X @ w))
    assert torch.allclose(mom.bias, 2 * var * torch.diagonal(X.T @ X) * w)
    assert torch.allclose(mom.bias, mom.mean - mom.clean)


def test_inverted_closed_form_values(problem):
    """The inverted penalty is (1-keep)/keep ||Gamma w||^2 and its gradient 2(1-keep)/keep Gamma^2 w."""
    X, y, w = problem
    keep = 0.25
    gamma2 = torch.diagonal(X.T @ X)
    clean = (y - X @ w).pow(2).sum()
    assert torch.allclose(linear_expected_loss(X, y, w, keep), clean + 3.0 * (gamma2 * w * w).sum())
    assert torch.allclose(
        linear_expected_grad(X, y, w, keep), -2 * X.T @ (y - X @ w) + 2 * 3.0 * gamma2 * w
    )
    # classic: ||y - keep X w||^2 + keep(1-keep) ||Gamma w||^2
    classic = (y - keep * X @ w).pow(2).sum() + keep * (1 - keep) * (gamma2 * w * w).sum()
    assert torch.allclose(linear_expected_loss(X, y, w, keep, "classic"), classic)


def test_mean_reduction_and_autograd_agree(problem):
    X, y, w = problem
    w = w.clone().requires_grad_(True)
    loss = linear_expected_loss(X, y, w, 0.7, reduction="mean")
    (auto,) = torch.autograd.grad(loss, w)
    assert torch.allclose(auto, linear_expected_grad(X, y, w.detach(), 0.7, reduction="mean"))
    assert torch.allclose(loss * X.shape[0], linear_expected_loss(X, y, w, 0.7))


def test_keep_one_is_least_squares(problem):
    X, y, w = problem
    assert torch.allclose(linear_expected_loss(X, y, w, 1.0), (y - X @ w).pow(2).sum())
    ols = torch.linalg.lstsq(X, y).solution
    assert torch.allclose(linear_dropout_solution(X, y, 1.0), ols)
    assert linear_gradient_moments(X, y, w, 1.0).noise_trace == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_solution_minimizes_and_matches_ridge(problem, keep):
    X, y, _ = problem
    w_inv = linear_dropout_solution(X, y, keep)
    w_cls = linear_dropout_solution(X, y, keep, "classic")
    assert linear_expected_grad(X, y, w_inv, keep).abs().max() < 1e-9
    assert linear_expected_grad(X, y, w_cls, keep, "classic").abs().max() < 1e-9
    # the test-time network of classic dropout (weights * keep) is the inverted solution
    assert torch.allclose(keep * w_cls, w_inv)
    lam = equivalent_ridge(X, keep)  # (d, d)
    assert torch.allclose(lam, torch.diag(torch.diagonal(lam)))  # diagonal
    ridge = torch.linalg.solve(X.T @ X + lam, X.T @ y)
    assert torch.allclose(ridge, w_inv)


def test_sgd_with_dropout_masks_converges_to_dropout_solution():
    """Minibatch SGD with droplab masks, iterate averaging -> linear_dropout_solution.

    For each mask and minibatch the gradient is affine in w with mean grad E L(w) / n, so
    the stationary mean of constant-step SGD is exactly the minimizer w* (no O(lr) bias).
    C independent chains each average T iterates after burn-in; the chain averages are
    i.i.d., so their sd / sqrt(C) is an honest standard error and the check is 5 sigma.
    The test has power: least squares is > 20 stderr away from w* in some coordinate.
    """
    g = rng.generator(3, "theory", "sgd")
    n, d, C, B, T, burn, lr, keep = 60, 3, 64, 10, 3000, 500, 0.05, 0.5
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 1.5, 0.7], dtype=torch.float64
    )
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.5 * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    w_star = linear_dropout_solution(X, y, keep)
    ols = linear_dropout_solution(X, y, 1.0)
    masks = rng.generator(3, "theory", "sgd", "masks")
    w = torch.zeros(C, d, dtype=torch.float64)
    total = torch.zeros(C, d, dtype=torch.float64)
    for t in range(burn + T):
        idx = torch.randint(0, n, (C, B), generator=g)  # (C, B) minibatch rows per chain
        Xb = F.dropout(X[idx], keep=keep, generator=masks)  # (C, B, d)
        r = y[idx] - (Xb @ w.unsqueeze(-1)).squeeze(-1)  # (C, B)
        grad = -2.0 * (Xb * r.unsqueeze(-1)).mean(1)  # (C, d)
        w = w - lr * grad
        if t >= burn:
            total += w
    avg, se = mc(total / T)  # (d,), (d,)
    within(avg, se, w_star)
    assert bool(((ols - w_star).abs() > 20 * se).any())


def test_bad_inputs(problem):
    X, y, w = problem
    with pytest.raises(ValueError, match="keep"):
        linear_expected_loss(X, y, w, 0.0)
    with pytest.raises(ValueError, match="keep"):
        linear_expected_loss(X, y, w, 1.5)
    with pytest.raises(ValueError, match="keep"):
        linear_dropout_solution(X, y, -0.1)
    with pytest.raises(ValueError, match=r"w must have shape \(4,\)"):
        linear_expected_loss(X, y, w[:3], 0.5)
    with pytest.raises(ValueError, match=r"y must have shape \(9,\)"):
        linear_expected_grad(X, y[:5], w, 0.5)
    with pytest.raises(ValueError, match=r"X must have shape \(n, d\)"):
        equivalent_ridge(X[0], 0.5)
    with pytest.raises(ValueError, match="scaling"):
        linear_expected_loss(X, y, w, 0.5, "sideways")
    with pytest.raises(ValueError, match="exactly one"):
        linear_expected_loss(X, y, w, 0.5, sigma=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        linear_expected_loss(X, y, w)
    with pytest.raises(ValueError, match="reduction"):
        linear_expected_loss(X, y, w, 0.5, reduction="max")
    with pytest.raises(TypeError, match="keep"):
        linear_expected_loss(X, y, w, "0.5")


def _enumerate(X, y, w, keep, scaling):
    """Exact E loss, E grad, trace Cov grad by enumerating the 2^d masks of each row."""
    d = X.shape[1]
    masks = torch.tensor(list(itertools.product((0.0, 1.0), repeat=d)), dtype=torch.float64)
    prob = keep ** masks.sum(1) * (1 - keep) ** (d - masks.sum(1))  # (2^d,)
    xi = masks / keep if scaling == "inverted" else masks  # (2^d, d)
    loss, grad, trace = 0.0, torch.zeros(d, dtype=torch.float64), 0.0
    for x_i, y_i in zip(X, y):
        xt = x_i * xi  # (2^d, d)
        r = y_i - xt @ w  # (2^d,)
        g = -2.0 * xt * r[:, None]  # (2^d, d)
        mean = prob @ g  # (d,)
        loss += float(prob @ r.pow(2))
        grad += mean
        trace += float((prob @ g.pow(2) - mean.pow(2)).sum())
    return loss, grad, trace


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    d=st.integers(1, 5),
    keep=st.floats(0.05, 1.0),
    scaling=st.sampled_from(["inverted", "classic"]),
    seed=st.integers(0, 2**16),
)
def test_closed_forms_equal_exact_enumeration(n, d, keep, scaling, seed):
    """Oracle without MC noise: all closed forms equal the enumeration over every mask."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    loss, grad, trace = _enumerate(X, y, w, keep, scaling)
    assert float(linear_expected_loss(X, y, w, keep, scaling)) == pytest.approx(loss, rel=1e-9)
    assert torch.allclose(linear_expected_grad(X, y, w, keep, scaling), grad, rtol=1e-9, atol=1e-9)
    mom = linear_gradient_moments(X, y, w, keep, scaling)
    assert torch.allclose(mom.mean, grad, rtol=1e-9, atol=1e-9)
    assert mom.noise_trace == pytest.approx(trace, rel=1e-7, abs=1e-7)
