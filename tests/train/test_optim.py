"""StackedOptimizer: torch's fused kernels and the plain fallback agree with torch.optim;
compaction (members leaving) changes nothing for the members that stay."""

from __future__ import annotations

import pytest
import torch

from droplab.train.optim import StackedOptimizer

LRS, WDS = [1e-2, 1e-2, 3e-3], [0.0, 1e-2, 0.0]


def _run(kind, fused, steps=4, nesterov=False):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 5, 4, generator=g), torch.randn(3, 1, 4, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(steps)]
    opt = StackedOptimizer(
        params, kind=kind, lrs=LRS, weight_decays=WDS, momentum=0.9, nesterov=nesterov, fused=fused
    )
    for gr in grads:
        opt.step(gr)
    return params, grads


def _torch_reference(kind, grads, nesterov=False, **impl):
    impl = impl or {"foreach": False}
    g = torch.Generator().manual_seed(0)
    stacked = [torch.randn(3, 5, 4, generator=g), torch.randn(3, 1, 4, generator=g)]
    out = []
    for k in range(3):
        ps = [s[k].clone().requires_grad_() for s in stacked]
        if kind == "adam":
            opt = torch.optim.Adam(ps, lr=LRS[k], weight_decay=WDS[k], **impl)
        elif kind == "adamw":
            opt = torch.optim.AdamW(ps, lr=LRS[k], weight_decay=WDS[k], **impl)
        else:
            opt = torch.optim.SGD(
                ps, lr=LRS[k], weight_decay=WDS[k], momentum=0.9, nesterov=nesterov, **impl
            )
        for gr in grads:
            for p, gg in zip(ps, gr):
                p.grad = gg[k].clone()
            opt.step()
        out.append([p.detach() for p in ps])
    return [torch.stack([out[k][i] for k in range(3)]) for i in range(2)]


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("fused", [True, False])
def test_matches_torch_optim_per_member(kind, fused):
    params, grads = _run(kind, fused)
    for got, want in zip(params, _torch_reference(kind, grads)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_nesterov():
    params, grads = _run("sgd", True, nesterov=True)
    for got, want in zip(params, _torch_reference("sgd", grads, nesterov=True)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_adamw_fused_is_torch_adamw_bit_for_bit():
    """The fused stacked AdamW runs torch's own kernel: equal to torch.optim.AdamW(fused=True)
    bit for bit (the plain fallback and foreach=False round differently, ~1e-9: above)."""
    params, grads = _run("adamw", True)
    for got, want in zip(params, _torch_reference("adamw", grads, fused=True)):
        assert torch.equal(got, want)


def test_adamw_decay_is_decoupled():
    """With a zero gradient Adam's update is 0: AdamW only shrinks p by (1 - lr wd) per
    step; Adam's coupled decay moves p by ~lr per step instead."""
    for fused in (True, False):
        p = [torch.ones(2, 3, 1)]
        opt = StackedOptimizer(
            p, kind="adamw", lrs=[0.1, 0.1], weight_decays=[0.5, 0.0], fused=fused
        )
        for _ in range(3):
            opt.step([torch.zeros(2, 3, 1)])
        torch.testing.assert_close(p[0][0], torch.full((3, 1), 0.95**3))
        assert torch.equal(p[0][1], torch.ones(3, 1))


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("fused", [True, False])
def test_compact_continues_each_kept_member_exactly(kind, fused):
    """3 steps with all members, drop member 1 (and reorder), 3 more steps: members 2 and
    0 end bit for bit where 6 steps of the full optimizer leave them (moments, momentum
    buffers, step counts and per-member lr/wd carry over; the updates are elementwise)."""
    g = torch.Generator().manual_seed(1)
    init = [torch.randn(3, 5, 4, generator=g), torch.randn(3, 1, 4, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) for p in init] for _ in range(6)]
    kw = dict(kind=kind, lrs=LRS, weight_decays=WDS, momentum=0.9, fused=fused)
    full = [p.clone() for p in init]
    opt = StackedOptimizer(full, **kw)
    for gr in grads:
        opt.step(gr)
    part = [p.clone() for p in init]
    opt = StackedOptimizer(part, **kw)
    for gr in grads[:3]:
        opt.step(gr)
    keep = [2, 0]
    part = opt.compact(keep)
    assert [p.shape[0] for p in part] == [2, 2] and opt.K == 2
    for gr in grads[3:]:
        opt.step([t[keep] for t in gr])
    for got, want in zip(part, full):
        assert torch.equal(got, want[keep])
