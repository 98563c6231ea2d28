"""The design the ensemble and uncertainty studies share: a tuned no-dropout arm and a tuned
dropout arm, each configuration trained as M members (seeds), and every prediction method
scored on the same replicate.

Arms (protocol search, equal budgets, :mod:`droplab.studies.protocol`):

- ``plain``: no dropout; tunes learning rate, decoupled weight decay, max-norm (``P.TUNE``);
- ``dropout``: the same plus the hidden rate ``U(0.1, 0.6)``. Input dropout stays off: the
  effect study finds it does not help on these inputs, and a larger space with the same
  budget would handicap the dropout arm (docs/readings/effect.md);
- ``long`` (ensemble study only): the ``dropout`` arm's configurations again, one member
  each, with the step cap and the patience multiplied by M ("one dropout net trained M
  times as long").

A trial is one (replicate, arm, configuration); ``run_group`` trains its M members with
member seeds ``derive(seed, "member", m)`` (member m of every arm and configuration shares
initialization and batch order) in one batched fit per (replicate, recipe). The row of a
trial holds member 0's protocol metrics (``val_error`` for the validation-only selection
of :func:`protocol.tuned`) and, per prediction method, the test metrics before and after
temperature scaling (:mod:`calibration`):

- ``ws``: member 0, deterministic (weight scaling);
- ``mc``: member 0, the mean of the softmax over ``samples`` dropout masks (dropout arms);
- ``ens``: the mean of the M members' softmax (weight scaling each);
- ``ensmc`` is not trained separately: M dropout nets are ``ens`` of the dropout arm.

Compute: ``steps`` (member 0's optimizer steps up to early stopping) and ``ens_steps``
(the sum over the M members).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import torch

from droplab import rng
from droplab.store import config_key
from droplab.studies import protocol as P
from droplab.studies.base import Trial
from droplab.studies.calibration import auroc, entropy, scaled, scores_ts

__all__ = [
    "ARMS",
    "OOD_KINDS",
    "disagreement",
    "group_key",
    "hold_out_class",
    "mc_logits",
    "run_group",
    "trials",
]

HIDDEN = P.Uniform(0.1, 0.6)
ARMS: dict[str, P.Arm] = {
    "plain": P.Arm("plain", "tuned, no dropout", P.TUNE),
    "dropout": P.Arm("dropout", "tuned, hidden dropout", {**P.TUNE, "hidden_rate": HIDDEN}),
}
#: the OOD sets of the uncertainty study, each its own cell
OOD_KINDS = ("class", "shuffled", "noise")


def trials(
    study: str,
    preset: str,
    seed: int,
    cell: P.Cell,
    budget: P.Budget,
    *,
    members: int,
    samples: int,
    long: bool,
    ood: bool,
    n_fit: int | None = None,
) -> list[Trial]:
    """Replicates x arms x configurations (``P.expand``) with ``members``, ``samples``
    (MC masks), ``ood``, ``n_fit`` (training points kept; the rest of ``cell.n_train``
    joins the validation split, :func:`widen_validation`) and ``long_factor`` (1, or M for
    the ``long`` arm) in the config."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise ValueError(f"members must be an int >= 2 (an ensemble), got {members!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples (MC masks) must be an int >= 2, got {samples!r}")
    base = P.expand(study, preset, seed, ARMS, [cell], budget)
    extra = {
        "members": members,
        "samples": samples,
        "ood": ood,
        "n_fit": n_fit,
        "long_factor": 1,
    }
    out = [Trial(t.study, {**t.config, **extra}, t.seed, t.preset) for t in base]
    if long:
        out += [
            Trial(
                t.study,
                {**t.config, **extra, "arm": "long", "members": 1, "long_factor": members},
                t.seed,
                t.preset,
            )
            for t in base
            if t.config["arm"] == "dropout"
        ]
    return out


def group_key(trial: Trial) -> Hashable:
    """One fit per (replicate, recipe): every arm, configuration and member."""
    skip = ("arm", "config", "members", *P.MEMBER_KEYS)
    return (trial.preset, trial.seed, config_key(trial.config, without=skip))


# -- predictions ---------------------------------------------------------------------------


def mc_logits(module: torch.nn.Module, x: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
    """Logits of ``samples`` dropout masks, ``(T, n, C)`` for x ``(n, ...)``; the masks come
    from torch's RNG seeded with ``derive(seed, "mc")`` inside ``fork_rng``."""
    from droplab import mc_predict

    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(rng.derive(seed, "mc"))
        return mc_predict(module, x, samples=samples)


def disagreement(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Disagreement of M predictors ``(M, n, C)``: ``raw`` = mean over pairs i < j of the
    fraction of rows whose argmax differs, ``error`` = the predictors' mean error, and
    ``normalized`` = raw / error (Fort, Hu & Lakshminarayanan 2019: disagreement per unit
    of member error, so weaker predictors are not counted as more diverse)."""
    pred = probs.argmax(-1)  # (M, n)
    pairs = list(itertools.combinations(range(pred.shape[0]), 2))
    raw = float(np.mean([(pred[i] != pred[j]).float().mean().item() for i, j in pairs]))
    err = float((pred != y).float().mean())
    return {"raw": raw, "error": err, "normalized": raw / err if err > 0 else math.nan}


# -- out-of-distribution sets --------------------------------------------------------------


def _raw(ds, x: torch.Tensor) -> torch.Tensor:
    return x if ds.standardization == "none" else x * ds.x_std + ds.x_mean


def _std(ds, x: torch.Tensor) -> torch.Tensor:
    return x if ds.standardization == "none" else (x - ds.x_mean) / ds.x_std


def hold_out_class(ds, cls: int):
    """``(in_distribution_dataset, x_class)``: ``ds`` without class ``cls`` (labels above it
    shifted down by one, standardization refitted on the remaining training points) and
    every example of ``cls`` from all three splits, standardized the same way."""
    from droplab.data.dataset import fit_standardization

    if ds.task != "classification" or not 0 <= cls < ds.n_classes:
        raise ValueError(f"held-out class must be in [0, {ds.n_classes}), got {cls!r}")
    if ds.standardization not in ("feature", "none"):
        raise ValueError(
            f"hold_out_class needs feature standardization, got {ds.standardization!r}"
        )
    splits = {
        s: (_raw(ds, getattr(ds, f"x_{s}")), getattr(ds, f"y_{s}"))
        for s in ("train", "val", "test")
    }
    x_tr, y_tr = splits["train"]
    mean, std = fit_standardization(x_tr[y_tr != cls].numpy(), "feature")
    mean_t, std_t = (
        torch.from_numpy(mean.astype(np.float32)),
        torch.from_numpy(std.astype(np.float32)),
    )
    changes: dict[str, Any] = {}
    ood = []
    for s, (x, y) in splits.items():
        keep = y != cls
        changes[f"x_{s}"] = (x[keep] - mean_t) / std_t
        changes[f"y_{s}"] = y[keep] - (y[keep] > cls).long()
        ood.append((x[~keep] - mean_t) / std_t)
    in_ds = dataclasses.replace(
        ds,
        n_classes=ds.n_classes - 1,
        x_mean=mean_t,
        x_std=std_t,
        standardization="feature",
        meta={**ds.meta, "held_out": int(cls)},
        **changes,
    )
    return in_ds, torch.cat(ood)


def ood_sets(ds, x_class: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """The OOD inputs of one replicate: ``class`` (the held-out class), ``shuffled`` (each
    in-distribution test input with its features permuted at random, in raw units: same
    values, no shape) and ``noise`` (features uniform on the training range, raw units)."""
    g = rng.generator(seed, "ood")
    raw = _raw(ds, ds.x_test)
    flat = raw.reshape(len(raw), -1)
    perm = torch.argsort(torch.rand(flat.shape, generator=g), dim=1)
    shuffled = flat.gather(1, perm).reshape(raw.shape)
    tr = _raw(ds, ds.x_train)
    lo, hi = tr.min(0).values, tr.max(0).values
    noise = lo + (hi - lo) * torch.rand(raw.shape, generator=g)
    return {"class": x_class, "shuffled": _std(ds, shuffled), "noise": _std(ds, noise)}


# -- the training --------------------------------------------------------------------------


def widen_validation(ds, n_fit: int, seed: int):
    """``ds`` with only ``n_fit`` of its training points (stratified, stream
    ``numpy_rng(seed, "calibration")``) and the rest appended to the validation split;
    standardization refitted on the ``n_fit`` points. A validation split large enough to
    hold errors is what temperature scaling fits T on: with a few validation errors (digits'
    144-point split often has none) the validation NLL falls as T -> 0, and the fitted T
    makes the test NLL worse, not better."""
    from droplab.data.dataset import fit_standardization, pick

    n = len(ds.y_train)
    if isinstance(n_fit, bool) or not isinstance(n_fit, int) or not 1 <= n_fit <= n:
        raise ValueError(f"n_fit must be an int in [1, {n}] (the training split), got {n_fit!r}")
    idx = torch.from_numpy(pick(ds.y_train.numpy(), n, n_fit, rng.numpy_rng(seed, "calibration")))
    rest = torch.ones(n, dtype=torch.bool)
    rest[idx] = False
    x_tr = _raw(ds, ds.x_train)
    mean, std = fit_standardization(x_tr[idx].numpy(), "feature")
    mean_t = torch.from_numpy(mean.astype(np.float32))
    std_t = torch.from_numpy(std.astype(np.float32))

    def z(x):
        return (x - mean_t) / std_t

    return dataclasses.replace(
        ds,
        x_train=z(x_tr[idx]),
        y_train=ds.y_train[idx],
        x_val=z(torch.cat([_raw(ds, ds.x_val), x_tr[rest]])),
        y_val=torch.cat([ds.y_val, ds.y_train[rest]]),
        x_test=z(_raw(ds, ds.x_test)),
        x_mean=mean_t,
        x_std=std_t,
        standardization="feature",
    )


def _data(c: dict[str, Any], seed: int):
    ds = P.load_data(c["dataset"], seed, c["n_train"], c.get("pool"))
    if c.get("n_fit"):
        ds = widen_validation(ds, int(c["n_fit"]), seed)
    if not c.get("ood"):
        return ds, None, None
    cls = rng.derive(seed, "held_out") % ds.n_classes  # resampled with the replicate
    ds, x_class = hold_out_class(ds, cls)
    return ds, ood_sets(ds, x_class, seed), cls


def _probs(module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x).softmax(-1)


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train one (replicate, recipe): every trial's M members in one fit; per trial, member
    0's protocol metrics and every method's test scores (before/after temperature
    scaling), its compute, disagreement, and (``ood``) AUROCs."""
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    seed = group[0].seed
    ds, ood, cls = _data(c, seed)
    factor = int(c["long_factor"])
    r = P.recipe(
        {
            **c,
            "n_train": len(ds.y_train),
            "max_steps": c["max_steps"] * factor,
            "patience_steps": c["patience_steps"] * factor,
        }
    )
    cfg = TrainConfig(
        epochs=r["epochs"],
        batch_size=c["batch_size"],
        optimizer="adamw",
        eval_every=r["eval_every"],
        patience=r["patience"],
        select="val_acc",
        curve_splits=("val",),
    )
    members, spans = [], []
    for t in group:
        spans.append((len(members), int(t.config["members"])))
        members += [
            MemberConfig(
                seed=rng.derive(seed, "member", m),
                input_rate=t.config["input_rate"],
                hidden_rate=t.config["hidden_rate"],
                lr=t.config["lr"],
                weight_decay=t.config["weight_decay"],
                max_norm=t.config["max_norm"],
            )
            for m in range(t.config["members"])
        ]
    result = fit(ModelSpec("mlp", widths=tuple(c["widths"])), ds, members, cfg, device=device)
    per_epoch = math.ceil(len(ds.y_train) / c["batch_size"])
    xv, yv = ds.x_val.to(device), ds.y_val.to(device)
    xt, yt = ds.x_test.to(device), ds.y_test.to(device)
    out = []
    for t, (k0, M) in zip(group, spans):
        m0 = result.members[k0]
        metrics = dict(m0.metrics)
        metrics["epochs_cap"] = float(r["epochs"])
        metrics["diverged"] = float(not math.isfinite(metrics.get("val_loss", math.nan)))
        steps = [result.members[k0 + m].metrics["stopped_epoch"] * per_epoch for m in range(M)]
        metrics["steps"] = float(steps[0])
        metrics["ens_steps"] = float(sum(steps))
        metrics["step_cap"] = float(r["epochs"] * per_epoch)
        nets = [result.module(k0 + m) for m in range(M)]
        preds: dict[str, dict[str, torch.Tensor]] = {"ws": {}, "ens": {}, "mc": {}}
        inputs = {
            "val": xv,
            "test": xt,
            **({} if ood is None else {k: v.to(device) for k, v in ood.items()}),
        }
        member_test = torch.stack([_probs(n, xt) for n in nets])  # (M, n, C)
        dropout = t.config["hidden_rate"] > 0 or t.config["input_rate"] > 0
        for split, x in inputs.items():
            preds["ws"][split] = _probs(nets[0], x)
            if M > 1:
                preds["ens"][split] = (
                    member_test if split == "test" else torch.stack([_probs(n, x) for n in nets])
                ).mean(0)
            if dropout:
                z = mc_logits(nets[0], x, int(t.config["samples"]), rng.derive(seed, "mc", split))
                preds["mc"][split] = z.softmax(-1).mean(0)
                if split == "test" and M > 1:  # M single masks vs M nets
                    for k, v in disagreement(z[:M].softmax(-1), yt).items():
                        metrics[f"div_masks_{k}"] = v
        if M > 1:
            for k, v in disagreement(member_test, yt).items():
                metrics[f"div_nets_{k}"] = v
        for method, p in preds.items():
            if not p:
                continue
            s = scores_ts(p["val"], yv, p["test"], yt)
            metrics.update({f"{method}_{k}": v for k, v in s.items()})
            if ood is not None:
                h_in = entropy(scaled(p["test"], s["temperature"])).cpu().numpy()
                for kind in OOD_KINDS:
                    h_out = entropy(scaled(p[kind], s["temperature"])).cpu().numpy()
                    metrics[f"{method}_auroc_{kind}"] = auroc(h_in, h_out)
        if cls is not None:
            metrics["held_out_class"] = float(cls)
            metrics["n_ood_class"] = float(len(ood["class"]))
        out.append({"metrics": metrics, "curves": m0.curves})
    return out
