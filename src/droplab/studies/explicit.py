"""explicit — is dropout strictly better than L2, or the same as its explicit penalty?

Question (the research note):
    "If dropout is similar to regularization, is it strictly better than regularization,
    or is it the same? If we explicitly add this wI^2-proportional (but fixed)
    regularization, will it give the same result? I'm guessing the answer is 'no', but
    why?"

Where the question has an answer. For logistic regression with dropout on the inputs,
dropout is to second order an *adaptive* L2 penalty: L2 after scaling feature j by the
root of its diagonal Fisher information ``sum_i s_i x_ij^2``, ``s_i = sigma_i (1 -
sigma_i)`` (Wager, Wang & Liang 2013). It differs from plain L2 exactly where features
differ in scale or activity, and Helmbold & Long (2015) prove that neither is better on
every distribution: some sources favour dropout, others L2. So "strictly better" is
answered per distribution, one cell each (``explicit_logistic.SOURCES``): ``rare`` (rare
but strongly informative binary features next to common weak ones, Wager et al.'s case),
``small_signal`` and ``large_signal`` (informative features on a small or a large scale:
the scale mechanism behind Helmbold & Long's two kinds of source; our constructions, not
their exact ones), ``isotropic`` (standardized features, where only the Fisher weights
s_i separate the two).

Arms (``explicit_fit``; every replicate a fresh draw of train, validation and test data;
all arms of a replicate share it): tuned L2 = decoupled weight decay with SGD and with
AdamW, each on a 9-point log grid, applied to the weights dropout acts on; tuned dropout =
input dropout with SGD and with AdamW, each on a 9-point rate grid (the same budget, 18
configurations per side, chosen on validation error, never test); ``explicit``: the
penalty at rate p with its Fisher weights at the current weights; ``frozen``: the same
penalty with the weights frozen at the start of training (w = 0: s_i = 1/4, a fixed
per-feature ridge ``p/(8q) sum_j w_j^2 mean_i x_ij^2``, the note's "p(1-p) w I^2" term);
DROPOUT_k (Wei, Kakade & Ma 2020): k in {1, 2, 4, 16} masks averaged per step at the rate
dropout (SGD) chose, which keeps the penalty fixed and divides the mask noise by k.
Training: full-batch, the step annealed to 0 over a fixed number of steps, so each
configuration converges to the minimizer of its (expected) objective; the final
gradient norm of the deterministic arms is reported.

The chain from dropout to the note's fixed penalty, each link one contrast at the rate
dropout chose (same replicate, same data):

    dropout (k=1) -> k=16            the mask noise ("implicit" part)
    k=16 -> explicit                  the second-order approximation
    explicit -> frozen                adaptive vs fixed Fisher weights

Primary contrast (declared): tuned dropout − tuned L2, test error (points), on ``rare``.
Why this one: the question is whether dropout is *better than* L2; theory predicts the
two coincide on standardized data and that either can win on scale-structured data, so
the cell that tests the claim made for dropout (Wager et al.'s rare informative features)
is the one where "better" is at stake; the other distributions answer "strictly" as
secondaries. Secondary (Holm over all 19): dropout − L2 on the other cells; per cell,
tuned dropout − tuned frozen penalty (the note's "will it give the same result?") and
the three links above. Equivalence: the default margin of 1 point of test error
(``stats.DEFAULT_MARGINS``): with 10000 test examples per replicate the binomial noise of
one error rate is about 0.5 points, so 1 point is a difference a reader would notice.

The exact check (``explicit_linear``, labelled so, not evidence): in linear regression
dropout IS a ridge; dropout SGD with real masks must land on the closed form.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.explicit_fit import ARMS, K_ARMS, arm_configs, run_cell
from droplab.studies.explicit_linear import TOLERANCE, run_check
from droplab.studies.explicit_logistic import SOURCES
from droplab.studies.stats import adjust, compare, mean_ci

__all__ = ["CELLS", "PRESETS", "PRIMARY_CELL", "QUESTION", "STUDY", "analyze", "trials"]

QUESTION = (
    "If dropout is similar to regularization, is it strictly better than regularization, "
    "or is it the same? If we explicitly add this wI^2-proportional (but fixed) "
    "regularization, will it give the same result?"
)

#: the distributions, the primary one first
CELLS = ("rare", "small_signal", "large_signal", "isotropic")
PRIMARY_CELL = "rare"

#: per preset: replicates, full-batch steps, AdamW's peak lr, the split sizes per cell
#: (n_train of ``rare`` / of the Gaussian cells), the exact check's replicates and steps
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": 3,
        "steps": 60,
        "lr": 0.1,
        "n_train": {"rare": 100, "other": 60},
        "n_val": 300,
        "n_test": 2000,
        "check_seeds": 1,
        "check_steps": 4000,
    },
    "standard": {
        "seeds": P.BUDGETS["standard"].seeds,
        "steps": 300,
        "lr": 0.1,
        "n_train": {"rare": 150, "other": 60},
        "n_val": 500,
        "n_test": 10000,
        "check_seeds": 2,
        "check_steps": 10000,
    },
    "full": {
        "seeds": P.BUDGETS["full"].seeds,
        "steps": 600,
        "lr": 0.1,
        "n_train": {"rare": 150, "other": 60},
        "n_val": 1000,
        "n_test": 20000,
        "check_seeds": 5,
        "check_steps": 40000,
    },
}

#: the exact check's dropout rate
CHECK_RATE = 0.4


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """Replicates x cells x arms x configurations of ``preset`` for root seed ``seed``,
    then the exact check's replicates."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    out = []
    for i in range(p["seeds"]):
        s = P.replicate_seed(seed, i)
        for cell in CELLS:
            n = p["n_train"]["rare" if cell == "rare" else "other"]
            for arm in ARMS:
                for j, cfg in enumerate(arm_configs(arm)):
                    config = {
                        "part": "logistic",
                        "dataset": cell,
                        "n_train": n,
                        "n_val": p["n_val"],
                        "n_test": p["n_test"],
                        "widths": [],
                        "cell": "",
                        "arm": arm,
                        "config": j,
                        **cfg,
                        "steps": p["steps"],
                        "lr": p["lr"],
                        "root_seed": int(seed),
                        "replicate": i,
                    }
                    out.append(Trial("explicit", config, s, preset))
    for i in range(p["check_seeds"]):
        config = {
            "part": "check",
            "rate": CHECK_RATE,
            "steps": p["check_steps"],
            "root_seed": int(seed),
            "replicate": i,
        }
        out.append(Trial("explicit", config, P.replicate_seed(seed, i), preset))
    return out


