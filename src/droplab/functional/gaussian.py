"""Multiplicative and additive Gaussian noise: Gaussian dropout and its matched sigma."""

from __future__ import annotations

import math

import torch

from droplab._validate import (
    check_float_tensor,
    check_generator,
    check_nonneg_float,
    check_rate,
)
from droplab.functional._common import (
    _fast_kernels,
    _kernel_seed,
    _mult_dtype,
    _normal,
    _times,
)

# --------------------------------------------------------------------------- Gaussian


def gaussian_sigma(
    rate: float | None = None, *, keep: float | None = None, sigma: float | None = None
) -> float:
    r"""The noise std of Gaussian dropout: ``sigma`` itself, or :math:`\sqrt{rate/(1-rate)}`.

    :math:`\sigma^2 = \text{rate}/(1-\text{rate})` is the variance of the inverted Bernoulli
    multiplier :math:`m/\text{keep}`, so both kinds of dropout perturb a unit equally
    (Srivastava et al. 2014, sec. 10; Wang & Manning 2013).
    """
    if sigma is not None:
        if rate is not None or keep is not None:
            raise ValueError(
                f"give one of rate, keep or sigma, not several; got rate={rate!r}, "
                f"keep={keep!r}, sigma={sigma!r}"
            )
        return check_nonneg_float(sigma, "sigma")
    if rate is None and keep is None:
        raise ValueError(
            "Gaussian dropout needs rate (in [0, 1)), keep (in (0, 1]) or sigma (>= 0); "
            "got none of them"
        )
    rate, keep = check_rate(rate, keep, allow_one=False)
    sigma = math.sqrt(rate / keep)
    if not math.isfinite(sigma):  # keep below ~1e-308: rate / keep overflows
        raise ValueError(
            f"keep={keep!r} is too small for Gaussian dropout (sigma = sqrt(rate/keep) "
            "overflows); give keep >= 1e-300 or sigma directly"
        )
    return sigma


def gaussian_dropout(
    x: torch.Tensor,
    rate: float | None = None,
    *,
    keep: float | None = None,
    sigma: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Multiplicative Gaussian noise: :math:`y = x \odot (1 + \sigma \varepsilon)`,
    :math:`\varepsilon \sim N(0, I)`.

    Give ``sigma`` directly, or ``rate`` (or ``keep``) for
    :math:`\sigma^2 = \text{rate} / (1 - \text{rate})`, the variance of inverted Bernoulli
    dropout at that rate (Srivastava et al. 2014, sec. 10). :math:`E[y] = x`,
    :math:`\mathrm{Var}[y_i] = \sigma^2 x_i^2`. Identity in eval.

    Shape:
        Input: ``(*)``. Output: ``(*)``.

    Example:
        >>> gaussian_dropout(torch.ones(3), 0.5, training=False).tolist()
        [1.0, 1.0, 1.0]
    """
    check_float_tensor(x, "x")
    sigma = gaussian_sigma(rate, keep=keep, sigma=sigma)
    check_generator(generator)
    kernels = _fast_kernels(backend, x)
    if not training or sigma == 0.0:
        return x
    if kernels is not None:
        return kernels.gaussian(x, sigma, _kernel_seed(generator))
    # 1 + 16 sigma bounds |1 + sigma eps| with room to spare: torch's normals stay below ~9
    eps = _normal(x, generator).to(_mult_dtype(x, 1.0 + 16.0 * sigma))
    return _times(x, 1.0 + sigma * eps)


def gaussian_noise(
    x: torch.Tensor,
    std: float,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Additive Gaussian noise :math:`y = x + \text{std}\cdot\varepsilon`,
    :math:`\varepsilon \sim N(0, I)`, in training; identity in eval.

    Adding noise to the inputs is equivalent to Tikhonov regularization to first order
    (Bishop 1995, Neural Computation 7).

    Shape:
        Input: ``(*)``. Output: ``(*)``.
    """
    check_float_tensor(x, "x")
    std = check_nonneg_float(std, "std")
    check_generator(generator)
    if not training or std == 0.0:
        return x
    return x + (std * _normal(x, generator)).to(x.dtype)


# SELU constants (Klambauer et al. 2017, "Self-Normalizing Neural Networks", NeurIPS).
