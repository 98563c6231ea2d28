"""Every layer returns its output in the input's memory layout, as torch's own layers do.

torch's element-wise ops allocate their output with ``empty_like`` (``preserve_format``):
a permuted dense input (``channels_last``, ``channels_last_3d``, any ``permute``) gives an
output with the same strides. The oracle is ``torch.empty_like(x).stride()``; values are
checked against the same layer on the C-contiguous copy (the mask of an element depends
on its logical index, not on where it lives in memory).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import droplab as dl

from .specs import gen

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

# element-wise and structured layers over a 4-D (N, C, H, W) input, non-square
LAYERS = {
    "dropout": lambda g: dl.Dropout(0.3, generator=g),
    "dropout-torch": lambda g: dl.Dropout(0.3, generator=g, backend="torch"),
    "dropout-classic": lambda g: dl.Dropout(0.3, scaling="classic", generator=g),
    "dropout-bcast": lambda g: dl.Dropout(0.3, broadcast_dims=(2, 3), generator=g),
    "fixed-count": lambda g: dl.FixedCountDropout(0.3, generator=g),
    "fixed-count-torch": lambda g: dl.FixedCountDropout(0.3, generator=g, backend="torch"),
    "gaussian-dropout": lambda g: dl.GaussianDropout(0.3, generator=g),
    "gaussian-dropout-torch": lambda g: dl.GaussianDropout(0.3, generator=g, backend="torch"),
    "gaussian-noise": lambda g: dl.GaussianNoise(0.5, generator=g),
    "alpha-dropout": lambda g: dl.AlphaDropout(0.3, generator=g),
    "spatial": lambda g: dl.SpatialDropout(0.3, generator=g),
    "dropblock": lambda g: dl.DropBlock(0.3, 2, generator=g),
    "droppath": lambda g: dl.DropPath(0.3, generator=g),
}


def _check(make, x):
    y = make(gen(4))(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.stride() == torch.empty_like(x).stride(), (x.stride(), y.stride())
    ref = make(gen(4))(x.contiguous())
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_every_permutation_keeps_its_layout(name, perm):
    base = torch.randn(3, 4, 5, 7, generator=gen(1))  # (N, C, H, W), odd and non-square
    x = base.permute(perm).contiguous().permute(tuple(perm.index(d) for d in range(4)))
    assert torch.equal(x, base)  # same values, memory in the order of ``perm``
    _check(LAYERS[name], x)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_every_dtype(name, dtype):
    x = torch.randn(3, 4, 5, 7, generator=gen(2)).to(dtype)
    x = x.to(memory_format=torch.channels_last)
    _check(LAYERS[name], x)
    _check(LAYERS[name], x.requires_grad_())


@pytest.mark.parametrize(
    "make",
    [
        lambda g: dl.Dropout(0.3, generator=g),
        lambda g: dl.GaussianDropout(0.3, generator=g),
        lambda g: dl.AlphaDropout(0.3, generator=g),
        lambda g: dl.SpatialDropout(0.3, generator=g),
    ],
    ids=["dropout", "gaussian-dropout", "alpha-dropout", "spatial"],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_3d(make, dtype):
    x = torch.randn(2, 3, 4, 5, 6, generator=gen(3)).to(dtype)
    _check(make, x.to(memory_format=torch.channels_last_3d))


def test_gradient_of_a_permuted_input_uses_the_forward_mask():
    x = torch.randn(3, 4, 5, 7, generator=gen(5)).abs().add(0.5)
    x = x.to(memory_format=torch.channels_last).requires_grad_()
    y = dl.Dropout(0.4, generator=gen(6))(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach() / x.detach(), rtol=1e-6, atol=0)


def test_non_dense_input_follows_torch():
    x = torch.randn(6, 8, 10, generator=gen(7)).permute(2, 0, 1)[::2, :, 1:]  # a strided view
    for layer in (dl.Dropout(0.3), dl.GaussianDropout(0.3), dl.AlphaDropout(0.3)):
        assert layer(x).stride() == torch.nn.functional.dropout(x, 0.3).stride()
