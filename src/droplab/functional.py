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

import functools
import math
import threading
from collections.abc import Sequence
from types import ModuleType

import torch

from droplab._validate import (
    DEFAULT_RATE,
    DefaultRate,
    check_bool,
    check_choice,
    check_dims,
    check_float_tensor,
    check_generator,
    check_nonneg_float,
    check_positive_int,
    check_rate,
    normalize_dims,
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

SCALINGS = ("inverted", "classic")
DROP_PATH_MODES = ("row", "batch")
BACKENDS = ("auto", "fast", "torch")


# --------------------------------------------------------------------------- helpers


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """Arithmetic on noise happens in float32 (float64 for float64 input), whatever x's dtype."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _uniform(shape: Sequence[int], x: torch.Tensor, generator: torch.Generator | None):
    """U[0, 1) of ``shape`` on x's device, drawn in float32 for every dtype of x.

    float32 resolves probabilities to 2**-24 (float16/bfloat16 would bias the masks), and
    one draw dtype means one seed gives the same mask for every dtype of x.
    """
    if generator is None:  # no generator= at all: torch.compile traces dynamic shapes then
        return torch.rand(tuple(shape), device=x.device, dtype=torch.float32)
    return torch.rand(tuple(shape), generator=generator, device=x.device, dtype=torch.float32)


def _normal(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) noise of x's shape on x's device, drawn in float32 (see :func:`_uniform`)."""
    if generator is None:  # see _uniform
        eps = torch.randn(x.shape, device=x.device, dtype=torch.float32)
    else:
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return eps.to(_work_dtype(x))


_F32_MAX = torch.finfo(torch.float32).max


def _mult_dtype(x: torch.Tensor, bound: float) -> torch.dtype:
    """Where a multiplier of magnitude <= ``bound`` is formed and applied to ``x``: float32,
    or float64 for float64 x and where ``bound`` exceeds float32's range (or is inf/NaN)."""
    if x.dtype == torch.float64 or not bound <= _F32_MAX:
        return torch.float64
    return torch.float32


def _times(x: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
    """``x * mult`` taken in mult's dtype and rounded once to x's dtype.

    For float32/float64 x with a multiplier of the same dtype this is plain ``x * mult``;
    for float16/bfloat16 x the product is formed in float32, so a multiplier beyond the
    low-precision range (``1/keep > 65504`` in float16) stays finite and a zero input
    stays 0. Shapes broadcast as in ``x * mult``.
    """
    if mult.dtype == x.dtype:
        return x * mult
    return (x.to(mult.dtype) * mult).to(x.dtype)


def _inverted(x: torch.Tensor, kept: torch.Tensor, keep: float) -> torch.Tensor:
    r"""Inverted dropout's :math:`y = x\,m / \text{keep}` for a boolean mask ``kept``
    (broadcastable to x), rounded once to x's dtype.

    The multiplier :math:`m / \text{keep}` is formed in float32 (float64 for float64 x):
    ``keep`` reaches here only when ``rate = 1 - keep < 1``, so ``keep >= 2**-53`` and
    ``1/keep <= 2**53`` fits. Kept zeros give exactly 0, and a kept ``x`` gives
    ``x * (1/keep)`` rounded to x's dtype: +-inf only where that exceeds the dtype's range
    (float16 from ``|x| / keep > 65504``).
    """
    return _times(x, kept.to(_work_dtype(x)) / keep)  # mask values in {0, 1/keep}


def _write(x: torch.Tensor, y: torch.Tensor, inplace: bool) -> torch.Tensor:
    """torch's ``inplace=True``: the result is written into ``x`` and ``x`` is returned
    (autograd then treats it as an in-place op on ``x``, as torch does)."""
    if not inplace or y is x:
        return y
    return x.copy_(y)


def _fast_kernels(backend: str, x: torch.Tensor) -> ModuleType | None:
    """The one place that picks an op's path: ``droplab.kernels`` or ``None`` (plain torch).

    ``"torch"`` always takes the plain torch path. ``"auto"`` takes the counter-based
    kernels of ``droplab.kernels`` on CPU (numba, or their pure-torch hash with a one-time
    notice when numba is missing); on other devices it keeps torch's native op, which was
    faster on an H200 than the Triton kernel (docs/performance.md), and it steps aside inside
    ``torch.compile``, which cannot trace the kernels. ``"fast"`` demands the kernels (Triton
    on CUDA: no saved mask) and fails clearly when they cannot be imported.
    """
    check_choice(backend, "backend", BACKENDS)
    if backend == "torch":
        return None
    try:
        from droplab import kernels
    except ImportError as err:
        if backend == "auto":
            return None
        raise ImportError(
            f"backend='fast' needs droplab.kernels, which could not be imported ({err}); "
            "use backend='auto' or backend='torch'"
        ) from err
    if backend == "auto" and x.device.type != "cpu":
        return None
    if backend == "auto" and torch.compiler.is_compiling():
        return None  # numba/triton calls cannot be traced by torch.compile: use torch's ops
    return kernels


_KERNELS: list[ModuleType] = []  # droplab.kernels once imported (the import costs ~1 us)


def _kernel_dropout(x, rate, keep, training, scaling, broadcast_dims, generator, backend):
    """The common training call of :func:`dropout` on the kernel path, checked and
    dispatched in a few type tests: a CPU float32/float64 ``x``, a float ``rate`` strictly
    inside (0, 1) and no ``keep``, ``training=True``, no broadcast dims, backend "auto" or
    "fast". None for every other call, which then takes the general checks. The same
    values go to ``kernels.bernoulli`` as on the general path (``keep = 1 - rate`` after
    ``check_rate``'s float conversion, one draw from the generator), so the same bits;
    the general checks and dispatch cost ~20 us a call (docs/performance.md, "Small
    tensors")."""
    if not (
        training is True
        and keep is None
        and (backend == "auto" or backend == "fast")
        and (scaling == "inverted" or scaling == "classic")
        and type(broadcast_dims) is tuple
        and not broadcast_dims
        and (generator is None or type(generator) is torch.Generator)
        and type(x) is torch.Tensor
        and x.is_cpu
        and (x.dtype is torch.float32 or x.dtype is torch.float64)
    ):
        return None
    if type(rate) is not float and type(rate) is not DefaultRate:
        return None
    rate = float(rate)
    if not 0.0 < rate < 1.0:
        return None  # 0, 1, NaN and out-of-range rates: the general path
    if not _KERNELS:
        if _fast_kernels(backend, x) is None:
            return None
        from droplab import kernels

        _KERNELS.append(kernels)
    if torch.compiler.is_compiling():
        return None
    kernels, keep, seed = _KERNELS[0], 1.0 - rate, _kernel_seed(generator)
    y = kernels._dropout(x, keep, seed, scaling)  # checked here: no second round of checks
    if y is None:
        y = kernels.bernoulli(x, keep, seed, scaling=scaling, broadcast_dims=())
    return y


_SEED_BUFFER = threading.local()  # per thread: a 0-d int64 CPU tensor for _kernel_seed


def _kernel_seed(generator: torch.Generator | None) -> int:
    """One draw from ``generator`` (or the global RNG): the seed of a counter-based kernel.

    ``torch.randint(0, 2**62, ())`` on the generator's device. On CPU the same draw is
    made by ``random_`` into a reused per-thread 0-d tensor (``randint`` is ``empty`` +
    ``random_``: same value, same generator state after it), ~7 us less per call on this
    project's VM (docs/performance.md, "Small tensors")."""
    if generator is None or generator.device.type == "cpu":
        buf = getattr(_SEED_BUFFER, "t", None)
        if buf is None:
            with torch.inference_mode(False):  # a normal tensor even if made in one
                buf = _SEED_BUFFER.t = torch.empty((), dtype=torch.int64, device="cpu")
        return buf.random_(0, 2**62, generator=generator).item()
    return int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))


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


