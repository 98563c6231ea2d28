"""conv on the protocol: its grid (equal budgets, placement searched, DropBlock's ramp),
an analysis whose calls follow the data, the file datasets of --data-dir, and a real quick
run through the store."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from droplab import studies
from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import conv
from droplab.studies import conv_design as D

STUDY = conv.STUDY
CALLS = {"lowers", "raises", "equivalent", "inconclusive"}


def test_registered_and_seeded():
    assert studies.get("conv") is STUDY
    assert STUDY.seeded and not STUDY.custom


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_equal_budgets_placement_searched_and_paired(preset):
    budget = conv.PRESETS[preset]["budget"]
    trials = STUDY.expand(preset)
    assert len({t.hash for t in trials}) == len(trials)
    counts: dict = {}
    for t in trials:
        c = t.config
        key = (t.seed, c["dataset"])
        counts.setdefault(key, {}).setdefault(c["arm"], 0)
        counts[key][c["arm"]] += 1
        if c["arm"] == "none":
            assert c["placement"] == "none" and c["hidden_rate"] == 0.0
        else:
            assert c["placement"] in D.PLACEMENTS and 0.05 <= c["hidden_rate"] <= 0.4
        assert (c["ramp_steps"] > 0) == (c["arm"] == "dropblock")
    for arms in counts.values():  # every arm of a cell: the same number of configurations
        assert set(arms.values()) == {budget.configs}
    assert len({t.seed for t in trials}) == budget.seeds
    for g in STUDY.groups(trials):  # a fit: one replicate, cell, arm and placement
        assert len({(t.seed, t.config["arm"], t.config["placement"]) for t in g}) == 1
    if preset != "quick":
        assert budget.seeds >= 8
        assert ("mnist1d", "element") in {(t.config["dataset"], t.config["arm"]) for t in trials}


def test_root_seed_is_an_independent_replication():
    a = {t.seed for t in STUDY.expand("standard", seed=0)}
    b = {t.seed for t in STUDY.expand("standard", seed=1)}
    assert not a & b


def test_bad_input_names_argument_value_and_choices():
    with pytest.raises(ValueError, match="preset must be one of quick, standard, full, got 'x'"):
        conv.trials("x")
    with pytest.raises(ValueError, match=r"conv's dataset must be one of .*got 'svhn'"):
        D.load_cell_data("svhn", 1, 10, None)


# -- the analysis on made-up metrics -----------------------------------------------------


def _store(tmp_path, shift, *, spread=0.002, trap=False):
    """The standard grid with made-up metrics: every dropout arm = none + ``shift`` (error
    fraction) with per-replicate noise ``spread``; probes: element 0.9, block 0.6, spatial
    0.3 (+ noise). With ``trap``, none's config 1 has the worst validation error and the
    best test error: selection must ignore it."""
    store = Store(tmp_path / "syn.db")
    records = []
    for t in STUDY.expand("standard"):
        c = t.config
        g = np.random.default_rng([t.seed % 2**32, c["config"], len(c["arm"])])
        base = 0.08 + np.random.default_rng(t.seed % 2**32).normal(0, 0.01)
        err = base + (shift if c["arm"] != "none" else 0.0) + 0.01 * c["config"]
        err += g.normal(0, spread)
        val = err
        if trap and c["arm"] == "none" and c["config"] == 1:
            err, val = 0.0, 0.9
        probe = {
            f"probe_{m}": v + g.normal(0, 0.01)
            for m, v in (("element", 0.9), ("block", 0.6), ("spatial", 0.3))
        }
        metrics = {
            "test_error": err,
            "val_error": val,
            "val_loss": 1.0 + val,
            "test_nll": 1.0 + err,
            "best_epoch": 30.0,
            "capped": 0.0,
            "ac1": 0.5,
            "ac1_l0": 0.5,
            **probe,
            **{f"{k}_l0": v for k, v in probe.items()},
        }
        records.append(t.record(status="finished", metrics=metrics, curves={}))
    store.record(records)
    return store


def _check_calls(f):
    assert sum(c.primary for c in f.contrasts) == 1
    for c in f.contrasts:
        assert c.call in CALLS
        if c.call == "lowers":
            assert c.ci_high < 0
        elif c.call == "raises":
            assert c.ci_low > 0
        elif c.call == "equivalent":
            assert -c.margin < c.ci_low and c.ci_high < c.margin
        else:
            assert c.ci_low <= 0 <= c.ci_high or not (-c.margin < c.ci_low <= c.ci_high < c.margin)
    json.dumps(f.to_dict())


def test_a_clear_effect_is_called_lowers(tmp_path):
    with _store(tmp_path, -0.03, trap=True) as store:
        f = STUDY.findings(store.frame("conv"))
    p = f.primary
    assert p.name == "element_vs_none" and p.call == "lowers"
    assert p.estimate == pytest.approx(-3.0, abs=0.3) and p.n_seeds == 8
    assert f.answer.startswith(
        "On MNIST-1D with Greydanus's CNN, tuned element-wise dropout lowers"
    )
    assert "R^2 0.90 of a unit dropped alone, 0.60 under a 3-block and 0.30" in f.answer
    _check_calls(f)
    names = {c.name for c in f.contrasts}
    assert {"spatial_vs_none_digits-image", "dropblock_vs_none_digits-image"} <= names
    probe = next(c for c in f.contrasts if c.name == "probe_element_vs_block")
    assert probe.call == "raises" and probe.estimate == pytest.approx(30, abs=2)
    # the trap (best test, worst validation) was never selected
    arms = f.extra_tables["tuned arms (test error %, chosen settings, mechanism)"]
    none = arms[(arms["arm"] == "none") & (arms["dataset"] == "mnist1d")]
    assert float(none["test_error"].iloc[0]) > 4


def test_no_effect_is_equivalent_and_noise_is_inconclusive(tmp_path):
    with _store(tmp_path, 0.0, spread=0.001) as store:
        f = STUDY.findings(store.frame("conv"))
    assert f.primary.call == "equivalent" and "is equivalent within ±1 point" in f.answer
    _check_calls(f)
    (tmp_path / "noisy").mkdir()
    with _store(tmp_path / "noisy", 0.0, spread=0.08) as store:
        f = STUDY.findings(store.frame("conv"))
    assert f.primary.call == "inconclusive" and "MDE" in f.answer
    assert not math.isnan(f.primary.mde)
    _check_calls(f)


# -- the 2-D file datasets (--data-dir) -----------------------------------------------------


def _idx(path, arr, labels=False):
    """Write ``arr`` (uint8) as an IDX file (magic 0x08 = unsigned byte)."""
    dims = arr.shape
    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _tiny_mnist(folder, n=80, n_test=30):
    g = np.random.default_rng(0)
    y = np.arange(n) % 10
    x = g.integers(0, 60, size=(n, 28, 28))
    for i, c in enumerate(y):  # a bright bar whose row is the class: learnable
        x[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 250
    yt = np.arange(n_test) % 10
    xt = g.integers(0, 60, size=(n_test, 28, 28))
    for i, c in enumerate(yt):
        xt[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 250
    _idx(folder / "train-images-idx3-ubyte", x)
    _idx(folder / "train-labels-idx1-ubyte", y)
    _idx(folder / "t10k-images-idx3-ubyte", xt)
    _idx(folder / "t10k-labels-idx1-ubyte", yt)


def test_data_dir_files_join_the_full_preset_and_train(tmp_path, monkeypatch):
    monkeypatch.delenv("DROPLAB_DATA_DIR", raising=False)
    assert D.file_nets() == []
    _tiny_mnist(tmp_path)
    monkeypatch.setenv("DROPLAB_DATA_DIR", str(tmp_path))
    D.load_cell_data.cache_clear()
    assert D.file_nets() == [D.MNIST]
    full = {t.config["dataset"] for t in conv.trials("full")}
    assert full == {"mnist1d", "digits-image", "mnist"}
    # a tiny MNIST cell through the real training path: DropBlock (ramp) and none
    net = D.Net("mnist", "cnn2d", (4, 4), 2, 3, 40)
    budget = D.BUDGETS["quick"]
    trials = D.trials_of("quick", 0, [(net, ("none", "dropblock"))], budget)
    trials = [t for t in trials if t.config["replicate"] == 0]
    for group in STUDY.groups(trials):
        out = D.run_group(group, "cpu")
        for r in out:
            m = r["metrics"]
            assert math.isfinite(m["test_error"]) and 0 <= m["test_error"] <= 1
            assert math.isfinite(m["ac1"]) and "probe_element_l0" in m
    with pytest.raises(ValueError, match="n_train=100000 but this mnist draw has"):
        D.load_cell_data("mnist", 1, 100000, None)


# -- a real quick run --------------------------------------------------------------------


def test_quick_preset_runs_end_to_end(tmp_path):
    trials = STUDY.expand("quick")
    with Store(tmp_path / "r.db") as store:
        summary = run_study(STUDY, trials, store)
        assert (summary.finished, summary.failed) == (len(trials), 0), store.errors("conv")
        frame = store.frame("conv")
    for column in ("test_error", "val_error", "best_epoch", "capped", "ac1", "probe_element"):
        assert frame[column].notna().all(), column
    f = STUDY.findings(frame)
    assert f.primary is not None and f.primary.n_seeds == 3
    assert f.primary.name == "element_vs_none"  # digits is the only cell at quick
    assert f.answer and not math.isnan(f.primary.estimate)
    _check_calls(f)
    assert set(f.figures) == {"tuned_arms"} and f.failed == []
