"""Matched-variance conversion between Bernoulli (inverted) and Gaussian dropout.

Inverted Bernoulli dropout multiplies each unit by ``xi in {0, 1/keep}``: mean 1, variance
``(1-keep)/keep``. Gaussian dropout multiplies by ``xi ~ N(1, sigma^2)``: mean 1, variance
``sigma^2``. With ``sigma^2 = (1-keep)/keep`` the two noises share their first two moments,
so every quantity that depends on the noise only through them is identical: the expected
squared loss of a linear model (:func:`droplab.theory.linear_expected_loss`), its expected
gradient, the second-order penalty of a logistic model, and the
:class:`~droplab.theory.ExplicitDropoutPenalty`. Higher moments differ (E xi^4 is
``1/keep^3`` vs ``1 + 6 sigma^2 + 3 sigma^4``), so the gradient noise differs
(:func:`droplab.theory.linear_gradient_moments`). Srivastava et al. (2014), sec. 10.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["bernoulli_keep", "gaussian_sigma"]


def _as_tensor_or_float(v: float | Tensor, name: str) -> float | Tensor:
    if isinstance(v, bool) or not isinstance(v, (numbers.Real, Tensor)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(v).__name__} {v!r}")
    return v


def gaussian_sigma(keep: float | Tensor) -> float | Tensor:
    """``sigma = sqrt((1-keep)/keep)``: the Gaussian dropout matching inverted ``keep``.

    Args:
        keep: probability of KEEPING a unit, in (0, 1]; a float or a tensor (elementwise).

    Returns:
        ``sigma`` (same type as ``keep``); ``keep = 1`` gives 0, ``keep = 0.5`` gives 1.

    Example:
        >>> gaussian_sigma(0.5)
        1.0
    """
    _as_tensor_or_float(keep, "keep")
    if isinstance(keep, Tensor):
        if not bool(((keep > 0) & (keep <= 1)).all()):
            raise ValueError(f"keep must be in (0, 1] elementwise, got {keep}")
        return torch.sqrt((1 - keep) / keep)
    keep = float(keep)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep (the probability of KEEPING a unit) must be in (0, 1], got {keep}")
    return math.sqrt((1.0 - keep) / keep)


def bernoulli_keep(sigma: float | Tensor) -> float | Tensor:
    """``keep = 1 / (1 + sigma^2)``: the inverse of :func:`gaussian_sigma`.

    Args:
        sigma: std of the ``N(1, sigma^2)`` multiplicative noise, ``>= 0``.

    Example:
        >>> bernoulli_keep(1.0)
        0.5
    """
    _as_tensor_or_float(sigma, "sigma")
    if isinstance(sigma, Tensor):
        if not bool(((sigma >= 0) & torch.isfinite(sigma)).all()):
            raise ValueError(f"sigma must be finite and >= 0 elementwise, got {sigma}")
        return 1.0 / (1.0 + sigma.pow(2))
    sigma = float(sigma)
    if not (sigma >= 0.0 and math.isfinite(sigma)):
        raise ValueError(f"sigma (std of the N(1, sigma^2) noise) must be >= 0, got {sigma}")
    return 1.0 / (1.0 + sigma * sigma)