# --------------------------------------------------------------------------- structured


def _check_spatial_rank(x: torch.Tensor, op: str, ranks: Sequence[int], shape_text: str) -> None:
    if x.ndim not in ranks:
        raise ValueError(
            f"{op} expects input of shape {shape_text}, got shape {tuple(x.shape)} (rank {x.ndim})"
        )


def _channel_dims(x: torch.Tensor, op: str, spatial_dims: int | None) -> tuple[int, ...]:
    """The spatial dims of a channel-wise op's input (where one mask value is shared).

    ``spatial_dims=None``: ``(N, C, *spatial)`` with at least one spatial dim. An int
    ``k``: ``(N, C, *k dims)`` or the unbatched ``(C, *k dims)``, as torch's
    ``Dropout1d``/``Dropout3d`` accept."""
    if spatial_dims is None:
        if x.ndim < 3:
            raise ValueError(
                f"{op} expects input of shape (N, C, *spatial) with at least one spatial "
                f"dim (rank >= 3), got shape {tuple(x.shape)} (rank {x.ndim}); for (N, D) "
                "input use dropout, for unbatched (C, *spatial) input pass spatial_dims"
            )
        return tuple(range(2, x.ndim))
    k = check_positive_int(spatial_dims, "spatial_dims")
    if x.ndim not in (k + 1, k + 2):
        raise ValueError(
            f"{op} with spatial_dims={k} expects input of shape (N, C, *{k} dims) (rank "
            f"{k + 2}) or unbatched (C, *{k} dims) (rank {k + 1}), got shape "
            f"{tuple(x.shape)} (rank {x.ndim})"
        )
    return tuple(range(x.ndim - k, x.ndim))


