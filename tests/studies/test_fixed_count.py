"""fixed-count: the quick preset end to end through the real store; verdicts follow the data."""

from __future__ import annotations

import pandas as pd
import pytest

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.fixed_count import STUDY


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("fixed_count") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("fixed-count")


def test_registered():
    assert get("fixed-count") is STUDY


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    assert set(frame["variant"]) == {"bernoulli", "fixed-count"}
    assert (frame["grad_noise_trace"] > 0).all()
    f = STUDY.findings(frame)
    row = f.table.iloc[0]
    ratio = f"{row.noise_ratio:.2f} [{row.noise_ratio_lo:.2f}, {row.noise_ratio_hi:.2f}]"
    assert ratio in f.verdict and ratio in f.key_number
    assert f"{row.err_diff:+.1f} [" in f.verdict
    assert "fixed_count" in f.figures


def test_changing_the_data_changes_the_verdict(frame):
    fc = frame["variant"] == "fixed-count"
    bern = frame[~fc].set_index(["rate", "seed"])
    keys = list(zip(frame.loc[fc, "rate"], frame.loc[fc, "seed"]))
    quiet = frame.copy()
    quiet.loc[fc, "grad_noise_trace"] = [
        bern.loc[k, "grad_noise_trace"] * (0.5 + 0.01 * k[1]) for k in keys
    ]
    assert "it lowers the gradient noise" in STUDY.analyze(quiet).verdict
    worse = frame.copy()
    worse.loc[fc, "test_error"] = [bern.loc[k, "test_error"] + 0.1 + 0.002 * k[1] for k in keys]
    v = STUDY.analyze(worse).verdict
    assert "changes accuracy at 1 of 1 rates" in v and "higher error (+10.2" in v
    assert v != STUDY.analyze(frame).verdict
