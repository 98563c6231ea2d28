"""conv's design on the protocol: nets, arms (with placement as a searched dimension),
budgets, the data of a replicate, and the training of one (replicate, cell, arm,
placement) with the mechanism measured on every trained member.

The protocol (:mod:`droplab.studies.protocol`) draws an arm's configurations from a
scrambled Halton sequence over its ``Arm.space``; conv adds one dimension, the placement
of the arm's dropout (``Choice`` over :data:`PLACEMENTS`), drawn in the same sequence.
Placement is a property of the net, not of a member, so the members of one fit share it:
trials group by (replicate, cell, arm, placement).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from droplab import rng
from droplab.store import config_key
from droplab.studies import protocol as P
from droplab.studies.base import Trial

__all__ = [
    "ARMS",
    "BUDGETS",
    "NETS",
    "PLACEMENTS",
    "Net",
    "file_nets",
    "group_key",
    "load_cell_data",
    "run_group",
    "spaces",
    "trials_of",
]

#: where an arm's dropout sits: after every conv layer but the last, only after the last
#: (feeding the classifier), or after every conv layer
PLACEMENTS = ("conv", "classifier", "all")


@dataclass(frozen=True)
class Net:
    """A cell: ``dataset`` with a ``kind`` CNN of conv ``widths`` (kernels: the kind's
    default), ``stride``, DropBlock ``block`` size, trained on ``n_train`` examples
    (``pool``: MNIST-1D signals drawn for train + validation)."""

    dataset: str
    kind: str
    widths: tuple[int, ...]
    stride: int
    block: int
    n_train: int
    pool: int | None = None


#: the MNIST-1D CNN of Greydanus (2020): 3 conv layers of 25 channels, kernels 5/3/3,
#: stride 2, padding 1, on 3600 training signals (his 4000 less our 400 validation)
MNIST1D = Net("mnist1d", "cnn1d", (25, 25, 25), 2, 3, 3600, 4000)
#: scikit-learn's 8x8 digits as images, a two-layer stride-1 CNN
DIGITS = Net("digits-image", "cnn2d", (16, 32), 1, 3, 1200)
#: 2-D image tasks read from --data-dir (full preset, when the files are there)
MNIST = Net("mnist", "cnn2d", (32, 64), 2, 3, 10000)
CIFAR10 = Net("cifar10", "cnn2d", (32, 64, 128), 2, 3, 10000)
NETS = {n.dataset: n for n in (MNIST1D, DIGITS, MNIST, CIFAR10)}

#: what every arm tunes: P.TUNE with the learning rate around Greydanus's 1e-2 (below
#: ~5e-3 the MNIST-1D CNN has not converged after 2400 steps: 11% vs 6% error at 60
#: epochs with lr 3e-3 vs 1e-2, measured; see conv.py)
TUNE = {**P.TUNE, "lr": P.LogUniform(4e-3, 2.5e-2)}
_RATE = P.Uniform(0.05, 0.4)

#: arm -> (the model's dropout variant, label, search space); rates share one range
ARMS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "none": ("bernoulli", "tuned, no dropout", TUNE),
    "element": ("bernoulli", "tuned element-wise dropout", {**TUNE, "hidden_rate": _RATE}),
    "spatial": ("spatial", "tuned SpatialDropout", {**TUNE, "hidden_rate": _RATE}),
    "dropblock": (
        "dropblock",
        "tuned DropBlock (linear rate ramp)",
        {**TUNE, "hidden_rate": _RATE},
    ),
}

#: budgets: steps are optimizer steps of batch 100; ``ramp`` is the fraction of the step
#: cap over which DropBlock's rate rises linearly from 0 (Ghiasi et al. 2018)
BUDGETS: dict[str, P.Budget] = {
    "quick": P.Budget(seeds=3, configs=1, max_steps=48, eval_steps=12, patience_steps=24),
    "standard": P.Budget(seeds=8, configs=2, max_steps=2520, eval_steps=72, patience_steps=720),
    "full": P.Budget(seeds=20, configs=8, max_steps=6000, eval_steps=72, patience_steps=1440),
}
RAMP = 1 / 3


def spaces(arm: str) -> dict[str, Any]:
    """The arm's search space with the placement dimension (none: no placement)."""
    space = dict(ARMS[arm][2])
    if arm != "none":
        space["placement"] = P.Choice(PLACEMENTS)
    return space


def file_nets() -> list[Net]:
    """The 2-D file datasets whose files are in ``DROPLAB_DATA_DIR`` (``--data-dir``)."""
    where = os.environ.get("DROPLAB_DATA_DIR")
    if not where:
        return []
    from droplab import data as dl_data

    out = []
    for net in (MNIST, CIFAR10):
        try:
            dl_data.load(net.dataset, seed=0, data_dir=where)
        except (FileNotFoundError, ValueError):
            continue
        out.append(net)
    return out


