"""The arms of the explicit study's logistic part and how one cell's trials train.

Every arm is a set of configurations of :func:`droplab.studies.explicit_logistic.train`;
all arms and replicates of one (cell, root seed) train in one call of :func:`run_cell`,
vectorized over replicates (fresh data each) and configurations.

Arms (9 configurations each, the brief's 9-point grids; the tuned comparisons pool the
two optimizers, so tuned L2 and tuned dropout both choose among 18):

- ``l2_sgd``: decoupled weight decay with (preconditioned) gradient descent, ``lam`` on
  ``L2_GRID``; ``wd_adamw``: AdamW's decoupled weight decay on ``WD_GRID``;
- ``dropout_sgd``, ``dropout_adamw``: input dropout (k = 1 mask per step), rate on
  ``RATE_GRID``;
- ``explicit``: gradient descent on loss + Wager et al.'s penalty at rate p (adaptive
  Fisher weights), p on ``RATE_GRID``; ``frozen``: the same with the weights frozen at
  the start of training;
- ``dropout_k2``, ``dropout_k4``, ``dropout_k16``: DROPOUT_k (Wei, Kakade & Ma 2020),
  one configuration each, at the rate ``dropout_sgd`` selects on validation in the same
  replicate (the fixed penalty at which mask noise is varied);
- ``none``: no regularizer, one configuration per optimizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from droplab import rng
from droplab.studies.base import Trial
from droplab.studies.explicit_logistic import SOURCES, evaluate, sample, train

__all__ = ["ARMS", "K_ARMS", "L2_GRID", "RATE_GRID", "WD_GRID", "arm_configs", "run_cell"]

#: SGD's L2 strength lam (penalty lam/2 ||w||^2 on the mean loss): 1e-6 .. 1, so that its
#: low end is effectively off on every cell (weights of 10 on small-scale features)
L2_GRID = [float(v) for v in np.logspace(-6, 0, 9)]
#: AdamW's decoupled weight decay (lr * wd <= 0.32 at lr 0.1): 10^-3.5 .. 10^0.5
WD_GRID = [float(v) for v in np.logspace(-3.5, 0.5, 9)]
#: dropout rates p = P(drop), also the explicit penalties' p; denser near 0, so that its
#: low end is nearly off (penalty coefficient p / 2q = 0.01 at p = 0.02)
RATE_GRID = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]
K_ARMS = {"dropout_k2": 2, "dropout_k4": 4, "dropout_k16": 16}

#: arm -> (optimizer, penalty, masks per step k, grid name); order = training order
ARMS: dict[str, tuple[str, str, int, str]] = {
    "none": ("", "none", 0, "none"),
    "l2_sgd": ("sgd", "none", 0, "l2"),
    "wd_adamw": ("adamw", "none", 0, "wd"),
    "dropout_sgd": ("sgd", "none", 1, "rate"),
    "dropout_adamw": ("adamw", "none", 1, "rate"),
    "explicit": ("sgd", "explicit", 0, "rate"),
    "frozen": ("sgd", "frozen", 0, "rate"),
    **{a: ("sgd", "none", k, "selected") for a, k in K_ARMS.items()},
}


def arm_configs(arm: str) -> list[dict[str, Any]]:
    """The configurations of ``arm``: dicts of optimizer, weight_decay, rate, penalty, k
    (rate None: chosen at run time from ``dropout_sgd``)."""
    opt, penalty, k, grid = ARMS[arm]
    base = {"penalty": penalty, "k": k}
    if grid == "none":
        return [
            {**base, "optimizer": o, "weight_decay": 0.0, "rate": 0.0} for o in ("sgd", "adamw")
        ]
    if grid == "l2":
        return [{**base, "optimizer": opt, "weight_decay": v, "rate": 0.0} for v in L2_GRID]
    if grid == "wd":
        return [{**base, "optimizer": opt, "weight_decay": v, "rate": 0.0} for v in WD_GRID]
    if grid == "rate":
        return [{**base, "optimizer": opt, "weight_decay": 0.0, "rate": r} for r in RATE_GRID]
    return [{**base, "optimizer": opt, "weight_decay": 0.0, "rate": None}]


def _data(c: dict[str, Any], seeds: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(X, y) of train, val, test stacked over replicates: X (R, n, d), y (R, n)."""
    source = SOURCES[c["dataset"]]
    sizes = (c["n_train"], c["n_val"], c["n_test"])
    draws = [sample(source, sum(sizes), rng.generator(s, "data", c["dataset"])) for s in seeds]
    X = torch.stack([x for x, _ in draws])
    y = torch.stack([v for _, v in draws])
    out, start = [], 0
    for m in sizes:
        out.append((X[:, start : start + m], y[:, start : start + m]))
        start += m
    return out


