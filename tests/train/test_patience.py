"""Training to convergence: patience, retirement from the stacked computation, curve_splits,
and AdamW, on both paths."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from droplab import rng
from droplab.models import ModelSpec, build
from droplab.train import MemberConfig, TrainConfig, evaluate, fit
from droplab.train import mlp as M

SPEC = ModelSpec("mlp", widths=(16, 12))
# lrs spread so that members stop at different epochs (on the tiny data: members 3 and 0
# stop first, 1 later, 2 and 4 run to the cap; test_patience_stops_and_selects checks it)
MEMBERS = [
    MemberConfig(seed=0, hidden_rate=0.5, lr=3e-2),
    MemberConfig(seed=1, hidden_rate=0.3, lr=1e-2, weight_decay=1e-3),
    MemberConfig(seed=2, input_rate=0.1, hidden_rate=0.5, max_norm=0.8, lr=3e-3),
    MemberConfig(seed=3, hidden_rate=0.4, dropout="gaussian", lr=5e-2),
    MemberConfig(seed=4, lr=3e-4),
]
CFG = TrainConfig(epochs=25, batch_size=32, patience=3)


def _params(res, k):
    return [p.detach() for p in res.module(k).parameters()]


def _steps_per_epoch(data, cfg):
    return math.ceil(len(data.y_train) / cfg.batch_size)


def test_config_validation():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="patience"):
            TrainConfig(patience=bad)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="patience"):
            TrainConfig(patience=bad)
    with pytest.raises(ValueError, match=r"select='last'.*patience"):
        TrainConfig(select="last", patience=3)
    with pytest.raises(ValueError, match="curve_splits"):
        TrainConfig(curve_splits=("train", "test"))  # select='val_loss' needs val
    with pytest.raises(ValueError, match="curve_splits"):
        TrainConfig(curve_splits=("val", "dev"))
    with pytest.raises(ValueError, match="curve_splits"):
        TrainConfig(curve_splits=("val", "val"))
    with pytest.raises(TypeError, match="curve_splits"):
        TrainConfig(curve_splits="val")
    assert TrainConfig(curve_splits=["val"]).curve_splits == ("val",)
    assert TrainConfig(select="last", curve_splits=("train",)).curve_splits == ("train",)
    assert TrainConfig(optimizer="adamw").optimizer == "adamw"


@pytest.mark.parametrize("masks", ["kernel", "torch"])
def test_patience_stops_and_selects(tiny, masks):
    """The rule: a member stops at the evaluation where its val_loss has not improved for
    `patience` consecutive evaluations; it keeps its best weights, reported at its own
    index; members the rule never stopped train all epochs (capped)."""
    cfg = replace(CFG, masks=masks)
    res = fit(SPEC, tiny, MEMBERS, cfg)
    assert res.path == "fast"
    stopped = [m.metrics["stopped_epoch"] for m in res.members]
    capped = [m.metrics["capped"] for m in res.members]
    assert min(stopped) < max(stopped) and 0.0 in capped and 1.0 in capped  # not vacuous
    for k, member in enumerate(res.members):
        m, c = member.metrics, member.curves
        assert c["epoch"] == list(range(1, int(m["stopped_epoch"]) + 1))
        best = c["val_loss"].index(min(c["val_loss"]))
        assert m["best_epoch"] == c["epoch"][best] and m["val_loss"] == min(c["val_loss"])
        if m["capped"] == 1.0:
            assert m["stopped_epoch"] == cfg.epochs
            assert len(c["epoch"]) - 1 - best < cfg.patience  # the rule never fired
        else:
            assert len(c["epoch"]) - 1 - best == cfg.patience  # exactly patience stale evals
            assert all(v >= c["val_loss"][best] for v in c["val_loss"][best + 1 :])
        got = evaluate(res.module(k), tiny.x_test, tiny.y_test)  # the selected weights
        assert got["nll"] == pytest.approx(m["test_nll"], rel=1e-5)
        assert m["test_acc"] == c["test_acc"][best]
    # fewer steps: each member took exactly its own epochs' steps (no work for the retired)
    per_epoch = _steps_per_epoch(tiny, cfg)
    assert res.timings["member_steps"] == per_epoch * sum(stopped)
    assert res.timings["member_steps"] < per_epoch * cfg.epochs * len(MEMBERS)


def test_patience_counts_evaluations_not_epochs(tiny):
    cfg = replace(CFG, eval_every=2)
    res = fit(SPEC, tiny, MEMBERS[:1], cfg)
    m, c = res.members[0].metrics, res.members[0].curves
    assert m["capped"] == 0.0 and c["epoch"][-1] == m["stopped_epoch"]
    assert m["stopped_epoch"] - m["best_epoch"] == cfg.patience * cfg.eval_every


@pytest.mark.parametrize(
    ("spec", "cfg"),
    [
        (SPEC, CFG),
        (SPEC, replace(CFG, masks="torch", optimizer="sgd", lr=0.1, max_norm=2.0)),
        (SPEC, replace(CFG, optimizer="adamw", weight_decay=1e-2, eval_every=2, patience=2)),
        (ModelSpec("cnn1d", widths=(4, 5, 3)), replace(CFG, max_norm=1.5)),
    ],
    ids=["adam-kernel", "sgd-torch-masks", "adamw-eval2", "cnn"],
)
def test_retirement_does_not_change_a_member(tiny, spec, cfg):
    """A member's trajectory does not depend on whether the others retire.

    Bit for bit up to the first retirement: until then the stack is the same as in a fit
    without patience, so every member's curves up to that epoch, and the first retirees'
    whole curves, metrics and weights, are identical to such a fit (one stopped at that
    epoch, for the weights).

    After a retirement the stack is smaller, and there (as between a batched member and
    the member trained alone, tests/train/test_fit.py) agreement is to float tolerance
    only: the batched GEMMs' rounding depends on K on the CPU (MKL picks other kernels and
    blockings for another batch count, and a batch of one takes another layout path;
    measured on a 2-core AMD EPYC with torch 2.13: one step's gradients differ in the last
    bit, ~1e-9, even with one thread). So the remaining members, and every member against
    itself trained alone (K = 1, patience applying to it alone), agree to 1e-5.
    """
    members = MEMBERS if spec.kind == "mlp" else [replace(m, dropout=None) for m in MEMBERS]
    res = fit(spec, tiny, members, cfg)
    stopped = [m.metrics["stopped_epoch"] for m in res.members]
    first = min(stopped)
    assert first < cfg.epochs and max(stopped) > first  # someone retires, someone goes on
    nobody = fit(spec, tiny, members, replace(cfg, patience=None))
    upto = fit(spec, tiny, members, replace(cfg, patience=None, epochs=int(first)))
    for k, m in enumerate(members):
        a, b = res.members[k], nobody.members[k]
        n = sum(e <= first for e in a.curves["epoch"])
        for key, values in a.curves.items():
            assert values[:n] == b.curves[key][:n], key  # bit for bit up to `first`
        if stopped[k] == first:  # a first retiree: all of it
            assert len(a.curves["epoch"]) == n
            assert a.metrics == {**upto.members[k].metrics, "capped": 0.0}
            for p, q in zip(_params(res, k), _params(upto, k)):
                assert torch.equal(p, q)
        alone = fit(spec, tiny, [m], cfg)
        c = alone.members[0]
        assert c.metrics["stopped_epoch"] == a.metrics["stopped_epoch"]
        assert c.metrics["best_epoch"] == a.metrics["best_epoch"]
        assert c.curves["epoch"] == a.curves["epoch"]
        for key in a.curves:
            torch.testing.assert_close(
                torch.tensor(a.curves[key]), torch.tensor(c.curves[key]), rtol=1e-5, atol=1e-6
            )
        for key, v in a.metrics.items():
            assert c.metrics[key] == pytest.approx(v, rel=1e-5, abs=1e-6), key
        for p, q in zip(_params(res, k), _params(alone, 0)):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_all_members_retire(tiny):
    """Everyone stops before the cap: training ends early, every result is in place."""
    members = [MEMBERS[0], MEMBERS[3]]
    res = fit(SPEC, tiny, members, replace(CFG, epochs=60, patience=1))
    assert all(m.metrics["capped"] == 0.0 for m in res.members)
    assert max(m.metrics["stopped_epoch"] for m in res.members) < 60
    for k, m in enumerate(res.members):
        got = evaluate(res.module(k), tiny.x_val, tiny.y_val)
        assert got["nll"] == pytest.approx(m.metrics["val_nll"], rel=1e-5)


def test_patience_at_the_last_evaluation(tiny):
    """The rule firing at the last evaluation counts (capped 0.0), though it saves nothing."""
    full = fit(SPEC, tiny, MEMBERS[3:4], CFG)
    e = int(full.members[0].metrics["stopped_epoch"])
    assert e < CFG.epochs
    res = fit(SPEC, tiny, MEMBERS[3:4], replace(CFG, epochs=e))
    assert res.members[0].metrics == full.members[0].metrics


def test_extra_loss_sees_the_training_members(tiny):
    seen = []

    def penalty(hidden, weight, logits, keep):
        assert hidden.shape[0] == weight.shape[0] == logits.shape[0] == keep.shape[0]
        seen.append(hidden.shape[0])
        return 1e-3 * weight.pow(2).sum(dim=(1, 2))

    res = fit(SPEC, tiny, MEMBERS, CFG, extra_loss=penalty)
    assert seen[0] == len(MEMBERS) and seen[-1] < len(MEMBERS)
    assert seen == sorted(seen, reverse=True)  # the batch only shrinks
    assert sum(seen) == res.timings["member_steps"]


@pytest.mark.parametrize("generic", [False, True])
def test_curve_splits_val_only(tiny, generic, monkeypatch):
    """curve_splits=("val",): the curves hold val only, evaluation during training runs the
    validation rows only, and the final metrics are the full set, on the selected weights,
    once at the end: the same numbers as with every split on the curves."""
    xs = {"train": tiny.x_train, "val": tiny.x_val, "test": tiny.x_test}
    name = {t.data_ptr(): s for s, t in xs.items()}  # which split a forward pass reads
    calls = []
    if generic:

        class Counting(nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                if not self.training:
                    calls.append(name.get(x.data_ptr()))
                return self.net(x)

        spec = ModelSpec("mlp", widths=(16,), dropout="fixed-count")
        model = lambda **kw: Counting(build(spec, **kw))  # noqa: E731
        members = [replace(m, dropout=None) for m in MEMBERS[:2]]
    else:
        predict = M.predict

        def counting(net, x, *a, **kw):
            calls.append(name.get(x.data_ptr()))
            return predict(net, x, *a, **kw)

        monkeypatch.setattr(M, "predict", counting)
        model, members = SPEC, MEMBERS[:3]
    cfg = replace(CFG, curve_splits=("val",))
    res = fit(model, tiny, members, cfg)
    monkeypatch.undo()
    assert res.path == ("generic" if generic else "fast")
    epochs = [len(m.curves["epoch"]) for m in res.members]  # eval_every=1
    if generic:  # member by member
        assert calls == [c for e in epochs for c in ["val"] * e + ["train", "test"]]
    else:  # all members at once, while any trains
        assert calls == ["val"] * max(epochs) + ["train", "test"]
    every = fit(model, tiny, members, replace(cfg, curve_splits=("train", "val", "test")))
    for k, (a, b) in enumerate(zip(res.members, every.members)):
        assert set(a.curves) == {"epoch"} | {f"val_{x}" for x in ("loss", "acc", "nll", "ece")}
        assert a.curves == {x: v for x, v in b.curves.items() if x in a.curves}  # same training
        assert list(a.metrics) == list(b.metrics)
        for key, v in b.metrics.items():
            assert a.metrics[key] == pytest.approx(v, rel=1e-6, abs=1e-7), key
        got = evaluate(res.module(k), tiny.x_train, tiny.y_train)
        assert got["nll"] == pytest.approx(a.metrics["train_nll"], rel=1e-5)


def test_curve_splits_with_select_last(tiny):
    cfg = TrainConfig(epochs=3, batch_size=32, select="last", curve_splits=("train",))
    res = fit(SPEC, tiny, MEMBERS[:2], cfg)
    for k, m in enumerate(res.members):
        assert set(m.curves) == {"epoch"} | {f"train_{x}" for x in ("loss", "acc", "nll", "ece")}
        assert m.metrics["best_epoch"] == 3 and m.metrics["capped"] == 1.0
        got = evaluate(res.module(k), tiny.x_val, tiny.y_val)
        assert got["nll"] == pytest.approx(m.metrics["val_nll"], rel=1e-5)


def _factory(input_shape, n_outputs, *, input_rate, hidden_rate):
    return nn.Sequential(
        nn.Linear(input_shape[0], 16),
        nn.ReLU(),
        nn.Dropout(hidden_rate),
        nn.Linear(16, n_outputs),
    )


def test_generic_path_patience(tiny):
    members = [replace(m, dropout=None, max_norm=None) for m in MEMBERS]
    res = fit(_factory, tiny, members, CFG)
    assert res.path == "generic"
    stopped = [m.metrics["stopped_epoch"] for m in res.members]
    assert min(stopped) < CFG.epochs  # someone stopped early
    for k, member in enumerate(res.members):
        m, c = member.metrics, member.curves
        assert c["epoch"] == list(range(1, int(m["stopped_epoch"]) + 1))
        best = c["val_loss"].index(min(c["val_loss"]))
        assert m["best_epoch"] == c["epoch"][best]
        stale = len(c["epoch"]) - 1 - best
        if m["capped"] == 1.0:
            assert m["stopped_epoch"] == CFG.epochs and stale < CFG.patience
        else:
            assert stale == CFG.patience
        got = evaluate(res.module(k), tiny.x_test, tiny.y_test)
        assert got["nll"] == pytest.approx(m["test_nll"], rel=1e-5)
    assert res.timings["member_steps"] == _steps_per_epoch(tiny, CFG) * sum(stopped)
    alone = fit(_factory, tiny, members[:1], CFG)  # member by member: the same numbers
    assert alone.members[0].metrics == res.members[0].metrics
    assert alone.members[0].curves == res.members[0].curves


def test_fast_path_adamw_matches_plain_torch(tiny):
    """Oracle: K=1 without dropout equals nn.Sequential + torch.optim.AdamW with the same
    initial weights and batch order (tolerance: the stacked products round differently)."""
    from droplab.train.mlp import StackedMLP

    cfg = TrainConfig(
        epochs=2, batch_size=40, lr=1e-2, weight_decay=0.1, select="last", optimizer="adamw"
    )
    member = MemberConfig(seed=11)
    res = fit(SPEC, tiny, [member], cfg)
    init = StackedMLP(SPEC, [12, 16, 12, 3], [member], device=torch.device("cpu"))
    net = build(SPEC, (12,), 3)
    lin = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, w, b in zip(lin, init.W, init.b):
            layer.weight.copy_(w[0].T)
            layer.bias.copy_(b[0, 0])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    order = rng.generator(11, "order")
    for _ in range(2):
        perm = torch.randperm(len(tiny.y_train), generator=order)
        for s in range(0, len(perm), 40):
            idx = perm[s : s + 40]
            loss = nn.functional.cross_entropy(net(tiny.x_train[idx]), tiny.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(res.module(0).parameters(), net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    adam = fit(SPEC, tiny, [member], replace(cfg, optimizer="adam"))
    assert not torch.allclose(_params(adam, 0)[0], _params(res, 0)[0])  # not vacuous


def test_generic_path_adamw_is_torch_adamw(tiny):
    """The generic path's "adamw" is torch.optim.AdamW: a hand-written loop with the
    member's init seed, order stream and AdamW gives the same weights bit for bit."""
    cfg = TrainConfig(epochs=2, batch_size=40, lr=1e-2, select="last", optimizer="adamw")
    member = MemberConfig(seed=5, weight_decay=0.2)
    res = fit(_factory, tiny, [member], cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rng.derive(5, "init"))
        net = _factory((12,), 3, input_rate=0.0, hidden_rate=0.0)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.2)
    order = rng.generator(5, "order")
    for _ in range(2):
        perm = torch.randperm(len(tiny.y_train), generator=order)
        for s in range(0, len(perm), 40):
            idx = perm[s : s + 40]
            loss = nn.functional.cross_entropy(net(tiny.x_train[idx]), tiny.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for a, b in zip(res.module(0).parameters(), net.parameters()):
        assert torch.equal(a, b)


def test_patience_with_mc_evaluation(tiny):
    """MC final metrics come from every member's selected weights, retired ones included."""
    cfg = replace(CFG, eval_mode="mc", mc_samples=3)
    res = fit(SPEC, tiny, MEMBERS[:3], cfg)
    det = fit(SPEC, tiny, MEMBERS[:3], CFG)
    for a, b in zip(res.members, det.members):
        assert a.metrics["stopped_epoch"] == b.metrics["stopped_epoch"]
        assert a.metrics["det_test_nll"] == pytest.approx(b.metrics["test_nll"], rel=1e-6)
        assert a.metrics["test_nll"] != a.metrics["det_test_nll"]
