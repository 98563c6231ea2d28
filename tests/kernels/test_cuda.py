"""CUDA checks of droplab.kernels (skipped without a GPU): Triton (or the torch-op hash)
must give the CPU's masks bit for bit, the CPU's Gaussian noise to float32 rounding, and
correct gradients. Also runnable as a script on a GPU machine without pytest:
``python tests/kernels/test_cuda.py``.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    import pytest
except ImportError:  # run as a script on a machine without pytest
    pytest = None

from droplab import kernels

CUDA = torch.cuda.is_available()
if pytest is not None:
    pytestmark = pytest.mark.skipif(not CUDA, reason="no CUDA device")
CUDA_BACKENDS = (
    ["torch", "triton"] if CUDA and kernels.backend_name("cuda") == "triton" else ["torch"]
)


def test_bits_equal_cpu():
    for backend in CUDA_BACKENDS:
        for seed, offset in [(0, 0), (-3, 17), (2**63 + 5, 2**40)]:
            for base in (0, 2**32 - 5):
                k0, k1 = kernels._hash.keys(seed, offset)
                p = kernels._hash.Params(1, 1000, np.array([base], dtype=np.int64), k0, k1)
                shape = torch.Size([1, 1000])
                cpu = kernels._Plan("bernoulli", "torch", p, shape, shape)._bits(
                    torch.device("cpu")
                )
                gpu = kernels._Plan("bernoulli", backend, p, shape, shape)._bits(
                    torch.device("cuda")
                )
                assert torch.equal(cpu.long(), gpu.cpu().long()), (backend, seed, offset, base)


def test_bernoulli_equal_cpu_every_form():
    x = torch.randn(5, 301, 7)
    xc = x.cuda()
    keeps = [0.4, torch.tensor([0.1, 0.5, 0.9, 1.0, 0.0]).view(5, 1, 1), torch.rand(301, 1)]
    for backend in CUDA_BACKENDS:
        for keep in keeps:
            kc = keep.cuda() if isinstance(keep, torch.Tensor) else keep
            for kw in ({}, {"broadcast_dims": (2,)}, {"member_seeds": torch.arange(5) * 3}):
                want = kernels.bernoulli(x, keep, 12, 3, **kw)
                got = kernels.bernoulli(xc, kc, 12, 3, backend=backend, **kw)
                assert torch.equal(got.cpu(), want), (backend, kw)
        for dtype in (torch.float16, torch.bfloat16, torch.float64):
            got = kernels.bernoulli(xc.to(dtype), 0.3, 1, backend=backend)
            want = kernels.bernoulli(x, 0.3, 1)
            assert torch.equal(got.cpu() != 0, want != 0)


def test_gaussian_close_to_cpu():
    x = torch.randn(5, 301, 7)
    sig = torch.tensor([0.1, 0.5, 1.0, 2.0, 0.0]).view(5, 1, 1)
    for backend in CUDA_BACKENDS:
        for s in (0.8, sig):
            sc = s.cuda() if isinstance(s, torch.Tensor) else s
            want = kernels.gaussian(x, s, 12, 3)
            got = kernels.gaussian(x.cuda(), sc, 12, 3, backend=backend).cpu()
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_autograd_on_cuda():
    for backend in CUDA_BACKENDS:
        x = torch.randn(64, 33, device="cuda", dtype=torch.float64, requires_grad=True)
        y = kernels.bernoulli(x, 0.6, 5, 9, backend=backend)
        g = torch.randn_like(y)
        y.backward(g)
        assert torch.equal(x.grad, kernels.bernoulli(g, 0.6, 5, 9, backend=backend))
        xs = torch.randn(4, 5, device="cuda", dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda t, b=backend: kernels.bernoulli(t, 0.6, 3, backend=b), (xs,)
        )
        assert torch.autograd.gradcheck(
            lambda t, b=backend: kernels.gaussian(t, 0.6, 3, backend=b), (xs,)
        )


def test_functional_auto_uses_kernels_on_cuda():
    from droplab import functional as F

    x = torch.randn(100, 37, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(3)
    y = F.dropout(x, 0.3, generator=g)
    if kernels.backend_name("cuda") == "triton":
        g = torch.Generator(device="cuda").manual_seed(3)
        seed = int(torch.randint(0, 2**62, (), generator=g, device="cuda"))
        assert torch.equal(y, kernels.bernoulli(x, 0.7, seed))


if __name__ == "__main__":
    import sys
    import traceback

    print("backend_name('cuda') =", kernels.backend_name("cuda"), "backends tested:", CUDA_BACKENDS)
    failed = 0
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print("PASS", name)
            except Exception:
                failed += 1
                print("FAIL", name)
                traceback.print_exc()
    sys.exit(1 if failed else 0)
