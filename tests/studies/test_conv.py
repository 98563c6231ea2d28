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
