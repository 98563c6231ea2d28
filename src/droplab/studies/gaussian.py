"""gaussian — does Gaussian dropout leave the gradient unchanged on average?

Question (the research note):
    "Gaussian dropout: instead of completely eliminating a node at each step, just multiply
    each activation by N(1, sigma). A cool thing is that it doesn't change the gradient on
    average, so nothing needs to be scaled. (What does it mean?)"

Matched variance. Inverted Bernoulli dropout multiplies a unit by ``m/keep`` (mean 1,
variance ``rate/(1-rate)``); Gaussian dropout by ``1 + sigma z`` with ``sigma^2 =
rate/(1-rate)``: the same first two moments (Srivastava et al. 2014, sec. 10). Both have
mean 1, so nothing is rescaled at test time: that is what "nothing needs to be scaled"
means. "Doesn't change the gradient on average" would mean ``E_u g(u) = g_0``, the
gradient of the noiseless net. For a nonlinear net it fails for any multiplicative noise:
the difference ``b = E g - g_0`` is dropout's regularization gradient, and to second order
in the noise it depends only on the variance (Wager, Wang & Liang 2013; Wei, Kakade & Ma
2020), so at matched variance the two noises should be biased alike.

Gradient measurement (:mod:`droplab.studies.gradient_trace`): for each replicate, width and
rate, a net trained with Bernoulli dropout from initialization (the Bernoulli arm's
validation-selected learning rate, weight decay and max-norm) is measured at checkpoints
along training (step 0, 10, 30, ..., up to its early stop) and at its selected weights:
on the same weights and the same fixed batch, the unbiased ``||b||^2`` and the noise
``trace Cov g`` of each noise from ``samples`` draws. Measuring only at the trained
optimum would make ``b`` about ``-g_0`` there; along training it is measured where ``g_0``
is large too.

Primary contrast (declared): the log of the ratio of RMS gradient biases along training,
``0.5 log(sum_t ||b_gauss(t)||^2 / sum_t ||b_bern(t)||^2)``, per replicate, at the
standard width and rate 0.5 (sigma = 1), paired by replicate (same weights, same batch).
Why this one: the note's sentence is a claim about the gradient; if it held, Gaussian
dropout's bias would be 0 while Bernoulli's is not (log ratio -> -inf); if the noises are
"the same regularizer", the ratio is 1. Margin ±0.2 (a factor 0.82-1.22): a bias within
±20% of Bernoulli's is the same regularization gradient for this question, which
distinguishes a factor of 1 from a factor of 0.

Secondary (Holm): the same log ratio at the other widths and rates; the log ratio of the
gradient-noise traces (margin ±0.2); tuned Gaussian − tuned Bernoulli test error (margin 1
point, the protocol's) and test NLL (0.02 nats): "the same regularizer" for accuracy is
called only by that equivalence test.

Accuracy arms (docs/statistics.md): Bernoulli and Gaussian dropout on an MLP, each tuning
learning rate, decoupled weight decay, max-norm and the hidden rate (Gaussian: sigma from
the rate, so every configuration is at matched variance) with the same number of
configurations, early stopping on validation, selected on validation only; a fresh data
draw per replicate. Both arms (and the measured trajectories) train through
:func:`droplab.studies.mask_mlp.train`, one code path for both noises and for the
``fixed-count`` study, whose masks ``droplab.train.fit`` cannot batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import gradient_study as G
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.stats import adjust, compare, compare_diffs, mean_ci

__all__ = ["MARGIN_LOG", "PRESETS", "QUESTION", "STUDY", "analyze", "trials"]

QUESTION = (
    "Gaussian dropout: instead of completely eliminating a node at each step, just multiply "
    "each activation by N(1, sigma). A cool thing is that it doesn't change the gradient on "
    "average, so nothing needs to be scaled. (What does it mean?)"
)
VARIANTS = ("bernoulli", "gaussian")
#: equivalence margin of the log ratios (bias, noise): ±0.2, a factor 0.82-1.22
MARGIN_LOG = 0.2
PRIMARY_RATE = 0.5

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "budget": P.BUDGETS["quick"],
        "dataset": "digits",
        "n_train": 800,
        "widths": [32],
        "depth": 2,
        "trace_widths": [32],
        "trace_rates": [0.5],
        "samples": 40,
        "grad_batch": 64,
    },
    "standard": {
        "budget": dataclasses.replace(
            P.BUDGETS["standard"], seeds=4, max_steps=2000, patience_steps=720
        ),
        "dataset": "mnist1d",
        "n_train": 3600,
        "widths": [64],
        "depth": 2,
        "trace_widths": [16, 64],
        "trace_rates": [0.25, 0.5, 0.75],
        "samples": 48,
        "grad_batch": 100,
    },
    "full": {
        "budget": P.BUDGETS["full"],
        "dataset": "mnist1d",
        "n_train": 3600,
        "widths": [128],
        "depth": 2,
        "trace_widths": [16, 64, 256],
        "trace_rates": [0.1, 0.25, 0.5, 0.75],
        "samples": 400,
        "grad_batch": 100,
    },
}


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """Accuracy and gradient trials of ``preset`` for root seed ``seed``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return G.make_trials("gaussian", preset, seed, VARIANTS, PRESETS[preset])


