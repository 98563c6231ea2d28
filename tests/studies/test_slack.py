"""slack: quick preset end to end through the real store; measurements; verdict follows data."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.slack import STUDY, coadaptation, dead_fraction, prune_


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("slack") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("slack")


def test_registered():
    assert get("slack") is STUDY


def test_prune_zeroes_the_smallest_fraction_per_layer():
    net = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(60.0).view(6, 10) - 29.5)  # distinct magnitudes
    prune_(net, 0.5)
    assert int((net[0].weight == 0).sum()) == 30 and int((net[2].weight == 0).sum()) == 9
    assert net[0].weight.abs()[net[0].weight != 0].min() > 14  # kept the 30 largest |w|
    with pytest.raises(ValueError, match="fraction"):
        prune_(net, 1.0)


def test_dead_and_coadaptation():
    a = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0], [0.0, 3.0, 6.1]])  # unit 0 dead
    assert dead_fraction([a]) == pytest.approx(1 / 3)
    assert coadaptation([a]) == pytest.approx(1.0, abs=1e-3)  # the live pair is collinear
    g = torch.Generator().manual_seed(0)
    assert coadaptation([torch.randn(20000, 4, generator=g)]) < 0.03  # ~ 1/sqrt(n) each


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    assert set(frame["arm"]) == {"none", "dropout"}
    f = STUDY.findings(frame)
    r = f.table.set_index("key").loc["prune_auc"]
    assert f"{r['none']:.1f}% without vs {r['dropout']:.1f}% with" in f.verdict
    assert {"pruning_curve", "weight_magnitudes"} <= set(f.figures)
    # pruning nothing leaves the test accuracy unchanged
    assert (frame["prune_acc_0"] - frame["test_acc"]).abs().max() < 1e-6


def test_changing_the_data_changes_the_verdict(frame):
    more = frame.copy()
    none = more["arm"] == "none"
    more.loc[none, "frac_small_rel"] = 0.5 + 0.001 * more.loc[none, "seed"]
    more.loc[~none, "frac_small_rel"] = 0.1 + 0.001 * more.loc[~none, "seed"]
    less = more.copy()
    for col in ("frac_small_rel", "frac_small_abs", "dead_frac"):  # equal up to seed noise
        less[col] = 0.1 + 0.001 * less["seed"] * (1 + less["arm"].eq("none"))
    assert STUDY.analyze(more).verdict.startswith("The note's picture holds:")
    assert "(|w| < 0.1 rms) in 1 of 1" in STUDY.analyze(more).verdict
    assert STUDY.analyze(less).verdict.startswith("The note's picture does not hold")


def test_failed_trials_are_listed_and_the_rest_analyzed(frame):
    f = frame.copy()
    metrics = [c for c in f.columns if c.startswith(("test_", "ws_", "mc_", "prune_"))]
    f.loc[0, "status"] = "failed"
    f.loc[0, "error"] = "RuntimeError: boom"
    f.loc[0, metrics] = float("nan")
    out = STUDY.analyze(f)
    assert len(out.failed) == 1 and "boom" in out.failed[0]
    assert out.verdict and "No finished" not in out.verdict
