"""The slack study on the protocol: equal budgets, paired replicates, root seeds; an
analysis whose calls and answer follow the data; and a real quick run through the store."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from droplab import studies
from droplab.backends import run_study
from droplab.findings import CALLS
from droplab.store import Store
from droplab.studies import slack
from droplab.studies.slack_measures import ABLATE_FRACTIONS, PRUNE_FRACTIONS

STUDY = slack.STUDY


def _calls_agree(contrasts) -> None:
    """Every call reads off its own interval and margin (docs/statistics.md)."""
    assert sum(c.primary for c in contrasts) == 1 and contrasts[0].primary
    for c in contrasts:
        assert c.call in CALLS
        if c.call == "lowers":
            assert c.ci_high < 0
        elif c.call == "raises":
            assert c.ci_low > 0
        elif c.call == "equivalent":
            assert -c.margin < c.ci_low and c.ci_high < c.margin
        else:
            assert c.ci_low <= 0 <= c.ci_high
            assert not (-c.margin < c.ci_low and c.ci_high < c.margin)


def test_registered_and_seeded():
    assert studies.get("slack") is STUDY
    assert STUDY.seeded and not STUDY.custom


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_both_arms_get_the_same_budget_in_every_replicate(preset):
    budget = slack.PRESETS[preset]["budget"]
    trials = STUDY.expand(preset)
    for g in STUDY.groups(trials):  # one fit = one replicate: both arms, one seed
        assert len({t.seed for t in g}) == 1
        arms = [t.config["arm"] for t in g]
        assert arms.count("none") == arms.count("dropout") == budget.configs
    assert len({t.seed for t in trials}) == budget.seeds
    for t in trials:
        assert t.config["max_norm"] is None and t.config["input_rate"] == 0.0
        if t.config["arm"] == "none":
            assert t.config["hidden_rate"] == 0.0
        else:
            assert 0.1 <= t.config["hidden_rate"] <= 0.7
    if preset != "quick":
        assert budget.seeds >= 10 and budget.configs >= 2
        lrs = {t.config["lr"] for t in trials if t.config["arm"] == "none"}
        assert len(lrs) > 1  # the arms really search


def test_root_seed_gives_an_independent_replication():
    a, b = STUDY.expand("quick", seed=0), STUDY.expand("quick", seed=1)
    assert not {t.seed for t in a} & {t.seed for t in b}
    assert {t.config["root_seed"] for t in b} == {1}


def test_bad_preset_names_the_choices():
    with pytest.raises(ValueError, match="preset must be one of quick, standard, full, got 'big'"):
        slack.trials("big")


def _synthetic(tmp_path, cv_shift, *, spread=0.005, trap=False) -> pd.DataFrame:
    """The quick grid with made-up metrics: dropout's unit CV = none's + ``cv_shift`` with
    per-replicate noise ``spread``. With ``trap``, the none net of replicate 0 has a worse
    validation error than a second, hypothetical configuration with the best test error
    and CV 9.9: selection must not see it."""
    rows = []
    for t in STUDY.expand("quick"):
        c = t.config
        g = np.random.default_rng([t.seed % 2**32, len(c["arm"])])
        cv = 0.5 + (cv_shift if c["arm"] == "dropout" else 0.0) + g.normal(0, spread)
        metrics = {
            "test_error": 0.05 + g.normal(0, 0.001),
            "val_error": 0.05,
            "val_loss": 0.2,
            "unit_cv": cv,
            "unit_cv_act": cv,
            "slack_units": 0.02,
            "dead_units": 0.01,
            "frac_small_rel": 0.08,
            "coadapt": 0.2,
            "capped": 0.0,
            **{
                f"{k}_ret{s}": 0.8 + g.normal(0, 0.001)
                for k in ("prune", "least", "random")
                for s in [
                    "",
                    *(f"_{round(f * 100)}" for f in (*PRUNE_FRACTIONS, *ABLATE_FRACTIONS)),
                ]
            },
        }
        rows.append(t.record(status="finished", metrics=metrics, curves={}))
        if trap and c["arm"] == "none":
            config = {**c, "config": 1}
            bad = {**metrics, "val_error": 0.5, "test_error": 0.0, "unit_cv": 9.9}
            rows.append(
                slack.Trial("slack", config, t.seed, "quick").record(status="finished", metrics=bad)
            )
    with Store(tmp_path / "syn.db") as store:
        store.record(rows)
        return store.frame("slack")


def test_a_clear_equalization_is_called_lowers(tmp_path):
    f = STUDY.findings(_synthetic(tmp_path, -0.2, trap=True))
    p = f.primary
    assert p.name == "unit_cv" and p.call == "lowers"
    assert p.estimate == pytest.approx(-20.0, abs=5 * 0.005 * 100 * math.sqrt(2))  # 5 sigma
    assert f.answer.startswith("Tuned dropout lowers the spread of hidden-unit importance")
    _calls_agree(f.contrasts)
    assert f.verdict.startswith(f.answer)


def test_no_difference_is_equivalent_and_noise_is_inconclusive(tmp_path):
    f = STUDY.findings(_synthetic(tmp_path, 0.0, spread=0.002))
    assert f.primary.call == "equivalent" and "equivalent within ±5 CV points" in f.answer
    _calls_agree(f.contrasts)
    g = STUDY.findings(_synthetic(tmp_path / "n", 0.0, spread=0.3))
    assert g.primary.call == "inconclusive" and "inconclusive" in g.answer
    assert "lowers" not in g.answer and "raises" not in g.answer


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("slack") / "results.db"
    trials = STUDY.expand("quick")
    with Store(path) as store:
        summary = run_study(STUDY, trials, store)
        assert (summary.finished, summary.failed) == (len(trials), 0), store.errors("slack")
        return store.frame("slack")


def test_quick_preset_runs_end_to_end(frame):
    for col in (
        "unit_cv",
        "unit_cv_act",
        "slack_units",
        "prune_ret",
        "least_ret",
        "random_ret",
        "acc0",
    ):
        assert frame[col].notna().all(), col
    # the unpruned accuracy measured here is the trainer's test accuracy of the same weights
    assert np.allclose(frame["acc0"], 1.0 - frame["test_error"], atol=1e-6)
    f = STUDY.findings(frame)
    assert f.primary is not None and f.primary.n_seeds == 3 and f.primary.unit == "CV %"
    _calls_agree(f.contrasts)
    assert len(f.contrasts) == 1 + len(slack.SECONDARY)
    json.dumps(f.to_dict(), allow_nan=False)
    assert f.answer and f.answer.startswith("Tuned dropout")
    assert set(f.figures) == {"robustness", "importance_profile"}
    assert f.failed == []


def test_failed_trials_are_listed_and_the_rest_analyzed(frame):
    f = frame.copy()
    f.loc[0, "status"] = "failed"
    f.loc[0, "error"] = "RuntimeError: boom"
    out = STUDY.analyze(f)
    assert len(out.failed) == 1 and "boom" in out.failed[0]
    assert out.primary is not None
    assert STUDY.analyze(frame.iloc[0:0]).verdict == "No finished trials yet."
