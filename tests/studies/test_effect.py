"""The effect study: its grid, an analysis whose verdict follows the data, and a real quick
run end to end through the backend and the store."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from droplab import studies
from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import effect

STUDY = effect.STUDY


def test_registered_and_no_study_module_is_broken():
    assert studies.get("effect") is STUDY
    assert studies.UNAVAILABLE == {}, studies.UNAVAILABLE
    with pytest.raises(ValueError, match="unknown study 'nope'; valid studies: effect"):
        studies.get("nope")


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_grid_pairs_arms_by_seed_within_one_group(preset):
    trials = STUDY.expand(preset)
    assert len({t.hash for t in trials}) == len(trials)
    cells: dict[tuple, set] = {}
    for t in trials:
        cells.setdefault((t.config["dataset"], t.config["n_train"]), set()).add(
            (t.config["arm"], t.seed)
        )
    datasets = {d for d, _ in cells}
    assert datasets == {"mnist1d", "digits"}
    seeds = {s for cell in cells.values() for _, s in cell}
    for cell in cells.values():  # every seed has both arms
        assert cell == {(arm, s) for arm in effect.ARMS for s in seeds}
    if preset != "quick":
        assert len(seeds) >= 5
        assert all(sum(d == name for d, _ in cells) >= 3 for name in datasets)  # a curve
    groups = STUDY.groups(trials)
    assert len(groups) == len(cells)  # one batched fit per (dataset, size)
    for g in groups:
        assert {(t.config["arm"], t.seed) for t in g} == {
            (a, s) for a in effect.ARMS for s in seeds
        }
    dropout = next(t for t in trials if t.config["arm"] == "dropout")
    assert (dropout.config["input_rate"], dropout.config["hidden_rate"]) == (0.2, 0.5)


def _synthetic_store(tmp_path, shifts):
    """A store of the quick grid with made-up metrics: dropout - none = shifts[(dataset, n)]
    (in error fraction), plus per-seed noise common to both arms and a small own noise."""
    store = Store(tmp_path / "syn.db")
    records = []
    for t in STUDY.expand("quick"):
        c = t.config
        common = np.random.default_rng([t.seed, c["n_train"]]).normal(0, 0.02)
        own = np.random.default_rng([t.seed, c["n_train"], c["arm"] == "dropout"]).normal(0, 0.002)
        shift, spread = shifts[(c["dataset"], c["n_train"])]
        extra = shift + (spread * (1 if t.seed % 2 else -1) if c["arm"] == "dropout" else 0.0)
        err = 0.3 + common + own + (extra if c["arm"] == "dropout" else 0.0)
        metrics = {
            "test_error": err,
            "test_nll": 1.0 + err,
            "test_ece": 0.05,
            "gap": 0.1 - (0.05 if c["arm"] == "dropout" else 0.0) + own,
            "best_epoch": float(c["epochs"]),
        }
        curves = {"val_acc": [0.5, 1 - err], "test_acc": [0.5, 1 - err]}
        records.append(t.record(status="finished", metrics=metrics, curves=curves))
    store.record(records)
    return store


def test_verdict_follows_the_data(tmp_path):
    shifts = {  # (mean shift, alternating +- spread that makes the CI wide)
        ("mnist1d", 400): (0.0, 0.05),  # no effect, noisy: CI covers 0
        ("mnist1d", 3600): (-0.059, 0.0),  # dropout lowers error by 5.9 points
        ("digits", 300): (0.02, 0.0),  # raises by 2 points
        ("digits", 1294): (0.02, 0.0),
    }
    with _synthetic_store(tmp_path, shifts) as store:
        findings = STUDY.findings(store.frame("effect"))
    t = findings.table.set_index(["dataset", "n_train"])
    assert t.loc[("mnist1d", 3600), "d_test_error"] == pytest.approx(-5.9, abs=0.5)
    assert t.loc[("mnist1d", 3600), "d_test_error_hi"] < 0
    lo, hi = t.loc[("mnist1d", 400), ["d_test_error_lo", "d_test_error_hi"]]
    assert lo < 0 < hi
    v = findings.verdict
    lowered = re.search(
        r"On MNIST-1D, dropout \(input 0.2, hidden 0.5\) lowers test error by ([\d.]+)", v
    )
    assert lowered and float(lowered.group(1)) == pytest.approx(5.9, abs=0.3)
    assert "at n=3600" in v and "lower at 1, higher at 0 and not significantly different at 1" in v
    raised = re.search(
        r"On digits, dropout \(input 0.2, hidden 0.5\) raises test error by ([\d.]+)", v
    )
    assert raised and float(raised.group(1)) == pytest.approx(2.0, abs=0.3)
    assert "lowers the generalization gap by 5.0" in v
    number = float(findings.key_number.split()[0])
    assert number == pytest.approx(-5.9, abs=0.3) and "(MNIST-1D, n=3600)" in findings.key_number
    assert set(findings.figures) == {"learning_curve", "differences"}
    robust = next(iter(findings.extra_tables.values()))
    assert robust["d_test_error"].round(6).tolist() == t["d_test_error"].round(6).tolist()

    # No effect anywhere: the words follow the numbers.
    flat = dict.fromkeys(shifts, (0.0, 0.05))
    with (
        _synthetic_store(tmp_path / "flat", flat)
        if (tmp_path / "flat").mkdir() is None
        else None as s
    ):
        v = STUDY.findings(s.frame("effect")).verdict
    assert "does not significantly change test error" in v and "lowers test error" not in v


def test_quick_preset_runs_end_to_end(tmp_path):
    trials = STUDY.expand("quick")
    with Store(tmp_path / "r.db") as store:
        summary = run_study(STUDY, trials, store)
        assert (summary.finished, summary.failed) == (len(trials), 0), store.errors("effect")
        assert run_study(STUDY, trials, store).skipped == len(trials)  # no training again
        frame = store.frame("effect")
    for column in ("test_error", "test_nll", "test_ece", "gap", "best_epoch"):
        assert frame[column].notna().all(), column
    findings = STUDY.findings(frame)
    assert len(findings.table) == 4 and findings.table["seeds"].eq(3).all()
    assert "MNIST-1D" in findings.verdict and "digits" in findings.verdict
    assert not any(math.isnan(x) for x in findings.table["d_test_error"])
    assert findings.failed == []


def test_an_older_recipe_in_the_store_forms_its_own_cells(tmp_path):
    shifts = dict.fromkeys(
        [("mnist1d", 400), ("mnist1d", 3600), ("digits", 300), ("digits", 1294)], (-0.03, 0.0)
    )
    with _synthetic_store(tmp_path, shifts) as store:
        clean = STUDY.findings(store.frame("effect")).table
        old = []
        for t in STUDY.expand("quick"):  # same cells and seeds, other epochs, other results
            config = {**t.config, "epochs": t.config["epochs"] + 1}
            err = 0.9 if t.config["arm"] == "dropout" else 0.1
            old.append(
                effect.Trial("effect", config, t.seed, "quick").record(
                    status="finished", metrics={"test_error": err, "best_epoch": 1.0}
                )
            )
        store.record(old)
        mixed = STUDY.findings(store.frame("effect")).table
    assert len(mixed) == 2 * len(clean)
    merged = mixed.merge(clean, on=["dataset", "n_train", "epochs"], suffixes=("", "_clean"))
    assert np.allclose(merged["d_test_error"], merged["d_test_error_clean"])
