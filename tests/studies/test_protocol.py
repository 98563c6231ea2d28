"""The protocol's pieces: search spaces, equal-budget expansion, the step budget in epochs,
validation-only selection (diverged members last), and old recipes kept apart."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from droplab.studies import protocol as P

SPACE = {
    "lr": P.LogUniform(1e-3, 1e-2),
    "weight_decay": P.LogUniform(1e-5, 1e-1),
    "max_norm": P.MaybeOff(P.LogUniform(1.0, 5.0)),
    "hidden_rate": P.Uniform(0.1, 0.7),
    "input_rate": 0.2,
}


def test_draw_is_seeded_in_range_and_its_prefix_is_a_smaller_search():
    a = P.draw(SPACE, 64, seed=3)
    assert a == P.draw(SPACE, 64, seed=3) and a != P.draw(SPACE, 64, seed=4)
    assert P.draw(SPACE, 8, seed=3) == a[:8]  # the first k points: a k-point search
    for c in a:
        assert 1e-3 <= c["lr"] <= 1e-2 and 0.1 <= c["hidden_rate"] <= 0.7
        assert c["input_rate"] == 0.2
        assert c["max_norm"] is None or 1.0 <= c["max_norm"] <= 5.0
    off = sum(c["max_norm"] is None for c in a) / len(a)
    assert 0.3 < off < 0.7  # p_on = 0.5; a quasi-random sequence is close to it
    lrs = np.log([c["lr"] for c in a])  # log-uniform: the median near the log midpoint
    assert abs(np.median(lrs) - np.log(math.sqrt(1e-5))) < 0.5
    with pytest.raises(ValueError, match="configurations"):
        P.draw(SPACE, 0, seed=1)


def test_arm_and_dims_refuse_bad_specs():
    with pytest.raises(ValueError, match="unknown hyperparameter 'width'"):
        P.Arm("a", "A", {"lr": 1e-3, "width": 3})
    with pytest.raises(ValueError, match="needs an 'lr'"):
        P.Arm("a", "A", {"hidden_rate": 0.5})
    with pytest.raises(ValueError, match="LogUniform"):
        P.LogUniform(0.0, 1.0)


def test_expand_gives_every_arm_its_budget_and_one_seed_per_replicate():
    arms = {"x": P.Arm("x", "X", SPACE), "y": P.Arm("y", "Y", {"lr": 1e-3}, configs=1)}
    budget = P.Budget(seeds=4, configs=3, max_steps=100, eval_steps=10, patience_steps=30)
    cells = [P.Cell("digits", 300, (8,), ("x", "y")), P.Cell("digits", 600, (8,), ("x",))]
    trials = P.expand("s", "quick", 5, arms, cells, budget)
    assert len(trials) == 4 * (3 + 1 + 3)
    assert {t.seed for t in trials} == {P.replicate_seed(5, i) for i in range(4)}
    groups: dict = {}
    for t in trials:
        groups.setdefault(P.group_key(t), []).append(t)
    assert len(groups) == 4 * 2  # one fit per (cell, replicate)
    for g in groups.values():
        assert len({t.seed for t in g}) == 1


@pytest.mark.parametrize(
    "n, epochs, every, patience", [(3600, 150, 2, 15), (1200, 450, 6, 15), (7200, 75, 1, 15)]
)
def test_the_step_budget_is_the_same_at_every_size(n, epochs, every, patience):
    c = {
        "n_train": n,
        "batch_size": 100,
        "max_steps": 5400,
        "eval_steps": 72,
        "patience_steps": 1080,
    }
    r = P.recipe(c)
    assert (r["epochs"], r["eval_every"]) == (epochs, every)
    steps_per_epoch = math.ceil(n / 100)
    assert abs(r["epochs"] * steps_per_epoch - 5400) < steps_per_epoch
    assert abs(r["patience"] * every * steps_per_epoch - 1080) <= every * steps_per_epoch / 2 + 1


def _rows(**cols):
    base = {"dataset": "digits", "n_train": 300, "widths": (8,), "cell": "", "seed": 1}
    n = len(next(iter(cols.values())))
    return pd.DataFrame({**{k: [v] * n for k, v in base.items()}, **cols})


def test_tuned_selects_on_validation_ranks_diverged_last_and_breaks_ties():
    rows = _rows(
        arm=["a", "a", "a", "b"],
        config=[0, 1, 2, 0],
        val_error=[0.30, 0.10, 0.20, 0.20],
        val_loss=[1.0, np.nan, 0.9, 0.8],  # config 1 diverged: its 0.10 does not count
        test_error=[0.3, 0.0, 0.25, 0.2],
    )
    best = P.tuned(rows, ["a"])
    assert best["config"].tolist() == [2] and best["arm_selected"].tolist() == ["a"]
    pooled = P.tuned(rows, ["a", "b"], name="ab")  # tie on val error: lower val NLL wins
    assert pooled["arm_selected"].tolist() == ["b"] and pooled["arm"].tolist() == ["ab"]
    assert P.tuned(rows, ["a"], configs=1)["config"].tolist() == [0]  # a smaller budget


def test_current_keeps_one_recipe():
    budget = P.Budget(seeds=1, configs=1, max_steps=100, eval_steps=10, patience_steps=30)
    rows = _rows(
        max_steps=[100, 200],
        eval_steps=[10, 10],
        patience_steps=[30, 30],
        batch_size=[100, 100],
        replicate=[0, 0],
    )
    kept, note = P.current(rows, budget)
    assert kept["max_steps"].tolist() == [100] and "1 finished trials of another recipe" in note[0]
