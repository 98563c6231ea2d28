"""Mask structure: sharing along broadcast_dims, and the backward pass reusing the forward mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import droplab as dl
from droplab import functional as F

from .specs import gen


@pytest.mark.parametrize("dims", [0, (0, 2), (-1,), (1, 3)])
def test_mask_shared_along_broadcast_dims(dims):
    shape = (7, 5, 3, 4)
    y = F.dropout(torch.ones(shape), 0.5, broadcast_dims=dims, generator=gen(1))
    norm = {d % 4 for d in ((dims,) if isinstance(dims, int) else dims)}
    first = y[tuple(slice(0, 1) if d in norm else slice(None) for d in range(4))]
    assert torch.equal(y, first.expand(shape))  # constant along the broadcast dims
    other = [d for d in range(4) if d not in norm]
    assert len(first.unique()) == 2  # but it varies across the other dims
    assert first.shape == tuple(1 if d in norm else shape[d] for d in range(4))
    assert other


def test_negative_and_positive_broadcast_dims_agree():
    x = torch.randn(4, 3, 5)
    a = F.dropout(x, 0.3, broadcast_dims=-1, generator=gen(2))
    b = F.dropout(x, 0.3, broadcast_dims=2, generator=gen(2))
    assert torch.equal(a, b)


def test_layer_broadcast_dims_time_shared_mask():
    # variational dropout: the same features dropped at every time step of (N, T, D)
    layer = dl.Dropout(0.5, broadcast_dims=1, generator=gen(3))
    y = layer(torch.ones(6, 9, 11))
    assert torch.equal(y, y[:, :1].expand_as(y))
    assert "broadcast_dims=(1,)" in repr(layer)


@pytest.mark.parametrize("scaling", ["inverted", "classic"])
def test_dropout_backward_is_the_forward_mask(scaling):
    keep = 0.7
    x = (torch.rand(13, 17, generator=gen(4), dtype=torch.float64) + 0.5).requires_grad_()
    y = F.dropout(x, keep=keep, scaling=scaling, generator=gen(5))
    y.backward(torch.ones_like(y))
    scale = 1 / keep if scaling == "inverted" else 1.0
    kept = y.detach() != 0
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))  # zero where dropped
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], scale))  # 1/keep
    assert 0 < kept.sum() < kept.numel()


def test_alpha_dropout_backward_is_a_times_mask():
    rate = 0.3
    keep = 1 - rate
    alpha_p = -F.SELU_LAMBDA * F.SELU_ALPHA
    a = (keep + alpha_p**2 * keep * rate) ** -0.5
    b = -a * rate * alpha_p
    x = torch.randn(11, 19, generator=gen(6), dtype=torch.float64).requires_grad_()
    y = F.alpha_dropout(x, rate, generator=gen(7))
    y.sum().backward()
    m = (x.grad != 0).double()
    torch.testing.assert_close(x.grad, a * m)
    torch.testing.assert_close(y.detach(), a * (x.detach() * m + alpha_p * (1 - m)) + b)


def test_additive_noise_backward_is_identity():
    x = torch.randn(5, 7, dtype=torch.float64).requires_grad_()
    F.gaussian_noise(x, 0.4, generator=gen(8)).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize(
    "module", [nn.Linear(23, 17), nn.Conv1d(3, 4, 5), nn.Conv2d(2, 3, (3, 2))], ids=str
)
def test_dropconnect_weight_gradient_uses_the_forward_mask(module):
    rate = 0.4
    layer = dl.DropConnect(module, rate, generator=gen(9))
    x = {nn.Linear: (5, 23), nn.Conv1d: (5, 3, 11), nn.Conv2d: (5, 2, 7, 6)}[type(module)]
    layer(torch.randn(x, generator=gen(10))).square().sum().backward()
    # the same generator seed on a weight of ones reproduces the forward's mask / keep
    mask = F.drop_connect_weight(torch.ones_like(module.weight), rate, generator=gen(9))
    grad = module.weight.grad
    assert torch.equal(grad[mask == 0], torch.zeros_like(grad[mask == 0]))
    assert (grad[mask != 0] != 0).float().mean() > 0.99
    assert module.bias.grad is not None and (module.bias.grad != 0).all()  # bias not dropped


def test_dropconnect_forward_equals_layer_with_masked_weight():
    lin = nn.Linear(9, 4)
    layer = dl.DropConnect(lin, 0.5, generator=gen(11))
    x = torch.randn(3, 9)
    w = F.drop_connect_weight(lin.weight, 0.5, generator=gen(11))
    torch.testing.assert_close(layer(x), nn.functional.linear(x, w, lin.bias))
    torch.testing.assert_close(layer.eval()(x), lin(x))