def group_key(trial: Trial) -> tuple:
    """Logistic: every arm and replicate of one (cell, root seed) in one vectorized run;
    check: one group per replicate."""
    c = trial.config
    if c["part"] == "check":
        return (trial.preset, "check", trial.seed)
    return (trial.preset, "logistic", c["dataset"], c["root_seed"], c["steps"], c["n_train"])


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    if group[0].config["part"] == "check":
        return [{"metrics": run_check(t.config, t.seed)} for t in group]
    return run_cell(group, device)


# -- the analysis ----------------------------------------------------------------------------

SIDES = {
    "l2": ("l2_sgd", "wd_adamw"),
    "dropout": ("dropout_sgd", "dropout_adamw"),
    "dropout_sgd": ("dropout_sgd",),
    "explicit": ("explicit",),
    "frozen": ("frozen",),
    "none": ("none",),
}


def current(done: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The logistic rows of the current design (each arm's configuration as
    :func:`explicit_fit.arm_configs` makes it now, the preset's recipe), and a note on rows
    of another version of the study left in the store: they are never mixed in."""
    if done.empty:
        return done, []
    keep = []
    for r in done.itertuples(index=False):
        p = PRESETS.get(str(r.preset))
        cfgs = arm_configs(r.arm) if r.arm in ARMS else []
        ok = p is not None and 0 <= int(r.config) < len(cfgs)
        if ok:
            want = cfgs[int(r.config)]
            ok = (
                r.optimizer == want["optimizer"]
                and np.isclose(r.weight_decay, want["weight_decay"])
                and (want["rate"] is None or np.isclose(r.rate, want["rate"]))
                and int(r.steps) == p["steps"]
                and np.isclose(r.lr, p["lr"])
                and int(r.n_test) == p["n_test"]
            )
        keep.append(bool(ok))
    mask = np.array(keep, dtype=bool)
    left = int((~mask).sum())
    note = (
        [
            f"{left} finished trials of another design (an older version of the study) "
            "are in the store and were left out"
        ]
        if left
        else []
    )
    return done[mask], note


def _tuned(done: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """name -> validation-selected rows per (cell, seed); each side pools its arms."""
    return {name: P.tuned(done, list(arms), name=name) for name, arms in SIDES.items()}


def _at_rate(done: pd.DataFrame, tuned_sgd: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The chain at the rate dropout (SGD) chose per (cell, seed): k=1 (the tuned row
    itself), k = 2, 4, 16, explicit and frozen at that rate."""
    rate = tuned_sgd.set_index(["dataset", "seed"])["rate_used"]
    out = {"k1": tuned_sgd}
    for arm in K_ARMS:
        out[arm.removeprefix("dropout_")] = done[done["arm"] == arm]
    for arm in ("explicit", "frozen"):
        rows = done[done["arm"] == arm]
        want = rate.reindex(pd.MultiIndex.from_frame(rows[["dataset", "seed"]])).to_numpy()
        out[arm] = rows[np.isclose(rows["rate"].to_numpy(float), want)]
    return out


def _cell(frame: pd.DataFrame, cell: str) -> pd.DataFrame:
    return frame[frame["dataset"] == cell]


def _contrasts(tuned, chain, cells, roots) -> list[Contrast]:
    err = P.error_points(roots)

    def c(name, a, b, text, primary=False):
        return compare(
            name, *P.paired(a, b, "test_error"), primary=primary, description=text, **err
        )

    out = []
    for cell in cells:
        label = SOURCES[cell].label
        out.append(
            c(
                f"dropout_vs_l2_{cell}",
                _cell(tuned["dropout"], cell),
                _cell(tuned["l2"], cell),
                f"tuned dropout − tuned L2 (18 configurations each), test error, {label}",
                primary=cell == PRIMARY_CELL,
            )
        )
    for cell in cells:
        label = SOURCES[cell].label
        T = {k: _cell(v, cell) for k, v in tuned.items()}
        K = {k: _cell(v, cell) for k, v in chain.items()}
        out += [
            c(
                f"dropout_vs_frozen_{cell}",
                T["dropout_sgd"],
                T["frozen"],
                f"tuned dropout − tuned frozen penalty (SGD, 9 each), test error, {label}",
            ),
            c(
                f"noise_k1_vs_k16_{cell}",
                K["k1"],
                K["k16"],
                f"dropout 1 mask − 16 masks per step at dropout's rate, test error, {label}",
            ),
            c(
                f"approx_k16_vs_explicit_{cell}",
                K["k16"],
                K["explicit"],
                f"dropout 16 masks − explicit penalty at the same rate, test error, {label}",
            ),
            c(
                f"adaptive_vs_frozen_{cell}",
                K["explicit"],
                K["frozen"],
                f"explicit (adaptive) − frozen penalty at the same rate, test error, {label}",
            ),
        ]
    out.sort(key=lambda x: not x.primary)
    return adjust(out)


def _said(c: Contrast, a: str, b: str) -> str:
    ci = f"{c.estimate:+.1f} [{c.ci_low:+.1f}, {c.ci_high:+.1f}] points"
    if c.call in ("lowers", "raises"):
        return f"{a} {c.call} test error against {b} ({ci})"
    if c.call == "equivalent":
        return f"{a} is equivalent to {b} within ±{c.margin:g} point ({ci})"
    return f"{a} against {b} is inconclusive ({ci}; MDE {c.mde:.1f})"


def _answer(contrasts: list[Contrast]) -> str:
    """One sentence from the primary contrast, then the other cells' calls."""
    primary = contrasts[0]
    text = (
        f"On {SOURCES[PRIMARY_CELL].label}, "
        + _said(primary, "tuned dropout", "tuned L2")
        + "; elsewhere: "
    )
    rest = [x for x in contrasts if x.name.startswith("dropout_vs_l2_") and not x.primary]
    return (
        text
        + "; ".join(
            f"{x.name.removeprefix('dropout_vs_l2_')} {x.call} ({x.estimate:+.1f})" for x in rest
        )
        + "."
    )


def arm_table(done: pd.DataFrame, tuned, chain) -> pd.DataFrame:
    """Mean test error (%) with 95% t CI of each tuned side and chain link per cell."""
    rows = []
    for cell in sorted(done["dataset"].unique(), key=CELLS.index):
        for name, frame in [*tuned.items(), *[(f"at rate: {k}", v) for k, v in chain.items()]]:
            g = _cell(frame, cell)
            if g.empty:
                continue
            m, lo, hi = mean_ci(g["test_error"].to_numpy(float) * 100)
            rows.append(
                {
                    "cell": cell,
                    "arm": name,
                    "test_error": m,
                    "ci_low": lo,
                    "ci_high": hi,
                    "seeds": len(g),
                    "chosen": ", ".join(
                        f"{a} {n}"
                        for a, n in g.get("arm_selected", g["arm"]).value_counts().items()
                    ),
                    "rate_median": float(g["rate_used"].median()),
                }
            )
    return pd.DataFrame(rows)


def check_table(check: pd.DataFrame) -> pd.DataFrame:
    """The exact check per replicate: relative parameter distance and the RMSEs."""
    cols = ["seed", "rate_used", "param_rel_dist", "rmse_sgd", "rmse_closed_form"]
    return check[cols].sort_values("seed").reset_index(drop=True)


def _figure(contrasts: list[Contrast]) -> Any:
    from droplab.report import style

    fig, ax = style.figure(width=6.8, height=0.32 * len(contrasts) + 1.2)
    y = np.arange(len(contrasts))[::-1]
    for yi, c in zip(y, contrasts):
        ax.errorbar(
            c.estimate,
            yi,
            xerr=[[c.estimate - c.ci_low], [c.ci_high - c.estimate]],
            fmt="o",
            color=style.color(0 if c.primary else 1),
            capsize=3,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvspan(-1, 1, color="#dddddd", alpha=0.5, linewidth=0)
    ax.set_yticks(y, [c.name for c in contrasts], fontsize=7)
    ax.set(xlabel="difference in test error (points), Holm-widened 95% CI; grey: ±1 point")
    return fig


def analyze(frame: pd.DataFrame) -> Findings:
    """Tuned sides and the chain per cell, the contrasts, the exact check."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    logistic = done[done["part"] == "logistic"] if len(done) else done
    logistic, stale = current(logistic)
    if logistic.empty:
        return Findings(
            "explicit", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    cells = [c for c in CELLS if c in set(logistic["dataset"])]
    if PRIMARY_CELL not in cells:
        return Findings(
            "explicit",
            QUESTION,
            f"No finished trials of the primary cell {PRIMARY_CELL!r} yet.",
            pd.DataFrame(),
            failed=failed,
        )
    tuned = _tuned(logistic)
    chain = _at_rate(logistic, tuned["dropout_sgd"])
    roots = P.root_seeds(logistic)
    contrasts = _contrasts(tuned, chain, cells, roots)
    answer = _answer(contrasts)
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    verdict = answer + " " + "; ".join(lines[1:]) + "."
    notes = list(stale)
    det = logistic[logistic["optimizer"].eq("sgd") & logistic["k"].eq(0)]
    gn = det["grad_norm"].to_numpy(float)
    if len(gn) and float(np.nanmax(gn)) > 0.1:
        worst = det.loc[det["grad_norm"] > 0.1].groupby(["dataset", "arm"]).size()
        notes.append(
            f"{int((gn > 0.1).sum())} of {len(gn)} deterministic SGD configurations end with "
            "a preconditioned gradient norm above 0.1 ("
            + ", ".join(f"{c} {a} {n}" for (c, a), n in worst.items())
            + "): not at a minimizer (on near-separable data a weakly regularized "
            "objective's minimizer lies far out)"
        )
    extra = {
        "tuned sides and the chain at dropout's rate (test error %)": arm_table(
            logistic, tuned, chain
        ).round(3)
    }
    check = done[done["part"] == "check"] if len(done) else done
    if len(check):
        ct = check_table(check)
        extra["exact check (a theorem, not evidence): linear regression"] = ct.round(5)
        worst = float(ct["param_rel_dist"].max())
        notes.append(
            f"Exact check, linear regression (a theorem, not evidence): dropout SGD with real "
            f"masks lands {worst:.1%} (worst of {len(ct)} replicates) from the closed-form "
            f"dropout ridge; tolerance {TOLERANCE:.0%}: "
            + ("passed." if worst < TOLERANCE else "FAILED: the implementation is suspect.")
        )
    primary = contrasts[0]
    p = logistic.iloc[0]
    method = (
        f"Logistic regression, dropout on the inputs, {primary.n_seeds} replicates, root "
        f"seeds {', '.join(map(str, roots))}, each a fresh draw of train, validation "
        f"({int(p['n_val'])}) and test ({int(p['n_test'])}) data; cells {', '.join(cells)} "
        f"(explicit_logistic.SOURCES). Full-batch training for {int(p['steps'])} steps, "
        "step annealed to 0 (cosine): preconditioned gradient descent (SGD arms) or AdamW "
        f"(peak lr {p['lr']:g}). Tuned L2: decoupled weight decay, 9-point log grid per "
        "optimizer; tuned dropout: 9 rates (0.02..0.9) per optimizer; explicit and frozen "
        "penalty: 9 rates, SGD; DROPOUT_k at the rate dropout (SGD) chose. Selection on "
        "validation error (then loss). CIs: 95% paired t over replicates; calls per "
        "docs/statistics.md (margin ±1 point; secondaries Holm-adjusted over 19)."
    )
    return Findings(
        study="explicit",
        question=QUESTION,
        verdict=verdict,
        key_number=primary.short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures={"contrasts": _figure(contrasts)},
        method=method,
        extra_tables=extra,
        failed=failed,
        references=[
            "wager2013",
            "Helmbold, D. P., & Long, P. M. (2015). On the inductive bias of dropout. "
            "Journal of Machine Learning Research 16(105), 3403–3454.",
            "wei2020",
            "Loshchilov, I., & Hutter, F. (2019). Decoupled weight decay regularization. "
            "ICLR 2019.",
        ],
        answer=answer,
        contrasts=contrasts,
        notes=notes,
    )


STUDY = Study(
    name="explicit",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "Logistic regression on four distributions: tuned dropout vs tuned L2 (AdamW and "
        "SGD weight decay, equal budgets), and the chain dropout -> 16-mask dropout -> "
        "explicit penalty -> penalty frozen at the start; linear regression as an exact check."
    ),
    seeded=True,
)
