"""droplab.theory on a CUDA device (skipped without one): devices, dtypes, reproducibility."""

from __future__ import annotations

import pytest
import torch
from theory_mc import within

import droplab as dl
from droplab import rng
from droplab.theory import (
    ExplicitDropoutPenalty,
    gradient_decomposition,
    linear_dropout_solution,
    linear_expected_loss,
    linear_gradient_moments,
    logistic_dropout_penalty,
    logistic_expected_loss_exact,
    logistic_expected_loss_mc,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_closed_forms_on_cuda(problem):
    X, y, w = (t.cuda() for t in problem)
    Xc, yc, wc = problem
    assert torch.allclose(
        linear_expected_loss(X, y, w, 0.4).cpu(), linear_expected_loss(Xc, yc, wc, 0.4)
    )
    assert torch.allclose(
        linear_dropout_solution(X, y, 0.4).cpu(), linear_dropout_solution(Xc, yc, 0.4)
    )
    assert linear_gradient_moments(X, y, w, 0.4).bias.device.type == "cuda"
    yb = (y > y.median()).double()
    assert logistic_dropout_penalty(X, w, 0.4).device.type == "cuda"
    exact = logistic_expected_loss_exact(X, yb, w, 0.4)
    g = torch.Generator(device="cuda").manual_seed(1)
    mean, se = logistic_expected_loss_mc(X, yb, w, 0.4, samples=20_000, generator=g)
    within(mean, se, exact.cpu())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_explicit_penalty_cuda_dtypes(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    h = torch.rand(3, 16, 8, generator=g, device="cuda").to(dtype).requires_grad_(True)
    W = torch.randn(3, 4, 8, generator=g, device="cuda").to(dtype).requires_grad_(True)
    z = h @ W.transpose(-1, -2)
    keep = torch.tensor([0.5, 0.8, 1.0], device="cuda")
    for loss in ("cross_entropy", "squared"):
        out = ExplicitDropoutPenalty(loss)(h, W, z, keep)
        assert out.shape == (3,) and out.dtype == dtype and out.device.type == "cuda"
        ref = ExplicitDropoutPenalty(loss)(
            h.double().cpu(), W.double().cpu(), z.double().cpu(), keep.cpu()
        )
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
        assert torch.allclose(out.double().cpu(), ref, rtol=tol, atol=tol)
        out.sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(W.grad).all()


def test_gradient_decomposition_cuda(problem):
    X, y, w = (t.cuda() for t in problem)
    lin = torch.nn.Linear(4, 1, bias=False).double().cuda()
    with torch.no_grad():
        lin.weight.copy_(w[None, :])
    model = torch.nn.Sequential(dl.Dropout(keep=0.6), lin)
    sse = lambda out, t: (out.squeeze(-1) - t).pow(2).sum()  # noqa: E731
    state = torch.cuda.get_rng_state()
    a = gradient_decomposition(model, sse, (X, y), 1000, seed=rng.derive(1, "cuda"))
    assert torch.equal(state, torch.cuda.get_rng_state())
    b = gradient_decomposition(model, sse, (X, y), 1000, seed=rng.derive(1, "cuda"))
    assert torch.equal(a.mean, b.mean)
    exact = linear_gradient_moments(X, y, w, 0.6)
    within(a.bias.cpu(), a.bias_stderr.cpu(), exact.bias.cpu())
    within(a.noise_trace, a.noise_trace_stderr, exact.noise_trace)
