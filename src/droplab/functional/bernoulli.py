"""Bernoulli dropout (element-wise, or shared along ``broadcast_dims``) and fixed-count
dropout."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from droplab._validate import (
    DEFAULT_RATE,
    check_bool,
    check_choice,
    check_dims,
    check_float_tensor,
    check_generator,
    check_rate,
    normalize_dims,
)
from droplab.functional._common import (
    SCALINGS,
    _fast_kernels,
    _inverted,
    _kernel_dropout,
    _kernel_seed,
    _uniform,
    _write,
)

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
    inplace: bool = False,
) -> torch.Tensor:
    r"""Element-wise Bernoulli dropout.

    With mask :math:`m_i \sim \mathrm{Bernoulli}(\text{keep})`, ``keep = 1 - rate``:

    * ``scaling="inverted"`` (PyTorch, Keras): training :math:`y_i = x_i m_i / \text{keep}`,
      eval :math:`y = x`. Then :math:`E[y] = x` in both modes.
    * ``scaling="classic"`` (Hinton et al. 2012; Srivastava et al. 2014, JMLR 15):
      training :math:`y_i = x_i m_i`, eval :math:`y = \text{keep}\cdot x`.

    ``broadcast_dims`` shares one mask value along the given dims (Keras ``noise_shape``,
    Flax ``broadcast_dims``): the mask has size 1 there and is broadcast to ``x``.

    The product :math:`x_i m_i \cdot (1/\text{keep})` is formed in float32 (float64 for
    float64 ``x``) and rounded once to x's dtype, so for float16 a tiny ``keep``
    (``1/keep > 65504``) gives exactly 0 for kept zeros and +-inf only for kept
    :math:`|x_i| / \text{keep} > 65504`, never NaN.

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
        inplace: write the result into ``x`` and return ``x`` (torch's ``inplace``; the
            same values, no memory saved).

    Shape:
        Input: ``(*)``. Output: ``(*)``, same shape, dtype and memory layout.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> dropout(torch.ones(4, 3), 0.25, broadcast_dims=0, generator=g).shape
        torch.Size([4, 3])
    """
    y = _kernel_dropout(x, rate, keep, training, scaling, broadcast_dims, generator, backend)
    if y is not None:
        return y if inplace is False else _write(x, y, check_bool(inplace, "inplace"))
    check_bool(inplace, "inplace")
    y = _dropout(x, rate, keep, training, scaling, broadcast_dims, generator, backend)
    return _write(x, y, inplace)


def _dropout(x, rate, keep, training, scaling, broadcast_dims, generator, backend):
    """:func:`dropout`'s general path (checks, then the kernels or torch's ops)."""
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_choice(scaling, "scaling", SCALINGS)
    dims = normalize_dims(check_dims(broadcast_dims, "broadcast_dims"), x.ndim, "broadcast_dims")
    check_generator(generator)
    kernels = _fast_kernels(backend, x)

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
    kept = _uniform(mask_shape, x, generator) < keep  # bool, broadcasts along broadcast_dims
    if scaling == "inverted":
        return _inverted(x, kept, keep)
    return x * kept.to(x.dtype)


def fixed_count_dropout(
    x: torch.Tensor,
    rate: float | None = DEFAULT_RATE,
    *,
    keep: float | None = None,
    training: bool = True,
    scaling: str = "inverted",
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Drop exactly ``k = round(rate * n)`` of the ``n`` units along the last dim.

    Each example (every index of the leading dims) gets its own uniformly random set of
    ``k`` dropped units: a fixed number of active units instead of a fixed probability
    (the alternative named in the research note). ``round`` is Python's (half to even).
    The scaling uses the exact kept fraction :math:`\kappa = (n - k) / n`:

    * ``"inverted"``: training :math:`y = x \odot m / \kappa`, eval :math:`y = x`;
    * ``"classic"``: training :math:`y = x \odot m`, eval :math:`y = \kappa x`.

    Each unit is then kept with probability exactly :math:`\kappa`, so inverted scaling
    gives :math:`E[y] = x`.

    ``backend`` as in :func:`dropout`: on CPU ``"auto"`` runs
    :func:`droplab.kernels.fixed_count` (counter-based keys seeded by one draw from
    ``generator``; the backward regenerates the mask, none is saved), ``"torch"`` draws
    ``torch.rand`` scores and keeps the float mask for backward.

    Shape:
        Input: ``(*, n)`` with at least one dim. Output: same shape.

    Example:
        >>> y = fixed_count_dropout(torch.ones(2, 10), 0.3)
        >>> (y == 0).sum(dim=-1).tolist()
        [3, 3]
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_choice(scaling, "scaling", SCALINGS)
    check_generator(generator)
    kernels = _fast_kernels(backend, x)
    if x.ndim == 0:
        raise ValueError(
            "fixed_count_dropout expects input of shape (*, n) with at least one dim "
            "(units along the last dim), got a 0-d tensor"
        )
    n = x.shape[-1]
    n_drop = round(rate * n)
    if n == 0 or n_drop == 0:
        return x
    kept_fraction = (n - n_drop) / n
    if not training:
        return x * kept_fraction if scaling == "classic" else x
    if n_drop == n:
        return x * 0.0
    if kernels is not None:
        return kernels.fixed_count(x, n_drop, _kernel_seed(generator), scaling=scaling)
    scores = _uniform(x.shape, x, generator)  # (*, n)
    dropped = scores.topk(n_drop, dim=-1, largest=False).indices  # (*, n_drop)
    mask = torch.ones_like(x).scatter(-1, dropped, 0.0)  # (*, n), exactly n - n_drop ones
    if scaling == "inverted":
        return _inverted(x, mask.bool(), kept_fraction)  # 1/kappa <= n may exceed float16
    return x * mask
