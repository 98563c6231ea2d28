"""Invariants every layer of the family must satisfy (parametrized over tests/layers/conftest.py)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from .specs import LAYERS, gen


def _input(spec, dtype=torch.float64, seed=1):
    return torch.randn(spec.shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def test_same_generator_seed_is_bit_identical_and_other_seeds_differ(spec):
    x = _input(spec, torch.float32)
    a = spec.make(gen(7))(x)
    b = spec.make(gen(7))(x)
    c = spec.make(gen(8))(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_fresh_noise_on_every_call(spec):
    layer = spec.make(gen(3))
    x = _input(spec, torch.float32)
    # a few calls, not two: a layer with one draw per call (DropPath(mode="batch")) repeats
    # its outcome with probability keep^2 + rate^2
    first, *rest = (layer(x) for _ in range(8))
    assert any(not torch.equal(first, y) for y in rest)


def test_eval_is_deterministic(spec):
    layer = spec.make(gen(0)).eval()
    x = _input(spec, torch.float32)
    assert torch.equal(layer(x), layer(x))


def test_gradcheck_float64(spec):
    # gradcheck evaluates the function many times: reseed so every call draws the same noise
    layer = spec.make(None).double()
    x = _input(spec).requires_grad_()

    def f(inp):
        layer.generator = gen(11)
        return layer(inp)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(spec, dtype):
    layer = spec.make(gen(5)).to(dtype)
    x = _input(spec, dtype)
    y = layer(x)
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    y_eval = layer.eval()(x)
    assert y_eval.dtype == dtype
    if spec.multiplicative:
        # the noise factor y / x is the same whatever the dtype (up to dtype rounding)
        y64 = spec.make(gen(5)).train()(x.double())
        tol = {torch.float16: 1e-2, torch.bfloat16: 4e-2}.get(dtype, 1e-6)
        torch.testing.assert_close(y.double(), y64, rtol=tol, atol=tol)


def test_multiplicative_backward_uses_forward_mask(spec):
    # for y = x * noise the gradient of sum(y) is exactly the noise of the forward pass
    if not spec.multiplicative:
        pytest.skip("not a purely multiplicative layer")
    x = (_input(spec).abs() + 0.5).requires_grad_()
    y = spec.make(gen(2))(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach() / x.detach(), rtol=1e-12, atol=0)
    assert torch.equal(x.grad == 0, y.detach() == 0)


def test_state_dict_round_trip_and_deepcopy(spec):
    layer = spec.make(gen(0)).eval()
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = spec.make(gen(1))  # a seed= layer needs a seed to have a stream to load into
    if spec.name.startswith("dropconnect"):
        for p in other.parameters():  # make sure loading really overwrites the weights
            torch.nn.init.zeros_(p)
    other.load_state_dict(torch.load(buf))
    other.eval()
    x = _input(spec, torch.float32)
    assert torch.equal(layer(x), other(x))
    assert torch.equal(copy.deepcopy(layer)(x), layer(x))


def test_repr_shows_rate_and_keep(spec):
    text = repr(spec.make(None))
    if spec.name != "gaussian-noise":
        assert "rate=" in text and "keep=" in text


def test_all_layers_exported():
    import droplab as dl

    for name in [
        "Dropout",
        "FixedCountDropout",
        "GaussianDropout",
        "GaussianNoise",
        "AlphaDropout",
        "SpatialDropout",
        "DropBlock",
        "DropPath",
        "DropConnect",
        "mc_mode",
        "mc_predict",
        "replace_dropout",
        "is_dropout",
    ]:
        assert hasattr(dl, name), name
    assert len(LAYERS) >= 9
