"""The batched trainer: batched == one at a time, module(k) == member k, oracles vs torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from droplab.models import ModelSpec, build
from droplab.train import MemberConfig, TrainConfig, evaluate, fit

SPEC = ModelSpec("mlp", widths=(16, 12))
CFG = TrainConfig(epochs=3, batch_size=32, lr=1e-2, select="last")

# Members that differ in everything a study varies; every one has dropout on.
MEMBERS = [
    MemberConfig(seed=0, input_rate=0.2, hidden_rate=0.5),
    MemberConfig(seed=1, hidden_rate=0.3, lr=3e-3, weight_decay=1e-3),
    MemberConfig(seed=2, input_rate=0.1, hidden_rate=0.5, max_norm=0.8),
    MemberConfig(seed=3, hidden_rate=0.4, dropout="gaussian"),
]


def _weights(res, k):
    return [p.detach().clone() for p in res.module(k).parameters()]


@pytest.mark.parametrize(("optimizer", "masks"), [("adam", "kernel"), ("sgd", "torch")])
def test_batched_equals_one_at_a_time(tiny, optimizer, masks):
    cfg = TrainConfig(**{**CFG.__dict__, "optimizer": optimizer, "max_norm": 2.0, "masks": masks})
    batched = fit(SPEC, tiny, MEMBERS, cfg)
    assert batched.path == "fast"
    for k, m in enumerate(MEMBERS):
        alone = fit(SPEC, tiny, [m], cfg)
        for a, b in zip(_weights(batched, k), _weights(alone, 0)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert batched.members[k].metrics["test_nll"] == pytest.approx(
            alone.members[0].metrics["test_nll"], rel=1e-5
        )


def test_dropout_and_seeds_matter(tiny):
    """The equivalence above is not vacuous: masks and seeds change the weights."""
    base = fit(SPEC, tiny, [MemberConfig(seed=0, hidden_rate=0.5)], CFG)
    other_seed = fit(SPEC, tiny, [MemberConfig(seed=1, hidden_rate=0.5)], CFG)
    no_drop = fit(SPEC, tiny, [MemberConfig(seed=0)], CFG)
    w0 = _weights(base, 0)[0]
    assert not torch.allclose(w0, _weights(other_seed, 0)[0])
    assert not torch.allclose(w0, _weights(no_drop, 0)[0])


def test_module_reproduces_member_metrics(tiny):
    res = fit(SPEC, tiny, MEMBERS, TrainConfig(epochs=4, batch_size=32, lr=1e-2))
    for k, member in enumerate(res.members):
        mod = res.module(k)
        assert not mod.training
        assert isinstance(mod, nn.Module)
        got = evaluate(mod, tiny.x_test, tiny.y_test, task="classification")
        assert got["nll"] == pytest.approx(member.metrics["test_nll"], rel=1e-5)
        assert got["acc"] == pytest.approx(member.metrics["test_acc"])


def test_metrics_curves_and_selection(tiny):
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-2, eval_every=2)
    res = fit(SPEC, tiny, [MemberConfig(seed=5, hidden_rate=0.5)], cfg)
    m, c = res.members[0].metrics, res.members[0].curves
    assert c["epoch"] == [2, 4, 6]
    for key in (
        "test_acc",
        "test_error",
        "test_nll",
        "test_ece",
        "val_loss",
        "train_acc",
        "gap",
        "best_epoch",
    ):
        assert key in m
    best = c["val_loss"].index(min(c["val_loss"]))
    assert m["best_epoch"] == c["epoch"][best]
    assert m["test_acc"] == pytest.approx(c["test_acc"][best])
    assert m["gap"] == pytest.approx(m["train_acc"] - m["test_acc"])
    assert m["test_acc"] > 0.5  # 3 balanced-ish classes from a linear teacher: chance ~ 1/3


def test_fast_path_matches_plain_torch_without_dropout(tiny):
    """Oracle: K=1 without dropout equals a plain nn.Sequential + torch.optim.Adam loop
    with the same initial weights and the same batch order."""
    from droplab import rng
    from droplab.train.mlp import StackedMLP

    cfg = TrainConfig(epochs=2, batch_size=40, lr=1e-2, weight_decay=1e-3, select="last")
    member = MemberConfig(seed=11)
    res = fit(SPEC, tiny, [member], cfg)
    init = StackedMLP(SPEC, [12, 16, 12, 3], [member], device=torch.device("cpu"))
    net = build(SPEC, (12,), 3)
    lin = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, w, b in zip(lin, init.W, init.b):
            layer.weight.copy_(w[0].T)
            layer.bias.copy_(b[0, 0])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
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


def test_max_norm_holds(tiny):
    res = fit(
        SPEC,
        tiny,
        [MemberConfig(seed=0, hidden_rate=0.5, max_norm=0.5)],
        TrainConfig(epochs=2, batch_size=32, lr=5e-2, select="last"),
    )
    hidden = [m for m in res.module(0) if isinstance(m, nn.Linear)][:-1]
    for layer in hidden:
        assert layer.weight.norm(dim=1).max() <= 0.5 + 1e-5


def test_extra_loss_hook(tiny):
    seen = {}

    def penalty(hidden, weight, logits, keep):
        if not seen:
            seen.update(h=hidden.shape, w=weight.shape, o=logits.shape, keep=keep.clone())
        return 10.0 * weight.pow(2).sum(dim=(1, 2))  # (K,) strong L2 on the output layer

    members = [MemberConfig(seed=0, hidden_rate=0.5), MemberConfig(seed=1)]
    res = fit(SPEC, tiny, members, CFG, extra_loss=penalty)
    assert seen["h"] == (2, 32, 12) and seen["w"] == (2, 3, 12) and seen["o"] == (2, 32, 3)
    torch.testing.assert_close(seen["keep"], torch.tensor([0.5, 1.0]))
    plain = fit(SPEC, tiny, members, CFG)
    out_w = lambda r: [m for m in r.module(0) if isinstance(m, nn.Linear)][-1].weight  # noqa: E731
    assert out_w(res).norm() < 0.5 * out_w(plain).norm()


def test_regression_and_mc(tiny_regression):
    cfg = TrainConfig(epochs=40, batch_size=32, lr=1e-2, eval_mode="mc", mc_samples=4)
    res = fit(SPEC, tiny_regression, [MemberConfig(seed=0, hidden_rate=0.1)], cfg)
    m = res.members[0].metrics
    assert {"test_rmse", "det_test_rmse", "gap"} <= set(m)
    assert m["test_rmse"] != m["det_test_rmse"]
    # predicting the mean scores std(y) ~ sqrt(12); a fitted linear teacher scores ~0.1
    assert m["test_rmse"] < 0.5 * tiny_regression.y_test.std().item()


def test_generic_path_user_factory(tiny):
    def factory(input_shape, n_outputs, *, input_rate, hidden_rate):
        return nn.Sequential(
            nn.Linear(input_shape[0], 8),
            nn.ReLU(),
            nn.Dropout(hidden_rate),
            nn.Linear(8, n_outputs),
        )

    members = [MemberConfig(seed=0, hidden_rate=0.5), MemberConfig(seed=1, hidden_rate=0.2)]
    res = fit(factory, tiny, members, CFG)
    again = fit(factory, tiny, members[1:], CFG)
    assert res.path == "generic"
    for a, b in zip(res.module(1).parameters(), again.module(0).parameters()):
        torch.testing.assert_close(a, b)  # member-by-member: same seed, same result
    got = evaluate(res.module(0), tiny.x_test, tiny.y_test)
    assert got["nll"] == pytest.approx(res.members[0].metrics["test_nll"], rel=1e-5)


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="hidden_rate"):
        MemberConfig(seed=0, hidden_rate=1.0)
    with pytest.raises(ValueError, match="members"):
        fit(SPEC, tiny, [], CFG)
    with pytest.raises(ValueError, match="extra_loss"):
        fit(
            lambda **kw: nn.Linear(12, 3),
            tiny,
            [MemberConfig(seed=0)],
            CFG,
            extra_loss=lambda *a: 0,
        )


def test_classic_scaling_keep_scaled_eval(tiny):
    """Classic scaling trains with unscaled masks and evaluates with keep-scaled
    activations; module(k) (droplab Dropout(scaling='classic')) must agree."""
    spec = ModelSpec("mlp", widths=(16, 12), scaling="classic")
    members = [
        MemberConfig(seed=0, input_rate=0.2, hidden_rate=0.5),
        MemberConfig(seed=1, hidden_rate=0.4, dropout="gaussian"),
    ]
    res = fit(spec, tiny, members, TrainConfig(epochs=3, batch_size=32, lr=1e-2))
    for k in range(2):
        got = evaluate(res.module(k), tiny.x_test, tiny.y_test)
        assert got["nll"] == pytest.approx(res.members[k].metrics["test_nll"], rel=1e-5)
    inverted = fit(
        ModelSpec("mlp", widths=(16, 12)),
        tiny,
        members[:1],
        TrainConfig(epochs=3, batch_size=32, lr=1e-2),
    )
    assert inverted.members[0].metrics["test_nll"] != res.members[0].metrics["test_nll"]


@pytest.mark.parametrize("generic", [False, True])
def test_train_subset_curves_full_final_metrics(tiny, generic):
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, train_eval_rows=50)
    model = SPEC
    if generic:
        model = lambda **kw: build(SPEC, **kw)  # noqa: E731
    res = fit(model, tiny, [MemberConfig(seed=3, hidden_rate=0.2)], cfg)
    m = res.members[0].metrics
    full = evaluate(res.module(0), tiny.x_train, tiny.y_train)
    assert m["train_nll"] == pytest.approx(full["nll"], rel=1e-5)
    assert m["train_acc"] == pytest.approx(full["acc"])


def test_linear_model_fast_path(tiny):
    spec = ModelSpec("mlp", widths=())
    members = [MemberConfig(seed=0, input_rate=0.3), MemberConfig(seed=1)]
    res = fit(spec, tiny, members, CFG)
    assert res.path == "fast"
    got = evaluate(res.module(0), tiny.x_test, tiny.y_test)
    assert got["nll"] == pytest.approx(res.members[0].metrics["test_nll"], rel=1e-5)


def test_select_val_acc_and_last(tiny, tiny_regression):
    base = dict(epochs=5, batch_size=32, lr=1e-2)
    for select in ("val_acc", "last"):
        res = fit(
            SPEC, tiny, [MemberConfig(seed=4, hidden_rate=0.5)], TrainConfig(**base, select=select)
        )
        m, c = res.members[0].metrics, res.members[0].curves
        if select == "last":
            assert m["best_epoch"] == 5
        else:
            first_best = c["val_acc"].index(max(c["val_acc"]))  # ties keep the earlier epoch
            assert m["best_epoch"] == c["epoch"][first_best]
        assert m["test_acc"] == pytest.approx(c["test_acc"][c["epoch"].index(m["best_epoch"])])
    with pytest.raises(ValueError, match="val_acc"):
        fit(SPEC, tiny_regression, [MemberConfig(seed=0)], TrainConfig(**base, select="val_acc"))