run_group = G.run_group

# -- the analysis ------------------------------------------------------------------------------


def _primary_width(grad: pd.DataFrame) -> int:
    return int(max(grad["trace_width"]))


def _cells(grad: pd.DataFrame) -> list[tuple[int, float]]:
    return sorted({(int(w), float(r)) for w, r in zip(grad["trace_width"], grad["trace_rate"])})


def _per_seed(grad: pd.DataFrame, w: int, r: float, col: str) -> np.ndarray:
    g = grad[(grad["trace_width"] == w) & (grad["trace_rate"] == r)].sort_values("seed")
    return g[col].to_numpy(float)


def _contrasts(done: pd.DataFrame, roots) -> list[Contrast]:
    grad = G.grad_rows(done)
    w0 = _primary_width(grad)
    log = {"unit": "log ratio", "margin": MARGIN_LOG, "root_seeds": roots}
    out = [
        compare_diffs(
            "bias_ratio",
            _per_seed(grad, w0, PRIMARY_RATE, "bias_log_ratio"),
            metric="grad_bias",
            primary=True,
            description=f"log(RMS gradient bias Gaussian / Bernoulli) along training, width "
            f"{w0}, rate {PRIMARY_RATE:g}",
            **log,
        )
    ]
    for w, r in _cells(grad):
        if (w, r) != (w0, PRIMARY_RATE):
            out.append(
                compare_diffs(
                    f"bias_ratio_w{w}_r{r:g}",
                    _per_seed(grad, w, r, "bias_log_ratio"),
                    metric="grad_bias",
                    description=f"log(RMS gradient bias Gaussian / Bernoulli), width {w}, rate {r:g}",
                    **log,
                )
            )
    for w, r in _cells(grad):
        out.append(
            compare_diffs(
                f"noise_ratio_w{w}_r{r:g}",
                _per_seed(grad, w, r, "noise_log_ratio"),
                metric="grad_noise",
                description=f"log(gradient-noise trace Gaussian / Bernoulli), width {w}, rate {r:g}",
                **log,
            )
        )
    acc = done[done["kind"] == "accuracy"]
    tg, tb = P.tuned(acc, ["gaussian"]), P.tuned(acc, ["bernoulli"])
    out.append(
        compare(
            "gaussian_vs_bernoulli",
            *P.paired(tg, tb, "test_error"),
            description="tuned Gaussian − tuned Bernoulli dropout, test error",
            **P.error_points(roots),
        )
    )
    out.append(
        compare(
            "gaussian_vs_bernoulli_nll",
            *P.paired(tg, tb, "test_nll"),
            description="tuned Gaussian − tuned Bernoulli dropout, test NLL",
            metric="test_nll",
            unit="nats",
            margin=0.02,
            root_seeds=roots,
        )
    )
    return adjust(out)


