"""The design shared by the ``gaussian`` and ``fixed-count`` studies: two dropout variants
as tuned arms (accuracy), and the gradient of both variants measured along training.

Trials of one replicate (one group, one data draw from :func:`protocol.load_data`):

- ``kind="accuracy"``: arm = the variant, one trial per (cell width, arm, configuration);
  each arm tunes learning rate, decoupled weight decay, max-norm (``protocol.TUNE``) and
  the hidden rate with the same number of Halton configurations; trained to convergence
  (early stopping on validation error, step cap), selected on validation only.
- ``kind="gradient"``: one trial per (trace width, trace rate). A net of that width is
  trained with Bernoulli dropout at that rate from initialization, with the learning
  rate, weight decay and max-norm that validation selected for the Bernoulli arm of the
  same replicate (so the measured nets are trained the way a tuned net is, and no arm's
  test score enters); at each checkpoint before its early stop and at its selected
  weights, both variants' gradients are measured on the same weights and the same fixed
  batch (:func:`gradient_trace.measure`).

All training runs through :func:`mask_mlp.train` (both arms the same code).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from droplab import rng
from droplab.studies import protocol as P
from droplab.studies.base import Trial
from droplab.studies.gradient_trace import CHECKPOINTS, measure
from droplab.studies.mask_mlp import Member, train

__all__ = ["HIDDEN", "grad_rows", "group_key", "make_trials", "run_group", "trajectory_summary"]

#: the hidden-rate range every arm tunes over
HIDDEN = P.Uniform(0.1, 0.7)


def make_trials(
    study: str,
    preset: str,
    seed: int,
    variants: Sequence[str],
    p: Mapping[str, Any],
) -> list[Trial]:
    """Accuracy trials (``P.expand`` of one arm per variant, one cell per width in
    ``p["widths"]``, depth ``p["depth"]``) and gradient trials (``p["trace_widths"]`` x
    ``p["trace_rates"]``) of every replicate of root seed ``seed``."""
    budget: P.Budget = p["budget"]
    arms = {v: P.Arm(v, f"tuned {v} dropout", {**P.TUNE, "hidden_rate": HIDDEN}) for v in variants}
    cells = [
        P.Cell(p["dataset"], p["n_train"], (w,) * p["depth"], tuple(arms)) for w in p["widths"]
    ]
    out = [
        Trial(t.study, {**t.config, "kind": "accuracy", "variant": t.config["arm"]}, t.seed, preset)
        for t in P.expand(study, preset, seed, arms, cells, budget)
    ]
    for i in range(budget.seeds):
        rs = P.replicate_seed(seed, i)
        for w in p["trace_widths"]:
            for r in p["trace_rates"]:
                config = {
                    "kind": "gradient",
                    "dataset": p["dataset"],
                    "n_train": p["n_train"],
                    "trace_width": w,
                    "trace_rate": r,
                    "depth": p["depth"],
                    "variants": list(variants),
                    "samples": p["samples"],
                    "grad_batch": p["grad_batch"],
                    "ref_width": p["widths"][0],
                    **{k: getattr(budget, k) for k in P.RECIPE},
                    "pool": budget.pool.get(p["dataset"]),
                    "root_seed": int(seed),
                    "replicate": i,
                }
                out.append(Trial(study, config, rs, preset))
    return out


def group_key(trial: Trial) -> Hashable:
    """Every trial of one replicate in one group (one data draw; the gradient trials read
    the Bernoulli arm's selected configuration)."""
    return (trial.preset, trial.seed)


def _members(trials: Sequence[Trial]) -> list[Member]:
    return [
        Member(
            seed=t.seed,
            variant=t.config["variant"],
            rate=t.config["hidden_rate"],
            lr=t.config["lr"],
            weight_decay=t.config["weight_decay"],
            max_norm=t.config["max_norm"],
        )
        for t in trials
    ]


def _recipe(c: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(c[k]) for k in ("max_steps", "eval_steps", "patience_steps", "batch_size")}


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train the accuracy arms (one stack per width), then the gradient trajectories."""
    c0 = group[0].config
    ds = P.load_data(c0["dataset"], group[0].seed, c0["n_train"], c0.get("pool"))
    out: list[dict[str, Any]] = [{} for _ in group]
    acc = [k for k, t in enumerate(group) if t.config["kind"] == "accuracy"]
    ref: dict[int, dict[str, Any]] = {}  # width -> the Bernoulli arm's selected config
    for w in sorted({group[k].config["widths"][0] for k in acc}):
        ks = [k for k in acc if group[k].config["widths"][0] == w]
        c = group[ks[0]].config
        r = _recipe(c)
        metrics, _ = train(ds, c["widths"], _members([group[k] for k in ks]), **r)
        for k, m in zip(ks, metrics):
            m["diverged"] = float(not math.isfinite(m["val_loss"]))
            out[k] = {"metrics": m}
        bern = [(metrics[j]["val_error"], metrics[j]["val_loss"], k) for j, k in enumerate(ks)]
        bern = [b for b in bern if group[b[2]].config["variant"] == "bernoulli"]
        if bern:
            ref[w] = group[min(bern)[2]].config
    grad = [k for k, t in enumerate(group) if t.config["kind"] == "gradient"]
    for w in sorted({group[k].config["trace_width"] for k in grad}):
        ks = [k for k in grad if group[k].config["trace_width"] == w]
        c = group[ks[0]].config
        hp = ref.get(c["ref_width"]) or next(iter(ref.values()), None)
        if hp is None:
            raise ValueError("gradient trials need the Bernoulli accuracy arm in the same group")
        rates = [group[k].config["trace_rate"] for k in ks]
        members = [
            Member(group[k].seed, "bernoulli", r, hp["lr"], hp["weight_decay"], hp["max_norm"])
            for k, r in zip(ks, rates)
        ]
        metrics, saved = train(
            ds, (w,) * c["depth"], members, checkpoints=CHECKPOINTS, **_recipe(c)
        )
        curves = _trace(ds, saved, metrics, c, rates, group[ks[0]].seed)
        for j, k in enumerate(ks):
            m = {f"trace_{a}": b for a, b in metrics[j].items()}
            m.update(lr=hp["lr"], weight_decay=hp["weight_decay"])
            cj = {name: list(v[j]) for name, v in curves.items() if name != "step"}
            cj["step"] = list(curves["step"][j])
            m.update(trajectory_summary(cj, c["variants"]))
            out[k] = {"metrics": m, "curves": cj}
    return out


def _trace(ds, saved, metrics, c, rates, seed) -> dict[str, list[list[float]]]:
    """Per member: the measured steps (checkpoints before its selected step, then the
    selected weights) and, per variant, ``clean_sq``, ``bias_sq``, ``noise`` at each."""
    k = len(rates)
    x = ds.x_train.reshape(ds.x_train.shape[0], -1).float()
    idx = torch.randperm(x.shape[0], generator=rng.generator(seed, "grad-batch"))[: c["grad_batch"]]
    xb = x[idx].expand(k, -1, -1)  # (K, B, D)
    yb = ds.y_train[idx].expand(k, -1)
    r = torch.tensor(rates)
    curves: dict[str, list[list[float]]] = {"step": [[] for _ in range(k)]}
    for step, params in sorted(saved.items(), key=lambda s: (s[0] < 0, s[0])):
        res = {
            v: measure(
                params, xb, yb, v, r, c["samples"], rng.generator(seed, "grad-masks", v, step)
            )
            for v in c["variants"]
        }
        for j in range(k):
            best = metrics[j]["best_step"]
            if step >= 0 and step >= best:
                continue  # the selected weights come as step -1 (shown as best_step)
            curves["step"][j].append(float(best if step < 0 else step))
            for v, m in res.items():
                for name in ("clean_sq", "bias_sq", "noise"):
                    curves.setdefault(f"{name}_{v}", [[] for _ in range(k)])[j].append(
                        float(m[name][j])
                    )
    return curves


def trajectory_summary(
    curves: Mapping[str, Sequence[float]], variants: Sequence[str]
) -> dict[str, float]:
    """Per-trajectory summaries over the measured steps t (the second variant vs the first):

    - ``bias_rel_<v> = sqrt(max(0, sum_t bias_sq) / sum_t clean_sq)``: the RMS bias along
      training relative to the RMS clean gradient;
    - ``bias_log_ratio = 0.5 log(sum_t bias_sq_2 / sum_t bias_sq_1)`` (the log of the
      ratio of RMS biases; sums floored at 1e-30);
    - ``noise_log_ratio = log(sum_t noise_2 / sum_t noise_1)``;
    - ``noise_rel_diff = mean_t (noise_2 - noise_1) / noise_1``;
    - ``bias_rel_<v>_init`` / ``_end``: ``sqrt(max(0, bias_sq) / clean_sq)`` at step 0
      and at the selected weights.
    """
    a, b = variants[0], variants[1]
    out: dict[str, float] = {}
    for v in variants:
        bs, cs = np.asarray(curves[f"bias_sq_{v}"]), np.asarray(curves[f"clean_sq_{v}"])
        out[f"bias_rel_{v}"] = math.sqrt(max(0.0, bs.sum()) / max(cs.sum(), 1e-30))
        out[f"bias_rel_{v}_init"] = math.sqrt(max(0.0, bs[0]) / max(cs[0], 1e-30))
        out[f"bias_rel_{v}_end"] = math.sqrt(max(0.0, bs[-1]) / max(cs[-1], 1e-30))
    sa = max(float(np.sum(curves[f"bias_sq_{a}"])), 1e-30)
    sb = max(float(np.sum(curves[f"bias_sq_{b}"])), 1e-30)
    out["bias_log_ratio"] = 0.5 * math.log(sb / sa)
    na, nb = np.asarray(curves[f"noise_{a}"]), np.asarray(curves[f"noise_{b}"])
    out["noise_log_ratio"] = math.log(nb.sum() / na.sum())
    out["noise_rel_diff"] = float(np.mean((nb - na) / na))
    return out


def grad_rows(done: pd.DataFrame) -> pd.DataFrame:
    """The finished gradient trials of a study's frame."""
    return done[done["kind"] == "gradient"] if "kind" in done else done.iloc[:0]
