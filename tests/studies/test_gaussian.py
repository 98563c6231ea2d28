"""gaussian on the protocol: the quick preset end to end, one primary contrast, calls that
agree with their intervals and follow the data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.gaussian import MARGIN_LOG, PRESETS, STUDY


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("gaussian") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0, store.errors("gaussian")
        return store.frame("gaussian")


def test_registered_and_seeded():
    assert get("gaussian") is STUDY and STUDY.seeded


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_equal_budgets_and_gradient_grid(preset):
    p = PRESETS[preset]
    trials = STUDY.expand(preset)
    per_arm: dict[tuple, int] = {}
    for t in trials:
        if t.config["kind"] == "accuracy":
            key = (t.seed, t.config["arm"])
            per_arm[key] = per_arm.get(key, 0) + 1
    assert set(per_arm.values()) == {p["budget"].configs}
    assert {a for _, a in per_arm} == {"bernoulli", "gaussian"}
    grad = [t for t in trials if t.config["kind"] == "gradient"]
    assert len(grad) == p["budget"].seeds * len(p["trace_widths"]) * len(p["trace_rates"])
    assert 0.5 in p["trace_rates"]
    assert {t.seed for t in STUDY.expand(preset, seed=1)}.isdisjoint({t.seed for t in trials})


def test_bad_preset_is_named():
    with pytest.raises(ValueError, match=r"preset must be one of .*'huge'"):
        STUDY.trials("huge")


def test_quick_runs_one_primary_and_calls_agree(frame):
    assert set(frame["status"]) == {"finished"}
    f = STUDY.findings(frame)
    assert sum(c.primary for c in f.contrasts) == 1 and f.contrasts[0].primary
    assert f.primary.name == "bias_ratio" and f.primary.margin == MARGIN_LOG
    for c in f.contrasts:
        if c.call in ("lowers", "raises"):
            assert c.ci_low > 0 or c.ci_high < 0
            assert (c.call == "lowers") == (c.estimate < 0)
        elif c.call == "equivalent":
            assert -c.margin < c.ci_low and c.ci_high < c.margin
        else:
            assert not (c.ci_low > 0 or c.ci_high < 0)
    json.dumps(f.to_dict())
    assert f.answer in f.verdict and "gradient" in f.figures
    g = frame[frame["kind"] == "gradient"]
    assert (g["noise_log_ratio"].abs() < 1).all()  # matched variance: the same order of noise
    assert (g["bias_rel_bernoulli"] > 0).all()


def test_changing_the_data_changes_the_call(frame):
    gauss_unbiased = frame.copy()
    grad = gauss_unbiased["kind"] == "gradient"
    rng = np.random.default_rng(0)
    gauss_unbiased.loc[grad, "bias_log_ratio"] = -3.0 + 0.01 * rng.standard_normal(grad.sum())
    f = STUDY.analyze(gauss_unbiased)
    assert f.primary.call == "lowers" and f.answer.startswith("Partly")
    same = frame.copy()
    same.loc[grad, "bias_log_ratio"] = 0.001 * rng.standard_normal(grad.sum())
    g = STUDY.analyze(same)
    assert g.primary.call == "equivalent" and g.answer.startswith("No: Gaussian dropout biases")
