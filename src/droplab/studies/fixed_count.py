"""fixed-count — a fixed probability vs a fixed number of active units.

Question (the research note):
    "p is the probability of elements staying active at each step (they use fixed
    probability, and not a fixed number of active elements)." Does it matter which?

Two ways to drop half of a layer. Bernoulli dropout keeps each of the H units
independently with probability keep, so the number kept is Binomial(H, keep); fixed-count
dropout (:class:`droplab.FixedCountDropout`) keeps exactly ``H - round(rate H)`` units,
a uniformly random subset per example, scaled by the exact kept fraction. Each unit's
marginal keep probability is the same; what changes is that the fixed-count mask
elements are negatively correlated (sampling without replacement), so the total
activation entering the next layer fluctuates less. The expected effect is a smaller
gradient noise for the same marginal rate, and the question is whether that changes
accuracy.

Grid. Variant (Bernoulli, fixed-count) x hidden rate, an MLP with dropout after every
hidden layer (input rate 0). Fixed-count dropout has no batched fast path, so both
variants train through the generic per-member path of ``fit`` (the same code, the same
initialization and batch order for a seed: paired by seed).

Training. Adam, cross-entropy, fixed epoch budget, weights of the best-validation-loss
epoch; test metrics of the deterministic net (both masks have mean 1 after scaling).

Gradient measurement. As in the ``gaussian`` study: for each (seed, rate), on the
Bernoulli-trained net of that seed and rate and one fixed batch of training examples,
:func:`droplab.theory.gradient_decomposition` gives, for each mask type, the noise
``trace Cov(g)`` of the gradient and its bias ``||E g - g_clean||`` (debiased for Monte
Carlo error).

Analysis. Per rate, paired by seed: fixed-count - Bernoulli test error (points) and NLL,
and the ratio fixed-count / Bernoulli of the gradient-noise trace, with 95% Student-t CIs.

Verdict. Whether a fixed count changes accuracy, and by how much it lowers the gradient
noise.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from droplab import rng
from droplab.findings import Findings
from droplab.store import canonical_json
from droplab.studies.base import Study, Trial
from droplab.studies.gaussian import grad_batch, gradient_metrics
from droplab.studies.stats import fmt_ci, mean_ci, paired_ci

__all__ = ["PRESETS", "QUESTION", "STUDY", "analyze", "rate_table", "run_group", "trials"]

QUESTION = (
    "p is the probability of elements staying active at each step (they use fixed "
    "probability, and not a fixed number of active elements). Does a fixed number of "
    "active elements behave differently?"
)
VARIANTS = ("bernoulli", "fixed-count")

# -- the grid ------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "dataset": "digits",
        "widths": [32],
        "rates": [0.5],
        "epochs": 4,
        "batch_size": 64,
        "lr": 3e-3,
        "grad_batch": 64,
        "grad_samples": 60,
        "eval_every": 1,
    },
    "standard": {
        "seeds": [0, 1, 2, 3, 4],
        "dataset": "mnist1d",
        "widths": [128, 128],
        "rates": [0.25, 0.5],
        "epochs": 30,
        "batch_size": 100,
        "lr": 3e-3,
        "grad_batch": 100,
        "grad_samples": 300,
        "eval_every": 2,
    },
    "full": {
        "seeds": list(range(10)),
        "dataset": "mnist1d",
        "widths": [256, 256],
        "rates": [0.1, 0.25, 0.5, 0.75],
        "epochs": 60,
        "batch_size": 100,
        "lr": 1e-3,
        "grad_batch": 100,
        "grad_samples": 1000,
        "eval_every": 1,
    },
}


def trials(preset: str) -> list[Trial]:
    """One trial per (variant, rate, seed)."""
    p = PRESETS[preset]
    base = {k: p[k] for k in ("dataset", "epochs", "batch_size", "lr", "grad_batch", "eval_every")}
    base.update(widths=list(p["widths"]), grad_samples=p["grad_samples"], data_seed=0)
    return [
        Trial("fixed-count", {**base, "variant": v, "rate": r}, s, preset)
        for v in VARIANTS
        for r in p["rates"]
        for s in p["seeds"]
    ]


def group_key(trial: Trial) -> str:
    """One group per rate: both variants and all seeds of it (one gradient reference)."""
    c = {k: v for k, v in trial.config.items() if k != "variant"}
    return trial.preset + canonical_json(c)


# -- the training and the gradient measurement ---------------------------------------------


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train both variants of one rate (generic path), then measure both masks' gradients
    on the Bernoulli-trained net of each seed."""
    from droplab import data as dl_data
    from droplab.models import ModelSpec, build
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds = dl_data.load(c["dataset"], seed=c["data_seed"])
    widths, rate = tuple(c["widths"]), c["rate"]
    specs = {v: ModelSpec("mlp", widths=widths, dropout=v) for v in VARIANTS}
    cfg = TrainConfig(
        epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], eval_every=c["eval_every"]
    )
    out: list[dict[str, Any]] = [{} for _ in group]
    modules: dict[tuple[str, int], Any] = {}
    for v in VARIANTS:
        ks = [k for k, t in enumerate(group) if t.config["variant"] == v]
        if not ks:
            continue

        def factory(input_shape, n_outputs, *, input_rate, hidden_rate, _spec=specs[v]):
            return build(
                _spec, input_shape, n_outputs, input_rate=input_rate, hidden_rate=hidden_rate
            )

        members = [MemberConfig(seed=group[k].seed, hidden_rate=rate) for k in ks]
        result = fit(factory, ds, members, cfg, device=device)
        for j, k in enumerate(ks):
            m = result.members[j]
            out[k] = {"metrics": dict(m.metrics), "curves": m.curves}
            modules[(v, group[k].seed)] = (result, j)
    index = {(t.config["variant"], t.seed): k for k, t in enumerate(group)}
    for (v, seed), (result, j) in modules.items():
        if v != "bernoulli":
            continue
        ref = result.module(j).cpu()
        batch = grad_batch(ds, c["grad_batch"], seed)
        for w in VARIANTS:
            if (w, seed) not in index:
                continue
            net = build(specs[w], tuple(ds.input_shape), ds.n_outputs, hidden_rate=rate)
            net.load_state_dict(ref.state_dict())
            metrics, _ = gradient_metrics(
                net, batch, c["grad_samples"], rng.derive(seed, "grad-masks", w)
            )
            out[index[(w, seed)]]["metrics"].update(metrics)
    return out


