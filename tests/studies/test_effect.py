"""The effect study on the protocol: its grid (equal budgets, paired replicates, root
seeds), an analysis whose calls and answer follow the data, and a real quick run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from droplab import studies
from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import effect
from droplab.studies import protocol as P

STUDY = effect.STUDY


def test_registered_seeded_and_custom():
    assert studies.get("effect") is STUDY
    assert studies.UNAVAILABLE == {}, studies.UNAVAILABLE
    assert STUDY.seeded and STUDY.custom


@pytest.mark.parametrize("preset", ["quick", "standard", "full"])
def test_every_arm_gets_the_same_budget_and_arms_are_paired(preset):
    p = effect.PRESETS[preset]
    C = p["budget"].configs
    trials = STUDY.expand(preset)
    assert len({t.hash for t in trials}) == len(trials)
    groups = STUDY.groups(trials)
    for g in groups:  # one fit = one (cell, replicate): every arm of the cell, one seed
        assert len({t.seed for t in g}) == 1
        counts = {}
        for t in g:
            counts[t.config["arm"]] = counts.get(t.config["arm"], 0) + 1
        if len(counts) > 2:  # a size where every arm trains
            assert counts == {
                "none": 3 * C,
                "input": C,
                "hidden": C,
                "both": C,
                "note": 1,
                "anchor": 1,
                "plain": 1,
            }
        else:  # the baseline's extra sizes
            assert counts == {"none": 3 * C, "plain": 1}
    seeds = {t.seed for t in trials}
    assert len(seeds) == p["budget"].seeds
    if preset != "quick":
        assert len(seeds) >= 10
    note = next(t for t in trials if t.config["arm"] == "note")
    assert (note.config["input_rate"], note.config["hidden_rate"]) == (0.2, 0.5)
    # the tuned arms really search: different learning rates across configurations
    lrs = {t.config["lr"] for t in trials if t.config["arm"] == "none" and t.seed == note.seed}
    assert len(lrs) > 1


def test_root_seed_gives_an_independent_replication():
    a, b = STUDY.expand("quick", seed=0), STUDY.expand("quick", seed=1)
    assert not {t.hash for t in a} & {t.hash for t in b}
    assert not {t.seed for t in a} & {t.seed for t in b}
    assert {t.config["root_seed"] for t in b} == {1}
    assert [t.hash for t in STUDY.expand("quick", seed=1)] == [t.hash for t in b]
    with pytest.raises(ValueError, match="root seed"):
        STUDY.expand("quick", seed=-1)


def test_each_replicate_draws_its_own_data():
    s0, s1 = P.replicate_seed(0, 0), P.replicate_seed(0, 1)
    a, a2, b = (P.load_data("digits", s, 600, None) for s in (s0, s0, s1))
    assert np.array_equal(a.x_test.numpy(), a2.x_test.numpy())  # a pure function of the seed
    assert not np.array_equal(a.x_test.numpy(), b.x_test.numpy())  # test set resampled
    assert not np.array_equal(a.x_val.numpy(), b.x_val.numpy())
    assert len(a.y_train) == 600


def _store(tmp_path, shift, *, spread=0.002, test_trap=False):
    """The quick grid with made-up metrics: tuned dropout = none + ``shift`` (error
    fraction) with per-seed noise ``spread``. With ``test_trap``, one none config per seed
    has a terrible validation error but the best test error: selection must ignore it."""
    store = Store(tmp_path / "syn.db")
    records = []
    for t in STUDY.expand("quick"):
        c = t.config
        g = np.random.default_rng([t.seed % 2**32, c["config"], len(c["arm"])])
        base = 0.3 + np.random.default_rng(t.seed % 2**32).normal(0, 0.02)  # per replicate
        err = base + (shift if c["arm"] in effect.PLACEMENTS else 0.0)
        err += 0.01 * c["config"] + g.normal(0, spread)  # config 0 is each arm's best
        val = err
        if test_trap and c["arm"] == "none" and c["config"] == 1:
            err, val = 0.0, 0.9
        metrics = {
            "test_error": err,
            "val_error": val,
            "val_loss": 1.0 + val,
            "test_nll": 1.0 + err,
            "best_epoch": 3.0,
            "capped": 0.0,
        }
        records.append(t.record(status="finished", metrics=metrics, curves={}))
    store.record(records)
    return store


def test_a_clear_effect_is_called_lowers_with_its_size(tmp_path):
    with _store(tmp_path, -0.03, test_trap=True) as store:
        f = STUDY.findings(store.frame("effect"))
    p = f.primary
    assert p is f.contrasts[0] and p.name == "dropout_vs_none"
    assert p.call == "lowers" and p.estimate == pytest.approx(-3.0, abs=0.3)
    assert p.ci_high < 0 and p.n_seeds == 3 and p.root_seeds == (0,)
    assert f.answer.startswith("On digits at n=600, tuned dropout lowers test error by 3.")
    assert len(f.answer.split()) <= 40
    assert {c.call for c in f.contrasts} <= {"lowers", "raises", "equivalent", "inconclusive"}
    assert sum(c.primary for c in f.contrasts) == 1
    # the trap (best test, worst validation) was never selected
    curves = f.extra_tables["learning curves (test error %, tuned arms)"]
    none = curves[(curves["arm"] == "none") & (curves["n_train"] == 600)]
    assert float(none["test_error"].iloc[0]) > 20


def test_no_effect_is_equivalent_not_support(tmp_path):
    with _store(tmp_path, 0.0, spread=0.001) as store:
        f = STUDY.findings(store.frame("effect"))
    assert f.primary.call == "equivalent"
    assert "is equivalent within ±1 point" in f.answer
    assert "lowers" not in f.answer and "raises" not in f.answer


def test_a_noisy_effect_is_inconclusive(tmp_path):
    with _store(tmp_path, 0.0, spread=0.08) as store:
        f = STUDY.findings(store.frame("effect"))
    assert f.primary.call == "inconclusive"
    assert "effect on test error is inconclusive" in f.answer and not math.isnan(f.primary.mde)


def test_an_older_recipe_in_the_store_is_left_out(tmp_path):
    with _store(tmp_path, -0.03) as store:
        clean = STUDY.findings(store.frame("effect")).primary
        old = []
        for t in STUDY.expand("quick"):
            config = {**t.config, "max_steps": t.config["max_steps"] + 1}
            old.append(
                effect.Trial("effect", config, t.seed, "quick").record(
                    status="finished",
                    metrics={
                        "test_error": 0.9,
                        "val_error": 0.0,
                        "val_loss": 0.0,
                        "test_nll": 5.0,
                        "capped": 1.0,
                    },
                )
            )
        store.record(old)
        f = STUDY.findings(store.frame("effect"))
    assert f.primary.estimate == pytest.approx(clean.estimate)
    assert any("another recipe" in n for n in f.notes)


def test_quick_preset_runs_end_to_end(tmp_path):
    trials = STUDY.expand("quick")
    with Store(tmp_path / "r.db") as store:
        summary = run_study(STUDY, trials, store)
        assert (summary.finished, summary.failed) == (len(trials), 0), store.errors("effect")
        assert run_study(STUDY, trials, store).skipped == len(trials)  # no training again
        frame = store.frame("effect")
    for column in ("test_error", "val_error", "test_nll", "best_epoch", "capped"):
        assert frame[column].notna().all(), column
    f = STUDY.findings(frame)
    assert f.primary is not None and f.primary.n_seeds == 3
    assert f.answer and not math.isnan(f.primary.estimate)
    assert set(f.figures) == {"learning_curves", "contrasts"}
    assert f.failed == []