def _select(val_error: torch.Tensor, val_loss: torch.Tensor) -> torch.Tensor:
    """Per replicate the configuration with the lowest validation error, then loss, then
    index (as ``protocol.tuned``); non-finite losses rank last. (R, C) -> (R,)."""
    ve = torch.where(torch.isfinite(val_loss), val_error, torch.full_like(val_error, np.inf))
    vl = torch.where(torch.isfinite(val_loss), val_loss, torch.full_like(val_loss, np.inf))
    out = []
    for e, loss in zip(ve.tolist(), vl.tolist()):
        out.append(min(range(len(e)), key=lambda j: (e[j], loss[j], j)))
    return torch.tensor(out)


def run_cell(group: list[Trial], device: str = "cpu") -> list[dict[str, Any]]:
    """Train every arm of one cell for the replicates in ``group``; metrics per trial.

    Runs on one intra-op thread (restored afterwards): the tensors are small (at most a
    few MB per step), so thread hand-offs cost more than they gain, and far more on a
    shared machine (measured: 22 s vs 0.4 s for one arm under load).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_cell(group)
    finally:
        torch.set_num_threads(threads)


def _run_cell(group: list[Trial]) -> list[dict[str, Any]]:
    c = group[0].config
    seeds = sorted({t.seed for t in group})
    R = len(seeds)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = _data(c, seeds)
    results: dict[tuple[str, int], torch.Tensor] = {}  # (arm, metric index) -> (R, C)
    chosen_rate = torch.zeros(R, 1)
    for arm, (_, penalty, k, grid) in ARMS.items():
        configs = arm_configs(arm)
        fits = []
        opts = [cfg["optimizer"] for cfg in configs]
        for o in dict.fromkeys(opts):  # one train call per optimizer within the arm
            idx = [j for j, v in enumerate(opts) if v == o]
            if grid == "selected":
                rate = chosen_rate
            else:
                rate = torch.tensor([[configs[j]["rate"] for j in idx]] * R)
            wd = torch.tensor([[configs[j]["weight_decay"] for j in idx]] * R)
            gen = rng.generator(seeds[0], "masks", c["dataset"], arm, o) if k else None
            fit = train(
                Xtr,
                ytr,
                optimizer=o,
                steps=c["steps"],
                weight_decay=wd,
                rate=rate,
                penalty=penalty,
                k=k,
                lr=c["lr"],
                generator=gen,
            )
            fits.append((idx, fit, rate))
        C = len(configs)
        table = torch.full((7, R, C), float("nan"))
        for idx, fit, rate in fits:
            ve, vl = evaluate(Xva, yva, fit)
            te, tl = evaluate(Xte, yte, fit)
            tre, _ = evaluate(Xtr, ytr, fit)
            w_norm = fit.w.norm(dim=-1)
            for row, v in enumerate((ve, vl, te, tl, tre, fit.grad_norm, w_norm)):
                table[row][:, idx] = v
            table_rate = rate.expand(R, len(idx))
            results[(arm, -1)] = results.get((arm, -1), torch.full((R, C), float("nan")))
            results[(arm, -1)][:, idx] = table_rate
        for row in range(7):
            results[(arm, row)] = table[row]
        if arm == "dropout_sgd":
            best = _select(table[0], table[1])
            chosen_rate = torch.tensor([[configs[int(j)]["rate"]] for j in best])
    names = ("val_error", "val_loss", "test_error", "test_loss", "train_error", "grad_norm")
    out = []
    for t in group:
        r, j, arm = seeds.index(t.seed), t.config["config"], t.config["arm"]
        metrics = {name: float(results[(arm, row)][r, j]) for row, name in enumerate(names)}
        metrics["w_norm"] = float(results[(arm, 6)][r, j])
        metrics["rate_used"] = float(results[(arm, -1)][r, j])
        metrics["diverged"] = float(not np.isfinite(metrics["val_loss"]))
        out.append({"metrics": metrics})
    return out
