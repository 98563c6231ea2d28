"""What every op of :mod:`droplab.functional` shares: random draws in float32, the
multiplier dtypes, the fused kernels' dispatch and seeds, and the option tuples."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import ModuleType

import torch

from droplab._validate import (
    DefaultRate,
    check_choice,
)

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
