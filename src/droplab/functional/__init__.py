"""The dropout family as plain functions: the math behind every layer in ``droplab.layers``.

Conventions (shared by every op):

* ``rate`` is P(drop) and ``keep = 1 - rate`` is P(keep); give one of them, never both.
* ``training=False`` (or ``rate == 0``) returns the input unchanged (or scaled by ``keep``
  for ``scaling="classic"``); ``rate == 1`` returns zeros, never NaN.
* ``generator`` is an optional ``torch.Generator``; without it torch's global RNG is used.
* Inputs are floating-point tensors of any dtype (float16, bfloat16, float32, float64) on
  any device; random numbers are drawn in float32 for every dtype (unbiased masks for low
  precision inputs, and one seed gives the same mask whatever the dtype).
* Multipliers (``1/keep``, ``1 + sigma eps``, ...) are formed in float32, or float64 for
  float64 inputs and wherever float32 cannot hold them, never in float16/bfloat16. The
  product with ``x`` is taken in that dtype and rounded once to x's dtype (see
  :func:`_times`): a kept zero gives exactly 0 (never ``0 * inf = NaN``, even where
  ``1/keep`` exceeds float16's 65504), and an output is +-inf only where its exact value
  lies beyond x's dtype's range.
* Gradients flow through a multiplication by the very mask of the forward pass, so the
  backward pass uses exactly the forward's mask.

Example:
    >>> import torch
    >>> from droplab import functional as F
    >>> g = torch.Generator().manual_seed(0)
    >>> y = F.dropout(torch.ones(2, 3), 0.5, generator=g)
    >>> sorted(set(y.flatten().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
"""

from __future__ import annotations

# Besides the public ops, the package re-exports what droplab's layers share with them: the
# option tuples, the SELU constants, the kernel path and its seed, uniform draws, block sizes.
from droplab._validate import DEFAULT_RATE  # noqa: F401  (the ops' default-rate marker)
from droplab.functional._common import (  # noqa: F401
    BACKENDS,
    DROP_PATH_MODES,
    SCALINGS,
    _kernel_dropout,
    _kernel_seed,
    _uniform,
)
from droplab.functional.alpha import (  # noqa: F401
    _ALPHA_PRIME,
    SELU_ALPHA,
    SELU_LAMBDA,
    alpha_dropout,
    feature_alpha_dropout,
)
from droplab.functional.bernoulli import dropout, fixed_count_dropout
from droplab.functional.gaussian import gaussian_dropout, gaussian_noise, gaussian_sigma
from droplab.functional.paths import drop_connect_weight, drop_path
from droplab.functional.structured import (  # noqa: F401
    _block_tuple,
    drop_block,
    drop_block_gamma,
    drop_block_keep_prob,
    spatial_dropout,
)

__all__ = [
    "alpha_dropout",
    "drop_block",
    "drop_block_gamma",
    "drop_block_keep_prob",
    "drop_connect_weight",
    "drop_path",
    "dropout",
    "feature_alpha_dropout",
    "fixed_count_dropout",
    "gaussian_dropout",
    "gaussian_noise",
    "gaussian_sigma",
    "spatial_dropout",
]
