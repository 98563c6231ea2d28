"""The experimental protocol of every study: tuned arms, resampled data, trained to
convergence, selected on validation (docs/statistics.md has the statistics).

A study on the protocol declares

- **arms**, each an :class:`Arm` with a search space (log-uniform learning rate,
  decoupled weight decay, max-norm on/off and its c, the arm's own dropout rates);
- **cells**, the (dataset, training-set size, widths) where arms are trained, and which
  arms train in each;
- a :class:`Budget`: replicates (seeds), configurations per arm (the same for every arm),
  the step cap, the evaluation interval and the patience.

and the protocol does the rest:

1. **Seeds resample everything random.** Replicate i of root seed r has the trial seed
   ``derive(r, "replicate", i)``; from it come the data draw (MNIST-1D: a fresh
   ``make_dataset`` draw, test set included; digits: a fresh test split), the validation
   split, the training subset, and the members' initialization, batch order and masks.
   All arms of one replicate share them (common random numbers), so arms are compared
   paired by seed. ``droplab run --seed r`` is an independent replication.
2. **Equal search budgets.** Each (replicate, cell, arm) draws ``Budget.configs``
   configurations of its space from a scrambled Halton sequence seeded by the
   replicate; the first k points of the sequence are themselves a k-point search, so an
   arm with more configurations can be cut to a smaller budget for a fair comparison
   (:func:`tuned` with ``configs=``).
3. **Trained to convergence.** AdamW, a cap of ``max_steps`` optimizer steps at every
   training-set size, evaluation on the validation split every ``eval_steps`` steps,
   early stopping after ``patience_steps`` without a better validation error; each member
   keeps its best-validation weights, retired members cost nothing more.
4. **Selected on validation only.** Per (replicate, cell, arm) the configuration with the
   lowest validation error (ties: lower validation NLL, then the earlier configuration)
   is the arm's result; the test set is never looked at for a choice.

All arms and configurations of one (cell, replicate) train as the members of one batched
``droplab.train.fit``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from droplab import rng
from droplab.store import config_key
from droplab.studies.base import Trial
from droplab.studies.search import Choice, LogUniform, MaybeOff, Uniform, draw
from droplab.studies.tuning import (
    CELL_COLUMNS,
    RECIPE,
    cap_note,
    current,
    error_points,
    failed_lines,
    paired,
    root_seeds,
    tuned,
)

__all__ = [
    "BUDGETS",
    "CELL_COLUMNS",
    "RECIPE",
    "TUNE",
    "Arm",
    "Budget",
    "Cell",
    "Choice",
    "LogUniform",
    "MaybeOff",
    "Uniform",
    "cap_note",
    "current",
    "draw",
    "error_points",
    "expand",
    "failed_lines",
    "group_key",
    "load_data",
    "member_configs",
    "paired",
    "replicate_seed",
    "root_seeds",
    "run_fit",
    "train_config",
    "tuned",
]

#: prefix of a user's --model/--data reference in a config
USER = "user:"


# -- the design ------------------------------------------------------------------------------

#: hyperparameters the trainer takes per member (everything else in a space is an error)
MEMBER_KEYS = ("lr", "weight_decay", "max_norm", "input_rate", "hidden_rate")


@dataclass(frozen=True)
class Arm:
    """One arm: a name, a label for readers, and its search space.

    ``space`` maps each of ``lr, weight_decay, max_norm, input_rate, hidden_rate`` to a
    dimension (:class:`LogUniform`, :class:`Uniform`, :class:`Choice`, :class:`MaybeOff`)
    or a fixed value; missing keys are 0 (rates, weight decay) or off (max-norm).
    ``configs``: overrides :attr:`Budget.configs` (e.g. 1 for a fixed recipe, or a
    multiple of it for an arm that stands for several arms of the same budget).
    """

    name: str
    label: str
    space: Mapping[str, Any]
    configs: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.space) - set(MEMBER_KEYS))
        if unknown:
            raise ValueError(
                f"arm {self.name!r}: unknown hyperparameter {unknown[0]!r}; "
                f"valid: {', '.join(MEMBER_KEYS)}"
            )
        if "lr" not in self.space:
            raise ValueError(f"arm {self.name!r}: the space needs an 'lr'")


@dataclass(frozen=True)
class Cell:
    """Where arms are compared: ``dataset`` at training-set size ``n_train`` with an MLP of
    hidden ``widths``; ``arms`` names the arms trained here. ``label`` tells cells of the
    same size apart (e.g. a width variant)."""

    dataset: str
    n_train: int
    widths: tuple[int, ...]
    arms: tuple[str, ...]
    label: str = ""


@dataclass(frozen=True)
class Budget:
    """Replicates, configurations per arm and the training cap of a preset.

    ``max_steps``, ``eval_steps`` and ``patience_steps`` are optimizer steps (batches), so
    every training-set size gets the same budget; they become epochs per size.
    """

    seeds: int
    configs: int
    max_steps: int
    eval_steps: int
    patience_steps: int
    batch_size: int = 100
    pool: Mapping[str, int] = field(default_factory=dict)  # dataset -> train+val pool drawn


#: what every arm of a protocol study tunes: Adam(W)'s learning rate (below 1e-3 dropout
#: nets hit the step cap), decoupled weight decay (p <- p (1 - lr wd)), max-norm on/off
TUNE: dict[str, Any] = {
    "lr": LogUniform(1e-3, 1e-2),
    "weight_decay": LogUniform(1e-5, 1e-1),
    "max_norm": MaybeOff(LogUniform(1.0, 5.0)),
}

#: the budgets of the presets (a study may change ``configs`` with dataclasses.replace):
#: quick for tests, standard for `make run` (10 replicates, within the 20-minute main job
#: on 2 cores), full (20 replicates, a larger search) for a cluster or a GPU
BUDGETS: dict[str, Budget] = {
    "quick": Budget(seeds=3, configs=1, max_steps=300, eval_steps=30, patience_steps=90),
    "standard": Budget(
        seeds=10,
        configs=2,
        max_steps=5400,
        eval_steps=72,
        patience_steps=1080,
        pool={"mnist1d": 7600},
    ),
    "full": Budget(
        seeds=20,
        configs=8,
        max_steps=8000,
        eval_steps=72,
        patience_steps=1800,
        pool={"mnist1d": 14800},
    ),
}


def replicate_seed(root_seed: int, i: int) -> int:
    """The trial seed of replicate ``i`` of root seed ``root_seed``."""
    return rng.derive(int(root_seed), "replicate", int(i))


def expand(
    study: str,
    preset: str,
    root_seed: int,
    arms: Mapping[str, Arm],
    cells: Sequence[Cell],
    budget: Budget,
) -> list[Trial]:
    """The trials: replicate x cell x arm x configuration.

    Config keys: ``dataset, n_train, widths, cell, arm, config`` (index in the arm's
    search), the member hyperparameters, the training recipe (``max_steps, eval_steps,
    patience_steps, batch_size, pool``), ``root_seed`` and ``replicate``.
    """
    out = []
    for i in range(budget.seeds):
        seed = replicate_seed(root_seed, i)
        for cell in cells:
            for name in cell.arms:
                arm = arms[name]
                n = budget.configs if arm.configs is None else arm.configs
                search = draw(arm.space, n, rng.derive(seed, "search", name, cell.n_train))
                for j, hp in enumerate(search):
                    config = {
                        "dataset": cell.dataset,
                        "n_train": cell.n_train,
                        "widths": list(cell.widths),
                        "cell": cell.label,
                        "arm": name,
                        "config": j,
                        **{k: hp.get(k, None if k == "max_norm" else 0.0) for k in MEMBER_KEYS},
                        "max_steps": budget.max_steps,
                        "eval_steps": budget.eval_steps,
                        "patience_steps": budget.patience_steps,
                        "batch_size": budget.batch_size,
                        "pool": budget.pool.get(cell.dataset),
                        "root_seed": int(root_seed),
                        "replicate": i,
                    }
                    out.append(Trial(study, config, seed, preset))
    return out


def group_key(trial: Trial) -> Hashable:
    """All arms and configurations of one (cell, replicate) train as one fit."""
    return (
        trial.preset,
        trial.seed,
        config_key(trial.config, without=("arm", "config", *MEMBER_KEYS)),
    )


# -- the data --------------------------------------------------------------------------------


def load_data(dataset: str, seed: int, n_train: int, pool: int | None) -> Any:
    """The dataset of replicate ``seed``, cut to ``n_train`` training points.

    ``mnist1d``: a fresh draw of the generator (``generation_seed`` from the seed) with
    ``pool`` signals for train + validation (400 of them validation) and 1000 test signals;
    ``digits``: a fresh stratified test split (20%). Then the validation split (by
    ``seed``) and a stratified training subset (by ``seed``); standardization is fitted
    on the training subset only. Every size of one replicate is a subset of the same draw.
    """
    from droplab import data as dl_data

    if dataset.startswith(USER):
        from droplab.studies.base import load_user_data

        ds = load_user_data(dataset[len(USER) :], rng.derive(seed, "split") % 2**31)
    elif dataset == "mnist1d":
        pool = 4000 if pool is None else int(pool)
        n_test = 1000
        total = pool + n_test
        ds = dl_data.load(
            "mnist1d",
            seed=rng.derive(seed, "split"),
            generation_seed=rng.derive(seed, "data") % 2**32,
            num_samples=total,
            train_split=(pool + 0.5) / total,  # int(total * split) == pool exactly
            n_val=400,
        )
    elif dataset == "digits":
        ds = dl_data.load(
            "digits", seed=rng.derive(seed, "split"), test_seed=rng.derive(seed, "test")
        )
    else:
        raise ValueError(f"dataset must be 'mnist1d', 'digits' or 'user:...', got {dataset!r}")
    if n_train > len(ds.y_train):
        raise ValueError(
            f"n_train={n_train} but this {dataset} draw has {len(ds.y_train)} training points"
        )
    return ds.subset(n_train, seed=rng.derive(seed, "subset"))


# -- the training ----------------------------------------------------------------------------


def recipe(c: Mapping[str, Any]) -> dict[str, int]:
    """Epochs, evaluation interval and patience (in evaluations) of a cell's step budget."""
    per_epoch = max(1, math.ceil(c["n_train"] / c["batch_size"]))
    eval_every = max(1, round(c["eval_steps"] / per_epoch))
    epochs = max(eval_every, math.ceil(c["max_steps"] / per_epoch))
    patience = max(1, round(c["patience_steps"] / (eval_every * per_epoch)))
    return {"epochs": epochs, "eval_every": eval_every, "patience": patience}


