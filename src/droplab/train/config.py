"""Training recipe (`TrainConfig`, shared by all members) and per-member knobs (`MemberConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MemberConfig", "TrainConfig"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SELECTS = ("val_loss", "val_acc", "last")
EVAL_MODES = ("deterministic", "mc")
SPLITS = ("train", "val", "test")
VARIANTS = ("bernoulli", "gaussian")  # the per-member variants of the fast MLP path


def _positive(name: str, value, *, integer: bool = False, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        kind = "an int" if integer else "a finite number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """The recipe every member of one `fit` shares.

    Args:
        epochs: passes over the training set.
        batch_size: examples per step (the last batch of an epoch may be smaller).
        optimizer: ``"adam"`` (torch's Adam: ``weight_decay`` is *coupled* L2, added to
            the gradient before the moment estimates), ``"adamw"`` (torch's AdamW:
            *decoupled* decay ``p <- p (1 - lr wd)``, then the Adam update without it;
            amsgrad off) or ``"sgd"`` (with ``momentum``, ``weight_decay`` as L2 added to
            the gradient).
        lr, momentum, betas, eps, nesterov: optimizer settings; ``lr`` and
            ``weight_decay`` can be overridden per member.
        weight_decay: L2 coefficient on all parameters (weights and biases).
        max_norm: max-norm constraint ``c`` on every hidden unit's incoming weights
            (Srivastava et al. 2014), applied after each step; None for none.
        eval_every: evaluate the ``curve_splits`` every this many epochs (and at the last).
        select: which epoch's weights a member keeps: lowest ``"val_loss"``, highest
            ``"val_acc"`` (classification), or the ``"last"``.
        patience: None (train every member for ``epochs``) or an int >= 1: a member stops
            once its selection score (``select``) has not improved for ``patience``
            consecutive *evaluations* (not epochs: with ``eval_every=e`` that is
            ``patience * e`` epochs); it keeps its selected weights. Stopped members leave
            the stacked computation, so the others run at the speed of a smaller fit.
            Needs ``select != "last"``. Every member's metrics get ``stopped_epoch`` (the
            last epoch it trained) and ``capped`` (1.0 if the patience rule never fired,
            so it trained all ``epochs``; 0.0 if it fired, also when at the last
            evaluation).
        curve_splits: the splits evaluated at every evaluation (they make the curves),
            a subset of ``("train", "val", "test")``; must hold ``"val"`` unless
            ``select="last"``. The final ``train_*``/``val_*``/``test_*`` metrics are
            always those of each member's selected weights: a split that is not a curve
            split is evaluated once at the end on them.
        eval_mode: ``"deterministic"`` (weight scaling; for classic scaling the
            keep-scaled activations) or ``"mc"`` (final metrics averaged over
            ``mc_samples`` dropout masks; the curves stay deterministic).
        mc_samples: T for ``eval_mode="mc"``.
        eval_batch: rows per evaluation chunk (memory bound, not a hyperparameter).
        train_eval_rows: the per-epoch train metrics (curves) use an evenly spaced subset
            of at most about this many training rows (0: all), to keep evaluation cheap;
            the final ``train_*`` metrics at the selected epoch always use every row.
        masks: where the fast path's dropout masks come from: ``"kernel"`` (counter-based
            :mod:`droplab.kernels`, nothing stored for backward), ``"torch"`` (per-member
            ``torch.Generator`` streams) or ``"auto"`` (kernel when available). The two
            give different (equally valid) random streams.
        rate_ramp: 0 (every member trains at its rates throughout) or the number of
            epochs R over which the rates rise linearly (Ghiasi et al. 2018, DropBlock's
            schedule): in epoch e every member's dropout rate of every slot is
            ``rate * min(1, e / R)``, so the full rate is reached at epoch R. Stacked path
            only; evaluation is unaffected (inverted scaling needs no rate at test time,
            classic scaling uses the full rate).
    """

    epochs: int = 20
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    nesterov: bool = False
    weight_decay: float = 0.0
    max_norm: float | None = None
    eval_every: int = 1
    select: str = "val_loss"
    eval_mode: str = "deterministic"
    mc_samples: int = 0
    eval_batch: int = 8192
    train_eval_rows: int = 2048
    masks: str = "auto"
    patience: int | None = None
    curve_splits: tuple[str, ...] = SPLITS
    rate_ramp: int = 0

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs, integer=True)
        _positive("batch_size", self.batch_size, integer=True)
        _positive("eval_every", self.eval_every, integer=True)
        _positive("eval_batch", self.eval_batch, integer=True)
        _positive("lr", self.lr)
        _positive("momentum", self.momentum, allow_zero=True)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("mc_samples", self.mc_samples, integer=True, allow_zero=True)
        _positive("train_eval_rows", self.train_eval_rows, integer=True, allow_zero=True)
        _positive("rate_ramp", self.rate_ramp, integer=True, allow_zero=True)
        if self.max_norm is not None:
            _positive("max_norm", self.max_norm)
        if self.masks not in ("auto", "kernel", "torch"):
            raise ValueError(f"masks must be 'auto', 'kernel' or 'torch', got {self.masks!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.select not in SELECTS:
            raise ValueError(f"select must be one of {SELECTS}, got {self.select!r}")
        if self.eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {self.eval_mode!r}")
        if self.eval_mode == "mc" and self.mc_samples < 1:
            raise ValueError("eval_mode='mc' needs mc_samples >= 1, got 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.patience is not None:
            _positive("patience", self.patience, integer=True)
            if self.select == "last":
                raise ValueError(
                    "patience needs a selection score: select='last' with patience="
                    f"{self.patience} is not allowed (use select='val_loss' or 'val_acc', "
                    "or patience=None)"
                )
        cs = self.curve_splits
        if isinstance(cs, str) or not isinstance(cs, (tuple, list)):
            raise TypeError(f"curve_splits must be a tuple of split names, got {cs!r}")
        if any(s not in SPLITS for s in cs) or len(set(cs)) != len(cs):
            raise ValueError(f"curve_splits must be distinct names from {SPLITS}, got {cs!r}")
        if "val" not in cs and self.select != "last":
            raise ValueError(
                f"curve_splits must contain 'val' for select={self.select!r}, got {cs!r}"
            )
        object.__setattr__(self, "curve_splits", tuple(cs))


@dataclass(frozen=True)
class MemberConfig:
    """One member of a batched `fit`: its seed and the knobs a study varies.

    ``None`` takes the `TrainConfig` value. ``dropout`` overrides the spec's variant
    per member (``"bernoulli"`` or ``"gaussian"``, fast MLP path only).
    The seed drives the member's streams ``"init"``, ``"order"``, ``"masks"`` and ``"mc"``
    through :func:`droplab.rng.derive`.
    """

    seed: int
    input_rate: float = 0.0
    hidden_rate: float = 0.0
    lr: float | None = None
    weight_decay: float | None = None
    max_norm: float | None = None
    dropout: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__} {self.seed!r}")
        for name in ("input_rate", "hidden_rate"):
            r = getattr(self, name)
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r < 1.0:
                raise ValueError(f"{name} must be a float in [0, 1), got {r!r}")
        if self.lr is not None:
            _positive("lr", self.lr)
        if self.weight_decay is not None:
            _positive("weight_decay", self.weight_decay, allow_zero=True)
        if self.max_norm is not None:
            _positive("max_norm", self.max_norm)
        if self.dropout is not None and self.dropout not in VARIANTS:
            raise ValueError(
                f"dropout (per member) must be None or one of {VARIANTS}, got {self.dropout!r}"
            )


def train_eval_stride(n: int, rows: int) -> int:
    """Stride of the evenly spaced train subset of ``TrainConfig.train_eval_rows``."""
    return 1 if rows <= 0 or n <= rows else -(-n // rows)
