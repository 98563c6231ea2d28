"""StackedOptimizer: torch's fused kernels and the plain fallback agree with torch.optim."""

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


def _torch_reference(kind, grads, nesterov=False):
    g = torch.Generator().manual_seed(0)
    stacked = [torch.randn(3, 5, 4, generator=g), torch.randn(3, 1, 4, generator=g)]
    out = []
    for k in range(3):
        ps = [s[k].clone().requires_grad_() for s in stacked]
        if kind == "adam":
            opt = torch.optim.Adam(ps, lr=LRS[k], weight_decay=WDS[k], foreach=False)
        else:
            opt = torch.optim.SGD(
                ps, lr=LRS[k], weight_decay=WDS[k], momentum=0.9, nesterov=nesterov, foreach=False
            )
        for gr in grads:
            for p, gg in zip(ps, gr):
                p.grad = gg[k].clone()
            opt.step()
        out.append([p.detach() for p in ps])
    return [torch.stack([out[k][i] for k in range(3)]) for i in range(2)]


@pytest.mark.parametrize("kind", ["adam", "sgd"])
@pytest.mark.parametrize("fused", [True, False])
def test_matches_torch_optim_per_member(kind, fused):
    params, grads = _run(kind, fused)
    for got, want in zip(params, _torch_reference(kind, grads)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_nesterov():
    params, grads = _run("sgd", True, nesterov=True)
    for got, want in zip(params, _torch_reference("sgd", grads, nesterov=True)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