def trajectory_table(grad: pd.DataFrame) -> pd.DataFrame:
    """Per (width, rate): relative RMS bias along training of each noise, at init and at the
    selected weights (mean and 95% t interval over replicates), and the ratios."""
    rows = []
    for (w, r), g in grad.groupby(["trace_width", "trace_rate"]):
        row: dict[str, Any] = {"width": int(w), "rate": float(r), "replicates": len(g)}
        for v in VARIANTS:
            for col in (f"bias_rel_{v}", f"bias_rel_{v}_init", f"bias_rel_{v}_end"):
                m, lo, hi = mean_ci(g[col].to_numpy(float))
                row.update({col: m, f"{col}_lo": lo, f"{col}_hi": hi})
        row["bias_ratio"] = float(np.exp(g["bias_log_ratio"]).mean())
        row["noise_ratio"] = float(np.exp(g["noise_log_ratio"]).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _answer(primary: Contrast, table: pd.DataFrame) -> str:
    w, r = int(primary.description.split("width ")[1].split(",")[0]), PRIMARY_RATE
    row = table[(table["width"] == w) & (table["rate"] == r)].iloc[0]
    ratio = f"{np.exp(primary.estimate):.2f} [{np.exp(primary.ci_low):.2f}, {np.exp(primary.ci_high):.2f}]"
    gauss = f"{row.bias_rel_gaussian * 100:.0f}% [{row.bias_rel_gaussian_lo * 100:.0f}, {row.bias_rel_gaussian_hi * 100:.0f}]"
    head = {
        "equivalent": f"No: Gaussian dropout biases the gradient like Bernoulli does (bias ratio {ratio}, equivalent within a factor {np.exp(-primary.margin):.2f}-{np.exp(primary.margin):.2f})",
        "lowers": f"Partly: Gaussian dropout biases the gradient less than Bernoulli (bias ratio {ratio}, lowers)",
        "raises": f"No: Gaussian dropout biases the gradient more than Bernoulli (bias ratio {ratio}, raises)",
        "inconclusive": f"Inconclusive: the bias ratio Gaussian/Bernoulli is {ratio}",
    }[primary.call]
    return (
        f"{head}; its mean gradient departs from the noiseless one by {gauss} of the clean "
        f"gradient along training (width {w}, rate {r:g}); only the multiplier's mean is 1."
    )


def _figure(grad: pd.DataFrame, w: int) -> Any:
    from droplab.report import style

    fig, axes = style.figure(ncols=2, width=9.6, height=3.4)
    g = grad[(grad["trace_width"] == w) & (grad["trace_rate"] == PRIMARY_RATE)]
    for i, v in enumerate(VARIANTS):
        for _, row in g.iterrows():
            c = row["curves"]
            steps = np.maximum(np.asarray(c["step"]), 1.0)
            rel = np.sqrt(
                np.maximum(np.asarray(c[f"bias_sq_{v}"]), 0) / np.asarray(c[f"clean_sq_{v}"])
            )
            axes[0].plot(
                steps, rel, color=style.color(i), alpha=0.5, label=v if _ == g.index[0] else None
            )
            axes[1].plot(steps, c[f"noise_{v}"], color=style.color(i), alpha=0.5)
    axes[0].set(
        xscale="log", xlabel="training step (0 shown at 1)", ylabel="||E g - g_0|| / ||g_0||"
    )
    axes[0].set_title(f"gradient bias, width {w}, rate {PRIMARY_RATE:g}")
    axes[1].set(xscale="log", yscale="log", xlabel="training step", ylabel="trace Cov(g)")
    axes[1].set_title("gradient noise")
    axes[0].legend()
    return fig


def analyze(frame: pd.DataFrame) -> Findings:
    """The bias and noise ratios along training, and the tuned accuracy contrast."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        done, stale = P.current(done, PRESETS[str(done["preset"].iloc[0])]["budget"])
    if done.empty or G.grad_rows(done).empty or (done["kind"] == "accuracy").sum() == 0:
        return Findings(
            "gaussian", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    roots = P.root_seeds(done)
    contrasts = _contrasts(done, roots)
    grad = G.grad_rows(done)
    table = trajectory_table(grad)
    answer = _answer(contrasts[0], table)
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    acc = done[done["kind"] == "accuracy"]
    method = (
        f"{acc['dataset'].iloc[0]}, n={int(acc['n_train'].iloc[0])}, a fresh data draw per "
        f"replicate; root seeds {', '.join(map(str, roots))}; {contrasts[0].n_seeds} replicates. "
        f"Accuracy: MLP {tuple(acc['widths'].iloc[0])}, each arm tuned with "
        f"{int(acc['config'].max()) + 1} configurations (lr, AdamW weight decay, max-norm, "
        f"hidden rate in [0.1, 0.7]), early stopping on validation error, up to "
        f"{int(acc['max_steps'].iloc[0])} steps. Gradient: nets of depth 2 and widths "
        f"{sorted(set(grad['trace_width']))} trained with Bernoulli dropout at rates "
        f"{sorted(set(grad['trace_rate']))} (the Bernoulli arm's selected lr, weight decay, "
        f"max-norm), measured at steps {', '.join(map(str, G.CHECKPOINTS))} before the early "
        f"stop and at the selected weights, {int(grad['samples'].iloc[0])} noise draws per "
        f"noise on a fixed batch of {int(grad['grad_batch'].iloc[0])} training examples "
        f"(unbiased ||b||^2). CIs: 95% t over replicates; log-ratio margin ±{MARGIN_LOG}, "
        f"±1 point, ±0.02 nats; secondaries Holm-adjusted."
    )
    return Findings(
        study="gaussian",
        question=QUESTION,
        verdict=answer + " " + "; ".join(lines[1:]) + ".",
        key_number=contrasts[0].short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures={"gradient": _figure(grad, _primary_width(grad))},
        method=method,
        extra_tables={
            "gradient bias along training (relative to the clean gradient)": table.round(4)
        },
        failed=failed,
        references=["srivastava2014", "wager2013", "wei2020"],
        answer=answer,
        contrasts=contrasts,
        notes=P.cap_note(acc, "gaussian") + stale,
    )


STUDY = Study(
    name="gaussian",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=G.group_key,
    description=(
        "Bernoulli vs Gaussian dropout at matched variance: the gradient's bias and noise "
        "along training (same weights, same batch) at several widths and rates, and tuned "
        "accuracy with an equivalence call."
    ),
    seeded=True,
)
