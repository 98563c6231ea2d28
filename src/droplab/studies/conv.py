"""conv — does dropout work on convolutional networks?

Question (the research note):
    "There's a claim that dropout should not be used on convolutional networks, because it
    does not actually work (does not inactivate elements), as convolution introduces
    coordination between changes in different weights."

Why it might not. Neighbouring positions of a conv feature map are strongly correlated,
so a unit dropped at one position is largely recovered from its neighbours: element-wise
dropout removes little information. Two structured variants answer this: SpatialDropout
drops whole channels (Tompson et al. 2015), DropBlock drops contiguous blocks (Ghiasi,
Lin & Le 2018). Where dropout sits matters too: after the conv layers, or only on the
features that feed the linear classifier.

Grid. Per net, "none" plus every (variant, placement, rate): variants element-wise
Bernoulli :class:`droplab.Dropout`, :class:`droplab.SpatialDropout`,
:class:`droplab.DropBlock`; placements ``"conv"`` (after every conv layer but the last)
and ``"classifier"`` (only after the last conv layer, feeding the classifier). Nets: the
MNIST-1D CNN of Greydanus (2020) (three conv layers of 25 channels, kernels 5/3/3,
stride 2) and a two-layer CNN2d on the 8x8 digits images (stride 1). Input rate 0.

Training. CNNs train on the batched path of ``droplab.train.fit`` (``StackedCNN``: one
grouped convolution for all seeds of an arm; ``standard`` evaluates every 2nd epoch):
Adam, cross-entropy, a fixed epoch budget per net (the MNIST-1D CNN with lr 1e-2, which
it needs to converge within ~20 epochs), weights of the best-validation-loss epoch,
deterministic test metrics. For a seed, every arm of a net shares the initialization
(dropout layers have no parameters) and the batch order: arms are paired by seed.

Analysis. Per net and arm, the paired (same seed) difference of test error to "none" in
points with its 95% Student-t CI and the paired t-test's p-value. The study makes many
comparisons (24 at ``standard``: 2 nets x 3 variants x 2 placements x 2 rates), so an arm
"helps" or "hurts" only when its Holm-adjusted p-value over all of them is below 0.05
(family-wise error 5%; Holm 1979); otherwise "no measurable effect". The uncorrected call
(CI excludes 0) is kept in the table as ``effect_uncorrected``: in an earlier run one
arm's uncorrected CI excluded 0 (-3.3 [-4.9, -1.7] pts, p = 0.007) and the rerun did not
reproduce it (docs/findings.md).

Verdict. Per net and variant: in how many settings it helps / hurts, and its best
setting with its CI; and whether element-wise dropout, the note's target, helps anywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Findings
from droplab.studies.base import Study, Trial
from droplab.studies.stats import fmt_ci, holm, mean_ci, paired_ci, paired_p

__all__ = [
    "PRESETS",
    "QUESTION",
    "STUDY",
    "VARIANTS",
    "analyze",
    "arm_table",
    "run_group",
    "trials",
]

QUESTION = (
    "There's a claim that dropout should not be used on convolutional networks, because it "
    "does not actually work (does not inactivate elements), as convolution introduces "
    "coordination between changes in different weights. Is that so?"
)
ALPHA = 0.05  # family-wise error rate of the "helps"/"hurts" calls (Holm over all arms)

VARIANTS = ("bernoulli", "spatial", "dropblock")
_LABEL = {
    "bernoulli": "element-wise Dropout",
    "spatial": "SpatialDropout",
    "dropblock": "DropBlock",
}

# -- the grid ------------------------------------------------------------------------------

#: nets: (dataset, kind, conv widths, stride, DropBlock block size, epochs, Adam lr)
_MNIST1D = ("mnist1d", "cnn1d", [25, 25, 25], 2, 3, 20, 1e-2)
_DIGITS = ("digits-image", "cnn2d", [16, 32], 1, 3, 15, 2e-3)

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "nets": [("digits-image", "cnn2d", [8, 16], 1, 3, 3, 3e-3)],
        "placements": ["conv", "classifier"],
        "rates": [0.2],
        "batch_size": 64,
        "eval_every": 1,
    },
    "standard": {
        "seeds": [0, 1, 2, 3],
        "nets": [_MNIST1D, _DIGITS],
        "placements": ["conv", "classifier"],
        "rates": [0.1, 0.3],
        "batch_size": 100,
        "eval_every": 2,
    },
    "full": {
        "seeds": list(range(10)),
        "nets": [
            ("mnist1d", "cnn1d", [25, 25, 25], 2, 3, 60, 5e-3),
            ("digits-image", "cnn2d", [16, 32], 1, 3, 40, 1e-3),
        ],
        "placements": ["conv", "classifier", "all"],
        "rates": [0.05, 0.1, 0.2, 0.3, 0.5],
        "batch_size": 100,
        "eval_every": 1,
    },
}


def trials(preset: str) -> list[Trial]:
    """One trial per (net, arm, seed); an arm is "none" or (variant, placement, rate)."""
    p = PRESETS[preset]
    arms = [("none", "none", 0.0)] + [
        (v, pl, r) for v in VARIANTS for pl in p["placements"] for r in p["rates"]
    ]
    out = []
    for dataset, kind, widths, stride, block, epochs, lr in p["nets"]:
        for variant, placement, rate in arms:
            config = {
                "dataset": dataset,
                "kind": kind,
                "widths": list(widths),
                "stride": stride,
                "block_size": block,
                "variant": variant,
                "placement": placement,
                "rate": rate,
                "epochs": epochs,
                "batch_size": p["batch_size"],
                "lr": lr,
                "eval_every": p["eval_every"],
                "data_seed": 0,
            }
            out.extend(Trial("conv", config, s, preset) for s in p["seeds"])
    return out


# -- the training ----------------------------------------------------------------------------


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """All seeds of one (net, arm): one batched fit call."""
    from droplab import data as dl_data
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds = dl_data.load(c["dataset"], seed=c["data_seed"])
    spec = ModelSpec(
        c["kind"],
        widths=tuple(c["widths"]),
        dropout="bernoulli" if c["variant"] == "none" else c["variant"],
        placement=c["placement"],
        stride=c["stride"],
        block_size=c["block_size"],
    )
    cfg = TrainConfig(
        epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], eval_every=c["eval_every"]
    )
    members = [MemberConfig(seed=t.seed, hidden_rate=c["rate"]) for t in group]
    result = fit(spec, ds, members, cfg, device=device)
    return [{"metrics": m.metrics, "curves": m.curves} for m in result.members]


# -- the analysis ------------------------------------------------------------------------------


def arm_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (net, variant, placement, rate): mean test error (%) with its CI, the
    paired difference to "none" (points) with its 95% CI, the paired t-test's p-value,
    its Holm-adjusted value over all dropout arms of the study (``p_holm``), and the effect
    word: "helps"/"hurts" when ``p_holm < ALPHA`` (``effect_uncorrected``: when the
    uncorrected CI excludes 0).
    ``frame``: finished trials with ``dataset, kind, variant, placement, rate, seed,
    test_error``."""
    rows = []
    for (dataset, kind), g in frame.groupby(["dataset", "kind"], sort=False):
        err = (
            g.pivot_table(
                index="seed", columns=["variant", "placement", "rate"], values="test_error"
            )
            * 100
        )  # (seeds, arms), percent
        none = err[("none", "none", 0.0)] if ("none", "none", 0.0) in err else None
        for arm in err.columns:
            m, lo, hi = mean_ci(err[arm])
            row = {
                "dataset": dataset,
                "kind": kind,
                "variant": arm[0],
                "placement": arm[1],
                "rate": arm[2],
                "seeds": int(err[arm].notna().sum()),
                "test_error_pct": m,
                "ci_lo": lo,
                "ci_hi": hi,
            }
            if none is not None and arm[0] != "none":
                ok = err[arm].notna() & none.notna()
                d, dlo, dhi = paired_ci(err.loc[ok, arm], none[ok])
                uncorrected = (
                    "no measurable effect"
                    if math.isnan(dlo) or dlo <= 0 <= dhi
                    else ("helps" if dhi < 0 else "hurts")
                )
                row.update(
                    vs_none_pts=d,
                    vs_none_lo=dlo,
                    vs_none_hi=dhi,
                    p_value=paired_p(err.loc[ok, arm], none[ok]),
                    effect_uncorrected=uncorrected,
                )
            rows.append(row)
    table = pd.DataFrame(rows)
    if "p_value" in table:
        # one family: every dropout arm of every net against its net's no-dropout arm
        table["p_holm"] = holm(table["p_value"].to_numpy(dtype=float))
        sig = table["p_holm"] < ALPHA
        table["effect"] = np.where(
            table["p_value"].isna(),
            None,
            np.where(
                ~sig, "no measurable effect", np.where(table["vs_none_pts"] < 0, "helps", "hurts")
            ),
        )
    return table


