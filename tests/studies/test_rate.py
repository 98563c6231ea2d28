"""rate on the protocol: the grid (every cell tuned with the same budget, pn-fixed widths),
the quick preset end to end, and calls that follow the data."""

from __future__ import annotations

import pandas as pd
import pytest

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.rate import NOTE_CELL, PRESETS, STUDY, arm_name, pn_width


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("rate") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0, store.errors("rate")
        return store.frame("rate")


def test_registered_and_seeded():
    assert get("rate") is STUDY and STUDY.seeded


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_grid_equal_budgets_and_pn_fixed_widths(preset):
    p = PRESETS[preset]
    trials = STUDY.expand(preset)
    per_arm: dict[tuple, int] = {}
    for t in trials:
        key = (t.seed, t.config["cell"], t.config["arm"])
        per_arm[key] = per_arm.get(key, 0) + 1
    assert set(per_arm.values()) == {p["budget"].configs}
    grid = {
        (t.config["hidden_rate"], t.config["input_rate"]) for t in trials if not t.config["cell"]
    }
    assert NOTE_CELL in grid and len(grid) == len(p["hidden_rates"]) * len(p["input_rates"])
    for t in trials:
        if t.config["cell"] == "pn":
            assert t.config["input_rate"] == 0.0
            assert t.config["widths"][0] == pn_width(p["width"], t.config["hidden_rate"])
    assert pn_width(100, 0.5) == 100 and pn_width(100, 0.75) == 200 and pn_width(100, 0.0) == 50
    assert len({t.seed for t in trials}) == p["budget"].seeds


def test_quick_runs_and_the_answer_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    assert frame["test_error"].between(0, 1).all()
    f = STUDY.findings(frame)
    assert f.primary.name == "note_vs_best" and f.primary.n_seeds == 3
    assert f.primary.call in {"lowers", "raises", "equivalent", "inconclusive"}
    assert "validation picks hidden" in f.answer
    assert set(f.figures) == {"profile"}
    assert any(c.name.startswith("pn_") for c in f.contrasts)


def _with_note(frame: pd.DataFrame, offset: float) -> pd.DataFrame:
    """The note's cell's test AND validation error at (everything else's best) + offset."""
    out = frame.copy()
    note = (out["arm"] == arm_name(*NOTE_CELL)) & (out["cell"] == "")
    floor = out.loc[~note, "test_error"].min()
    out.loc[note, "test_error"] = floor + offset + 0.001 * (out.loc[note, "seed"] % 7)
    out.loc[note, "val_error"] = out.loc[~note, "val_error"].min() + offset
    return out


def test_changing_the_data_changes_the_call(frame):
    good = STUDY.analyze(_with_note(frame, -0.05))  # best on validation: it IS the best
    bad = STUDY.analyze(_with_note(frame, +0.30))  # 30 points worse than everything
    assert good.primary.call == "equivalent" and good.primary.estimate == pytest.approx(0.0)
    assert bad.primary.call == "raises" and bad.primary.estimate > 20
    assert bad.answer.startswith("No: the note's rates give higher test error")
    assert good.answer != bad.answer


def test_penalty_is_monotone_in_rate():
    from droplab.studies.rate import penalty_coefficient

    rates = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9]
    coef = [penalty_coefficient(r) for r in rates]
    assert coef == sorted(coef) and coef[0] == 0.0 and coef[3] == pytest.approx(1.0)


def test_failed_trials_are_listed_and_the_rest_analyzed(frame):
    f = frame.copy()
    metrics = [c for c in f.columns if c.startswith(("test_", "val_"))]
    f.loc[0, "status"] = "failed"
    f.loc[0, "error"] = "RuntimeError: boom"
    f.loc[0, metrics] = float("nan")
    out = STUDY.analyze(f)
    assert len(out.failed) == 1 and "boom" in out.failed[0]
    assert out.answer and "No finished" not in out.verdict