def trials_of(
    preset: str, root_seed: int, nets: list[tuple[Net, tuple[str, ...]]], budget: P.Budget
) -> list[Trial]:
    """Replicate x net x arm x configuration; config keys as ``protocol.expand``'s plus
    ``kind, stride, block_size, placement, ramp_steps``."""
    out = []
    for i in range(budget.seeds):
        seed = P.replicate_seed(root_seed, i)
        for net, arms in nets:
            for arm in arms:
                search = P.draw(
                    spaces(arm), budget.configs, rng.derive(seed, "search", arm, net.dataset)
                )
                for j, hp in enumerate(search):
                    config = {
                        "dataset": net.dataset,
                        "n_train": net.n_train,
                        "widths": list(net.widths),
                        "cell": "",
                        "kind": net.kind,
                        "stride": net.stride,
                        "block_size": net.block,
                        "arm": arm,
                        "config": j,
                        "placement": hp.get("placement", "none"),
                        **{k: hp.get(k, None if k == "max_norm" else 0.0) for k in P.MEMBER_KEYS},
                        "ramp_steps": round(budget.max_steps * RAMP) if arm == "dropblock" else 0,
                        "max_steps": budget.max_steps,
                        "eval_steps": budget.eval_steps,
                        "patience_steps": budget.patience_steps,
                        "batch_size": budget.batch_size,
                        "pool": net.pool,
                        "root_seed": int(root_seed),
                        "replicate": i,
                    }
                    out.append(Trial("conv", config, seed, preset))
    return out


def group_key(trial: Trial) -> Hashable:
    """The members of one fit: same replicate, cell, arm and placement."""
    return (trial.preset, trial.seed, config_key(trial.config, without=("config", *P.MEMBER_KEYS)))


@functools.lru_cache(maxsize=4)  # the arms of one replicate share the draw (MNIST-1D: ~3 s)
def load_cell_data(dataset: str, seed: int, n_train: int, pool: int | None) -> Any:
    """Replicate ``seed``'s data: MNIST-1D a fresh draw (``protocol.load_data``); digits a
    fresh test split; MNIST / CIFAR-10 (fixed test sets) a fresh validation split and
    training subset. Standardization is fitted on the training subset."""
    if dataset in ("mnist1d",):
        return P.load_data(dataset, seed, n_train, pool)
    from droplab import data as dl_data

    if dataset == "digits-image":
        ds = dl_data.load(
            dataset, seed=rng.derive(seed, "split"), test_seed=rng.derive(seed, "test")
        )
    elif dataset in ("mnist", "cifar10"):
        ds = dl_data.load(dataset, seed=rng.derive(seed, "split"))  # 10% validation
    else:
        raise ValueError(f"conv's dataset must be one of {', '.join(NETS)}, got {dataset!r}")
    if n_train > len(ds.y_train):
        raise ValueError(
            f"n_train={n_train} but this {dataset} draw has {len(ds.y_train)} training points"
        )
    return ds.subset(n_train, seed=rng.derive(seed, "subset"))


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train one (replicate, cell, arm, placement): its configurations as the members of
    one batched fit (AdamW, early stopping on validation error, step cap), then measure
    the mechanism (:func:`conv_probe.mechanism`) of every member on the validation
    inputs."""
    import torch

    from droplab.models import ModelSpec
    from droplab.studies.conv_probe import mechanism
    from droplab.train import fit

    c = group[0].config
    ds = load_cell_data(c["dataset"], group[0].seed, c["n_train"], c.get("pool"))
    r = P.recipe(c)
    per_epoch = max(1, math.ceil(c["n_train"] / c["batch_size"]))
    variant = ARMS[c["arm"]][0]
    spec = ModelSpec(
        c["kind"],
        widths=tuple(c["widths"]),
        dropout=variant,
        placement=c["placement"],
        stride=c["stride"],
        block_size=c["block_size"],
    )
    cfg = P.train_config(
        c, rate_ramp=math.ceil(c["ramp_steps"] / per_epoch) if c["ramp_steps"] else 0
    )
    members = P.member_configs(group)
    result = fit(spec, ds, members, cfg, device=device)
    out = []
    x_val = ds.x_val.to("cpu")
    for k, m in enumerate(result.members):
        metrics = dict(m.metrics)
        metrics["epochs_cap"] = float(r["epochs"])
        metrics["diverged"] = float(not math.isfinite(metrics.get("val_loss", math.nan)))
        if not metrics["diverged"]:
            with torch.no_grad():
                metrics.update(mechanism(result.module(k).cpu(), x_val))
        out.append({"metrics": metrics, "curves": m.curves})
    return out