def train_config(c: Mapping[str, Any], **overrides: Any) -> Any:
    """The protocol's ``droplab.train.TrainConfig`` for a cell's config ``c``: AdamW, the
    step budget of :func:`recipe`, early stopping on validation error, only the validation
    split evaluated during training; ``overrides`` replace fields (e.g. ``rate_ramp``)."""
    from droplab.train import TrainConfig  # torch: imported when a fit runs, not at `droplab list`

    r = recipe(c)
    fields: dict[str, Any] = {
        "epochs": r["epochs"],
        "batch_size": c["batch_size"],
        "optimizer": "adamw",
        "eval_every": r["eval_every"],
        "patience": r["patience"],
        "select": "val_acc",
        "curve_splits": ("val",),
    }
    return TrainConfig(**{**fields, **overrides})


def member_configs(group: Sequence[Trial]) -> list[Any]:
    """One ``droplab.train.MemberConfig`` per trial: its seed and member hyperparameters
    (a rate a trial's config lacks is 0)."""
    from droplab.train import MemberConfig  # torch: see train_config

    return [
        MemberConfig(
            seed=t.seed,
            input_rate=t.config.get("input_rate", 0.0),
            hidden_rate=t.config.get("hidden_rate", 0.0),
            lr=t.config["lr"],
            weight_decay=t.config["weight_decay"],
            max_norm=t.config["max_norm"],
        )
        for t in group
    ]


