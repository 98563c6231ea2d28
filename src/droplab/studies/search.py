"""Search spaces of the protocol's arms and the quasi-random search over them.

A space maps hyperparameter names to a dimension (:class:`LogUniform`, :class:`Uniform`,
:class:`Choice`, :class:`MaybeOff`) or a fixed value; :func:`draw` takes ``n`` points of a
scrambled Halton sequence (Owen-scrambled, seeded), so any prefix of the points is itself
an evenly spread smaller search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from droplab import rng

__all__ = ["Choice", "LogUniform", "MaybeOff", "Uniform", "draw"]


@dataclass(frozen=True)
class LogUniform:
    """``exp(U(log lo, log hi))``."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not 0 < self.lo <= self.hi:
            raise ValueError(f"LogUniform needs 0 < lo <= hi, got ({self.lo}, {self.hi})")

    def at(self, u: float) -> float:
        return float(math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo))))


@dataclass(frozen=True)
class Uniform:
    """``U(lo, hi)``."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.lo <= self.hi:
            raise ValueError(f"Uniform needs lo <= hi, got ({self.lo}, {self.hi})")

    def at(self, u: float) -> float:
        return float(self.lo + u * (self.hi - self.lo))


@dataclass(frozen=True)
class Choice:
    """One of ``values``, equally likely."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("Choice needs at least one value")

    def at(self, u: float) -> Any:
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]


@dataclass(frozen=True)
class MaybeOff:
    """None (off) with probability ``1 - p_on``, else a value of ``dim`` (e.g. max-norm)."""

    dim: LogUniform | Uniform
    p_on: float = 0.5

    def at(self, u: float) -> float | None:
        if u >= self.p_on:
            return None
        return self.dim.at(u / self.p_on)


Dim = LogUniform | Uniform | Choice | MaybeOff


def draw(space: Mapping[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations of ``space`` (name -> dimension or fixed value) from a scrambled
    Halton sequence seeded by ``seed``; the first k of them are a k-point search.

    Floats are rounded to 4 significant digits (stored configs stay readable).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (configurations) must be an int >= 1, got {n!r}")
    dims = [k for k, v in space.items() if isinstance(v, (LogUniform, Uniform, Choice, MaybeOff))]
    if dims:
        from scipy.stats import qmc

        points = qmc.Halton(d=len(dims), scramble=True, seed=rng.numpy_rng(seed, "halton"))
        u = points.random(n)  # (n, d) in [0, 1)
    else:
        u = np.zeros((n, 0))
    out = []
    for i in range(n):
        config = {}
        for k, v in space.items():
            value = v.at(float(u[i, dims.index(k)])) if k in dims else v
            config[k] = float(f"{value:.4g}") if isinstance(value, float) else value
        out.append(config)
    return out