def spatial_dropout(
    x: torch.Tensor,
    rate: float | None = DEFAULT_RATE,
    *,
    keep: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
    spatial_dims: int | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    r"""Drop whole channels: :math:`y_{n,c,\ldots} = x_{n,c,\ldots}\, m_{n,c} / \text{keep}`.

    One Bernoulli(keep) draw per (example, channel), shared over all spatial positions, so
    correlated neighbouring activations cannot stand in for a dropped one (Tompson et al.
    2015, "Efficient Object Localization Using Convolutional Networks"). Any number >= 1 of
    spatial dims.

    The rank alone cannot tell ``(N, C, L)`` from an unbatched ``(C, H, W)``: without
    ``spatial_dims`` the input is always batched, ``(N, C, *spatial)``, and rank < 3 is an
    error (``torch.nn.Dropout2d`` guesses, with a warning, for 3-D input). With
    ``spatial_dims=k`` the input is ``(N, C, *k dims)`` or unbatched ``(C, *k dims)``
    (``torch.nn.Dropout1d``: ``k=1``, ``Dropout3d``: ``k=3``). ``inplace`` as in
    :func:`dropout`.

    Shape:
        Input: ``(N, C, *spatial)``, or ``(C, *spatial)`` with ``spatial_dims`` given.
        Output: same shape and memory layout.
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_bool(inplace, "inplace")
    dims = _channel_dims(x, "spatial_dropout", spatial_dims)
    y = dropout(x, rate, training=training, broadcast_dims=dims, generator=generator)
    return _write(x, y, inplace)


def _block_tuple(block_size: int | Sequence[int], n_spatial: int | None) -> tuple[int, ...]:
    """``block_size`` as a tuple of positive ints (an int means the same size on every dim)."""
    if isinstance(block_size, Sequence) and not isinstance(block_size, str):
        blocks = tuple(check_positive_int(b, "block_size") for b in block_size)
        if n_spatial is not None and len(blocks) != n_spatial:
            raise ValueError(
                f"block_size must be an int or a tuple of {n_spatial} ints for an input "
                f"with {n_spatial} spatial dims, got {tuple(block_size)!r}"
            )
        if not 1 <= len(blocks) <= 3:
            raise ValueError(f"block_size must be an int or 1 to 3 ints, got {block_size!r}")
        return blocks
    b = check_positive_int(block_size, "block_size")
    return (b,) * (n_spatial or 1)


def _coverage_counts(size: int, block: int) -> list[int]:
    """For each position i of a dim of ``size``: how many valid block starts cover it.

    Block starts s range over the valid region 0 .. size - block (blocks lie fully inside,
    Ghiasi et al. 2018); s covers i when s <= i <= s + block - 1.
    """
    last = size - block
    return [min(i, last) - max(0, i - block + 1) + 1 for i in range(size)]


def _coverage_histogram(spatial: tuple[int, ...], blocks: tuple[int, ...]) -> dict[int, int]:
    """{c: number of positions covered by exactly c valid block starts}, c = prod_d c_d."""
    hist = {1: 1}
    for size, block in zip(spatial, blocks):
        dim_hist: dict[int, int] = {}
        for c in _coverage_counts(size, block):
            dim_hist[c] = dim_hist.get(c, 0) + 1
        new: dict[int, int] = {}
        for a, na in hist.items():
            for b, nb in dim_hist.items():
                new[a * b] = new.get(a * b, 0) + na * nb
        hist = new
    return hist


@functools.lru_cache(maxsize=1024)
def _drop_block_gamma_exact(spatial: tuple[int, ...], blocks: tuple[int, ...], rate: float):
    hist = _coverage_histogram(spatial, blocks)
    total = math.prod(spatial)

    def dropped_fraction(gamma: float) -> float:  # E[fraction of dropped units], increasing
        return sum(n * -math.expm1(c * math.log1p(-gamma)) for c, n in hist.items()) / total

    lo, hi = 0.0, 1.0  # dropped_fraction(0) = 0, dropped_fraction(1) = 1 (every c >= 1)
    for _ in range(100):  # bisection to float precision
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if dropped_fraction(mid) < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def drop_block_gamma(
    spatial_shape: Sequence[int],
    rate: float,
    block_size: int | Sequence[int],
    *,
    exact: bool = True,
) -> float:
    r"""The per-position seed probability :math:`\gamma` of DropBlock.

    Block starts are drawn only in the valid region (a block lies fully inside the map),
    :math:`\prod_d (S_d - b_d + 1)` positions. A unit covered by :math:`c(u)` possible block
    starts is dropped with probability :math:`1 - (1 - \gamma)^{c(u)}`.

    * ``exact=False``: Ghiasi et al. 2018 (NeurIPS, "DropBlock", eq. 1) with the valid-region
      correction, :math:`\gamma = \frac{\text{rate}}{\prod_d b_d}
      \prod_d \frac{S_d}{S_d - b_d + 1}`; it counts overlapping blocks twice, so the
      dropped fraction falls below ``rate`` as ``rate`` grows (0.39 instead of 0.5 at
      rate 0.5, block 3, on a 13 x 7 map).
    * ``exact=True`` (what :func:`drop_block` uses): the :math:`\gamma` that solves
      :math:`\frac{1}{|S|}\sum_u 1 - (1 - \gamma)^{c(u)} = \text{rate}` (bisection), so the
      expected dropped fraction equals ``rate`` for any shape, H != W included. It agrees
      with Ghiasi's to first order in ``rate``.
    """
    spatial = tuple(int(s) for s in spatial_shape)
    blocks = _block_tuple(block_size, len(spatial))
    rate = check_rate(rate, None)[0]
    for size, block in zip(spatial, blocks):
        if block > size:
            raise ValueError(
                f"block_size {blocks} does not fit spatial shape {spatial}: need block_size "
                f"<= spatial size on every dim"
            )
    if not exact:
        valid = math.prod(s - b + 1 for s, b in zip(spatial, blocks))
        return rate / math.prod(blocks) * math.prod(spatial) / valid
    if rate in (0.0, 1.0):
        return rate
    if torch.compiler.is_compiling():  # dynamo warns on lru_cache; it folds the plain call
        return _drop_block_gamma_exact.__wrapped__(spatial, blocks, rate)
    return _drop_block_gamma_exact(spatial, blocks, rate)


def drop_block_keep_prob(
    spatial_shape: Sequence[int], gamma: float, block_size: int | Sequence[int]
) -> torch.Tensor:
    r"""P(unit u is kept) :math:`= (1 - \gamma)^{c(u)}` for every position, float64 ``spatial_shape``."""
    spatial = tuple(int(s) for s in spatial_shape)
    blocks = _block_tuple(block_size, len(spatial))
    counts = torch.ones((), dtype=torch.float64)
    for d, (size, block) in enumerate(zip(spatial, blocks)):
        c = torch.tensor(_coverage_counts(size, block), dtype=torch.float64)
        counts = counts.unsqueeze(-1) * c if d else c  # (S_0, ..., S_d)
    return torch.exp(counts * math.log1p(-gamma))  # (*spatial)


def drop_block(
    x: torch.Tensor,
    rate: float | None,
    block_size: int | Sequence[int],
    *,
    keep: float | None = None,
    training: bool = True,
    couple_channels: bool = False,
    scale_by_keep: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""DropBlock (Ghiasi et al. 2018, NeurIPS): drop contiguous blocks of a feature map.

    For each (example, channel) block starts are drawn as Bernoulli(:math:`\gamma`) in the
    valid region, where a ``block_size`` block fits fully inside the map, and every unit of
    each started block is dropped; ``couple_channels=True`` draws one set of blocks per
    example, shared by all its channels (timm's ``couple_channels``). :math:`\gamma` is
    solved so that the expected fraction of dropped units equals ``rate`` for any shape,
    including H != W (see :func:`drop_block_gamma`). Units near a border are covered by
    fewer possible blocks and dropped less often; with ``scale_by_keep`` (default) each
    unit is rescaled by its own keep probability :math:`p_u = (1-\gamma)^{c(u)}`,

    .. math:: y_u = x_u\, m_u / p_u,

    so :math:`E[y] = x` at every position, borders included; ``scale_by_keep=False`` gives
    :math:`y_u = x_u m_u`. Identity in eval; ``rate == 1`` gives zeros.

    Args:
        x: ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)`` input.
        rate: target fraction of dropped units, in [0, 1] (or give ``keep``).
        block_size: block edge, an int or one int per spatial dim; each <= that spatial size.
        couple_channels: one block mask per example for all channels (default: per channel).
        scale_by_keep: rescale kept units by their keep probability (default True).

    Shape:
        Input: ``(N, C, *spatial)`` with 1 to 3 spatial dims. Output: same shape.

    Example:
        >>> drop_block(torch.ones(2, 3, 10, 7), 0.2, 3).shape
        torch.Size([2, 3, 10, 7])
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_bool(couple_channels, "couple_channels")
    check_bool(scale_by_keep, "scale_by_keep")
    check_generator(generator)
    if x.ndim not in (3, 4, 5):
        raise ValueError(
            "drop_block expects input of shape (N, C, L), (N, C, H, W) or (N, C, D, H, W), "
            f"got shape {tuple(x.shape)} (rank {x.ndim})"
        )
    spatial = tuple(x.shape[2:])
    blocks = _block_tuple(block_size, len(spatial))
    if any(b > s for b, s in zip(blocks, spatial)):
        raise ValueError(
            f"block_size {blocks} is larger than the input's spatial shape {spatial} "
            f"(input shape {tuple(x.shape)}); need 1 <= block_size <= spatial size"
        )
    if not training or rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0
    gamma = drop_block_gamma(spatial, rate, blocks)
    valid = [s - b + 1 for s, b in zip(spatial, blocks)]
    channels = 1 if couple_channels else x.shape[1]
    seeds = _uniform((x.shape[0], channels, *valid), x, generator) < gamma
    seeds = seeds.to(_work_dtype(x))  # (N, C or 1, *valid)
    pad = [p for b in reversed(blocks) for p in (b - 1, b - 1)]
    seeds = torch.nn.functional.pad(seeds, pad)  # (N, C or 1, *(S + b - 1))
    pool = (
        torch.nn.functional.max_pool1d,
        torch.nn.functional.max_pool2d,
        torch.nn.functional.max_pool3d,
    )[len(spatial) - 1]
    dropped = pool(seeds, kernel_size=blocks, stride=1)  # (N, C or 1, *spatial), 1 = dropped
    if scale_by_keep:
        keep_prob = drop_block_keep_prob(spatial, gamma, blocks).to(x.device, _work_dtype(x))
        kept_value = 1.0 / keep_prob  # (*spatial)
    else:
        kept_value = torch.ones((), dtype=_work_dtype(x), device=x.device)
    # 1/p_u where kept, 0 where dropped: never 0/0 where p_u underflows (rate near 1)
    mult = torch.where(dropped > 0, 0.0, kept_value)  # (N, C or 1, *spatial)
    return _times(x, mult)


# --------------------------------------------------------------------------- paths, weights


def drop_path(
    x: torch.Tensor,
    rate: float | None = None,
    *,
    keep: float | None = None,
    training: bool = True,
    scale_by_keep: bool = True,
    mode: str = "row",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Stochastic depth: drop a whole example's residual branch.

    :math:`y_n = x_n m_n / \text{keep}` with one :math:`m_n \sim \mathrm{Bernoulli}(\text{keep})`
    per example (dim 0, ``mode="row"``) or one :math:`m` for the whole batch
    (``mode="batch"``, torchvision's ``StochasticDepth``); without ``scale_by_keep``
    :math:`y_n = x_n m_n`. Apply it to the branch, ``out = shortcut + drop_path(branch(x),
    rate)`` (Huang et al. 2016, "Deep Networks with Stochastic Depth"; Larsson et al. 2017,
    FractalNet). Identity in eval.

    Shape:
        Input: ``(N, *)``. Output: same shape.
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_bool(scale_by_keep, "scale_by_keep")
    check_choice(mode, "mode", DROP_PATH_MODES)
    check_generator(generator)
    if x.ndim == 0:
        raise ValueError("drop_path expects input of shape (N, *), got a 0-d tensor")
    if not training or rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0
    rows = x.shape[0] if mode == "row" else 1
    kept = _uniform((rows,) + (1,) * (x.ndim - 1), x, generator) < keep  # (N or 1, 1, ...)
    if scale_by_keep:
        return _inverted(x, kept, keep)
    return x * kept.to(x.dtype)


def drop_connect_weight(
    w: torch.Tensor,
    rate: float | None = None,
    *,
    keep: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""DropConnect on a weight tensor: :math:`\tilde W = W \odot M / \text{keep}`,
    :math:`M_{ij} \sim \mathrm{Bernoulli}(\text{keep})` (Wan et al. 2013, ICML).

    Inverted scaling, so the eval rule is the plain weight (Wan et al. instead match
    moments with a Gaussian at inference; the mean rule is the common simplification).

    Shape:
        Input: any weight shape. Output: same shape.
    """
    check_float_tensor(w, "w")
    rate, keep = check_rate(rate, keep)
    return dropout(w, rate, training=training, generator=generator)
