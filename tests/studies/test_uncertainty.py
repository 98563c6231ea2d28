"""uncertainty on the protocol: equal budgets, one class held out per replicate, the quick
preset end to end, temperature-scaled metrics, OOD cells reported separately, calls that
follow the data and agree with their intervals."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from droplab import data
from droplab.backends import run_study
from droplab.findings import CALLS
from droplab.store import Store
from droplab.studies import get
from droplab.studies.ensemble_design import OOD_KINDS, ood_sets, widen_validation
from droplab.studies.uncertainty import PRESETS, STUDY, hold_out_class


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("uncertainty") / "results.db"
    with Store(path) as store:
        summary = run_study(STUDY, STUDY.expand("quick"), store)
        assert summary.failed == 0, store.errors("uncertainty")
        return store.frame("uncertainty")


def test_registered_and_seeded():
    assert get("uncertainty") is STUDY and STUDY.seeded


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_equal_budgets(preset):
    p = PRESETS[preset]
    trials = STUDY.expand(preset)
    count: dict[tuple, int] = {}
    for t in trials:
        count[(t.seed, t.config["arm"])] = count.get((t.seed, t.config["arm"]), 0) + 1
    assert set(count.values()) == {p["budget"].configs}
    assert {a for _, a in count} == {"plain", "dropout"}
    assert all(t.config["ood"] and t.config["members"] == p["members"] for t in trials)
    assert len(STUDY.groups(trials)) == p["budget"].seeds


def test_hold_out_class_and_ood_sets():
    ds = data.load("digits", seed=0)
    in_ds, x_class = hold_out_class(ds, 4)
    assert in_ds.n_classes == 9 and set(in_ds.y_train.tolist()) == set(range(9))
    n4 = sum(int((getattr(ds, f"y_{s}") == 4).sum()) for s in ("train", "val", "test"))
    assert len(x_class) == n4
    sets = ood_sets(in_ds, x_class, seed=3)
    assert set(sets) == set(OOD_KINDS)
    assert sets["shuffled"].shape == in_ds.x_test.shape == sets["noise"].shape
    raw = lambda x: (x * in_ds.x_std + in_ds.x_mean).sort(1).values  # noqa: E731
    # shuffled inputs keep each input's raw values, only their order changes
    assert (raw(sets["shuffled"]) - raw(in_ds.x_test)).abs().max() < 1e-3
    with pytest.raises(ValueError, match="held-out class must be in \\[0, 10\\), got 12"):
        hold_out_class(ds, 12)


def test_quick_runs_and_reports_each_ood_cell(frame):
    assert set(frame["status"]) == {"finished"}
    f = STUDY.findings(frame)
    assert [c.primary for c in f.contrasts].count(True) == 1
    assert f.primary.name == "mc_vs_ws_nll_ts" and f.primary.unit == "nats"
    for c in f.contrasts:
        assert c.call in CALLS
        if c.call in ("lowers", "raises"):
            assert c.ci_low > 0 or c.ci_high < 0
        if c.call == "equivalent":
            assert -c.margin < c.ci_low and c.ci_high < c.margin
    json.dumps(f.to_dict(), allow_nan=False)
    ood = next(v for k, v in f.extra_tables.items() if k.startswith("OOD"))
    assert len(ood) == 4 * len(OOD_KINDS) and ood["auroc"].between(0, 1).all()
    # validity: digits' held-out class is detected far above chance (single nets score
    # about 0.9 with a standard error near 0.02, so 0.5 is some 20 standard errors away)
    assert ood.loc[ood["ood"] == "held-out class", "auroc"].max() > 0.5
    for kind in OOD_KINDS:  # never pooled: one contrast per cell
        assert any(c.name.endswith(kind) for c in f.contrasts)
    assert f.answer.startswith("On digits with one class held out, ") and "MC dropout" in f.answer
    assert frame["held_out_class"].between(0, 9).all()


def test_the_call_follows_the_data(frame):
    worse = frame.copy()
    d = worse["arm"] == "dropout"
    worse.loc[d, "mc_ts_nll"] = worse.loc[d, "ws_ts_nll"] + 0.5 + 0.001 * (worse.loc[d, "seed"] % 7)
    f = STUDY.analyze(worse)
    assert f.primary.call == "raises" and f.primary.estimate > 0.4
    assert "raises temperature-scaled test NLL" in f.answer


def test_widen_validation_moves_training_points_to_validation():
    ds = data.load("digits", seed=0)
    n, n_val = len(ds.y_train), len(ds.y_val)
    w = widen_validation(ds, 900, seed=5)
    assert len(w.y_train) == 900 and len(w.y_val) == n_val + n - 900
    assert len(w.y_test) == len(ds.y_test)
    # standardization refitted on the kept training points only
    assert w.x_train.mean(0).abs().max() < 1e-4
    raw = lambda d, x: x * d.x_std + d.x_mean  # noqa: E731
    assert (raw(w, w.x_test) - raw(ds, ds.x_test)).abs().max() < 1e-3
    with pytest.raises(ValueError, match=r"n_fit must be an int in \[1, \d+\]"):
        widen_validation(ds, 0, seed=5)