def run_fit(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train one (cell, replicate): every arm and configuration as a member of one fit.

    Returns per trial the metrics at its best-validation-error epoch (all splits, on the
    selected weights) and its validation curves.
    """
    from droplab.models import ModelSpec
    from droplab.train import fit

    c = group[0].config
    ds = load_data(c["dataset"], group[0].seed, c["n_train"], c.get("pool"))
    r = recipe(c)
    cfg = train_config(c)
    members = member_configs(group)
    if str(c.get("model", "mlp")).startswith(USER):
        from droplab.studies.base import load_user_model

        model: Any = load_user_model(c["model"][len(USER) :], ds)
    else:
        model = ModelSpec("mlp", widths=tuple(c["widths"]))
    result = fit(model, ds, members, cfg, device=device)
    losses = ("train_loss", "val_loss", "test_loss")
    bad = [
        f"{t.config['arm']} config {t.config['config']}: "
        + ", ".join(f"{k}={m.metrics.get(k)}" for k in losses)
        for t, m in zip(group, result.members)
        if not all(math.isfinite(m.metrics.get(k, math.nan)) for k in losses)
    ]
    if len(bad) == len(group):  # nothing trained: the model, not one configuration
        raise FloatingPointError(
            f"the loss is not finite for all {len(group)} members ({bad[0]}): training "
            "diverged or the model outputs NaN/inf"
        )
    out = []
    for m in result.members:
        metrics = dict(m.metrics)
        metrics["epochs_cap"] = float(r["epochs"])
        # a diverged member stays a (bad) configuration of its search; selection ranks it last
        metrics["diverged"] = float(not math.isfinite(metrics.get("val_loss", math.nan)))
        out.append({"metrics": metrics, "curves": m.curves})
    return out
