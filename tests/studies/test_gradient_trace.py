"""mask_mlp and gradient_trace: the stacked forward and per-copy gradients against torch
autograd on an ordinary module, the three multipliers' moments, and the decomposition."""

from __future__ import annotations

import math

import pytest
import torch

from droplab.studies.gradient_trace import measure
from droplab.studies.mask_mlp import Member, forward, init_params, losses, multipliers, train


def _net(params, k):
    """Member k of the stack as an ordinary torch MLP (ReLU)."""
    layers = []
    for i in range(len(params) // 2):
        w, b = params[2 * i][k], params[2 * i + 1][k]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data.copy_(w)
        lin.bias.data.copy_(b)
        layers.append(lin)
    return layers


def test_per_copy_gradient_matches_autograd_of_a_torch_mlp():
    from droplab.studies.gradient_trace import _grads

    params = init_params((5, 7, 6, 3), seeds=[1, 2])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 4, 5, generator=g), torch.randint(0, 3, (2, 4), generator=g)
    masks = [multipliers("bernoulli", torch.tensor([0.5, 0.25]), (2, 4, h), g) for h in (7, 6)]
    got = _grads(params, x, y, masks)  # (2, P)
    for k in range(2):
        l1, l2, l3 = _net(params, k)
        h = torch.relu(l1(x[k])) * masks[0][k]
        h = torch.relu(l2(h)) * masks[1][k]
        loss = torch.nn.functional.cross_entropy(l3(h), y[k])
        loss.backward()
        ref = torch.cat([p.grad.reshape(-1) for m in (l1, l2, l3) for p in (m.weight, m.bias)])
        torch.testing.assert_close(got[k].float(), ref, rtol=1e-5, atol=1e-6)
    assert losses(forward(params, x), y).shape == (2,)


@pytest.mark.parametrize("variant", ["bernoulli", "gaussian", "fixed-count"])
def test_multipliers_have_mean_one_and_matched_variance(variant):
    rate, n = 0.25, 200_000
    u = multipliers(variant, torch.tensor([rate]), (1, n // 8, 8), torch.Generator().manual_seed(3))
    var = rate / (1 - rate)
    se_mean = math.sqrt(var / n)  # fixed-count: smaller still (negative correlation)
    assert abs(float(u.mean()) - 1.0) < 5 * se_mean
    assert abs(float(u.var()) - var) < 5 * math.sqrt(var**2 * 3 / n)
    if variant == "fixed-count":
        assert ((u == 0).sum(-1) == 2).all()  # exactly round(0.25 * 8) dropped per row


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match=r"variant must be one of .*'dropconnect'"):
        multipliers("dropconnect", torch.tensor([0.5]), (1, 2, 3), torch.Generator())


def test_measure_without_noise_has_no_bias_and_no_noise():
    params = init_params((5, 6, 3), seeds=[0])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1, 8, 5, generator=g), torch.randint(0, 3, (1, 8), generator=g)
    m = measure(params, x, y, "bernoulli", torch.tensor([0.0]), 4, g)
    assert float(m["noise"][0]) == pytest.approx(0.0, abs=1e-20)
    assert float(m["bias_sq"][0]) == pytest.approx(0.0, abs=1e-20)
    assert float(m["clean_sq"][0]) > 0


def test_measure_agrees_with_theory_gradient_decomposition():
    """The same weights, batch and noise: the noise traces agree within 5 standard errors."""
    from droplab.models import ModelSpec, build
    from droplab.theory import gradient_decomposition

    params = init_params((6, 16, 3), seeds=[4])
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    ours = measure(params, x[None], y[None], "bernoulli", torch.tensor([0.5]), 400, g)
    net = build(ModelSpec("mlp", widths=(16,)), (6,), 3, hidden_rate=0.5)
    lin = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    for i, m in enumerate(lin):
        m.weight.data.copy_(params[2 * i][0])
        m.bias.data.copy_(params[2 * i + 1][0])
    ref = gradient_decomposition(net, torch.nn.functional.cross_entropy, (x, y), 400, seed=5)
    assert ours["clean_sq"][0] == pytest.approx(ref.clean_norm**2, rel=1e-4)
    se = ref.noise_trace_stderr * math.sqrt(2)  # both estimates noisy, similar size
    assert abs(float(ours["noise"][0]) - ref.noise_trace) < 5 * se


def test_train_stops_early_and_keeps_selected_weights():
    from droplab.studies import protocol as P

    ds = P.load_data("digits", 7, 300, None)
    out, saved = train(
        ds,
        (8,),
        [Member(0, "fixed-count", 0.5, 3e-3), Member(0, "gaussian", 0.5, 3e-3)],
        max_steps=60,
        eval_steps=10,
        patience_steps=20,
        checkpoints=(0, 10),
    )
    assert set(saved) == {0, 10, -1}
    for m in out:
        assert 0 <= m["test_error"] <= 1 and m["best_step"] <= m["steps"] <= 60
    with pytest.raises(ValueError, match="variant must be one of"):
        train(ds, (8,), [Member(0, "x", 0.5, 1e-3)], max_steps=1, eval_steps=1, patience_steps=1)
