"""The explicit study's analysis: the current design's rows, the tuned sides, the chain at
dropout's rate, the contrasts (primary first, secondaries Holm-adjusted), the answer
sentence, the tables and the figure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Contrast
from droplab.studies import protocol as P
from droplab.studies.explicit_fit import ARMS, K_ARMS, arm_configs
from droplab.studies.explicit_logistic import SOURCES
from droplab.studies.stats import adjust, compare, mean_ci

__all__ = [
    "SIDES",
    "answer",
    "arm_table",
    "at_rate",
    "check_table",
    "contrasts",
    "current",
    "figure",
    "tuned_sides",
]

#: the distributions, the primary one first
CELLS = ("rare", "small_signal", "large_signal", "isotropic")
PRIMARY_CELL = "rare"

SIDES = {
    "l2": ("l2_sgd", "wd_adamw"),
    "dropout": ("dropout_sgd", "dropout_adamw"),
    "dropout_sgd": ("dropout_sgd",),
    "explicit": ("explicit",),
    "frozen": ("frozen",),
    "none": ("none",),
}


def current(
    done: pd.DataFrame, presets: dict[str, dict[str, Any]]
) -> tuple[pd.DataFrame, list[str]]:
    """The logistic rows of the current design (each arm's configuration as
    :func:`explicit_fit.arm_configs` makes it now, the preset's recipe), and a note on rows
    of another version of the study left in the store: they are never mixed in."""
    if done.empty:
        return done, []
    keep = []
    for r in done.itertuples(index=False):
        p = presets.get(str(r.preset))
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


def tuned_sides(done: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """name -> validation-selected rows per (cell, seed); each side pools its arms."""
    return {name: P.tuned(done, list(arms), name=name) for name, arms in SIDES.items()}


def at_rate(done: pd.DataFrame, tuned_sgd: pd.DataFrame) -> dict[str, pd.DataFrame]:
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


def contrasts(tuned, chain, cells, roots) -> list[Contrast]:
    """The 20 contrasts, primary first, Holm-adjusted."""
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


def answer(contrasts: list[Contrast]) -> str:
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


def figure(contrasts: list[Contrast]) -> Any:
    from droplab.report import style

    fig = style.forest(
        contrasts,
        xlabel="difference in test error (points), Holm-widened 95% CI; grey: ±1 point",
        fontsize=7,
    )
    return fig
