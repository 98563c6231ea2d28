"""ensemble on the protocol: equal budgets (plain, dropout, and the dropout configurations
with M times the budget), the quick preset end to end, compute stated, calls that follow
the data and agree with their intervals."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from droplab.backends import run_study
from droplab.findings import CALLS
from droplab.store import Store
from droplab.studies import get
from droplab.studies import protocol as P
from droplab.studies.ensemble import PRESETS, STUDY
from droplab.studies.ensemble_design import disagreement
from droplab.studies.ensemble_design import trials as design_trials


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("ensemble") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0, store.errors("ensemble")
        return store.frame("ensemble")


def test_registered_and_seeded():
    assert get("ensemble") is STUDY and STUDY.seeded


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_equal_budgets_and_the_long_arm_repeats_the_dropout_configs(preset):
    p = PRESETS[preset]
    trials = STUDY.expand(preset)
    M = p["members"]
    count: dict[tuple, int] = {}
    for t in trials:
        count[(t.seed, t.config["arm"])] = count.get((t.seed, t.config["arm"]), 0) + 1
    assert set(count.values()) == {p["budget"].configs}
    assert {a for _, a in count} == {"plain", "dropout", "long"}
    assert len({t.seed for t in trials}) == p["budget"].seeds
    for t in trials:
        long = t.config["arm"] == "long"
        assert t.config["members"] == (1 if long else M)
        assert t.config["long_factor"] == (M if long else 1)
        assert (t.config["hidden_rate"] > 0) == (t.config["arm"] != "plain")
    key = lambda t: (t.seed, t.config["config"], t.config["lr"], t.config["hidden_rate"])  # noqa: E731
    drop = {key(t) for t in trials if t.config["arm"] == "dropout"}
    assert drop == {key(t) for t in trials if t.config["arm"] == "long"}
    # one fit per (replicate, recipe): every arm of a replicate shares data and seeds
    groups = STUDY.groups(trials)
    assert len(groups) == 2 * p["budget"].seeds
    for g in groups:
        assert len({t.seed for t in g}) == 1 and len({t.config["long_factor"] for t in g}) == 1


def test_root_seed_gives_an_independent_replication():
    a, b = STUDY.expand("quick", seed=0), STUDY.expand("quick", seed=1)
    assert not {t.seed for t in a} & {t.seed for t in b}
    assert {t.config["root_seed"] for t in b} == {1}


def test_bad_design_input_names_the_argument():
    p = PRESETS["quick"]
    kw = {"long": True, "ood": False}
    with pytest.raises(ValueError, match=r"members must be an int >= 2 \(an ensemble\), got 1"):
        design_trials("ensemble", "quick", 0, p["cell"], p["budget"], members=1, samples=5, **kw)
    with pytest.raises(ValueError, match=r"samples \(MC masks\) must be an int >= 2, got 1"):
        design_trials("ensemble", "quick", 0, p["cell"], p["budget"], members=2, samples=1, **kw)
    with pytest.raises(ValueError, match="preset must be one of"):
        STUDY.expand("huge")


def test_disagreement_is_divided_by_member_error():
    y = torch.tensor([0, 0, 0, 0])
    onehot = torch.eye(2)
    a = onehot[torch.tensor([0, 0, 1, 1])]  # 2 errors
    b = onehot[torch.tensor([0, 1, 1, 0])]  # 2 errors, disagrees with a on 2 rows
    d = disagreement(torch.stack([a, b]), y)
    assert d["raw"] == pytest.approx(0.5) and d["error"] == pytest.approx(0.5)
    assert d["normalized"] == pytest.approx(1.0)
    assert math.isnan(disagreement(torch.stack([onehot[y], onehot[y]]), y)["normalized"])


def test_quick_runs_states_compute_and_calls_agree_with_intervals(frame):
    assert set(frame["status"]) == {"finished"}
    f = STUDY.findings(frame)
    assert [c.primary for c in f.contrasts].count(True) == 1
    assert f.primary.name == "ensemble_vs_long_dropout" and f.primary.n_seeds == 3
    for c in f.contrasts:
        assert c.call in CALLS
        if c.call in ("lowers", "raises"):
            assert c.ci_low > 0 or c.ci_high < 0
            assert (c.estimate < 0) == (c.call == "lowers")
        elif c.call == "equivalent":
            assert -c.margin < c.ci_low and c.ci_high < c.margin
        else:
            assert c.ci_low <= 0 <= c.ci_high or not (-c.margin < c.ci_low and c.ci_high < c.margin)
    json.dumps(f.to_dict(), allow_nan=False)
    assert f.answer.startswith("On digits, ") and "ensemble of 3 tuned no-dropout nets" in f.answer
    # compute: an ensemble costs the sum of its members' steps; the long run may use M x
    done = frame[frame["status"] == "finished"]
    main = done[done["arm"] != "long"]
    assert (main["ens_steps"] >= main["steps"]).all() and (main["steps"] <= main["step_cap"]).all()
    long = done[done["arm"] == "long"]
    assert (long["step_cap"] == 3 * main["step_cap"].iloc[0]).all()
    methods = next(v for k, v in f.extra_tables.items() if k.startswith("methods"))
    assert {"test_nll", "test_nll_ts", "test_ece_pct", "test_ece_ts_pct", "train_steps"} <= set(
        methods.columns
    )
    # temperature scaling is fitted on validation: it changes NLL, never the argmax
    assert (done["temperature"] if "temperature" in done else done["ws_temperature"]).gt(0).all()


def test_the_call_follows_the_data(frame):
    """Make the long dropout net's MC error 30 points worse: the ensemble then lowers it."""
    worse = frame.copy()
    long = worse["arm"] == "long"
    worse.loc[long, "mc_error"] = (
        worse.loc[long, "mc_error"] + 0.30 + 0.001 * (worse.loc[long, "seed"] % 7)
    )
    f = STUDY.analyze(worse)
    assert f.primary.call == "lowers" and f.primary.estimate < -20
    assert "lowers test error by" in f.answer


def test_failed_trials_are_listed_and_the_rest_analyzed(frame):
    f = frame.copy()
    i = f.index[(f["arm"] == "plain") & (f["config"] == 1)][0]
    f.loc[i, "status"] = "failed"
    f.loc[i, "error"] = "RuntimeError: boom"
    out = STUDY.analyze(f)
    assert len(out.failed) == 1 and "boom" in out.failed[0]
    assert out.answer and "No finished" not in out.verdict
    assert P.root_seeds(f[f["status"] == "finished"]) == (0,)
