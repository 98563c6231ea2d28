"""The one place where theory's Monte Carlo estimators draw noise.

Masks come from :mod:`droplab.functional` (the same ops the layers use), so an estimator
here measures the dropout that droplab trains with.
"""

from __future__ import annotations

import torch
from torch import Tensor

from droplab import functional


def multiplicative_noise(
    x: Tensor,
    keep: float | None,
    sigma: float | None,
    scaling: str = "inverted",
    generator: torch.Generator | None = None,
) -> Tensor:
    """``x * xi`` with Bernoulli(keep) (``scaling``) or N(1, sigma^2) noise, i.i.d. per element."""
    if sigma is not None:
        return functional.gaussian_dropout(x, sigma=sigma, generator=generator)
    return functional.dropout(x, keep=keep, scaling=scaling, generator=generator)
