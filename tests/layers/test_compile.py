"""torch.compile of one small model that uses every layer of the family (kept to one
compilation because compiling is slow)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import droplab as dl


class EveryLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = dl.DropConnect(nn.Conv2d(2, 4, 3, padding=1), 0.2)
        self.spatial = dl.SpatialDropout(0.2)
        self.falpha = dl.FeatureAlphaDropout(0.1)
        self.block = dl.DropBlock(0.2, (3, 2))
        self.fc = nn.Linear(4 * 9 * 7, 16)
        self.drop = dl.Dropout(0.3)
        self.classic = dl.Dropout(0.3, scaling="classic")
        self.fixed = dl.FixedCountDropout(0.25, scaling="classic")
        self.gauss = dl.GaussianDropout(0.3)
        self.noise = dl.GaussianNoise(0.1)
        self.alpha = dl.AlphaDropout(0.1)
        self.path = dl.DropPath(0.2)
        self.batch_path = dl.DropPath(0.2, mode="batch")
        self.head = dl.DropConnect(nn.Linear(16, 3), 0.2)
        self.consistent = dl.ConsistentDropout(0.2)
        self.locked = dl.LockedDropout(0.2, batch_first=True)
        self.concrete = dl.ConcreteDropout(nn.Linear(16, 16), 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.spatial(self.falpha(torch.selu(self.conv(x)))))  # (N, 4, 9, 7)
        h = self.fc(h.flatten(1))  # (N, 16)
        h = self.fixed(self.classic(self.drop(h)))
        h = self.alpha(self.noise(self.gauss(torch.selu(h))))
        h = h + self.path(h) + self.batch_path(h)
        h = self.concrete(self.consistent(h))
        h = self.locked(h[:, None, :].expand(-1, 2, -1)).mean(dim=1)  # (N, T=2, 16) -> (N, 16)
        return self.head(h)  # (N, 3)


def _no_dynamo_warnings(caught: list) -> None:
    # e.g. "Dynamo detected a call to a functools.lru_cache-wrapped function"
    messages = [str(w.message) for w in caught if "ynamo" in str(w.message)]
    assert not messages, messages


def _check_compiled_matches_eager(backend: str) -> None:
    torch._dynamo.reset()  # a fresh trace, so that warnings of tracing are raised here
    torch.manual_seed(0)
    model = EveryLayer().eval()
    x = torch.randn(5, 2, 9, 7)
    eager = model(x)
    # fullgraph: the eval path of every layer traces without a graph break
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.testing.assert_close(compiled(x), eager)
    _no_dynamo_warnings(caught)
    x2 = torch.randn(3, 2, 9, 7)
    torch.testing.assert_close(compiled(x2), model(x2))


def test_compiled_model_matches_eager_in_eval():
    # aot_eager runs dynamo and AOTAutograd (where untraceable code fails) without the
    # C++ code generation of inductor, which costs ~40 s on 2 cores
    _check_compiled_matches_eager("aot_eager")


@pytest.mark.slow
def test_inductor_compiled_model_matches_eager_in_eval():
    _check_compiled_matches_eager("inductor")


def test_state_dict_round_trip_of_a_model_with_every_layer():
    torch.manual_seed(0)
    a = EveryLayer().eval()
    b = EveryLayer().eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 2, 9, 7)
    assert torch.equal(a(x), b(x))
    assert set(a.state_dict()) == {
        "conv.module.weight",
        "conv.module.bias",
        "fc.weight",
        "fc.bias",
        "head.module.weight",
        "head.module.bias",
        "concrete.p_logit",
        "concrete.module.weight",
        "concrete.module.bias",
    }


def test_compiled_model_trains_without_graph_breaks():
    # training mode under torch.compile: every layer traces in one graph (fast kernels step
    # aside while compiling) and dropout still yields values in {0, x / keep}
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = EveryLayer().train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(torch.randn(5, 2, 9, 7))
    _no_dynamo_warnings(caught)
    assert out.shape == (5, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.fc.weight.grad is not None
    drop = torch.compile(model.drop, backend="aot_eager", fullgraph=True)
    x = torch.rand(301, 7) + 0.5
    ratio = drop(x) / x
    zero = ratio == 0
    assert 0 < zero.sum() < x.numel()
    torch.testing.assert_close(ratio[~zero], torch.full_like(ratio[~zero], 1 / 0.7))
