"""fixed-count on the protocol: the width sweep, the quick preset end to end, one primary
contrast, the 1/H fit, calls that agree with their intervals and follow the data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.fixed_count import PRESETS, STUDY, slopes


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("fixed_count") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0, store.errors("fixed-count")
        return store.frame("fixed-count")


def test_registered_and_the_standard_sweep():
    assert get("fixed-count") is STUDY and STUDY.seeded
    assert PRESETS["standard"]["widths"] == [8, 16, 32, 128]
    assert PRESETS["standard"]["trace_widths"] == [8, 16, 32, 128]


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_equal_budgets_per_width(preset):
    p = PRESETS[preset]
    per_arm: dict[tuple, int] = {}
    for t in STUDY.expand(preset):
        if t.config["kind"] == "accuracy":
            key = (t.seed, t.config["widths"][0], t.config["arm"])
            per_arm[key] = per_arm.get(key, 0) + 1
    assert set(per_arm.values()) == {p["budget"].configs}
    assert {k[1] for k in per_arm} == set(p["widths"])


def test_bad_preset_is_named():
    with pytest.raises(ValueError, match=r"preset must be one of .*'huge'"):
        STUDY.trials("huge")


def test_slopes_recover_an_exact_trend():
    widths = [8, 16, 32, 128]
    per = pd.DataFrame(
        [{"seed": s, "width": w, "d": 0.01 * s + 0.4 / w} for s in range(3) for w in widths]
    )
    fit = slopes(per, "d")
    assert np.allclose(fit["slope"], 0.4) and np.allclose(fit["intercept"], [0, 0.01, 0.02])


def test_quick_runs_one_primary_and_calls_agree(frame):
    assert set(frame["status"]) == {"finished"}
    f = STUDY.findings(frame)
    assert sum(c.primary for c in f.contrasts) == 1 and f.contrasts[0].primary
    assert f.primary.name == "fixed_vs_bernoulli" and f.primary.n_seeds == 3
    assert {"noise_slope", "noise_limit", "error_slope"} <= {c.name for c in f.contrasts}
    for c in f.contrasts:
        if c.call in ("lowers", "raises"):
            assert c.ci_low > 0 or c.ci_high < 0
        elif c.call == "equivalent":
            assert -c.margin < c.ci_low and c.ci_high < c.margin
        else:
            assert not (c.ci_low > 0 or c.ci_high < 0)
    json.dumps(f.to_dict())
    assert f.answer in f.verdict and "fixed_count" in f.figures


def test_changing_the_data_changes_the_call(frame):
    acc = frame["kind"] == "accuracy"
    fixed = acc & (frame["arm"] == "fixed-count")
    worse = frame.copy()
    worse.loc[fixed, "test_error"] = worse.loc[fixed, "test_error"] + 0.3
    worse.loc[fixed, "val_error"] = 0.0  # so the same configuration is selected per seed
    same = worse.copy()
    for _s, g in same[acc].groupby("seed"):  # fixed-count's selected = Bernoulli's selected
        for w in {x[0] for x in g["widths"]}:
            rows = g[[x[0] == w for x in g["widths"]]]
            b = rows[rows["arm"] == "bernoulli"].sort_values(["val_error", "val_loss"]).iloc[0]
            same.loc[rows[rows["arm"] == "fixed-count"].index, "test_error"] = b["test_error"]
    assert STUDY.analyze(worse).primary.call == "raises"
    s = STUDY.analyze(same)
    assert s.primary.call == "equivalent" and s.primary.estimate == pytest.approx(0.0)