def _figure(table: pd.DataFrame) -> Any:
    from droplab.report import style

    nets = list(dict.fromkeys(zip(table["dataset"], table["kind"])))
    fig, axes = style.figure(ncols=len(nets), width=5.2 * len(nets), height=3.6)
    axes = np.atleast_1d(axes)
    for ax, (dataset, kind) in zip(axes, nets):
        t = table[(table["dataset"] == dataset) & (table["kind"] == kind)]
        t = t[t["variant"] != "none"]
        settings = list(dict.fromkeys(zip(t["placement"], t["rate"])))
        x = np.arange(len(settings))
        w = 0.8 / len(VARIANTS)
        for i, v in enumerate(VARIANTS):
            tv = t[t["variant"] == v].set_index(["placement", "rate"]).reindex(settings)
            m = tv["vs_none_pts"].to_numpy(dtype=float)
            lo, hi = tv["vs_none_lo"].to_numpy(dtype=float), tv["vs_none_hi"].to_numpy(dtype=float)
            pos = x + (i - (len(VARIANTS) - 1) / 2) * w
            ax.bar(pos, m, width=w, color=style.color(i), label=_LABEL[v])
            ax.errorbar(pos, m, yerr=[m - lo, hi - m], fmt="none", ecolor="#333333")
        ax.axhline(0, color="#333333", linewidth=0.8)
        ax.set_xticks(x, [f"{pl}\n{r:g}" for pl, r in settings])
        ax.set(
            xlabel="placement / rate",
            ylabel="test error vs none (pts)",
            title=f"{dataset} {kind}",
        )
        ax.legend()
    return fig


