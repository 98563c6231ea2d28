"""The short per-call paths give the bits of the general ones.

``kernels.bernoulli`` and ``kernels.gaussian`` run a one-seed, float-rate call on a CPU
float32/float64 tensor through ``_flat_bernoulli`` / ``_flat_gaussian`` (no general
checks), ``functional.dropout`` sends its common training call straight to the kernels
(``_kernel_dropout``), and ``kernels._run`` calls the autograd Function's C ``apply``
directly. Each test runs a call once on the short
path and once on the general path (the same values in a form the short path declines,
e.g. a NumPy float for keep) and compares outputs and gradients bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from droplab import functional as DF
from droplab import kernels
from droplab.kernels import _pool

pytestmark = pytest.mark.skipif(kernels._numba is None, reason="numba not installed")

SHAPES = [(), (1,), (7,), (10, 128), (3, 5, 7), (0, 128), (2, _pool.MIN_BYTES // 8 + 3)]


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit patterns (NaN included), dtypes and shapes."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(
            a.detach().numpy().reshape(-1).view(np.uint8),
            b.detach().numpy().reshape(-1).view(np.uint8),
        )
    )


def grads(x: torch.Tensor, op, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xg = x.clone().requires_grad_(True)
    y = op(xg)
    y.backward(g)
    return y.detach(), xg.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0, 1.0, 1e-3, 1e-40])
@pytest.mark.parametrize("scaling", ["inverted", "classic"])
def test_flat_bernoulli_matches_general_path(dtype, shape, keep, scaling):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    g = torch.randn(shape, generator=gen, dtype=dtype)
    seed, offset = 2**63 + 11, -7
    flat = kernels._flat_bernoulli(x, keep, seed, offset, scaling, "auto", (), None)
    # keep = 1e-40 with float32 x needs a multiplier beyond float32: the general path
    wide = dtype == torch.float32 and keep == 1e-40 and scaling == "inverted"
    assert (flat is None) == wide
    fast = grads(x, lambda t: kernels.bernoulli(t, keep, seed, offset, scaling=scaling), g)
    slow = grads(
        x,
        lambda t: kernels.bernoulli(
            t, np.float64(keep), np.int64(seed - 2**64), offset, scaling=scaling
        ),
        g,
    )
    assert same(fast[0], slow[0]) and same(fast[1], slow[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sigma", [0.5, 0.0, 3.0, 1e38])
def test_flat_gaussian_matches_general_path(dtype, shape, sigma):
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    g = torch.randn(shape, generator=gen, dtype=dtype)
    seed, offset = 2**63 + 11, -7
    flat = kernels._flat_gaussian(x, sigma, seed, offset, "auto", None)
    # 1 + 5.8 sigma beyond float32 for float32 x: the general path (float64 products)
    assert (flat is None) == (dtype == torch.float32 and sigma == 1e38)
    fast = grads(x, lambda t: kernels.gaussian(t, sigma, seed, offset), g)
    slow = grads(
        x, lambda t: kernels.gaussian(t, np.float64(sigma), np.int64(seed - 2**64), offset), g
    )
    assert same(fast[0], slow[0]) and same(fast[1], slow[1])


def test_flat_bernoulli_noncontiguous_input_and_expanded_grad():
    x = torch.randn(64, 48, generator=torch.Generator().manual_seed(4)).t()  # (48, 64)
    assert not x.is_contiguous()
    fast = grads(x, lambda t: kernels.bernoulli(t, 0.7, 5, 2), torch.ones(()).expand(48, 64))
    slow = grads(
        x, lambda t: kernels.bernoulli(t, np.float64(0.7), 5, 2), torch.ones(()).expand(48, 64)
    )
    assert same(fast[0], slow[0]) and same(fast[1], slow[1])


def test_flat_bernoulli_second_derivative():
    # y = x * M: dy/dx = M, and d/dg of sum((g * M)^2) = 2 g M^2
    x = torch.randn(10, 128, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    g = torch.randn(10, 128, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    out = []
    for keep in (0.6, np.float64(0.6)):
        y = kernels.bernoulli(x, keep, 9, 1)
        (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
        (gg,) = torch.autograd.grad((gx * gx).sum(), g)
        out.append((gx, gg))
    assert same(out[0][0], out[1][0]) and same(out[0][1], out[1][1])
    m = kernels.bernoulli(torch.ones(10, 128), 0.6, 9, 1)
    assert torch.equal(out[0][1], 2 * g.detach() * m * m)


def test_direct_function_apply_builds_the_same_graph():
    x = torch.randn(10, 128, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
    plan = kernels._flat_bernoulli(x, 0.5, 1, 2, "inverted", "auto", (), None)
    assert kernels._APPLY.__name__ == "run"  # the direct C apply is in use here
    y1 = kernels._run(x, plan)
    y2 = kernels._Regenerated.apply(x, plan)  # torch's Python wrapper
    assert type(y1.grad_fn) is type(y2.grad_fn) and same(y1, y2)
    g = torch.randn(10, 128)
    assert same(torch.autograd.grad(y1, x, g)[0], torch.autograd.grad(y2, x, g)[0])


@pytest.mark.parametrize("shape", [(10, 128), (3, 5, 7), ()])
@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_functional_dropout_fast_dispatch_matches_general(shape, scaling, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(8), dtype=dtype)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(9), dtype=dtype)
    g1, g2 = torch.Generator().manual_seed(10), torch.Generator().manual_seed(10)
    assert DF._kernel_dropout(x, 0.3, None, True, scaling, (), g1, "auto") is not None
    g1.manual_seed(10)
    fast = grads(x, lambda t: DF.dropout(t, 0.3, scaling=scaling, generator=g1), g)
    # rate as a NumPy float: the general checks and dispatch, the same values
    slow = grads(x, lambda t: DF.dropout(t, np.float64(0.3), scaling=scaling, generator=g2), g)
    assert same(fast[0], slow[0]) and same(fast[1], slow[1])
    # both consumed one draw from their generator
    assert torch.equal(g1.get_state(), g2.get_state())


def test_functional_dropout_fast_dispatch_declines_other_calls():
    x = torch.randn(4, 8)
    for args in [
        (x, 0.0, None, True, "inverted", (), None, "auto"),  # rate 0: x itself
        (x, 1.0, None, True, "inverted", (), None, "auto"),  # rate 1: zeros
        (x, float("nan"), None, True, "inverted", (), None, "auto"),
        (x, None, 0.5, True, "inverted", (), None, "auto"),  # keep given
        (x, 0.5, None, False, "inverted", (), None, "auto"),  # eval
        (x, 0.5, None, True, "inverted", (0,), None, "auto"),
        (x, 0.5, None, True, "inverted", (), None, "torch"),
        (x, 0.5, None, True, "bad", (), None, "auto"),
        (x.half(), 0.5, None, True, "inverted", (), None, "auto"),
    ]:
        assert DF._kernel_dropout(*args) is None, args
    # the default rate (a float subclass) is taken
    assert (
        DF._kernel_dropout(x, DF.DEFAULT_RATE, None, True, "inverted", (), None, "fast") is not None
    )
    with pytest.raises(ValueError, match="scaling"):
        DF.dropout(x, 0.5, scaling="bad")
    with pytest.raises(ValueError, match="rate"):
        DF.dropout(x, float("nan"))


def test_kernel_seed_is_the_randint_draw():
    # the reused-buffer draw equals torch.randint(0, 2**62, ()) and leaves the same state
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    got = [DF._kernel_seed(g1) for _ in range(50)]
    want = [int(torch.randint(0, 2**62, (), generator=g2)) for _ in range(50)]
    assert got == want and torch.equal(g1.get_state(), g2.get_state())
    state = torch.get_rng_state()
    got = [DF._kernel_seed(None) for _ in range(50)]
    torch.set_rng_state(state)
    want = [int(torch.randint(0, 2**62, ())) for _ in range(50)]
    assert got == want


def test_kernel_seed_in_and_out_of_inference_mode_and_threads():
    import threading

    def draw(out: list) -> None:
        g = torch.Generator().manual_seed(12)
        with torch.inference_mode():  # the thread's buffer is made here
            out.append(DF._kernel_seed(g))
        out.append(DF._kernel_seed(g))  # and updated in place outside

    results: list[list] = [[] for _ in range(4)]
    threads = [threading.Thread(target=draw, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    g = torch.Generator().manual_seed(12)
    want = [int(torch.randint(0, 2**62, (), generator=g)) for _ in range(2)]
    assert all(r == want for r in results)
