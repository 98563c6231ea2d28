"""uncertainty: quick preset end to end through the real store; AUROC; verdict follows data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from droplab import data
from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.uncertainty import STUDY, auroc, entropy, hold_out_class


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("uncertainty") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("uncertainty")


def test_registered():
    assert get("uncertainty") is STUDY


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s_in = rng.integers(0, 5, 40).astype(float)  # many ties
    s_out = rng.integers(1, 7, 25).astype(float)
    want = roc_auc_score(np.r_[np.zeros(40), np.ones(25)], np.r_[s_in, s_out])
    assert auroc(s_in, s_out) == pytest.approx(want)
    assert auroc(np.zeros(3), np.ones(2)) == 1.0 and auroc(np.ones(3), np.zeros(2)) == 0.0


def test_entropy():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(entropy(p), torch.tensor([0.0, float(np.log(2))]))


def test_hold_out_class():
    ds = data.load("digits", seed=0)
    in_ds, x_ood = hold_out_class(ds, 4)
    assert in_ds.n_classes == 9 and set(in_ds.y_train.tolist()) == set(range(9))
    n4 = sum(int((getattr(ds, f"y_{s}") == 4).sum()) for s in ("train", "val", "test"))
    assert x_ood.shape == (n4, 64)
    assert len(in_ds.y_train) + len(in_ds.y_val) + len(in_ds.y_test) + n4 == 1797
    # standardization refitted on the 9-class training points
    assert in_ds.x_train.mean(0).abs().max() < 1e-4
    with pytest.raises(ValueError, match="held_out"):
        hold_out_class(ds, 10)


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    assert frame["mc_auroc_class"].between(0, 1).all()
    f = STUDY.findings(frame)
    assert set(f.table["method"]) == {"no dropout", "weight scaling", "MC dropout", "deep ensemble"}
    comp = f.extra_tables["paired differences"].set_index("comparison")
    d = comp.loc["MC dropout - weight scaling", "d_test_nll"]
    assert f"NLL {d:+.3f}" in f.verdict
    assert "uncertainty" in f.figures


def test_changing_the_data_changes_the_verdict(frame):
    def altered(shift: float) -> str:
        f = frame.copy()
        f["mc_auroc_class"] = (f["ens_auroc_class"] + shift + 0.001 * f["seed"]).clip(0, 1)
        return STUDY.analyze(f)

    up, down = altered(+0.05), altered(-0.05)
    assert "+0.05" in up.key_number and "-0.05" in down.key_number
    assert "held-out-class AUROC +0.05" in up.verdict.split("deep ensemble")[1]
    assert up.verdict != down.verdict


def test_failed_trials_are_listed_and_the_rest_analyzed(frame):
    f = frame.copy()
    metrics = [c for c in f.columns if c.startswith(("test_", "ws_", "mc_", "prune_"))]
    f.loc[0, "status"] = "failed"
    f.loc[0, "error"] = "RuntimeError: boom"
    f.loc[0, metrics] = float("nan")
    out = STUDY.analyze(f)
    assert len(out.failed) == 1 and "boom" in out.failed[0]
    assert out.verdict and "No finished" not in out.verdict
