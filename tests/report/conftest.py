"""A small real SQLite store and fake studies for the report tests.

Studies (fakes with the ``Study`` attributes the report uses: name, question, analyze):

- ``effect``: 2 rates x 3 seeds finished in preset quick, one failed trial whose error
  text holds HTML; its analysis makes two figures, a table and references.
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

from droplab.findings import Findings
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
    return Findings(
        study="effect",
        question="How much exactly does drop-out help?",
        verdict=f"Dropout 0.5 changes test error by {diff:+.1f} pts.",
        key_number=f"{diff:+.1f} pts",
        table=table,
        figures={"error_vs_rate": fig, "error_bars": fig2},
        method="MLP on `mnist1d`; 3 seeds.\n\nCIs are normal 95% intervals.",
        extra_tables={"per seed": done[["rate", "seed", "test_error"]]},
        references=["Srivastava et al. 2014", "wager2013", "Someone, A. (1999). Unlisted."],
    )


def analyze_broken(frame: pd.DataFrame) -> Findings:
    raise RuntimeError(f"analysis exploded {EVIL}")


STUDIES = [
    FakeStudy(
        "effect", "How much exactly does drop-out help? How to quantify that?", analyze_effect
    ),
    FakeStudy("notrun", "Is dropout in any way similar to ensemble?", analyze_effect),
    FakeStudy("broken", f"Does it break {EVIL}?", analyze_broken),
    FakeStudy("allfailed", "Is it strictly better than regularization?", analyze_effect),
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