# -- the analysis --------------------------------------------------------------------------


def _ci(prefix: str, ci: tuple[float, float, float]) -> dict[str, float]:
    return {prefix: ci[0], f"{prefix}_lo": ci[1], f"{prefix}_hi": ci[2]}


def rate_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per rate: per-variant mean test error (%), paired fixed-count - Bernoulli
    differences of test error (points) and NLL, and per-seed ratios fixed-count /
    Bernoulli of the gradient-noise trace and of the (debiased) bias norm, with 95% CIs."""
    rows = []
    for rate, g in frame.groupby("rate"):
        p = {
            m: g.pivot_table(index="seed", columns="variant", values=m)
            for m in ("test_error", "test_nll", "grad_noise_trace", "grad_bias_norm")
        }
        b, f = "bernoulli", "fixed-count"
        row: dict[str, Any] = {"rate": rate, "seeds": int(p["test_error"].dropna().shape[0])}
        for v in VARIANTS:
            row.update(_ci(f"err_{v}", mean_ci(p["test_error"][v] * 100)))
        row.update(_ci("err_diff", paired_ci(p["test_error"][f] * 100, p["test_error"][b] * 100)))
        row.update(_ci("nll_diff", paired_ci(p["test_nll"][f], p["test_nll"][b])))
        row.update(_ci("noise_ratio", mean_ci(p["grad_noise_trace"][f] / p["grad_noise_trace"][b])))
        row.update(_ci("bias_ratio", mean_ci(p["grad_bias_norm"][f] / p["grad_bias_norm"][b])))
        rows.append(row)
    return pd.DataFrame(rows)


def _word(lo: float, hi: float, below: str, above: str, same: str) -> str:
    if math.isnan(lo):
        return same
    return below if hi < 0 else (above if lo > 0 else same)


def _ratio(m: float, lo: float, hi: float) -> str:
    return f"{m:.2f} [n/a]" if math.isnan(lo) else f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def _figure(table: pd.DataFrame) -> Any:
    import numpy as np

    from droplab.report import style

    fig, axes = style.figure(ncols=2, width=9.6, height=3.4)
    x = np.arange(len(table))
    for i, v in enumerate(VARIANTS):
        m = table[f"err_{v}"].to_numpy()
        lo, hi = table[f"err_{v}_lo"].to_numpy(), table[f"err_{v}_hi"].to_numpy()
        axes[0].bar(x + (i - 0.5) * 0.4, m, width=0.4, color=style.color(i), label=v)
        axes[0].errorbar(x + (i - 0.5) * 0.4, m, yerr=[m - lo, hi - m], fmt="none", ecolor="#333")
    axes[0].set_xticks(x, [f"{r:g}" for r in table["rate"]])
    axes[0].set(xlabel="rate P(drop)", ylabel="test error (%)")
    axes[0].legend()
    style.bars(
        axes[1],
        [f"{r:g}" for r in table["rate"]],
        table["noise_ratio"],
        table["noise_ratio_lo"],
        table["noise_ratio_hi"],
    )
    axes[1].axhline(1.0, color="#333333", linewidth=0.8)
    axes[1].set(xlabel="rate P(drop)", ylabel="trace Cov(g): fixed-count / Bernoulli")
    return fig


def analyze(frame: pd.DataFrame) -> Findings:
    """Per rate: accuracy and NLL differences and the gradient-noise ratio."""
    done = frame[frame["status"] == "finished"]
    failed = [
        f"{r.variant} rate {r.rate} seed {r.seed}: {r.status} "
        f"{'' if pd.isna(r.get('error')) else r.get('error')}".strip()
        for r in frame[frame["status"] != "finished"].itertuples()
    ]
    if done.empty:
        return Findings(
            "fixed-count", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    table = rate_table(done)
    acc, noise, differs, lower, higher = [], [], 0, 0, 0
    for r in table.itertuples():
        w = _word(r.err_diff_lo, r.err_diff_hi, "lower", "higher", "indistinguishable")
        differs += w != "indistinguishable"
        acc.append(
            f"rate {r.rate:g}: {w} error ("
            f"{fmt_ci(r.err_diff, r.err_diff_lo, r.err_diff_hi, digits=1)} pts; NLL "
            f"{fmt_ci(r.nll_diff, r.nll_diff_lo, r.nll_diff_hi, digits=3)})"
        )
        lower += not math.isnan(r.noise_ratio_hi) and r.noise_ratio_hi < 1
        higher += not math.isnan(r.noise_ratio_lo) and r.noise_ratio_lo > 1
        noise.append(f"{r.rate:g}: {_ratio(r.noise_ratio, r.noise_ratio_lo, r.noise_ratio_hi)}")
    n = len(table)
    head = (
        "A fixed number of active units makes no measurable difference to accuracy"
        if differs == 0
        else f"A fixed number of active units changes accuracy at {differs} of {n} rates"
    )
    if lower == n:
        effect = "lowers"
    elif higher == n:
        effect = "raises"
    elif lower == higher == 0:
        effect = "does not measurably change"
    else:
        effect = f"lowers (at {lower} of {n} rates) or raises (at {higher}) or leaves unchanged"
    verdict = (
        f"{head} (fixed-count minus Bernoulli: {'; '.join(acc)}); it {effect} the gradient "
        f"noise (trace Cov ratio fixed-count/Bernoulli on the same net and batch: "
        f"{'; '.join(noise)})."
    )
    first = table.iloc[(table["rate"] - 0.5).abs().argmin()]
    seeds = sorted(done["seed"].unique())
    c = done.iloc[0]
    method = (
        f"Data: {c['dataset']} (fixed split). Model: MLP {tuple(c['widths'])} (ReLU), dropout "
        "after every hidden layer (input rate 0): droplab.Dropout (Bernoulli, inverted) or "
        "droplab.FixedCountDropout (exactly round(rate*H) units dropped per example, scaled "
        "by the exact kept fraction). Training: generic path of droplab.train.fit for both, "
        f"Adam, cross-entropy, {c['epochs']} epochs, best-validation-loss epoch. Gradient: "
        "droplab.theory.gradient_decomposition on the Bernoulli-trained net of each (seed, "
        f"rate), a fixed batch of {c['grad_batch']} training examples, {c['grad_samples']} "
        f"masks per variant. Seeds: {len(seeds)}, shared by both variants (same "
        "initialization and batch order). CIs: 95% Student-t over seeds, paired by seed."
    )
    return Findings(
        study="fixed-count",
        question=QUESTION,
        verdict=verdict,
        key_number=(
            f"gradient-noise ratio fixed-count/Bernoulli at rate {first.rate:g}: "
            f"{_ratio(first.noise_ratio, first.noise_ratio_lo, first.noise_ratio_hi)}"
        ),
        table=table,
        figures={"fixed_count": _figure(table)},
        method=method,
        failed=failed,
        references=["srivastava2014"],
    )


STUDY = Study(
    name="fixed-count",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "FixedCountDropout vs Bernoulli dropout at the same rate on MLPs: accuracy, NLL "
        "and the gradient-noise trace measured on the same net and batch."
    ),
)
