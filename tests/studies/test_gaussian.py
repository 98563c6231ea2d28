"""gaussian: the quick preset end to end through the real store; verdicts follow the data."""

from __future__ import annotations

import pandas as pd
import pytest

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.gaussian import STUDY


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("gaussian") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("gaussian")


def test_registered():
    assert get("gaussian") is STUDY


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    assert set(frame["variant"]) == {"bernoulli", "gaussian"}
    # every trial carries the gradient measurement; debiasing only shrinks the bias
    assert (frame["grad_noise_trace"] > 0).all()
    assert (frame["grad_bias_norm"] <= frame["grad_bias_raw"]).all()
    assert frame["grad_bias_cosine"].between(-1, 1).all()
    f = STUDY.findings(frame)
    assert list(f.table["rate"]) == [0.25, 0.5]
    row = f.table.set_index("rate").loc[0.5]
    assert f"{row.bias_ratio:.2f} [{row.bias_ratio_lo:.2f}, {row.bias_ratio_hi:.2f}]" in f.verdict
    assert f"{row.bias_rel_gaussian * 100:.0f}% vs {row.bias_rel_bernoulli * 100:.0f}%" in f.verdict
    assert {"accuracy_nll", "gradient"} <= set(f.figures)


def test_changing_the_data_changes_the_verdict(frame):
    gauss = frame["variant"] == "gaussian"
    unbiased = frame.copy()
    unbiased.loc[gauss, "grad_bias_raw"] = unbiased.loc[gauss, "grad_bias_floor"] * (
        1.0 - 0.01 * (1 + unbiased.loc[gauss, "seed"])
    )  # below the Monte Carlo floor at every seed
    assert "'Gaussian dropout does not change the gradient on average' holds" in (
        STUDY.analyze(unbiased).verdict
    )
    worse = frame.copy()
    bern = worse[~gauss].set_index(["rate", "seed"])["test_error"]
    keys = list(zip(worse.loc[gauss, "rate"], worse.loc[gauss, "seed"]))
    worse.loc[gauss, "test_error"] = [bern[k] + 0.05 + 0.002 * k[1] for k in keys]
    v = STUDY.analyze(worse).verdict
    assert "0.25: higher (+5.2" in v and "0.5: higher" in v
    assert v != STUDY.analyze(frame).verdict
