"""Shared argument checks and the moments of the multiplicative noise models.

Every closed form in :mod:`droplab.theory` sees dropout as multiplicative noise on an
input ``x``: ``x_tilde = x * xi`` with ``xi`` i.i.d. per element. Only the first four raw
moments of ``xi`` enter the formulas:

=====================  ==============  ===============  ========  ========  ===============
noise                  values of xi    mean mu          E xi^2    E xi^3    E xi^4
=====================  ==============  ===============  ========  ========  ===============
Bernoulli, inverted    {0, 1/keep}     1                1/keep    1/keep^2  1/keep^3
Bernoulli, classic     {0, 1}          keep             keep      keep      keep
Gaussian N(1, s^2)     real            1                1 + s^2   1 + 3s^2  1 + 6s^2 + 3s^4
=====================  ==============  ===============  ========  ========  ===============

The variance ``var = E xi^2 - mu^2`` is ``(1-keep)/keep``, ``keep(1-keep)`` and ``s^2``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from torch import Tensor

SCALINGS = ("inverted", "classic")
REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class Noise:
    """Raw moments of one multiplicative noise factor ``xi`` (see module docstring)."""

    mean: float
    m2: float
    m3: float
    m4: float
    label: str

    @property
    def var(self) -> float:
        return self.m2 - self.mean**2


def check_keep(keep: float, name: str = "keep") -> float:
    """``keep`` as a float in (0, 1]; raises naming the value otherwise."""
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        if isinstance(keep, Tensor) and keep.numel() == 1:
            keep = float(keep)
        else:
            raise TypeError(f"{name} must be a float in (0, 1], got {type(keep).__name__} {keep!r}")
    keep = float(keep)
    if not (0.0 < keep <= 1.0) or math.isnan(keep):
        raise ValueError(
            f"{name} (the probability of KEEPING a unit) must be in (0, 1], got {keep!r}"
        )
    return keep


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """``sigma`` as a finite float >= 0."""
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        if isinstance(sigma, Tensor) and sigma.numel() == 1:
            sigma = float(sigma)
        else:
            raise TypeError(f"{name} must be a float >= 0, got {type(sigma).__name__} {sigma!r}")
    sigma = float(sigma)
    if not (sigma >= 0.0 and math.isfinite(sigma)):
        raise ValueError(f"{name} (std of the N(1, sigma^2) noise) must be >= 0, got {sigma!r}")
    return sigma


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def noise(keep: float | None, scaling: str = "inverted", sigma: float | None = None) -> Noise:
    """The noise model given by exactly one of ``keep`` (Bernoulli) or ``sigma`` (Gaussian)."""
    if (keep is None) == (sigma is None):
        raise ValueError(
            "give exactly one of keep= (Bernoulli dropout) or sigma= (Gaussian N(1, sigma^2) "
            f"noise), got keep={keep!r}, sigma={sigma!r}"
        )
    check_choice(scaling, "scaling", SCALINGS)
    if sigma is not None:
        if scaling != "inverted":
            raise ValueError(
                f"Gaussian noise has mean 1 and no scaling option; got scaling={scaling!r}"
            )
        s2 = check_sigma(sigma) ** 2
        return Noise(1.0, 1.0 + s2, 1.0 + 3.0 * s2, 1.0 + 6.0 * s2 + 3.0 * s2 * s2, "gaussian")
    k = check_keep(keep)
    if scaling == "inverted":
        return Noise(1.0, 1.0 / k, 1.0 / k**2, 1.0 / k**3, "inverted")
    return Noise(k, k, k, k, "classic")


def check_design(X: Tensor, name: str = "X") -> Tensor:
    if not isinstance(X, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(X).__name__}")
    if X.dim() != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {X.dtype}")
    return X


def check_vector(v: Tensor, length: int, name: str, what: str) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) ({what}), got shape {tuple(v.shape)}")
    return v


def check_xyw(X: Tensor, y: Tensor | None, w: Tensor | None) -> None:
    """Shapes of a linear/logistic problem: X (n, d), y (n,), w (d,)."""
    check_design(X)
    n, d = X.shape
    if y is not None:
        check_vector(y, n, "y", "one target per row of X")
    if w is not None:
        check_vector(w, d, "w", "one weight per column of X")
