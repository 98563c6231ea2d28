"""rate: the quick preset end to end through the real store, and a verdict that follows the data."""

from __future__ import annotations

import pandas as pd
import pytest

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.rate import NOTE_CELL, STUDY


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("rate") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("rate")


def test_registered():
    assert get("rate") is STUDY


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    assert frame["test_error"].between(0, 1).all()
    f = STUDY.findings(frame)
    best = f.table[f.table["best"]].iloc[0]
    # the verdict quotes the best cell's measured error and the note's cell
    assert f"{best.test_error_pct:.1f}%" in f.verdict
    assert "(0.5, 0.2)" in f.verdict and f.key_number
    assert {"error_surface", "hidden_rate"} <= set(f.figures)
    # the best cell has the lowest mean error and is trivially indistinguishable from itself
    assert best.test_error_pct == f.table["test_error_pct"].min()
    assert f.table["indistinguishable_from_best"][f.table["best"]].all()


def _set_note_cell(frame: pd.DataFrame, offset: float) -> pd.DataFrame:
    """The note's cell at (the best other cell + offset) per seed, with a per-seed jitter."""
    out = frame.copy()
    note = (out["hidden_rate"] == NOTE_CELL[0]) & (out["input_rate"] == NOTE_CELL[1])
    floor = out.loc[~note, "test_error"].min()
    out.loc[note, "test_error"] = floor + offset + 0.001 * out.loc[note, "seed"]
    return out


def test_changing_the_data_changes_the_verdict(frame):
    good = STUDY.analyze(_set_note_cell(frame, -0.02))  # clearly the best cell
    bad = STUDY.analyze(_set_note_cell(frame, +0.30))  # 30 points worse than everything
    assert "indistinguishable from the best cell in 1 of 1" in good.verdict
    assert "best hidden 0.5 / input 0.2" in good.verdict
    assert "indistinguishable from the best cell in 0 of 1" in bad.verdict
    assert "(0.5, 0.2) is significantly worse" in bad.verdict
    assert good.key_number.endswith("in 1 of 1 nets") and bad.key_number.endswith("0 of 1 nets")
    assert good.verdict != bad.verdict


def test_penalty_is_monotone_in_rate():
    from droplab.studies.rate import penalty_coefficient

    rates = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9]
    coef = [penalty_coefficient(r) for r in rates]
    assert coef == sorted(coef) and coef[0] == 0.0 and coef[3] == pytest.approx(1.0)


def test_failed_trials_are_listed_and_the_rest_analyzed(frame):
    f = frame.copy()
    metrics = [c for c in f.columns if c.startswith(("test_", "ws_", "mc_", "prune_"))]
    f.loc[0, "status"] = "failed"
    f.loc[0, "error"] = "RuntimeError: boom"
    f.loc[0, metrics] = float("nan")
    out = STUDY.analyze(f)
    assert len(out.failed) == 1 and "boom" in out.failed[0]
    assert out.verdict and "No finished" not in out.verdict
