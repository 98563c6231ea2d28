"""Linear regression with dropout on the inputs: the exact expectation over masks.

Model: prediction ``x_tilde . w`` with ``x_tilde = x * xi`` (``xi`` i.i.d. per element of
the design matrix, see :mod:`droplab.theory._noise`), loss ``L = ||y - X_tilde w||^2``.
Because the rows are independent and the loss is quadratic, the expectation over masks is
exact, not an approximation. With ``mu = E xi``, ``var = Var xi`` and
``Gamma^2 = diag(X^T X)`` (the column sums of squares):

    E L = ||y - mu X w||^2 + var * ||Gamma w||^2
    grad E L = -2 mu X^T (y - mu X w) + 2 var Gamma^2 w

    inverted dropout (xi in {0, 1/keep}):  mu = 1,    var = (1-keep)/keep
    classic dropout  (xi in {0, 1}):       mu = keep, var = keep (1-keep)
    Gaussian xi ~ N(1, sigma^2):           mu = 1,    var = sigma^2

Derivation: row i contributes ``E (y_i - z_i)^2 = (y_i - E z_i)^2 + Var z_i`` with
``z_i = sum_j x_ij w_j xi_ij``, ``E z_i = mu x_i . w`` and, by independence,
``Var z_i = var * sum_j x_ij^2 w_j^2``; summing ``Var z_i`` over i gives
``var * sum_j w_j^2 sum_i x_ij^2 = var ||Gamma w||^2``. (Wager, Wang & Liang 2013 and
Srivastava et al. 2014 sec. 9 state the classic case.)

The minimizer is a generalized ridge regression (:func:`linear_dropout_solution`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from droplab.theory._noise import REDUCTIONS, check_choice, check_design, check_xyw, noise

__all__ = [
    "LinearGradientMoments",
    "equivalent_ridge",
    "linear_dropout_solution",
    "linear_expected_grad",
    "linear_expected_loss",
    "linear_gradient_moments",
]


def _scale(reduction: str, n: int) -> float:
    check_choice(reduction, "reduction", REDUCTIONS)
    return 1.0 if reduction == "sum" else 1.0 / n


def linear_expected_loss(
    X: Tensor,
    y: Tensor,
    w: Tensor,
    keep: float | None = None,
    scaling: str = "inverted",
    *,
    sigma: float | None = None,
    reduction: str = "sum",
) -> Tensor:
    """Exact ``E_masks ||y - (X * xi) w||^2`` for dropout on the inputs of a linear model.

    ``E L = ||y - mu X w||^2 + var ||Gamma w||^2`` with ``Gamma^2 = diag(X^T X)``;
    inverted: ``mu = 1, var = (1-keep)/keep``; classic: ``mu = keep, var = keep(1-keep)``;
    Gaussian (``sigma=`` instead of ``keep``): ``mu = 1, var = sigma^2``.

    Args:
        X: design matrix, shape (n, d).
        y: targets, shape (n,).
        w: weights, shape (d,).
        keep: probability of KEEPING an input element, in (0, 1].
        scaling: ``"inverted"`` (kept inputs divided by keep, PyTorch's convention) or
            ``"classic"`` (kept inputs unscaled, Srivastava et al. 2014 at train time).
        sigma: instead of ``keep``: std of Gaussian multiplicative noise ``N(1, sigma^2)``.
        reduction: ``"sum"`` over rows (the formulas above) or ``"mean"`` (divided by n).

    Returns:
        A 0-dim tensor.

    Example:
        >>> X = torch.eye(2); y = torch.ones(2); w = torch.ones(2)
        >>> float(linear_expected_loss(X, y, w, keep=0.5))  # 0 + (0.5/0.5) * 2
        2.0
    """
    check_xyw(X, y, w)
    nz = noise(keep, scaling, sigma)
    resid = y - nz.mean * (X @ w)  # (n,)
    penalty = (X.pow(2).sum(0) * w.pow(2)).sum()  # ||Gamma w||^2
    return (resid.pow(2).sum() + nz.var * penalty) * _scale(reduction, X.shape[0])


def linear_expected_grad(
    X: Tensor,
    y: Tensor,
    w: Tensor,
    keep: float | None = None,
    scaling: str = "inverted",
    *,
    sigma: float | None = None,
    reduction: str = "sum",
) -> Tensor:
    """Exact ``E_masks grad_w ||y - (X * xi) w||^2`` (= the gradient of the expected loss).

    ``-2 mu X^T (y - mu X w) + 2 var Gamma^2 w``, shape (d,). Arguments as in
    :func:`linear_expected_loss`. The second term is the "regularization gradient" of
    dropout; note the factor 2 (the loss has no 1/2 in front).
    """
    check_xyw(X, y, w)
    nz = noise(keep, scaling, sigma)
    resid = y - nz.mean * (X @ w)  # (n,)
    grad = -2.0 * nz.mean * (X.T @ resid) + 2.0 * nz.var * X.pow(2).sum(0) * w  # (d,)
    return grad * _scale(reduction, X.shape[0])


def linear_dropout_solution(
    X: Tensor,
    y: Tensor,
    keep: float | None = None,
    scaling: str = "inverted",
    *,
    sigma: float | None = None,
) -> Tensor:
    """The minimizer of :func:`linear_expected_loss`: a generalized ridge regression.

    Setting the gradient to zero gives ``(mu^2 X^T X + var Gamma^2) w = mu X^T y``:

    - inverted / Gaussian: ``w* = (X^T X + lam Gamma^2)^{-1} X^T y``,
      ``lam = (1-keep)/keep`` (or ``sigma^2``);
    - classic: ``w* = (keep X^T X + (1-keep) Gamma^2)^{-1} X^T y``, which is exactly the
      inverted solution divided by ``keep``: the network used at test time (weights times
      keep) computes the same function under both scalings.

    Unique when ``X^T X + lam Gamma^2`` is invertible, which holds for ``keep < 1`` as soon
    as no column of X is all zero. Returns shape (d,), in X's dtype.
    """
    check_xyw(X, y, None)
    nz = noise(keep, scaling, sigma)
    gram = X.T @ X  # (d, d)
    lhs = nz.mean**2 * gram + nz.var * torch.diag(torch.diagonal(gram))
    rhs = nz.mean * (X.T @ y)  # (d,)
    return torch.linalg.solve(lhs.double(), rhs.double()).to(X.dtype)


def equivalent_ridge(X: Tensor, keep: float | None = None, *, sigma: float | None = None) -> Tensor:
    """The diagonal ridge penalty matrix ``Lambda`` under which ridge equals dropout.

    ``Lambda = (1-keep)/keep * diag(X^T X)`` (or ``sigma^2 diag(X^T X)``), shape (d, d):
    ``argmin ||y - X w||^2 + w^T Lambda w = (X^T X + Lambda)^{-1} X^T y`` equals
    :func:`linear_dropout_solution` with inverted scaling (for classic scaling the trained
    weights are that ridge solution divided by keep). Each feature is penalized in
    proportion to its own energy ``sum_i x_ij^2``, so dropout is ridge regression on
    standardized features, not on the raw ones.
    """
    check_design(X)
    nz = noise(keep, "inverted", sigma)
    return nz.var * torch.diag(X.pow(2).sum(0))


@dataclass(frozen=True)
class LinearGradientMoments:
    """Closed-form moments of the per-step dropout gradient of linear regression.

    Attributes:
        clean: gradient of the eval-mode network, ``-2 mu X^T (y - mu X w)``, shape (d,).
        mean: ``E_masks`` of the dropout gradient, shape (d,) (= :func:`linear_expected_grad`).
        bias: ``mean - clean = 2 var Gamma^2 w``, shape (d,): the "regularization gradient".
        noise_trace: ``trace Cov_masks(grad)``, the total variance of one step's gradient.
    """

    clean: Tensor
    mean: Tensor
    bias: Tensor
    noise_trace: float


def linear_gradient_moments(
    X: Tensor,
    y: Tensor,
    w: Tensor,
    keep: float | None = None,
    scaling: str = "inverted",
    *,
    sigma: float | None = None,
    reduction: str = "sum",
) -> LinearGradientMoments:
    """Exact mean, bias and noise trace of the dropout gradient of ``||y - (X * xi) w||^2``.

    The gradient is a sum of independent rows ``g_i = -2 x~_i (y_i - x~_i . w)``, so
    ``trace Cov(g) = sum_ij Var(g_ij)``. Writing ``a_k = x_ik w_k`` and
    ``u = y_i - sum_{k != j} a_k xi_k`` (independent of ``xi_j``):

        E g_ij   = -2 x_ij (mu E u - a_j E xi^2)
        E g_ij^2 =  4 x_ij^2 (E u^2 E xi^2 - 2 a_j E u E xi^3 + a_j^2 E xi^4)
        E u = y_i - mu (S_i - a_j),  Var u = var (Q_i - a_j^2),
        S_i = sum_k a_k, Q_i = sum_k a_k^2.

    ``clean`` is the gradient of the deterministic (eval-mode) network, in which every
    ``xi`` is replaced by its mean: ``-2 mu X^T (y - mu X w)`` (for classic scaling the
    eval network scales inputs by keep, as droplab's classic ``Dropout`` does in eval
    mode). Then ``bias = 2 var Gamma^2 w`` exactly, for every noise.
    ``reduction="mean"`` divides gradients by n and the trace by n^2.
    """
    check_xyw(X, y, w)
    nz = noise(keep, scaling, sigma)
    s = _scale(reduction, X.shape[0])
    Xd, yd, wd = X.double(), y.double(), w.double()
    a = Xd * wd  # (n, d)
    S = a.sum(1, keepdim=True)  # (n, 1)
    Q = a.pow(2).sum(1, keepdim=True)  # (n, 1)
    Eu = yd[:, None] - nz.mean * (S - a)  # (n, d)
    Eu2 = Eu.pow(2) + nz.var * (Q - a.pow(2))  # (n, d)
    Eg = -2.0 * Xd * (nz.mean * Eu - a * nz.m2)  # (n, d)
    Eg2 = 4.0 * Xd.pow(2) * (Eu2 * nz.m2 - 2.0 * a * Eu * nz.m3 + a.pow(2) * nz.m4)
    trace = float((Eg2 - Eg.pow(2)).sum()) * s * s
    clean = -2.0 * nz.mean * Xd.T @ (yd - nz.mean * (Xd @ wd)) * s  # (d,)
    mean = Eg.sum(0) * s  # (d,)
    return LinearGradientMoments(
        clean=clean.to(X.dtype),
        mean=mean.to(X.dtype),
        bias=(mean - clean).to(X.dtype),
        noise_trace=trace,
    )
