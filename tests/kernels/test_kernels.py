"""Correctness of droplab.kernels: oracles, autograd, members, broadcasting, backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from droplab import kernels
from droplab.kernels import _hash

HAS_NUMBA = kernels._numba is not None
BACKENDS = ["torch"] + (["numba"] if HAS_NUMBA else [])
M64 = 2**64 - 1


# ------------------------------------------------------------ a pure-Python oracle


def py_mix64(v: int) -> int:
    v ^= v >> 30
    v = (v * 0xBF58476D1CE4E5B9) & M64
    v ^= v >> 27
    v = (v * 0x94D049BB133111EB) & M64
    return v ^ (v >> 31)


def py_mix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x21F0AAAD) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x735A2D97) & 0xFFFFFFFF
    return h ^ (h >> 15)


def py_hash(seed: int, offset: int, idx: int) -> int:
    """The spec of _hash.py written out in Python integers."""
    s, o = seed % 2**64, offset % 2**64
    key = py_mix64(py_mix64((s + 0x9E3779B97F4A7C15) & M64) ^ py_mix64(o ^ 0xD1B54A32D192ED03))
    k0, k1 = key & 0xFFFFFFFF, key >> 32
    lo, hi = idx & 0xFFFFFFFF, idx >> 32
    h = py_mix32(lo ^ k0)
    return py_mix32(h ^ k1 ^ ((hi * 0x9E3779B9) & 0xFFFFFFFF))


def plan(base: int, n: int, seed: int, offset: int):
    k0, k1 = _hash.keys(seed, offset)
    p = _hash.Params(1, n, np.array([base], dtype=np.int64), k0, k1)
    return kernels._Plan("bernoulli", "torch", p, torch.Size([1, n]), torch.Size([1, n]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("seed", "offset"), [(0, 0), (-3, 17), (2**63 + 5, 2**40)])
def test_bits_match_python_oracle(backend, seed, offset):
    # counters around 2**32 exercise the high word of the index
    for base in (0, 2**32 - 5):
        pl = plan(base, 10, seed, offset)
        pl.backend = backend
        got = pl._bits(torch.device("cpu")).flatten().tolist()
        want = [py_hash(seed, offset, base + i) >> 8 for i in range(10)]
        assert got == want
    # the torch integer-op hash (CUDA without triton), narrow and wide counters
    k0, k1 = (int(k[0]) for k in _hash.keys(seed, offset))
    for base, wide in ((0, False), (2**32 - 5, True), (2**40, True)):
        idx = torch.arange(base, base + 10)
        got = _hash.bits_torch(idx, k0, k1, wide).tolist()
        assert got == [py_hash(seed, offset, base + i) for i in range(10)]


def test_pinned_values_never_change():
    # reproducibility across versions: these are the first 24-bit uniforms of seed 0
    x = torch.ones(8)
    u = plan(0, 8, 0, 0)._bits(torch.device("cpu")).flatten().tolist()
    assert u == [py_hash(0, 0, i) >> 8 for i in range(8)]
    kept = (kernels.bernoulli(x, 0.5, 0) != 0).tolist()
    assert kept == [v < 2**23 for v in u]


# ------------------------------------------------------------ values and oracles


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverted_values_are_zero_or_scaled(backend, dtype):
    x = torch.randn(37, 53, dtype=dtype)
    y = kernels.bernoulli(x, 0.3, 4, backend=backend)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] * (1 / torch.tensor(0.3, dtype=dtype)))
    assert y.dtype == dtype and y.shape == x.shape


def test_classic_scaling_keeps_values():
    x = torch.randn(64, 33)
    y = kernels.bernoulli(x, 0.25, 8, scaling="classic")
    kept = y != 0
    assert torch.equal(y[kept], x[kept])
    assert torch.equal(kept, kernels.bernoulli(x, 0.25, 8) != 0)


def test_backends_agree_bit_for_bit():
    x = torch.randn(5, 301, 7)
    keeps = [0.4, torch.tensor([0.1, 0.5, 0.9, 1.0, 0.0]).view(5, 1, 1), torch.rand(301, 1)]
    for keep in keeps:
        for kw in ({}, {"broadcast_dims": (2,)}, {"member_seeds": torch.arange(5) * 3}):
            ys = [kernels.bernoulli(x, keep, 12, 3, backend=b, **kw) for b in BACKENDS]
            for y in ys[1:]:
                assert torch.equal(y, ys[0])
    gs = [kernels.gaussian(x, 0.8, 12, 3, backend=b) for b in BACKENDS]
    for g in gs[1:]:  # log/cos of numba and torch may differ in the last float32 bits
        torch.testing.assert_close(g, gs[0], rtol=1e-5, atol=1e-5)


def test_edge_rates():
    x = torch.randn(10, 11)
    assert torch.equal(kernels.bernoulli(x, 0.0, 1), torch.zeros_like(x))
    assert torch.equal(kernels.bernoulli(x, 1.0, 1), x)
    assert torch.equal(kernels.gaussian(x, 0.0, 1), x)
    # keep = 0 for one member: zeros, never NaN, also in the backward
    x.requires_grad_(True)
    y = kernels.bernoulli(x, torch.tensor([0.0] * 5 + [1.0] * 5).view(10, 1), 1)
    y.sum().backward()
    assert torch.equal(y[:5], torch.zeros(5, 11)) and torch.equal(y[5:], x[5:])
    assert not torch.isnan(x.grad).any()
    empty = torch.empty(0, 3)
    assert kernels.bernoulli(empty, 0.5, 1).shape == (0, 3)


def test_low_precision_and_noncontiguous():
    x = torch.randn(40, 30)
    ref = kernels.bernoulli(x, 0.5, 2)
    assert torch.equal(kernels.bernoulli(x.t().contiguous().t(), 0.5, 2), ref)
    for dtype in (torch.float16, torch.bfloat16):
        y = kernels.bernoulli(x.to(dtype), 0.5, 2)
        assert y.dtype == dtype and torch.equal(y != 0, ref != 0)


def test_same_arguments_same_mask_and_generator_free():
    x = torch.randn(100)
    state = torch.random.get_rng_state()
    a, b = kernels.bernoulli(x, 0.5, 99, 1), kernels.bernoulli(x, 0.5, 99, 1)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert not torch.equal(a, kernels.bernoulli(x, 0.5, 99, 2))


# ------------------------------------------------------------ autograd


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_and_backward_masks_agree(backend):
    x = torch.randn(129, 65, requires_grad=True)
    y = kernels.bernoulli(x, 0.6, 5, 9, backend=backend)
    g = torch.randn_like(y)
    y.backward(g)
    kept = y.detach() != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.equal(x.grad, kernels.bernoulli(g, 0.6, 5, 9, backend=backend))
    xg = torch.randn(129, 65, requires_grad=True)
    yg = kernels.gaussian(xg, 0.5, 5, 9, backend=backend)
    yg.backward(g)
    torch.testing.assert_close(xg.grad * xg.detach(), g * yg.detach(), rtol=1e-6, atol=1e-6)


def test_gradcheck_float64():
    x = torch.randn(6, 4, 5, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([0.3, 0.5, 0.7, 0.9, 1.0, 0.6], dtype=torch.float64).view(6, 1, 1)
    seeds = torch.tensor([1, 2, 3, 4, 5, 6])
    per_row = torch.tensor([[0.2], [0.5], [0.7], [0.9]], dtype=torch.float64)  # (4, 1)
    fns = [
        lambda t: kernels.bernoulli(t, 0.6, 3),
        lambda t: kernels.bernoulli(t, keep, 3, scaling="classic"),
        lambda t: kernels.bernoulli(t, keep, 3, broadcast_dims=(1,), member_seeds=seeds),
        lambda t: kernels.bernoulli(t, per_row, 3),
        lambda t: kernels.gaussian(t, 0.7, 3),
        lambda t: kernels.gaussian(t, keep, 3, member_seeds=seeds),
    ]
    for fn in fns:
        assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fns[0], (x,))


def test_no_tensor_saved_for_backward():
    saved: list[int] = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    x = torch.randn(1000, 100, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = kernels.bernoulli(x, 0.5, 1)
        z = kernels.gaussian(x, 0.5, 1)
        w = kernels.bernoulli(x, torch.full((1000, 1), 0.5), 1)
    assert saved == []
    (y.sum() + z.sum() + w.sum()).backward()


# ------------------------------------------------------------ members and broadcasting


@pytest.mark.parametrize("backend", BACKENDS)
def test_member_alone_equals_member_in_batch(backend):
    K = 5
    x = torch.randn(K, 17, 31)
    seeds = torch.tensor([10, 11, 12, 2**62, -1])
    keep = torch.tensor([0.2, 0.4, 0.6, 0.8, 0.5]).view(K, 1, 1)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 0.0]).view(K, 1, 1)
    batch = kernels.bernoulli(x, keep, 0, 7, member_seeds=seeds, backend=backend)
    batch_b = kernels.bernoulli(
        x, keep, 0, 7, member_seeds=seeds, broadcast_dims=(1,), backend=backend
    )
    batch_g = kernels.gaussian(x, sigma, 0, 7, member_seeds=seeds, backend=backend)
    for k in range(K):
        one = slice(k, k + 1)
        alone = kernels.bernoulli(x[one], keep[one], 0, 7, member_seeds=seeds[one], backend=backend)
        assert torch.equal(alone, batch[one])
        alone_scalar = kernels.bernoulli(
            x[one], float(keep[k]), 0, 7, member_seeds=seeds[one], backend=backend
        )
        assert torch.equal(alone_scalar, batch[one])
        alone_b = kernels.bernoulli(
            x[one], keep[one], 0, 7, member_seeds=seeds[one], broadcast_dims=(1,), backend=backend
        )
        assert torch.equal(alone_b, batch_b[one])
        alone_g = kernels.gaussian(
            x[one], sigma[one], 0, 7, member_seeds=seeds[one], backend=backend
        )
        assert torch.equal(alone_g, batch_g[one])
    # the seed argument is ignored with member_seeds; the offset is not
    assert torch.equal(
        batch, kernels.bernoulli(x, keep, 123, 7, member_seeds=seeds, backend=backend)
    )
    assert not torch.equal(
        batch, kernels.bernoulli(x, keep, 0, 8, member_seeds=seeds, backend=backend)
    )


def test_per_member_keep_without_member_seeds_uses_global_index():
    x = torch.ones(3, 50, 41)
    y = kernels.bernoulli(x, torch.full((3, 1, 1), 0.5), 4)
    assert torch.equal(y, kernels.bernoulli(x, 0.5, 4))


@pytest.mark.parametrize("dims", [(0,), (1,), (-1,), (0, 2)])
def test_broadcast_dims_share_the_mask(dims):
    x = torch.ones(6, 7, 9)
    kept = kernels.bernoulli(x, 0.5, 3, broadcast_dims=dims) != 0
    for d in dims:
        first = kept.select(d, 0).unsqueeze(d)
        assert torch.equal(kept, first.expand_as(kept))
    assert 0 < kept.float().mean() < 1


# ------------------------------------------------------------ determinism, backends


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
def test_deterministic_across_thread_counts():
    x = torch.randn(3, 300_001)  # large enough for the parallel kernels
    old = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(
                (
                    kernels.bernoulli(x, 0.5, 6),
                    kernels.gaussian(x, 0.5, 6),
                    kernels.bernoulli(
                        x, torch.rand(300_001, generator=torch.Generator().manual_seed(0)), 6
                    ),
                )
            )
        for threads in (1, 2, 3, 7):  # more threads than cores is fine too
            out = torch.empty_like(x).view(-1)
            xa = x.view(-1).numpy()
            k0, k1 = _hash.keys(6, 0)
            params = (
                np.array([0]),
                k0,
                k1,
                np.array([2**23], np.uint32),
                np.array([2.0], np.float32),
            )
            kernels._numba.run(
                kernels._numba.bernoulli, 1, xa.size, threads, xa, out.numpy(), *params, xa.size
            )
            assert torch.equal(out.view_as(x), outs[0][0])
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_backend_name_and_fallback_notice(monkeypatch):
    assert kernels.backend_name() == ("numba" if HAS_NUMBA else "torch")
    assert kernels.backend_name("meta") == "torch"
    x = torch.randn(20, 30)
    ref = kernels.bernoulli(x, 0.5, 1)
    monkeypatch.setattr(kernels, "_numba", None)
    monkeypatch.setattr(kernels, "_noticed", set())
    with pytest.warns(RuntimeWarning, match="numba is not installed"):
        y = kernels.bernoulli(x, 0.5, 1)
    assert kernels.backend_name() == "torch"
    assert torch.equal(y, ref)
    with pytest.raises(ValueError, match="backend='numba'"):
        kernels.bernoulli(x, 0.5, 1, backend="numba")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"keep": 1.5}, ValueError, "keep must be finite and in"),
        ({"keep": torch.tensor([0.5, -0.1])}, ValueError, "keep must be finite and lie in"),
        ({"keep": torch.full((3,), 0.5)}, ValueError, "must broadcast"),
        ({"keep": "half"}, TypeError, "keep must be a float"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"scaling": "upscale"}, ValueError, "scaling must be one of"),
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
        ({"broadcast_dims": (5,)}, ValueError, "broadcast_dims"),
        ({"member_seeds": torch.tensor([1, 2])}, ValueError, "member_seeds must have shape"),
        ({"member_seeds": torch.tensor([1.0, 2.0, 3.0, 4.0])}, TypeError, "member_seeds must be"),
        ({"member_seeds": torch.arange(4), "broadcast_dims": (0,)}, ValueError, "dim 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    args = {"x": torch.ones(4, 5), "keep": 0.5, "seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        kernels.bernoulli(**args)


def test_gaussian_bad_sigma():
    with pytest.raises(ValueError, match="sigma"):
        kernels.gaussian(torch.ones(3), -0.1, 0)
    with pytest.raises(ValueError, match="sigma"):
        kernels.gaussian(torch.ones(3), float("inf"), 0)
    with pytest.raises(TypeError, match="x must be"):
        kernels.gaussian(torch.ones(3, dtype=torch.int64), 0.5, 0)


def test_import_without_numba_falls_back_with_one_notice():
    # a fresh interpreter in which `import numba` fails, as on a machine without it
    import subprocess
    import sys

    code = (
        "import sys, warnings; sys.modules['numba'] = None\n"
        "import torch; from droplab import kernels\n"
        "assert kernels.backend_name() == 'torch'\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    a = kernels.bernoulli(torch.ones(1000), 0.5, 3)\n"
        "    kernels.bernoulli(torch.ones(10), 0.5, 3)\n"
        "assert sum('numba is not installed' in str(m.message) for m in w) == 1, w\n"
        "print(int((a != 0).sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == int((kernels.bernoulli(torch.ones(1000), 0.5, 3) != 0).sum())


# ------------------------------------------------------------ RowBernoulli (trainer path)


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_bernoulli_is_bernoulli_of_relu(scaling, dtype):
    K = 5
    keep = [0.3, 0.5, 1.0, 0.9, 0.0]
    seeds = torch.arange(K) * 11 + 2
    z = torch.randn(K, 70, 33, dtype=dtype)
    z[0, 0, :3] = torch.tensor([0.0, -0.0, float("nan")])
    rows = kernels.RowBernoulli(keep, seeds, scaling=scaling)
    assert rows.supports(z)
    y = rows.relu(z, 17)
    ref = kernels.bernoulli(
        torch.relu(z), torch.tensor(keep).view(K, 1, 1), 0, 17, scaling=scaling,
        member_seeds=seeds, backend="torch",
    )  # fmt: skip
    assert torch.equal(y.nan_to_num(7.0), ref.nan_to_num(7.0))  # NaN stays NaN if kept
    # backward: g * s_k where y > 0, the autograd gradient of bernoulli(relu(z))
    zr = z.clone().requires_grad_(True)
    up = torch.randn_like(z)
    out = kernels.bernoulli(
        torch.relu(zr), torch.tensor(keep, dtype=dtype).view(K, 1, 1), 0, 17,
        scaling=scaling, member_seeds=seeds,
    )  # fmt: skip
    (want,) = torch.autograd.grad(out, zr, up)
    got = rows.backward(up, y)
    ok = ~torch.isnan(z)
    assert torch.equal(got[ok], want[ok])
    # in place (the trainer's path): the same numbers written into z and into g
    zi, gi = z.clone(), up.clone()
    yi = rows.relu(zi, 17, out=zi)
    assert yi.data_ptr() == zi.data_ptr() and torch.equal(yi.nan_to_num(7.0), y.nan_to_num(7.0))
    bi = rows.backward(gi, yi, out=gi)
    assert bi.data_ptr() == gi.data_ptr() and torch.equal(bi[ok], want[ok])
    with pytest.raises(ValueError, match="out must be"):
        rows.relu(z, 17, out=torch.empty(3, dtype=dtype))


def test_row_bernoulli_rejects_bad_arguments():
    with pytest.raises(ValueError, match="keep"):
        kernels.RowBernoulli([0.5, 1.5], torch.arange(2), scaling="inverted")
    with pytest.raises(ValueError, match="member_seeds"):
        kernels.RowBernoulli([0.5, 0.5], torch.arange(3), scaling="inverted")
    with pytest.raises(ValueError, match="scaling"):
        kernels.RowBernoulli([0.5], torch.arange(1), scaling="both")
