"""Dropout rates over training: set every dropout-like module of a model at each step.

Rate schedules (Liu et al. 2023, "Dropout Reduces Underfitting", ICML): ``"constant"``,
``"linear"`` (a ramp from ``start`` to ``rate``), ``"early"`` (dropout only for the first
``switch`` steps, which they find reduces underfitting) and ``"late"`` (dropout only after
``switch`` steps, against overfitting). Works with any training loop: call
``schedule.step(step)`` once per step.
"""

from __future__ import annotations

import math

from torch import nn

from droplab._validate import check_choice, check_positive_int, check_rate
from droplab.layers.gaussian import GaussianDropout, GaussianNoise
from droplab.layers.mc import is_dropout

__all__ = ["SCHEDULES", "DropoutSchedule", "set_dropout_rate"]

SCHEDULES = ("constant", "linear", "early", "late")


def _set_rate(module: nn.Module, rate: float) -> bool:
    """Set one module's rate (and what depends on it); False where it has no rate."""
    if isinstance(module, GaussianNoise):
        return False  # additive noise has a std, not a rate
    if isinstance(module, GaussianDropout):
        if rate >= 1.0:
            raise ValueError(f"GaussianDropout needs a rate in [0, 1), got {rate!r}")
        module.sigma = math.sqrt(rate / (1.0 - rate))
        module.rate, module.keep = rate, 1.0 - rate
        return True
    if isinstance(module, nn.modules.dropout._DropoutNd) or hasattr(type(module), "p"):
        module.p = rate  # torch's layers, droplab's layers with torch's name
        return True
    if hasattr(module, "rate") and hasattr(module, "keep"):
        module.rate, module.keep = rate, 1.0 - rate  # DropBlock, DropConnect
        return True
    return False


def set_dropout_rate(model: nn.Module, rate: float) -> int:
    """Set the rate of every dropout-like module of ``model`` (droplab's and torch's) that
    has one (``GaussianNoise`` has a std and is left alone); return how many were set.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5), dl.Dropout(0.1), dl.DropPath(0.2))
        >>> dl.set_dropout_rate(net, 0.3), net[0].p, net[1].keep
        (3, 0.3, 0.7)
    """
    rate = check_rate(rate, None)[0]
    return sum(_set_rate(m, rate) for m in model.modules() if is_dropout(m))


class DropoutSchedule:
    r"""A dropout-rate schedule over training steps for every dropout-like module of a
    model.

    ``rate_at(t)`` for step ``t`` (from 0) of ``total_steps``:

    * ``"constant"``: ``rate``;
    * ``"linear"``: ``start + (rate - start) * min(1, t / total_steps)``;
    * ``"early"``: ``rate`` for ``t < switch``, then 0 (early dropout);
    * ``"late"``: 0 for ``t < switch``, then ``rate`` (late dropout).

    ``switch`` defaults to ``total_steps // 2``. :meth:`step` sets the rate of step ``t``
    with :func:`set_dropout_rate` and returns it.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), dl.Dropout(0.0))
        >>> sched = dl.DropoutSchedule(net, 0.1, kind="early", total_steps=100, switch=20)
        >>> sched.step(0), sched.step(19), sched.step(20)
        (0.1, 0.1, 0.0)
    """

    def __init__(
        self,
        model: nn.Module,
        rate: float,
        *,
        kind: str = "constant",
        total_steps: int,
        switch: int | None = None,
        start: float = 0.0,
    ) -> None:
        self.model = model
        self.rate = check_rate(rate, None)[0]
        self.kind = check_choice(kind, "kind", SCHEDULES)
        self.total_steps = check_positive_int(total_steps, "total_steps")
        if switch is None:
            switch = self.total_steps // 2
        if isinstance(switch, bool) or not isinstance(switch, int) or switch < 0:
            raise ValueError(f"switch must be an int >= 0 (a step), got {switch!r}")
        self.switch = switch
        self.start = check_rate(start, None)[0]
        if not any(is_dropout(m) for m in model.modules()):
            raise ValueError(
                f"DropoutSchedule found no dropout module in {type(model).__name__}; add "
                "dropout layers (droplab's or torch's) to schedule their rate"
            )

    def rate_at(self, step: int) -> float:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        if self.kind == "constant":
            return self.rate
        if self.kind == "linear":
            return self.start + (self.rate - self.start) * min(1.0, step / self.total_steps)
        if self.kind == "early":
            return self.rate if step < self.switch else 0.0
        return 0.0 if step < self.switch else self.rate  # late

    def step(self, step: int) -> float:
        rate = self.rate_at(step)
        set_dropout_rate(self.model, rate)
        return rate

    def __repr__(self) -> str:
        return (
            f"DropoutSchedule(rate={self.rate:g}, kind={self.kind!r}, "
            f"total_steps={self.total_steps}, switch={self.switch}, start={self.start:g})"
        )
