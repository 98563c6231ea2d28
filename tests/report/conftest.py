"""A small real SQLite store and fake studies for the report tests.

Studies (fakes with the ``Study`` attributes the report uses: name, question, analyze):

- ``effect``: 2 rates x 3 seeds finished in preset quick, one failed trial whose error
  text holds HTML; on the protocol: its analysis gives an answer, a primary contrast and
  three secondary ones (lowers, inconclusive, equivalent), a note, two figures, a table,
  references, and its own description of the failed trial in ``Findings.failed``.
- ``legacy``: not yet on the protocol: verdict (two sentences), key number and a table.
- ``notrun``: no rows at all.
- ``broken``: finished rows, but ``analyze`` raises.
- ``allfailed``: only a failed row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from droplab.findings import Contrast, Findings
from droplab.report import style
from droplab.store import Store, TrialRecord, config_hash

EVIL = "<script>alert('x')</script> & \"quotes\""


@dataclass(frozen=True)
class FakeStudy:
    name: str
    question: str
    analyze: Any


def _record(study: str, config: dict, seed: int, preset: str = "quick", **fields) -> TrialRecord:
    return TrialRecord(
        hash=config_hash(study, preset, config, seed),
        study=study,
        preset=preset,
        seed=seed,
        config=config,
        **fields,
    )


def analyze_effect(frame: pd.DataFrame) -> Findings:
    done = frame[frame["status"] == "finished"]
    g = done.groupby("rate")["test_error"]
    table = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.size()})
    half = 1.96 * table["sd"] / np.sqrt(table["n"])  # normal 95% CI half-width
    table["lo"], table["hi"] = table["mean"] - half, table["mean"] + half
    fig, ax = style.figure()
    style.band(ax, table.index, table["mean"], table["lo"], table["hi"], label="test error")
    ax.set(xlabel="rate P(drop)", ylabel="test error (%)")
    ax.legend()
    fig2, ax2 = style.figure()
    style.bars(ax2, [f"rate {r}" for r in table.index], table["mean"], table["lo"], table["hi"])
    diff = table["mean"].iloc[1] - table["mean"].iloc[0]
    seeds = tuple(sorted(done["seed"].unique()))
    n = len(seeds)
    contrasts = [
        Contrast(**PRIMARY, estimate=diff, ci_low=diff - 1.2, ci_high=diff + 1.2, n_seeds=n),
        *(Contrast(**kw, n_seeds=n, root_seeds=seeds) for kw in SECONDARY),
    ]
    answer = f"Dropout 0.5 lowers test error by {-diff:.1f} points on this toy store."
    return Findings(
        study="effect",
        question="How much exactly does drop-out help?",
        verdict=answer + " " + "; ".join(c.short() for c in contrasts),
        key_number=f"{diff:+.1f} pts",
        table=table,
        figures={"error_vs_rate": fig, "error_bars": fig2},
        method="MLP on `mnist1d`; 3 seeds.\n\nCIs are normal 95% intervals.",
        extra_tables={"per seed": done[["rate", "seed", "test_error"]]},
        failed=[FINDINGS_FAILED],
        references=["Srivastava et al. 2014", "wager2013", "Someone, A. (1999). Unlisted."],
        answer=answer,
        contrasts=contrasts,
        notes=[NOTE],
    )


PRIMARY = dict(
    name="error",
    description="rate 0.5 − rate 0, test error",
    primary=True,
    metric="test_error",
    unit="points",
    call="lowers",
    margin=1.0,
    root_seeds=(0, 1, 2),
    p_value=0.004,
    p_adjusted=0.004,
)
SECONDARY = [
    dict(
        name="nll",
        description="rate 0.5 − rate 0, test NLL",
        primary=False,
        metric="test_nll",
        unit="nats",
        estimate=-0.031,
        ci_low=-0.048,
        ci_high=-0.014,
        call="lowers",
        margin=0.02,
        p_value=0.004,
        p_adjusted=0.012,
        mde=0.02,
    ),
    dict(
        name="time",
        description="rate 0.5 − rate 0, seconds per epoch",
        primary=False,
        metric="seconds",
        unit="s",
        estimate=0.2,
        ci_low=-0.9,
        ci_high=1.3,
        call="inconclusive",
        margin=0.5,
        p_value=0.61,
        p_adjusted=0.61,
        mde=1.6,
    ),
    dict(
        name="ece",
        description="rate 0.5 − rate 0, calibration error",
        primary=False,
        metric="ece",
        unit="points",
        estimate=0.1,
        ci_low=-0.3,
        ci_high=0.5,
        call="equivalent",
        margin=1.0,
        p_value=0.4,
        p_adjusted=0.8,
        mde=0.7,
    ),
]
NOTE = "Training cap hit by 12% of members."
#: The study's own description of the failed trial: the report must not list it again.
FINDINGS_FAILED = "{'rate': 0.9} seed=0: ValueError from the study's own list"


def analyze_legacy(frame: pd.DataFrame) -> Findings:
    """A study not yet on the protocol: verdict paragraph and key number only."""
    done = frame[frame["status"] == "finished"]
    mean = float(done["test_error"].mean())
    return Findings(
        study="legacy",
        question="Is it strictly better than regularization?",
        verdict=f"Legacy error is {mean:.1f} points, e.g. about half. Second sentence here.",
        key_number=f"{mean:.1f} pts [0.5, 1.5]",
        table=pd.DataFrame({"mean": [mean], "n": [len(done)]}),
        method="Plain.",
    )


def analyze_broken(frame: pd.DataFrame) -> Findings:
    raise RuntimeError(f"analysis exploded {EVIL}")


STUDIES = [
    FakeStudy(
        "effect", "How much exactly does drop-out help? How to quantify that?", analyze_effect
    ),
    FakeStudy("legacy", "Is it strictly better than regularization?", analyze_legacy),
    FakeStudy("notrun", "Is dropout in any way similar to ensemble?", analyze_effect),
    FakeStudy("broken", f"Does it break {EVIL}?", analyze_broken),
    FakeStudy("allfailed", "Does the rate matter?", analyze_effect),
]


def make_store(path):
    """Write the small store described above to ``path``; return ``path``."""
    records = []
    for rate in (0.0, 0.5):
        for seed in range(3):
            err = 20.0 - 8.0 * rate + 0.5 * seed  # a plain deterministic number per trial
            records.append(
                _record(
                    "effect",
                    {"rate": rate},
                    seed,
                    status="finished",
                    metrics={"test_error": err},
                )
            )
    records.append(
        _record(
            "effect", {"rate": 0.9}, 0, status="failed", error=f"Traceback...\nValueError: {EVIL}"
        )
    )
    records += [
        _record("legacy", {"rate": 0.5}, s, status="finished", metrics={"test_error": 1.0})
        for s in (0, 1)
    ]
    records.append(
        _record("broken", {"rate": 0.5}, 0, status="finished", metrics={"test_error": 1.0})
    )
    records.append(
        _record("allfailed", {"rate": 0.5}, 1, status="failed", error="OOM: out of memory")
    )
    store = Store(path)
    store.record(records)
    store.close()
    return path


@pytest.fixture
def store_path(tmp_path):
    return make_store(tmp_path / "results.db")


@pytest.fixture(scope="package")
def rendered(tmp_path_factory):
    """(store path, index.html path) of one report of STUDIES, rendered once for the tests
    that only read it (rendering makes figures, ~1 s)."""
    from droplab.report import render

    root = tmp_path_factory.mktemp("rendered")
    path = make_store(root / "results.db")
    return path, render(path, root / "out", STUDIES)
