"""ExplicitDropoutPenalty vs Monte Carlo over droplab masks on the last hidden layer."""

from __future__ import annotations

import pytest
import torch
from theory_mc import mc, within

from droplab import functional as F
from droplab import rng
from droplab.theory import ExplicitDropoutPenalty, bernoulli_keep

S = 20_000
B, H, O = 6, 7, 3  # noqa: E741  (batch, hidden, outputs: non-square on purpose)


@pytest.fixture
def layer():
    g = rng.generator(0, "theory", "explicit")
    h = torch.relu(torch.randn(B, H, generator=g, dtype=torch.float64))  # (B, H)
    W = torch.randn(O, H, generator=g, dtype=torch.float64) / H**0.5  # (O, H)
    b = torch.randn(O, generator=g, dtype=torch.float64)
    y = torch.randn(B, O, generator=g, dtype=torch.float64)
    return h, W, b, y


def _sse(z, y):
    return (y - z).pow(2).sum(-1).mean(-1)  # per-example SSE over outputs, mean over batch


@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_squared_penalty_is_exact(layer, keep):
    h, W, b, y = layer
    ht = F.dropout(h.expand(S, B, H), keep=keep, generator=rng.generator(1, "masks"))  # (S,B,H)
    excess = _sse(ht @ W.T + b, y) - _sse(h @ W.T + b, y)  # (S,)
    pen = ExplicitDropoutPenalty("squared")(h, W, None, keep)
    within(*mc(excess), pen)
    mean_pen = ExplicitDropoutPenalty("squared", output_reduction="mean")(h, W, None, keep)
    assert torch.allclose(mean_pen * O, pen)


def test_squared_penalty_gaussian_matched(layer):
    h, W, b, y = layer
    sigma = 0.8
    ht = F.gaussian_dropout(h.expand(S, B, H), sigma=sigma, generator=rng.generator(2, "m"))
    excess = _sse(ht @ W.T + b, y) - _sse(h @ W.T + b, y)  # (S,)
    within(*mc(excess), ExplicitDropoutPenalty("squared")(h, W, None, bernoulli_keep(sigma)))


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_cross_entropy_penalty_is_the_second_order_term(layer, keep):
    """penalty = E 1/2 delta^T H delta exactly, delta = W ((m/keep - 1) * h)."""
    h, W, b, _ = layer
    z = h @ W.T + b  # (B, O)
    p = torch.softmax(z, -1)  # (B, O)
    hess = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (B, O, O)
    ht = F.dropout(h.expand(S, B, H), keep=keep, generator=rng.generator(3, "masks"))
    delta = (ht - h) @ W.T  # (S, B, O)
    quad = 0.5 * torch.einsum("sbo,bop,sbp->sb", delta, hess, delta).mean(-1)  # (S,)
    within(*mc(quad), ExplicitDropoutPenalty()(h, W, z, keep))


def test_cross_entropy_penalty_approximates_expected_loss(layer):
    """True E CE(z~) - CE(z) vs the penalty: within 10% once the weights are small."""
    h, W, b, _ = layer
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    keep = 0.7
    rel = []
    for t in (1.0, 0.25):
        Wt = t * W
        z = h @ Wt.T + b
        ht = F.dropout(h.expand(S, B, H), keep=keep, generator=rng.generator(4, "masks"))
        zt = ht @ Wt.T + b  # (S, B, O)
        ce = torch.nn.functional.cross_entropy
        excess = ce(zt.reshape(-1, O), labels.repeat(S), reduction="none").reshape(S, B).mean(1)
        # control variate: the first-order term grad_z CE . delta has mean exactly zero
        first = ((zt - z) * (torch.softmax(z, -1) - torch.eye(O)[labels])).sum(-1).mean(-1)
        excess = excess - ce(z, labels) - first  # (S,)
        mean, se = mc(excess)
        pen = ExplicitDropoutPenalty()(h, Wt, z, keep)
        assert float(se) < 0.02 * float(pen)  # the MC is precise enough to see a 10% error
        rel.append(float((mean - pen).abs() / pen))
    assert max(rel) < 0.1, rel


def test_batched_members_match_single():
    K = 3
    g = rng.generator(5, "members")
    hs = torch.relu(torch.randn(K, B, H, generator=g, dtype=torch.float64))  # (K, B, H)
    Ws = torch.randn(K, O, H, generator=g, dtype=torch.float64)  # (K, O, H)
    zs = hs @ Ws.transpose(-1, -2)  # (K, B, O)
    keeps = torch.tensor([0.3, 0.6, 1.0], dtype=torch.float64)
    for loss in ("cross_entropy", "squared"):
        pen = ExplicitDropoutPenalty(loss)
        out = pen(hs, Ws, zs, keeps)
        assert out.shape == (K,)
        single = torch.stack([pen(hs[k], Ws[k], zs[k], float(keeps[k])) for k in range(K)])
        assert torch.allclose(out, single)
        assert out[2] == 0.0
        assert pen(hs, Ws, zs, 0.5).shape == (K,)


def test_gradients_flow_and_detach(layer):
    h, W, b, _ = layer
    h = h.clone().requires_grad_(True)
    W = W.clone().requires_grad_(True)
    z = h @ W.T + b
    for detach in (False, True):
        pen = ExplicitDropoutPenalty(detach_probs=detach)(h, W, z, 0.5)
        gh, gW = torch.autograd.grad(pen, (h, W))
        assert torch.isfinite(gh).all() and torch.isfinite(gW).all()
        assert gW.abs().sum() > 0
    assert "cross_entropy" in repr(ExplicitDropoutPenalty())


def test_bad_inputs(layer):
    h, W, b, _ = layer
    z = h @ W.T + b
    pen = ExplicitDropoutPenalty()
    with pytest.raises(ValueError, match="keep"):
        pen(h, W, z, 0.0)
    with pytest.raises(ValueError, match="keep"):
        pen(h, W, z, torch.tensor([0.5, 1.2]))
    with pytest.raises(ValueError, match="keep must be a scalar or have the leading"):
        pen(h, W, z, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="weight must have shape"):
        pen(h, W[:, :3], z, 0.5)
    with pytest.raises(ValueError, match="logits must have shape"):
        pen(h, W, z[:, :2], 0.5)
    with pytest.raises(ValueError, match="logits must have shape"):
        pen(h, W, None, 0.5)
    with pytest.raises(ValueError, match="hidden must be"):
        pen(h[0], W, z, 0.5)
    with pytest.raises(ValueError, match="loss"):
        ExplicitDropoutPenalty("hinge")
