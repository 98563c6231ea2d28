"""Argument checks shared by droplab's functional ops and layers.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind,
wrong value) with a message that names the argument, shows the value and states what is
allowed. They are plain ``if`` statements, never ``assert``, so ``python -O`` keeps them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch

__all__ = [
    "DEFAULT_RATE",
    "DefaultRate",
    "check_bool",
    "check_choice",
    "check_dims",
    "check_float_tensor",
    "check_generator",
    "check_nonneg_float",
    "check_positive_int",
    "check_probability",
    "check_rate",
]


class DefaultRate(float):
    """A float that marks "the caller did not pass ``rate``".

    ``dropout(x, keep=0.8)`` must not be read as "both ``rate`` and ``keep`` given" just
    because ``rate`` has a default. The default is this subclass of ``float`` (it prints
    and computes as 0.5), and :func:`check_rate` recognizes it by type.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return float.__repr__(self)


DEFAULT_RATE = DefaultRate(0.5)


def check_probability(value: object, name: str, *, allow_one: bool = True) -> float:
    """``value`` as a float in [0, 1] (or [0, 1) when ``allow_one`` is False)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number in [0, 1], got {type(value).__name__} {value!r}"
        )
    v = float(value)
    upper = "1]" if allow_one else "1)"
    if math.isnan(v) or v < 0.0 or v > 1.0 or (not allow_one and v == 1.0):
        raise ValueError(f"{name} must be in [0, {upper}, got {value!r}")
    return v


def check_rate(
    rate: object,
    keep: object,
    *,
    allow_one: bool = True,
    default: float | None = None,
    p: object = None,
) -> tuple[float, float]:
    """Resolve the ``rate``/``keep`` pair into ``(rate, keep)`` with ``rate + keep == 1``.

    ``rate`` is P(drop) and ``keep`` is P(keep); exactly one of them may be given. A
    ``rate`` that is :class:`DefaultRate` counts as "not given" when ``keep`` is given.
    ``default`` is used when both are ``None``; without it that is an error. ``p`` is
    torch's name for ``rate`` (``nn.Dropout(p=...)``): given with ``rate``, both must be
    equal.

    Raises:
        TypeError: a value that is not a real number (strings and bools included).
        ValueError: NaN, a value outside [0, 1] (or [0, 1) when ``allow_one`` is False
            for the rate), both ``rate`` and ``keep`` given, ``p`` and ``keep`` given, or
            ``p`` and ``rate`` given with different values.
    """
    if p is not None:
        if keep is not None:
            raise ValueError(
                "give either p (torch's name for rate, the probability of dropping) or keep, "
                f"not both; got p={p!r} and keep={keep!r}"
            )
        pv = check_probability(p, "p", allow_one=allow_one)
        if rate is not None and not isinstance(rate, DefaultRate):
            if check_probability(rate, "rate", allow_one=allow_one) != pv:
                raise ValueError(
                    "p is torch's name for rate (the probability of dropping): give one of "
                    f"them, or equal values; got rate={rate!r} and p={p!r}"
                )
        rate = pv
    if isinstance(rate, DefaultRate) and keep is not None:
        rate = None
    if rate is not None and keep is not None:
        raise ValueError(
            f"give either rate (probability of dropping) or keep (probability of keeping), "
            f"not both; got rate={rate!r} and keep={keep!r}"
        )
    if rate is None and keep is None:
        if default is None:
            raise ValueError(
                "give rate (probability of dropping, in [0, 1]) or keep (probability of "
                "keeping); got neither"
            )
        rate = default
    if keep is not None:
        k = check_probability(keep, "keep")
        if not allow_one and k == 0.0:
            raise ValueError(f"keep must be in (0, 1], got {keep!r}")
        return 1.0 - k, k
    r = check_probability(rate, "rate", allow_one=allow_one)
    return r, 1.0 - r


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is a bool (``True``/``False``; not 0/1 or other truthy values)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}"
        )
    return value


def check_nonneg_float(value: object, name: str) -> float:
    """``value`` as a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a finite real number >= 0, got {type(value).__name__} {value!r}"
        )
    v = float(value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    return v


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value  # type: ignore[return-value]


def check_dims(dims: object, name: str) -> tuple[int, ...]:
    """``dims`` (an int or an iterable of ints) as a tuple of ints, not yet normalized."""
    if isinstance(dims, bool):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {dims!r}")
    if isinstance(dims, numbers.Integral):
        return (int(dims),)
    try:
        out = tuple(dims)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} must be an int or a tuple of ints, got {type(dims).__name__} {dims!r}"
        ) from None
    for d in out:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"{name} must contain only ints, got {dims!r}")
    return tuple(int(d) for d in out)


def normalize_dims(dims: tuple[int, ...], ndim: int, name: str) -> tuple[int, ...]:
    """Map possibly negative ``dims`` of a rank-``ndim`` tensor to sorted, unique indices."""
    out = []
    for d in dims:
        if not -ndim <= d < ndim:
            raise ValueError(
                f"{name} entry {d} is out of range for an input of rank {ndim} "
                f"(allowed: {-ndim} .. {ndim - 1}); got {name}={dims!r}"
            )
        out.append(d % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a dimension; got {dims!r} for rank {ndim}")
    return tuple(sorted(out))


def check_float_tensor(x: object, name: str = "input") -> torch.Tensor:
    """``x`` if it is a floating-point ``torch.Tensor`` (dropout of integers is undefined)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32, float64), "
            f"got dtype {x.dtype}"
        )
    return x


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """``generator`` if it is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    return generator
