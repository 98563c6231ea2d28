"""Logistic regression with dropout on the inputs: the quadratic penalty and exact checks.

Loss per example, with labels ``y in {0, 1}`` and the log-partition ``A(z) = log(1 + e^z)``:
``l(x, y) = A(x . w + b) - y (x . w + b)``. With mean-one noise ``x_tilde = x * xi``
(inverted Bernoulli or Gaussian), ``E x_tilde = x`` so the linear term's expectation is
unchanged and

    E l(x_tilde, y) - l(x, y) = E A(x_tilde . w + b) - A(x . w + b)
                              ~ 1/2 A''(x . w + b) Var(x_tilde . w)          (2nd order)
                              = 1/2 A''(x . w + b) var sum_j x_j^2 w_j^2

with ``A''(z) = sigmoid(z)(1 - sigmoid(z))`` and ``var = (1-keep)/keep`` (or sigma^2).
Summed over examples this is the quadratic dropout penalty of Wager, Wang & Liang (2013),
"Dropout training as adaptive regularization". The approximation drops the third and
higher cumulants of ``x_tilde . w``; :func:`logistic_expected_loss_mc` (unbiased Monte
Carlo) and :func:`logistic_expected_loss_exact` (enumeration of all masks, small d)
measure what it misses.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor
from torch.nn.functional import softplus

from droplab.theory._masks import multiplicative_noise
from droplab.theory._noise import REDUCTIONS, check_choice, check_keep, check_xyw, noise

__all__ = [
    "logistic_dropout_penalty",
    "logistic_expected_loss_exact",
    "logistic_expected_loss_mc",
    "logistic_loss",
]


def _check_labels(y: Tensor) -> None:
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("y must hold labels in {0, 1}")


def _reduce(per_example: Tensor, reduction: str) -> Tensor:
    check_choice(reduction, "reduction", REDUCTIONS)
    return per_example.sum(-1) if reduction == "sum" else per_example.mean(-1)


def logistic_loss(
    X: Tensor, y: Tensor, w: Tensor, *, bias: float = 0.0, reduction: str = "sum"
) -> Tensor:
    """The clean logistic loss ``sum_i A(x_i . w + b) - y_i (x_i . w + b)``; X (n, d)."""
    check_xyw(X, y, w)
    _check_labels(y)
    z = X @ w + bias  # (n,)
    return _reduce(softplus(z) - y * z, reduction)


def logistic_dropout_penalty(
    X: Tensor,
    w: Tensor,
    keep: float | None = None,
    *,
    sigma: float | None = None,
    bias: float = 0.0,
    reduction: str = "sum",
) -> Tensor:
    """Wager et al.'s quadratic dropout penalty for logistic regression.

    ``R(w) = 1/2 * var * sum_i A''(x_i . w + b) sum_j x_ij^2 w_j^2``, with
    ``var = (1-keep)/keep`` for inverted dropout of the inputs (or ``sigma^2``), and
    ``A''(z) = p (1 - p)``, ``p = sigmoid(z)``. It does not depend on the labels.

    Args:
        X: inputs, shape (n, d).
        w: weights, shape (d,).
        keep: probability of KEEPING an input, in (0, 1] (inverted scaling).
        sigma: instead of keep, the std of Gaussian N(1, sigma^2) noise.
        bias: intercept (never dropped).
        reduction: ``"sum"`` over examples or ``"mean"``.

    Returns:
        A 0-dim tensor, differentiable in ``w``.
    """
    check_xyw(X, None, w)
    nz = noise(keep, "inverted", sigma)
    p = torch.sigmoid(X @ w + bias)  # (n,)
    spread = (X.pow(2) * w.pow(2)).sum(1)  # (n,) sum_j x_ij^2 w_j^2
    return _reduce(0.5 * nz.var * p * (1 - p) * spread, reduction)


def logistic_expected_loss_mc(
    X: Tensor,
    y: Tensor,
    w: Tensor,
    keep: float | None = None,
    *,
    sigma: float | None = None,
    samples: int = 1000,
    bias: float = 0.0,
    reduction: str = "sum",
    generator: torch.Generator | None = None,
    chunk: int = 256,
) -> tuple[float, float]:
    """Unbiased Monte Carlo estimate of the exact expected dropout loss, and its standard error.

    Draws ``samples`` independent masks for the whole design matrix (droplab's own dropout
    masks, inverted scaling, or Gaussian N(1, sigma^2) noise), evaluates the logistic
    loss under each and returns ``(mean, stderr)`` with ``stderr = sd / sqrt(samples)``.
    The estimator is unbiased for ``E_masks sum_i l(x_i * xi_i, y_i)``; comparing it with
    ``logistic_loss + logistic_dropout_penalty`` measures the error of the quadratic
    approximation.
    """
    check_xyw(X, y, w)
    _check_labels(y)
    noise(keep, "inverted", sigma)  # validates keep / sigma
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an int >= 2, got {samples!r}")
    losses = []
    done = 0
    while done < samples:
        m = min(chunk, samples - done)
        Xs = X.expand(m, *X.shape)  # (m, n, d)
        Xt = multiplicative_noise(Xs, keep, sigma, "inverted", generator)  # (m, n, d)
        z = Xt @ w + bias  # (m, n)
        losses.append(_reduce(softplus(z) - y * z, reduction).double())  # (m,)
        done += m
    vals = torch.cat(losses)  # (samples,)
    return float(vals.mean()), float(vals.std() / samples**0.5)


def logistic_expected_loss_exact(
    X: Tensor,
    y: Tensor,
    w: Tensor,
    keep: float,
    *,
    bias: float = 0.0,
    reduction: str = "sum",
    max_features: int = 16,
) -> Tensor:
    """The exact expected inverted-dropout logistic loss, by enumerating all 2^d masks.

    Rows are independent, so ``E sum_i l_i = sum_i sum_m P(m) l(x_i * m / keep, y_i)`` over
    the ``2^d`` masks ``m`` of one row, ``P(m) = keep^|m| (1-keep)^(d-|m|)``. Exact up to
    float64 rounding; for ``d <= max_features`` only.
    """
    check_xyw(X, y, w)
    _check_labels(y)
    keep = check_keep(keep)
    d = X.shape[1]
    if d > max_features:
        raise ValueError(
            f"X has d={d} features; enumeration needs d <= max_features={max_features}"
        )
    masks = torch.tensor(
        list(itertools.product((0.0, 1.0), repeat=d)), dtype=torch.float64, device=X.device
    )  # (2^d, d)
    kept = masks.sum(1)  # (2^d,)
    prob = keep**kept * (1.0 - keep) ** (d - kept)  # (2^d,)
    a = X.double() * w.double() / keep  # (n, d)
    z = a @ masks.T + bias  # (n, 2^d)
    per_example = (softplus(z) - y.double()[:, None] * z) @ prob  # (n,)
    return _reduce(per_example, reduction)
