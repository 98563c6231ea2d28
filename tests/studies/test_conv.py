"""conv: the quick preset end to end through the real store; verdicts follow the data."""

from __future__ import annotations

import pandas as pd
import pytest

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.conv import STUDY


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("conv") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("conv")


def test_registered():
    assert get("conv") is STUDY


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    assert set(frame["variant"]) == {"none", "bernoulli", "spatial", "dropblock"}
    f = STUDY.findings(frame)
    t = f.table
    assert len(t) == 7  # none + 3 variants x 2 placements x 1 rate
    arms = t[t["variant"] != "none"]
    assert set(arms["effect"]) <= {"helps", "hurts", "no measurable effect"}
    none = t.loc[t["variant"] == "none", "test_error_pct"].iloc[0]
    assert f"(no dropout {none:.1f}%)" in f.verdict
    for v, label in (("spatial", "SpatialDropout"), ("dropblock", "DropBlock")):
        hurts = int((arms.loc[arms["variant"] == v, "effect"] == "hurts").sum())
        assert f"{label} helps in " in f.verdict and f"hurts in {hurts} of 2" in f.verdict
    assert "vs_none" in f.figures


def _elementwise(frame: pd.DataFrame, offset: float) -> pd.DataFrame:
    """Element-wise arms at (the no-dropout error + offset) per seed, with a jitter."""
    out = frame.copy()
    none = out[out["variant"] == "none"].set_index("seed")["test_error"]
    arm = out["variant"] == "bernoulli"
    out.loc[arm, "test_error"] = [none[s] + offset + 0.001 * s for s in out.loc[arm, "seed"]]
    return out


def test_changing_the_data_changes_the_verdict(frame):
    good = STUDY.analyze(_elementwise(frame, -0.03)).verdict
    bad = STUDY.analyze(_elementwise(frame, +0.05)).verdict
    assert good.startswith("The claim does not hold here")
    assert "element-wise Dropout helps in 2 and hurts in 0 of 2" in good
    assert bad.startswith("Consistent with the claim")
    assert "element-wise Dropout helps in 0 and hurts in 2 of 2" in bad


def test_calls_are_holm_corrected(frame):
    """An arm whose uncorrected CI excludes 0 but whose Holm-adjusted p does not reach
    0.05 is 'no measurable effect', and the verdict says what the uncorrected call was."""
    import math

    import numpy as np
    from scipy import stats as st

    out = frame.copy()
    none = out[out["variant"] == "none"].set_index("seed")["test_error"]
    seeds = sorted(none.index)
    n = len(seeds)
    others = out["variant"] != "none"
    out.loc[others, "test_error"] = [none[s] for s in out.loc[others, "seed"]]  # p = 1
    # the one arm: paired differences with sd 0.01 and mean set so that p = 0.02 exactly,
    # between 0.05 / m (Holm's first threshold, m >= 3 arms) and 0.05
    arm = (out["variant"] == "bernoulli") & (out["placement"] == "classifier")
    spread = np.linspace(-1.0, 1.0, n)
    spread *= 0.01 / spread.std(ddof=1)
    mean = -st.t.isf(0.01, df=n - 1) * 0.01 / math.sqrt(n)
    diff = dict(zip(seeds, mean + spread))
    out.loc[arm, "test_error"] = [none[s] + diff[s] for s in out.loc[arm, "seed"]]
    f = STUDY.analyze(out)
    t = f.table
    row = t[(t["variant"] == "bernoulli") & (t["placement"] == "classifier")].iloc[0]
    m = int(t["p_value"].notna().sum())
    assert m >= 3 and row.p_value == pytest.approx(0.02, rel=1e-6)
    assert row.effect_uncorrected == "helps"
    assert row.effect == "no measurable effect"
    assert row.p_holm == pytest.approx(min(1.0, m * 0.02))
    assert "Holm-corrected" in f.verdict
    assert "Uncorrected 95% CIs would call 1 setting helpful (element-wise dropout: 1)" in f.verdict
    assert f.verdict.startswith("Consistent with the claim")
