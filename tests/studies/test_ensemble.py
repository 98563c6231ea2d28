"""ensemble: quick preset end to end through the real store; MC/ensemble math; verdict follows data."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import get
from droplab.studies.ensemble import (
    STUDY,
    arithmetic_mean,
    disagreement,
    geometric_mean,
    mean_kl,
)


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("ensemble") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0
        return store.frame("ensemble")


def test_registered():
    assert get("ensemble") is STUDY


def test_geometric_mean_of_a_linear_layer_is_weight_scaling():
    # Baldi & Sadowski (2013): logits linear in the mask -> the normalized geometric mean of
    # the softmax outputs is the softmax of the mean logits, exactly.
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(7, 5, generator=g), torch.randn(5, 3, generator=g)
    masks = (torch.rand(400, 1, 5, generator=g) < 0.5).float() / 0.5  # (T, 1, D) inverted
    z = (x * masks) @ w  # (T, n, C)
    torch.testing.assert_close(geometric_mean(z), (z.mean(0)).softmax(-1))
    # the arithmetic mean differs (Jensen), and both are distributions
    assert mean_kl(arithmetic_mean(z), geometric_mean(z)) > 1e-4
    torch.testing.assert_close(arithmetic_mean(z).sum(-1), torch.ones(7))


def test_disagreement():
    p = torch.eye(3)[torch.tensor([[0, 1, 2, 0], [0, 1, 2, 1], [0, 1, 2, 2]])]  # (M=3, n=4, C=3)
    # pairs differ only on the last row, each pair on 1 of 4 rows
    assert disagreement(p) == pytest.approx(0.25)
    assert disagreement(p[:1]) == 0.0


def test_quick_runs_and_verdict_comes_from_the_store(frame):
    assert set(frame["status"]) == {"finished"}
    f = STUDY.findings(frame)
    ws = f.table[f.table["method"] == "weight scaling"].iloc[0]
    assert 0 < ws.test_error_pct < 100
    comp = f.extra_tables["paired comparisons"]
    mc = comp.iloc[0]
    assert f"{mc.d_nll:+.3f}" in f.verdict  # the verdict quotes the stored MC-vs-WS NLL
    assert {"mc_vs_T", "ensemble_vs_compute", "geometric_vs_weight_scaling"} <= set(f.figures)
    # T=1 arithmetic and geometric means are the same single mask
    t1 = f.table.set_index("method")
    assert t1.loc["MC arithmetic, T=1", "test_nll"] == pytest.approx(
        t1.loc["MC geometric, T=1", "test_nll"]
    )


def test_changing_the_data_changes_the_verdict(frame):
    T = max(int(c.rsplit("T", 1)[1]) for c in frame.columns if c.startswith("mc_arith_nll_T"))
    M = max(int(c.rsplit("M", 1)[1]) for c in frame.columns if c.startswith("ens_plain_acc_M"))
    jitter = 0.001 * frame["seed"]

    def altered(nll_shift: float, acc_shift: float) -> str:
        f = frame.copy()
        f[f"mc_arith_nll_T{T}"] = f["ws_nll"] + nll_shift + jitter
        f[f"ens_plain_acc_M{M}"] = (f[f"long_ws_acc_M{M}"] + acc_shift + jitter).clip(0, 1)
        return STUDY.analyze(f).verdict

    good, bad = altered(-0.3, +0.05), altered(+0.3, -0.05)
    assert "(better NLL)" in good and "(worse NLL)" in bad
    assert f"ensemble of M={M} no-dropout nets is better than" in good
    assert f"ensemble of M={M} no-dropout nets is worse than" in bad


def test_failed_trials_are_listed_and_the_rest_analyzed(frame):
    f = frame.copy()
    metrics = [c for c in f.columns if c.startswith(("test_", "ws_", "mc_", "prune_"))]
    f.loc[0, "status"] = "failed"
    f.loc[0, "error"] = "RuntimeError: boom"
    f.loc[0, metrics] = float("nan")
    out = STUDY.analyze(f)
    assert len(out.failed) == 1 and "boom" in out.failed[0]
    assert out.verdict and "No finished" not in out.verdict