def analyze(frame: pd.DataFrame) -> Findings:
    """Per net and variant: how often it helps or hurts, and its best setting."""
    done = frame[frame["status"] == "finished"]
    failed = [
        f"{r.dataset} {r.variant}/{r.placement} rate {r.rate} seed {r.seed}: {r.status} "
        f"{'' if pd.isna(r.get('error')) else r.get('error')}".strip()
        for r in frame[frame["status"] != "finished"].itertuples()
    ]
    if done.empty:
        return Findings("conv", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed)
    table = arm_table(done)
    parts, key_number, key_best = [], "", math.inf
    elementwise_helps = elementwise_uncorrected = 0
    for (dataset, kind), t in table.groupby(["dataset", "kind"], sort=False):
        base = t[t["variant"] == "none"]
        texts = []
        for v in VARIANTS:
            tv = t[t["variant"] == v]
            if tv.empty or "effect" not in tv:
                continue
            helps = int((tv["effect"] == "helps").sum())
            hurts = int((tv["effect"] == "hurts").sum())
            best = tv.loc[tv["vs_none_pts"].idxmin()]
            diff = fmt_ci(best.vs_none_pts, best.vs_none_lo, best.vs_none_hi, digits=1)
            texts.append(
                f"{_LABEL[v]} helps in {helps} and hurts in {hurts} of {len(tv)} settings "
                f"(best: {best.placement} at rate {best.rate:g}, {diff} pts)"
            )
            if v == "bernoulli":
                elementwise_helps += helps
                elementwise_uncorrected += int((tv["effect_uncorrected"] == "helps").sum())
                if best.vs_none_pts < key_best:  # the net where it does best
                    key_best = best.vs_none_pts
                    key_number = (
                        f"element-wise dropout vs none, best setting ({dataset} {kind}, "
                        f"{best.placement} {best.rate:g}): {diff} pts"
                    )
        none_err = f"{base['test_error_pct'].iloc[0]:.1f}%" if len(base) else "n/a"
        parts.append(f"{dataset} {kind} (no dropout {none_err}): {'; '.join(texts)}")
    lead = (
        "The claim does not hold here: element-wise dropout lowers the test error of a CNN "
        f"significantly in {elementwise_helps} setting{'s' if elementwise_helps != 1 else ''}"
        if elementwise_helps
        else "Consistent with the claim, element-wise dropout lowers the test error of no CNN "
        "setting significantly"
    )
    m = int(table["p_value"].notna().sum()) if "p_value" in table else 0
    note = f" Calls are Holm-corrected over the {m} comparisons (family-wise 5%)."
    if m:
        unc = table["effect_uncorrected"]
        u_help, u_hurt = int((unc == "helps").sum()), int((unc == "hurts").sum())
        c_help = int((table["effect"] == "helps").sum())
        c_hurt = int((table["effect"] == "hurts").sum())
        if (u_help, u_hurt) != (c_help, c_hurt):
            note += (
                f" Uncorrected 95% CIs would call {u_help} setting{'s' if u_help != 1 else ''} "
                f"helpful (element-wise dropout: {elementwise_uncorrected}) and {u_hurt} "
                "harmful."
            )
    verdict = f"{lead}. Per net (vs no dropout, paired by seed): {'. '.join(parts)}.{note}"
    seeds = sorted(done["seed"].unique())
    recipe = "; ".join(
        f"{d} {k}: {int(e)} epochs, lr {lr:g}"
        for (d, k, e, lr), _ in done.groupby(["dataset", "kind", "epochs", "lr"], sort=False)
    )
    method = (
        "Nets: MNIST-1D CNN1d (conv 25/25/25, kernels 5/3/3, stride 2, Greydanus 2020) and "
        "a digits 8x8 CNN2d (stride 1), ReLU, one linear classifier. Dropout after every "
        "conv layer but the last ('conv') or only after the last ('classifier'); "
        "element-wise droplab.Dropout, droplab.SpatialDropout (whole channels), "
        "droplab.DropBlock (blocks of 3). Training: batched path of droplab.train.fit, "
        f"Adam, cross-entropy ({recipe}), "
        f"best-validation-loss epoch, deterministic test metrics. Seeds: {len(seeds)}, "
        "shared by all arms of a net (same initialization and batch order). CIs: 95% "
        "Student-t over seeds; differences to 'none' paired by seed; 'helps'/'hurts' = "
        f"Holm-adjusted paired t-test p < {ALPHA:g} over the study's "
        f"{int(table['p_value'].notna().sum()) if 'p_value' in table else 0} comparisons "
        "(the CIs are per comparison, uncorrected)."
    )
    return Findings(
        study="conv",
        question=QUESTION,
        verdict=verdict,
        key_number=key_number,
        table=table,
        figures={"vs_none": _figure(table)},
        method=method,
        failed=failed,
        references=["srivastava2014", "tompson2015", "ghiasi2018", "greydanus2020"],
    )


STUDY = Study(
    name="conv",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    description=(
        "CNNs (MNIST-1D CNN1d, digits CNN2d): none vs element-wise Dropout vs "
        "SpatialDropout vs DropBlock, after the conv layers or only before the classifier, "
        "at several rates; paired differences to no dropout."
    ),
)
