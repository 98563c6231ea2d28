"""explicit: the quick preset end to end through the real store; verdicts follow the data."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from droplab import rng
from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.explicit import STUDY, dropout_sgd, ridge_solution


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("explicit") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("explicit")


def test_registered():
    assert get("explicit") is STUDY


def test_dropout_sgd_converges_to_the_closed_form():
    from droplab.theory import linear_dropout_solution

    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64) * torch.tensor([0.1, 1, 3, 1, 10])
    y = X @ torch.ones(5, dtype=torch.float64) + torch.randn(40, generator=g, dtype=torch.float64)
    w_star = linear_dropout_solution(X, y, keep=0.6).double()
    w = dropout_sgd(X, y, 0.4, steps=4000, generator=rng.generator(0, "masks"))
    # Polyak average of 2000 iterates: relative error of order 1e-2 (measured 0.3%); 5%
    # is far outside the Monte Carlo spread and far below the distance to ridge/OLS.
    assert float((w - w_star).norm() / w_star.norm()) < 0.05
    ols = ridge_solution(X, y, 0.0)
    assert float((ols - w_star).norm() / w_star.norm()) > 0.1


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    f = STUDY.findings(frame)
    lin = f.extra_tables["linear"]
    # dropout SGD reproduces the marginalized solution on every problem
    assert (lin["sgd_minus_marginal"].abs() < 0.02).all()
    assert "matches the closed-form marginalized ridge" in f.verdict
    assert "on 2 of 2 problems" in f.verdict
    tuned = f.table.set_index("arm")
    assert set(tuned.index) == {"none", "l2", "explicit", "noise", "dropout"}
    assert f"({tuned.loc['dropout', 'test_error_pct']:.1f}% error)" in f.verdict
    assert f.key_number.startswith("implicit effect at rate 0.5")
    assert {"linear", "mlp"} <= set(f.figures)
    assert set(f.references) <= {"wager2013", "wei2020", "srivastava2014", "greydanus2020"}


def _with(frame: pd.DataFrame, mask, column: str, values) -> pd.DataFrame:
    out = frame.copy()
    out.loc[mask, column] = values
    return out


def test_changing_the_data_changes_the_verdict(frame):
    lin = frame["part"] == "linear"
    off = _with(
        frame,
        lin,
        "rmse_sgd",
        frame.loc[lin, "rmse_marginal"] + 0.1 + 0.01 * frame.loc[lin, "seed"],
    )
    assert "on 0 of 2 problems" in STUDY.analyze(off).verdict
    drop = frame["arm"] == "dropout"
    best = _with(frame, drop, "test_error", 0.001 * frame.loc[drop, "seed"])
    worst = _with(frame, drop, "test_error", 0.9 + 0.001 * frame.loc[drop, "seed"])
    good, bad = STUDY.analyze(best).verdict, STUDY.analyze(worst).verdict
    assert "beats l2" in good and "beats none" in good
    assert "loses to l2" in bad and "loses to none" in bad
    assert good != bad
