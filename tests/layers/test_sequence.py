"""Sequence dropout: LockedDropout and EmbeddingDropout (the contract tests cover
LockedDropout through specs.py; EmbeddingDropout takes integer input, so it is tested here)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import droplab as dl

from .specs import gen


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_one_mask_for_every_time_step(batch_first):
    rate, t, n, d = 0.3, 9, 401, 257
    shape = (n, t, d) if batch_first else (t, n, d)
    y = dl.LockedDropout(rate, batch_first=batch_first, generator=gen(1))(torch.ones(shape))
    time_dim = 1 if batch_first else 0
    dropped = y == 0
    first = dropped.narrow(time_dim, 0, 1)
    assert torch.equal(dropped, first.expand_as(dropped))  # the same at every step
    m = first.numel()  # (sequence, feature) pairs: 5 sigma of Binomial(m, rate)
    assert abs(first.double().mean().item() - rate) <= 5 * math.sqrt(rate * (1 - rate) / m)
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - rate)))
    with pytest.raises(ValueError, match=r"\(T, N, \*\).*got shape \(3,\)"):
        dl.LockedDropout(0.3)(torch.ones(3))


def _emb(rate=0.4, g=None):
    torch.manual_seed(0)
    return dl.EmbeddingDropout(nn.Embedding(1000, 8, padding_idx=0), rate, generator=g)


def test_embedding_dropout_drops_whole_words():
    rate = 0.4
    layer = _emb(rate, gen(2))
    idx = torch.arange(1000).repeat(3, 1)  # every word three times in the batch
    out = layer(idx)  # (3, 1000, 8)
    dropped = (out == 0).all(dim=-1)  # (3, 1000)
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))  # every occurrence
    frac = dropped[0, 1:].double().mean().item()  # word 0 is the padding row (zeros)
    assert abs(frac - rate) <= 5 * math.sqrt(rate * (1 - rate) / 999)
    kept = ~dropped[0]
    w = layer.module.weight.detach()
    torch.testing.assert_close(out[0][kept], w[kept] / (1 - rate))
    assert torch.equal(layer.eval()(idx), layer.module(idx))


def test_embedding_dropout_gradient_state_dict_and_errors():
    layer = _emb(0.5, gen(3))
    idx = torch.randint(1, 1000, (4, 6), generator=gen(4))
    out = layer(idx)
    out.sum().backward()
    g = layer.module.weight.grad  # rows of dropped words get no gradient
    dropped_rows = (out == 0).all(dim=-1)
    assert (g[idx[dropped_rows]] == 0).all()
    assert (g[idx[~dropped_rows]] != 0).any()
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = dl.EmbeddingDropout(nn.Embedding(1000, 8, padding_idx=0), 0.5)
    other.load_state_dict(torch.load(buf))
    assert set(layer.state_dict()) == {"module.weight"}
    assert torch.equal(other.eval()(idx), layer.eval()(idx))
    assert repr(layer).startswith("EmbeddingDropout(\n  rate=0.5, keep=0.5")
    with pytest.raises(TypeError, match=r"EmbeddingDropout wraps an nn\.Embedding, got Linear"):
        dl.EmbeddingDropout(nn.Linear(2, 2), 0.1)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\], got 2"):
        dl.EmbeddingDropout(nn.Embedding(3, 2), 2)
