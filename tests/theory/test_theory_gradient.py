"""gradient_decomposition on torch modules vs the closed form of linear regression."""

from __future__ import annotations

import pytest
import torch
from theory_mc import within

import droplab as dl
from droplab import rng
from droplab.theory import gaussian_sigma, gradient_decomposition, linear_gradient_moments

SAMPLES = 1000


def _sse(out, y):
    return (out.squeeze(-1) - y).pow(2).sum()


def _linear_model(dropout: torch.nn.Module, w: torch.Tensor) -> torch.nn.Module:
    lin = torch.nn.Linear(w.shape[0], 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(w[None, :])
    return torch.nn.Sequential(dropout, lin)


@pytest.mark.parametrize(
    ("layer", "kwargs"),
    [
        (dl.Dropout(keep=0.6), {"keep": 0.6}),
        (dl.Dropout(keep=0.6, scaling="classic"), {"keep": 0.6, "scaling": "classic"}),
        (dl.GaussianDropout(sigma=gaussian_sigma(0.6)), {"sigma": gaussian_sigma(0.6)}),
        (torch.nn.Dropout(0.4), {"keep": 0.6}),
    ],
    ids=["bernoulli", "classic", "gaussian", "torch"],
)
def test_linear_model_matches_closed_form(problem, layer, kwargs):
    """Each bias coordinate within 5 stderr; the noise trace within 5 batch-mean stderr."""
    X, y, w = problem
    model = _linear_model(layer, w)
    dec = gradient_decomposition(model, _sse, (X, y), SAMPLES, generator=rng.generator(1, "g"))
    exact = linear_gradient_moments(X, y, w, **kwargs)
    assert torch.allclose(dec.clean, exact.clean)
    within(dec.bias, dec.bias_stderr, exact.bias)
    within(dec.noise_trace, dec.noise_trace_stderr, exact.noise_trace)
    # the bias is far from zero compared with its error: the test can fail
    assert dec.bias_norm > 10 * float(dec.bias_stderr.norm())


def test_reproducible_and_side_effect_free():
    torch.manual_seed(123)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        dl.Dropout(0.3),
        torch.nn.Linear(8, 3),
    )
    net.train()
    net[1].eval()
    x = torch.randn(10, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    loss = torch.nn.functional.cross_entropy
    state = torch.get_rng_state()
    a = gradient_decomposition(net, loss, (x, y), 40, seed=7, batches=4)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    b = gradient_decomposition(net, loss, (x, y), 40, seed=7, batches=4)
    assert torch.equal(a.mean, b.mean) and a.noise_trace == b.noise_trace
    c = gradient_decomposition(net, loss, (x, y), 40, seed=8, batches=4)
    assert not torch.equal(a.mean, c.mean)
    assert [m.training for m in net.modules()] == [True, True, False, True, True, True]
    blocks = a.unflatten(a.bias)
    assert set(blocks) == {n for n, _ in net.named_parameters()}
    assert blocks["4.weight"].shape == (3, 8)
    assert a.noise_trace > 0 and a.noise_trace_stderr > 0


def test_bad_inputs(problem):
    X, y, w = problem
    plain = torch.nn.Linear(4, 1).double()
    with pytest.raises(ValueError, match="no dropout module"):
        gradient_decomposition(plain, _sse, (X, y), 100)
    model = _linear_model(dl.Dropout(0.5), w)
    with pytest.raises(ValueError, match="samples"):
        gradient_decomposition(model, _sse, (X, y), 10)
    with pytest.raises(ValueError, match="at most one"):
        gradient_decomposition(model, _sse, (X, y), 100, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="batch"):
        gradient_decomposition(model, _sse, X, 100)
    with pytest.raises(TypeError, match="model"):
        gradient_decomposition(lambda x: x, _sse, (X, y), 100)
