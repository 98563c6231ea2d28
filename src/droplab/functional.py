"""The dropout family as plain functions: the math behind every layer in ``droplab.layers``.

Conventions (shared by every op):

* ``rate`` is P(drop) and ``keep = 1 - rate`` is P(keep); give one of them, never both.
* ``training=False`` (or ``rate == 0``) returns the input unchanged (or scaled by ``keep``
  for ``scaling="classic"``); ``rate == 1`` returns zeros, never NaN.
* ``generator`` is an optional ``torch.Generator``; without it torch's global RNG is used.
* Inputs are floating-point tensors of any dtype (float16, bfloat16, float32, float64) on
  any device; noise is drawn in float32 (float64 for float64 inputs) and cast, so low
  precision inputs get unbiased masks.
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

from collections.abc import Sequence
from types import ModuleType

import torch

from droplab._validate import (
    DEFAULT_RATE,
    check_choice,
    check_dims,
    check_float_tensor,
    check_generator,
    check_rate,
    normalize_dims,
)

__all__ = ["dropout"]

SCALINGS = ("inverted", "classic")
BACKENDS = ("auto", "fast", "torch")


# --------------------------------------------------------------------------- helpers


def _noise_dtype(x: torch.Tensor) -> torch.dtype:
    """Draw random numbers in float32 (float64 for float64 input), whatever x's dtype."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _uniform(shape: Sequence[int], x: torch.Tensor, generator: torch.Generator | None):
    """U[0, 1) of ``shape`` on x's device."""
    return torch.rand(tuple(shape), generator=generator, device=x.device, dtype=_noise_dtype(x))


def _keep_mask(shape: Sequence[int], keep: float, x: torch.Tensor, generator) -> torch.Tensor:
    """Bernoulli(keep) mask of ``shape`` in x's dtype: 1 = kept, 0 = dropped."""
    return (_uniform(shape, x, generator) < keep).to(x.dtype)


def _fast_kernels(backend: str) -> ModuleType | None:
    """The one place that picks an op's path: ``droplab.kernels`` or ``None`` (plain torch).

    ``"torch"`` always takes the plain torch path. ``"auto"`` takes it too for now (the
    counter-based kernels of ``droplab.kernels`` are switched on here once they land).
    ``"fast"`` demands the kernels and fails clearly when they cannot be imported.
    """
    check_choice(backend, "backend", BACKENDS)
    if backend != "fast":
        return None
    try:
        from droplab import kernels
    except ImportError as err:
        raise ImportError(
            f"backend='fast' needs droplab.kernels, which could not be imported ({err}); "
            "use backend='auto' or backend='torch'"
        ) from err
    return kernels


def _kernel_seed(generator: torch.Generator | None) -> int:
    """One draw from ``generator`` (or the global RNG): the seed of a counter-based kernel."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (), generator=generator, device=device))


# --------------------------------------------------------------------------- Bernoulli


def dropout(
    x: torch.Tensor,
    rate: float | None = DEFAULT_RATE,
    *,
    keep: float | None = None,
    training: bool = True,
    scaling: str = "inverted",
    broadcast_dims: int | Sequence[int] = (),
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Element-wise Bernoulli dropout.

    With mask :math:`m_i \sim \mathrm{Bernoulli}(\text{keep})`, ``keep = 1 - rate``:

    * ``scaling="inverted"`` (PyTorch, Keras): training :math:`y_i = x_i m_i / \text{keep}`,
      eval :math:`y = x`. Then :math:`E[y] = x` in both modes.
    * ``scaling="classic"`` (Hinton et al. 2012; Srivastava et al. 2014, JMLR 15):
      training :math:`y_i = x_i m_i`, eval :math:`y = \text{keep}\cdot x`.

    ``broadcast_dims`` shares one mask value along the given dims (Keras ``noise_shape``,
    Flax ``broadcast_dims``): the mask has size 1 there and is broadcast to ``x``.

    Args:
        x: floating-point input of any shape.
        rate: probability of dropping a unit, in [0, 1] (default 0.5).
        keep: probability of keeping a unit; give it instead of ``rate``.
        training: apply dropout (True) or the evaluation rule (False).
        scaling: ``"inverted"`` or ``"classic"``.
        broadcast_dims: dims along which the mask is shared (negative dims allowed).
        generator: random source; ``None`` uses the global RNG.
        backend: ``"auto"``, ``"fast"`` (counter-based kernels of ``droplab.kernels``) or
            ``"torch"``.

    Shape:
        Input: ``(*)``. Output: ``(*)``, same shape and dtype.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> dropout(torch.ones(4, 3), 0.25, broadcast_dims=0, generator=g).shape
        torch.Size([4, 3])
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_choice(scaling, "scaling", SCALINGS)
    dims = normalize_dims(check_dims(broadcast_dims, "broadcast_dims"), x.ndim, "broadcast_dims")
    check_generator(generator)
    kernels = _fast_kernels(backend)

    if not training:
        return x * keep if scaling == "classic" and rate > 0.0 else x
    if rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0  # zeros with x's dtype, device and autograd history; never 0/0
    if kernels is not None:
        return kernels.bernoulli(
            x, keep, _kernel_seed(generator), scaling=scaling, broadcast_dims=dims
        )
    mask_shape = [1 if d in dims else n for d, n in enumerate(x.shape)]  # x.shape, 1 on dims
    mask = _keep_mask(mask_shape, keep, x, generator)
    if scaling == "inverted":
        mask = mask / keep  # values in {0, 1/keep}
    return x * mask  # mask broadcasts along broadcast_dims
