"""The exact check of the explicit study: linear regression, where dropout IS a ridge.

For a linear model with inverted dropout on the inputs, the expected squared loss over
masks is ``||y - X w||^2 + (1-keep)/keep ||Gamma w||^2`` with ``Gamma^2 = diag(X^T X)``
(Wager, Wang & Liang 2013; ``droplab.theory.linear``): a theorem, so this part checks the
implementation (real masks, the optimizer, the averaging) against the closed form
:func:`droplab.theory.linear_dropout_solution`; it is not evidence about the question.
"""

from __future__ import annotations

from typing import Any

import torch

from droplab import rng

__all__ = ["TOLERANCE", "dropout_sgd", "ridge_solution", "run_check"]

#: the check passes when ``||w_sgd - w*|| / ||w*||`` is below this (measured 0.2-1.3%
#: with 20000 steps; the Polyak window still holds a little of the transient)
TOLERANCE = 0.05


def ridge_solution(X: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """``argmin ||y - X w||^2 + lam ||w||^2 = (X^T X + lam I)^{-1} X^T y``; X (n, d), y (n,)
    -> (d,) in float64."""
    Xd, yd = X.double(), y.double()
    gram = Xd.T @ Xd  # (d, d)
    return torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), Xd.T @ yd)


def dropout_sgd(
    X: torch.Tensor,
    y: torch.Tensor,
    rate: float,
    *,
    steps: int,
    generator: torch.Generator,
    chunk: int = 250,
) -> torch.Tensor:
    """Linear regression trained by full-batch SGD with real inverted-dropout masks.

    Step t draws a fresh mask for every element of X, ``X~ = dropout(X, rate)``, and
    takes ``w <- w - eta P (-(2/n) X~^T (y - X~ w))`` with the diagonal preconditioner
    ``P = Gamma^{-2}`` and the constant step ``eta = 0.3 / L``, L the largest eigenvalue
    of ``P^{1/2} H P^{1/2}`` for the expected Hessian
    ``H = (2/n) (X^T X + (1-keep)/keep Gamma^2)``. Returns the average of the iterates of
    the second half (Polyak-Ruppert); the expected gradient is affine in w, so the mean of
    the stationary iterates is exactly the marginalized solution.

    Shapes: X (n, d), y (n,) -> (d,) float64.
    """
    from droplab import functional as F
    from droplab.theory import equivalent_ridge

    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    Xd, yd = X.double(), y.double()
    n, d = Xd.shape
    precond = 1.0 / Xd.pow(2).sum(0).clamp_min(1e-12)  # (d,)
    hess = 2.0 / n * (Xd.T @ Xd + equivalent_ridge(Xd, keep=1.0 - rate))  # (d, d)
    root = precond.sqrt()
    eta = 0.3 / float(torch.linalg.eigvalsh(root[:, None] * hess * root[None, :])[-1])
    w = torch.zeros(d, dtype=torch.float64)
    avg = torch.zeros(d, dtype=torch.float64)
    burn = steps // 2
    t = 0
    while t < steps:
        c = min(chunk, steps - t)
        Xs = F.dropout(Xd.expand(c, n, d), rate, generator=generator, backend="torch")
        for Xt in Xs:  # (n, d)
            w = w + eta * (2.0 / n) * precond * (Xt.T @ (yd - Xt @ w))  # (d,)
            t += 1
            if t > burn:
                avg += w
    return avg / (steps - burn)


def run_check(config: dict[str, Any], seed: int) -> dict[str, float]:
    """One replicate of the check: a fresh teacher-student regression (raw feature scales
    spread over 1e-1..1e1, so dropout's ridge is not isotropic), dropout SGD at
    ``config["rate"]`` vs the closed form. Returns the relative parameter distance and
    both test RMSEs."""
    from droplab import data as dl_data
    from droplab.theory import linear_dropout_solution

    ds = dl_data.load(
        "teacher-regression",
        seed=seed,
        n_train=50,
        n_val=100,
        n_test=2000,
        d=40,
        noise=1.0,
    )
    scale = torch.logspace(-1, 1, ds.x_train.shape[1]).double()  # (d,)
    Xtr, Xte = ds.x_train.double() * scale, ds.x_test.double() * scale
    ym = float(ds.y_train.mean())
    ytr, yte = ds.y_train.double() - ym, ds.y_test.double() - ym
    rate = float(config["rate"])
    w_star = linear_dropout_solution(Xtr, ytr, keep=1.0 - rate).double()
    w_sgd = dropout_sgd(
        Xtr, ytr, rate, steps=int(config["steps"]), generator=rng.generator(seed, "masks")
    )

    def rmse(w: torch.Tensor) -> float:
        return float((Xte @ w - yte).pow(2).mean().sqrt())

    return {
        "param_rel_dist": float((w_sgd - w_star).norm() / w_star.norm()),
        "rmse_sgd": rmse(w_sgd),
        "rmse_closed_form": rmse(w_star),
        "rate_used": rate,
    }
