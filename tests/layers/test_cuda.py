"""The family on a CUDA device (skipped without one): device, dtypes, generators, statistics."""

from __future__ import annotations

import math

import pytest
import torch

import droplab as dl
from droplab import functional as F

from .specs import LAYERS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


@pytest.mark.parametrize("spec", LAYERS, ids=[s.name for s in LAYERS])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_layer_on_cuda(spec, dtype):
    x = torch.randn(spec.shape, device="cuda").to(dtype)
    a = spec.make(cuda_gen(1)).to("cuda", dtype)(x)
    b = spec.make(cuda_gen(1)).to("cuda", dtype)(x)
    assert a.device.type == "cuda" and a.dtype == dtype
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)  # same CUDA generator seed, same output
    assert not torch.equal(a, spec.make(cuda_gen(2)).to("cuda", dtype)(x))
    layer = spec.make(None).to("cuda", dtype).eval()
    assert layer(x).device.type == "cuda"


@pytest.mark.parametrize("spec", LAYERS, ids=[s.name for s in LAYERS])
def test_gradcheck_on_cuda(spec):
    layer = spec.make(None).to("cuda", torch.float64)
    x = torch.randn(spec.shape, device="cuda", dtype=torch.float64, requires_grad=True)

    def f(inp):
        layer.generator = cuda_gen(3)
        return layer(inp)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_fraction_on_cuda(rate, dtype, backend):
    n = 4_000_037
    x = torch.ones(n, device="cuda", dtype=dtype)
    y = F.dropout(x, rate, generator=cuda_gen(4), backend=backend)
    frac = (y == 0).double().mean().item()
    assert abs(frac - rate) <= 5 * math.sqrt(rate * (1 - rate) / n)  # Binomial(n, rate)


@pytest.mark.parametrize(("shape", "block", "rate"), [((4001, 8, 13, 7), (3, 2), 0.3)])
def test_drop_block_on_cuda_is_unbiased_per_position(shape, block, rate):
    y = F.drop_block(torch.ones(shape, device="cuda"), rate, block, generator=cuda_gen(5))
    maps = (y == 0).double().flatten(0, 1)  # (M, H, W)
    m = maps.shape[0]
    keep_u = F.drop_block_keep_prob(shape[2:], F.drop_block_gamma(shape[2:], rate, block), block)
    p_u = (1 - keep_u).cuda()
    assert ((maps.mean(0) - p_u).abs() <= 5 * torch.sqrt(p_u * (1 - p_u) / m)).all()
    mean_y = y.double().flatten(0, 1).mean(0)
    bound = 5 * torch.sqrt((1 - keep_u) / keep_u / m).cuda()
    assert ((mean_y - 1).abs() <= bound).all()


def test_mc_predict_and_compile_on_cuda():
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), dl.Dropout(0.5), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).cuda()
    x = torch.randn(5, 8, device="cuda")
    out = dl.mc_predict(net, x, samples=7)
    assert out.shape == (7, 5, 3) and out.device.type == "cuda"
    compiled = torch.compile(net.eval(), fullgraph=True)
    torch.testing.assert_close(compiled(x), net(x))
