"""backprop.mlp_grads: the hand-written step gives autograd's gradients bit for bit."""

from __future__ import annotations

import pytest
import torch

from droplab.models import ModelSpec
from droplab.train import MemberConfig, TrainConfig, backprop, fit
from droplab.train import mlp as M
from droplab.train.linear import GradBuffers
from droplab.train.noise import MemberNoise

MEMBERS = [
    MemberConfig(seed=0, input_rate=0.2, hidden_rate=0.5),
    MemberConfig(seed=1, hidden_rate=0.3),
    MemberConfig(seed=2),  # rate 0: its rows are the identity
    MemberConfig(seed=3, input_rate=0.1, hidden_rate=0.9),
]


def _setup(data, spec, members, masks="auto", dtype=torch.float32):
    data = data if dtype == torch.float32 else _cast(data, dtype)
    net = M.make_net(spec, data, members, torch.device("cpu"))
    noise = MemberNoise(
        [m.seed for m in members],
        M.member_rates(net, members),
        [(m.dropout or spec.dropout) == "gaussian" for m in members],
        scaling=spec.scaling,
        device="cpu",
        dtype=dtype,
        backend=masks,
    )
    return data, net, noise


def _cast(data, dtype):
    from dataclasses import replace

    return replace(
        data, **{f"x_{s}": getattr(data, f"x_{s}").to(dtype) for s in ("train", "val", "test")}
    )


def _autograd(net, x, y, noise, task):
    W = [w.detach().requires_grad_() for w in net.W]
    b = [t.detach().requires_grad_() for t in net.b]
    out, _ = net.forward(x, W, b, noise)
    loss = M.loss_per_member(out, y, task).sum()
    return torch.autograd.grad(loss, [t for pair in zip(W, b) for t in pair])


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize(
    "widths",
    [(24, 20), (8,)],  # (8,): a narrow hidden layer (8 < 12 inputs, 8 < 16 rows)
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("placement", ["all", "classifier"])
def test_grads_equal_autograd_bit_for_bit(request, task, scaling, widths, dtype, placement):
    data = request.getfixturevalue("tiny" if task == "classification" else "tiny_regression")
    spec = ModelSpec("mlp", widths=widths, scaling=scaling, placement=placement)
    data, net, noise = _setup(data, spec, MEMBERS, dtype=dtype)
    assert backprop.supported(net, noise, data.x_train)
    net.grad_buffers = GradBuffers()  # reused memory must not change a bit
    g = torch.Generator().manual_seed(7)
    for _ in range(3):  # several steps: buffers reused, fresh masks each step
        idx = torch.stack([torch.randperm(150, generator=g)[:16] for _ in MEMBERS])  # (K, 16)
        x, y = data.x_train[idx], data.y_train[idx]
        noise.advance()
        got = backprop.mlp_grads(net, x, y, noise, task)
        want = _autograd(net, x, y, noise, task)
        assert len(got) == len(want)
        for a, w in zip(got, want):
            assert a.shape == w.shape and a.dtype == w.dtype
            assert torch.equal(a, w)
        assert any(bool(a.abs().sum() > 0) for a in got)  # not vacuous


def test_rows_without_dropout_are_plain_relu(tiny):
    """Hidden slots where no member drops (rate 0) take the plain ReLU branch; the input
    slot still drops."""
    data = tiny
    spec = ModelSpec("mlp", widths=(24, 20))
    data, net, noise = _setup(data, spec, [MemberConfig(seed=0, input_rate=0.3)])
    assert backprop.supported(net, noise, data.x_train)
    x, y = data.x_train[:16].unsqueeze(0), data.y_train[:16].unsqueeze(0)
    noise.advance()
    for a, w in zip(
        backprop.mlp_grads(net, x, y, noise, "classification"),
        _autograd(net, x, y, noise, "classification"),
    ):
        assert torch.equal(a, w)


def test_fit_takes_the_hand_written_step_and_trains_bit_identically(monkeypatch, tiny):
    data = tiny
    spec = ModelSpec("mlp", widths=(24, 20))
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, max_norm=2.0, select="last")
    calls = []
    real = backprop.mlp_grads
    monkeypatch.setattr(backprop, "mlp_grads", lambda *a: calls.append(1) or real(*a))
    manual = fit(spec, data, MEMBERS, cfg)
    assert len(calls) == 3 * 5  # every step: 3 epochs of 150 rows in batches of 32
    monkeypatch.setattr(backprop, "supported", lambda *a, **k: False)
    auto = fit(spec, data, MEMBERS, cfg)
    assert len(calls) == 15  # the autograd run did not use it
    for k in range(len(MEMBERS)):
        for a, b in zip(manual.module(k).parameters(), auto.module(k).parameters()):
            assert torch.equal(a, b)
        assert manual.members[k].metrics == auto.members[k].metrics


