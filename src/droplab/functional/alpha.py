"""Alpha dropout for SELU nets, element-wise and per channel."""

from __future__ import annotations

import torch

from droplab._validate import (
    DEFAULT_RATE,
    check_bool,
    check_float_tensor,
    check_generator,
    check_rate,
)
from droplab.functional._common import (
    _uniform,
    _work_dtype,
    _write,
)
from droplab.functional.structured import _channel_dims

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946
_ALPHA_PRIME = -SELU_LAMBDA * SELU_ALPHA  # SELU's limit for x -> -inf: dropped units' value


def alpha_dropout(
    x: torch.Tensor,
    rate: float | None = DEFAULT_RATE,
    *,
    keep: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    r"""Alpha dropout: keeps zero mean and unit variance of SELU activations.

    Dropped units are set to :math:`\alpha' = -\lambda\alpha \approx -1.7581` (SELU's
    negative saturation) instead of 0, then an affine map restores the moments:

    .. math::
        y = a\,(x \odot m + \alpha' (1 - m)) + b,\quad
        a = (q + \alpha'^2 q (1 - q))^{-1/2},\quad b = -a (1 - q) \alpha',

    with :math:`m \sim \mathrm{Bernoulli}(q)`, ``q = keep`` (Klambauer et al. 2017, eq. 12).
    If :math:`x` has mean 0 and variance 1, so does :math:`y`. Identity in eval;
    ``rate == 1`` gives zeros (as torch does). ``inplace`` as in :func:`dropout`.

    Shape:
        Input: ``(*)``. Output: ``(*)``, same memory layout.
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_generator(generator)
    check_bool(inplace, "inplace")
    return _write(x, _alpha(x, rate, keep, training, generator, ()), inplace)


def feature_alpha_dropout(
    x: torch.Tensor,
    rate: float | None = DEFAULT_RATE,
    *,
    keep: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
    spatial_dims: int | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    r"""Channel-wise alpha dropout (``torch.nn.FeatureAlphaDropout``): whole channels take
    SELU's saturation value :math:`\alpha'`, then the affine map of :func:`alpha_dropout`,

    .. math:: y_{n,c,\ldots} = a\,(x_{n,c,\ldots} m_{n,c} + \alpha'(1 - m_{n,c})) + b,

    one :math:`m_{n,c} \sim \mathrm{Bernoulli}(\text{keep})` per (example, channel)
    (Klambauer et al. 2017). Mean 0 and variance 1 are kept per unit, as for
    :func:`alpha_dropout`. ``spatial_dims`` as in :func:`spatial_dropout`.

    Shape:
        Input: ``(N, C, *spatial)``, or ``(C, *spatial)`` with ``spatial_dims`` given.
        Output: same shape and memory layout.
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_generator(generator)
    check_bool(inplace, "inplace")
    dims = _channel_dims(x, "feature_alpha_dropout", spatial_dims)
    return _write(x, _alpha(x, rate, keep, training, generator, dims), inplace)


def _alpha(x, rate, keep, training, generator, dims: tuple[int, ...]) -> torch.Tensor:
    """Alpha dropout of checked arguments, one mask value shared along ``dims``."""
    if not training or rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0
    a = (keep + _ALPHA_PRIME**2 * keep * rate) ** -0.5
    b = -a * rate * _ALPHA_PRIME
    # in float32 for float16/bfloat16 x: a and b exceed 65504 below keep ~2e-10, where
    # float16's alpha' a + b would be -inf + inf = NaN (.to is a no-op for float32/64)
    xw = x.to(_work_dtype(x))
    mask_shape = [1 if d in dims else n for d, n in enumerate(x.shape)]  # x.shape, 1 on dims
    kept = _uniform(mask_shape, x, generator) < keep  # bool, C-contiguous
    if not x.is_contiguous():  # the mask in x's memory layout, so that the output is too
        kept = torch.empty_like(x, dtype=torch.bool).copy_(kept)
    # a dropped unit is alpha' a + b = alpha' a keep, formed here without adding two terms
    # of size ~a (a ~ keep^-1/2: at keep 1e-12 float32's rounding of alpha' a + b is off by
    # ~0.06 against a true value of ~-1e-6)
    dropped = _ALPHA_PRIME * a * keep
    return torch.where(kept, xw * a + b, dropped).to(x.dtype)