@pytest.mark.parametrize(
    ("spec", "members", "masks", "extra"),
    [
        (ModelSpec("mlp", widths=(16,)), [MemberConfig(0, hidden_rate=0.5)], "torch", None),
        (
            ModelSpec("mlp", widths=(16,)),
            [MemberConfig(0, hidden_rate=0.5, dropout="gaussian")],
            "auto",
            None,
        ),
        (ModelSpec("mlp", widths=(16,), activation="tanh"), [MemberConfig(0)], "auto", None),
        (
            ModelSpec("mlp", widths=(16,)),
            [MemberConfig(0, hidden_rate=0.5)],
            "auto",
            lambda *a: 0,
        ),
    ],
    ids=["torch-masks", "gaussian", "tanh", "extra_loss"],
)
def test_cases_that_need_autograd_are_refused(tiny, spec, members, masks, extra):
    data = tiny
    _, net, noise = _setup(data, spec, members, masks=masks)
    assert not backprop.supported(net, noise, data.x_train, extra_loss=extra)
    if extra is None:
        with pytest.raises(ValueError, match="needs autograd"):
            backprop.mlp_grads(
                net, data.x_train[:8].unsqueeze(0), data.y_train[:8][None], noise, "classification"
            )


@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_dropout_backward_equals_the_kernel_for_any_thread_count(scaling, threads, dtype):
    """The torch passes (several threads) and the kernel (one) give the same bits."""
    from droplab.kernels import RowBernoulli

    keep = [0.7, 0.1, 1.0, 0.55, 0.9999]  # scales that are not powers of two
    rows = RowBernoulli(keep, torch.arange(5) * 11 + 3, scaling=scaling)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 33, 70, generator=g, dtype=dtype)
    h = rows.relu(z, 9)
    up = torch.randn(5, 33, 70, generator=g, dtype=dtype)
    want = rows.backward(up.clone(), h)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = backprop._relu_backward_(up.clone(), h, rows)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, want)
    assert bool((got != 0).any()) and bool((got == 0).any())


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_predict_in_reused_eval_buffers_equals_fresh_memory(request, task):
    """Evaluation writes hidden outputs into one growing scratch buffer per layer; chunks
    of different sizes (and a shorter last chunk) give the same bits as fresh memory."""
    data = request.getfixturevalue("tiny" if task == "classification" else "tiny_regression")
    spec = ModelSpec("mlp", widths=(40, 36))
    data, net, noise = _setup(data, spec, MEMBERS)
    x = data.x_train  # 150 rows
    fresh = M.predict(net, x, net.W, net.b, task=task, rates_noise=noise, chunk=64)
    net.eval_buffers = GradBuffers()
    for chunk in (64, 150, 32):  # the buffer grows, then serves smaller views
        got = M.predict(net, x, net.W, net.b, task=task, rates_noise=noise, chunk=chunk)
        assert torch.equal(got, fresh)
    mc = MemberNoise(
        [m.seed for m in MEMBERS], noise.rates, noise.gaussian, scaling="inverted",
        device="cpu", stream="mc",
    )  # fmt: skip
    net.eval_buffers = None
    want = M.predict(net, x, net.W, net.b, task=task, rates_noise=noise, mc=mc, samples=3, chunk=64)
    net.eval_buffers = GradBuffers()
    mc.counter = 0
    got = M.predict(net, x, net.W, net.b, task=task, rates_noise=noise, mc=mc, samples=3, chunk=64)
    assert torch.equal(got, want)
