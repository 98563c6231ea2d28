"""droplab.kernels.fixed_count: exact counts, backends bit for bit, statistics, autograd.

Every statistical bound is a two-sided 5-sigma tail (alpha = 5.7e-7 per comparison) with
a fixed seed: a correct kernel fails with probability ~1e-6, a broken one reliably.
"""

from __future__ import annotations

import math

import pytest
import torch

from droplab import kernels

HAS_NUMBA = kernels._numba is not None
BACKENDS = ["torch"] + (["numba"] if HAS_NUMBA else [])
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")


def kept(shape, n_drop, seed, offset=0, **kw) -> torch.Tensor:
    """The boolean keep mask of one call (ones in, so y != 0 exactly where kept)."""
    return kernels.fixed_count(torch.ones(shape), n_drop, seed, offset, **kw) != 0


# ------------------------------------------------------------ exact counts and values

SHAPES = [(1,), (1, 1), (7,), (3, 1), (4, 5), (2, 3, 17), (10, 300), (2, 40_000)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_row_drops_exactly_n_drop(shape, backend):
    n = shape[-1]
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) + 0.5  # nonzero
    for n_drop in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        y = kernels.fixed_count(x, n_drop, 11, 3, backend=backend)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert ((y == 0).sum(-1) == n_drop).all(), (shape, n_drop)
        keep = y != 0
        if n_drop < n:  # kept units are x * float32(n / (n - n_drop)), exactly
            m = torch.tensor(n / (n - n_drop), dtype=torch.float32)
            assert torch.equal(y[keep], x[keep] * m)
        classic = kernels.fixed_count(x, n_drop, 11, 3, scaling="classic", backend=backend)
        assert torch.equal(classic != 0, keep) and torch.equal(classic[keep], x[keep])


@pytest.mark.parametrize("backend", BACKENDS)
def test_extremes_identity_and_zeros_never_nan(backend):
    x = torch.tensor([[1.0, float("inf"), float("nan"), -2.0]])
    assert torch.equal(kernels.fixed_count(x, 4, 0, backend=backend), torch.zeros_like(x))
    y = kernels.fixed_count(x, 0, 0, backend=backend)
    assert torch.equal(y[:, [0, 1, 3]], x[:, [0, 1, 3]]) and y[0, 2].isnan()
    assert kernels.fixed_count(torch.ones(0, 5), 2, 0, backend=backend).shape == (0, 5)
    assert kernels.fixed_count(torch.ones(3, 0), 0, 0, backend=backend).shape == (3, 0)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_numba_equals_torch_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(2)
    for shape, n_drop in [((5, 7, 33), 11), ((600, 256), 128), ((3, 40_000), 39_999), ((9,), 4)]:
        x = torch.randn(shape, generator=g, dtype=dtype)
        for scaling in ("inverted", "classic"):
            kw = {"scaling": scaling}
            a = kernels.fixed_count(x, n_drop, 5, 17, backend="numba", **kw)
            b = kernels.fixed_count(x, n_drop, 5, 17, backend="torch", **kw)
            assert torch.equal(a, b), (shape, n_drop, scaling)
    seeds = torch.tensor([3, -8, 2**40])
    x = torch.randn(3, 4, 50, generator=g, dtype=dtype)
    a = kernels.fixed_count(x, 17, 0, 9, member_seeds=seeds, backend="numba")
    b = kernels.fixed_count(x, 17, 0, 9, member_seeds=seeds, backend="torch")
    assert torch.equal(a, b)


@needs_numba
def test_numba_selection_is_exact_when_its_key_window_misses():
    # the numba kernel selects among the keys in a window [lo, hi) and falls back to all
    # keys of a row when the window misses the n_drop-th smallest: force every case
    import numpy as np

    from droplab.kernels import _hash, _numba

    rows, n, n_drop = 300, 64, 20
    x = torch.randn(rows, n)
    expect = kernels.fixed_count(x, n_drop, 3, 1, backend="torch")
    k0, k1 = (np.repeat(k, rows) for k in _hash.keys(3, 1))
    base = np.arange(rows, dtype=np.int64) * n
    mult = np.float32(n / (n - n_drop))
    windows = [(0, 0), (0, 1 << 32), (1 << 55, 1 << 56), (0, 1 << 56)]  # empty/low/high/all
    for lo, hi in [*windows, _numba.fixed_count_window(n, n_drop)]:
        out = np.empty(rows * n, dtype=np.float32)
        _numba.fixed_count(
            x.view(-1).numpy(), out, base, k0, k1, n_drop, mult, n, rows, 1, lo, hi, 0, rows
        )
        assert torch.equal(torch.from_numpy(out).view(rows, n), expect), (lo, hi)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_is_the_float32_product_rounded_once(dtype):
    x = (torch.randn(20, 64, generator=torch.Generator().manual_seed(3)) * 100).to(dtype)
    y = kernels.fixed_count(x, 63, 4)  # multiplier 64
    assert torch.equal(y, kernels.fixed_count(x.float(), 63, 4).to(dtype))
    assert torch.equal(y, kernels.fixed_count(x, 63, 4, backend="torch"))
    xg = x.clone().requires_grad_(True)
    kernels.fixed_count(xg, 63, 4).backward(torch.ones_like(x))
    assert torch.equal(xg.grad, kernels.fixed_count(torch.ones_like(x), 63, 4))


def test_counters_are_the_c_order_index_whatever_the_layout():
    x = torch.randn(6, 40)
    xt = x.t().contiguous().t()  # same values, column-major memory
    assert torch.equal(kernels.fixed_count(xt, 13, 8), kernels.fixed_count(x, 13, 8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_key_is_the_counter_hash_of_the_element(backend):
    # the dropped units are those of the n_drop smallest 24-bit hashes (ties by index),
    # with the hash of bernoulli's stream: keep = 1 - 2**-24 drops exactly hash 0xFFFFFF
    from droplab.kernels import _hash

    rows, n, n_drop = 50, 30, 9
    k0, k1 = _hash.keys(6, 2)
    base = torch.arange(rows).numpy() * n
    h = _hash.bits24(base, n, k0.repeat(rows), k1.repeat(rows), torch.device("cpu")).long()
    key = (h << 32) | torch.arange(n)  # (rows, n)
    expect = torch.ones(rows, n, dtype=torch.bool)
    expect.scatter_(1, key.topk(n_drop, dim=1, largest=False).indices, False)
    assert torch.equal(kept((rows, n), n_drop, 6, 2, backend=backend), expect)


# ------------------------------------------------------------ seeds, offsets, members


def test_different_seeds_and_offsets_give_independent_masks():
    rows, n, n_drop = 4000, 50, 20  # 200,000 units
    kappa = (n - n_drop) / n
    ref = kept((rows, n), n_drop, 1, 0)
    assert torch.equal(ref, kept((rows, n), n_drop, 1, 0))  # deterministic
    # two independent masks agree on a unit with p = kappa^2 + (1 - kappa)^2. Given one
    # row's mask the agreements are hypergeometric, whose variance is at most the
    # binomial p(1-p)/N: the binomial 5-sigma bound is conservative.
    p = kappa**2 + (1 - kappa) ** 2
    bound = 5 * math.sqrt(p * (1 - p) / (rows * n))
    for other in (kept((rows, n), n_drop, 2, 0), kept((rows, n), n_drop, 1, 1)):
        assert not torch.equal(ref, other)
        agree = (ref == other).double().mean().item()
        assert abs(agree - p) <= bound, (agree, p, bound)


@pytest.mark.parametrize("backend", BACKENDS)
def test_member_alone_equals_member_in_batch(backend):
    seeds = torch.tensor([7, 8, 9, 7])
    x = torch.randn(4, 3, 21)
    y = kernels.fixed_count(x, 5, 0, 4, member_seeds=seeds, backend=backend)
    for k in range(4):
        alone = kernels.fixed_count(x[k : k + 1], 5, 123, 4, member_seeds=seeds[k : k + 1])
        assert torch.equal(alone, y[k : k + 1])
    assert torch.equal(y[0] != 0, y[3] != 0)  # same seed, same mask
    assert not torch.equal(y[0] != 0, y[1] != 0)


# ------------------------------------------------------------ statistics


@pytest.fixture(scope="module")
def big_mask() -> tuple[torch.Tensor, int, int]:
    rows, n, n_drop = 40_000, 25, 10  # 1,000,000 units, kappa = 0.6
    return kept((rows, n), n_drop, 2024, 1).double(), n, n_drop


def test_every_unit_is_kept_with_probability_kappa(big_mask):
    m, n, n_drop = big_mask
    rows, kappa = m.shape[0], (n - n_drop) / n
    # each row is an independent uniform n_drop-subset, so unit j is kept in a row with
    # probability exactly kappa and its count over the rows is Binomial(rows, kappa):
    # 5-sigma bound 5 sqrt(kappa (1 - kappa) / rows) on its frequency, per unit
    freq = m.mean(0)  # (n,)
    bound = 5 * math.sqrt(kappa * (1 - kappa) / rows)
    assert ((freq - kappa).abs() <= bound).all(), (freq - kappa).abs().max()


def test_two_units_in_a_row_are_negatively_correlated_as_hypergeometric():
    rows, n, n_drop = 200_000, 5, 2  # 1,000,000 units, kappa = 0.6
    m = kept((rows, n), n_drop, 31, 4).double()
    s = n - n_drop
    kappa = s / n
    # exact: P(both kept) = s (s - 1) / (n (n - 1)) = 0.3, so the keep indicators of two
    # units have Cov = P(both) - kappa^2 = -kappa (1 - kappa) / (n - 1) = -0.06. Over
    # independent rows "both kept" is Binomial(rows, p2), so the covariance estimate
    # mean(m_i m_j) - kappa^2 (kappa exact) has the 5-sigma bound 5 sqrt(p2 (1 - p2) /
    # rows) = 0.0051 around -0.06; independent units (Cov = 0) would fail it.
    p2 = s * (s - 1) / (n * (n - 1))
    cov_exact = -kappa * (1 - kappa) / (n - 1)
    bound = 5 * math.sqrt(p2 * (1 - p2) / rows)
    assert bound < abs(cov_exact) / 10
    for i, j in [(0, 1), (1, 2), (3, 4), (0, n - 1)]:
        cov = (m[:, i] * m[:, j]).mean().item() - kappa**2
        assert abs(cov - cov_exact) <= bound, (i, j, cov, cov_exact, bound)


def test_inverted_output_mean_equals_input_mean():
    rows, n, n_drop = 20_000, 40, 15  # 800,000 units
    s = n - n_drop
    x = torch.rand(rows, n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = kernels.fixed_count(x, n_drop, 77, 3)
    d = (y - x).mean(1)  # (rows,), independent across rows, E[d_r] = 0
    # sum of the s kept x of row r is a sample without replacement: its variance is
    # s (n - s) / (n (n - 1)) * sum_j (x_rj - xbar_r)^2, and y's row mean is (n / s) / n
    # times that sum, so Var(d_r) = that / s^2; the bound is 5 sqrt(sum_r Var(d_r)) / rows
    ss = ((x - x.mean(1, keepdim=True)) ** 2).sum(1)  # (rows,)
    var = s * (n - s) / (n * (n - 1)) * ss / s**2
    bound = 5 * math.sqrt(var.sum().item()) / rows
    assert abs(d.mean().item()) <= bound, (d.mean().item(), bound)


@needs_numba
def test_deterministic_across_thread_counts():
    x = torch.randn(4096, 256)  # 1M elements: above the parallel threshold
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernels.fixed_count(x, 100, 3, 1, backend="numba")
        torch.set_num_threads(2)
        two = kernels.fixed_count(x, 100, 3, 1, backend="numba")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert torch.equal(one, kernels.fixed_count(x, 100, 3, 1, backend="torch"))


# ------------------------------------------------------------ autograd


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_regenerates_the_forward_mask(backend):
    x = torch.randn(30, 17, requires_grad=True)
    y = kernels.fixed_count(x, 6, 9, 2, backend=backend)
    g = torch.randn(30, 17)
    y.backward(g)
    m = kernels.fixed_count(torch.ones(30, 17), 6, 9, 2, backend=backend)  # M: 0 or n/s
    assert torch.equal(x.grad, g * m)
    assert torch.equal(y.detach(), x.detach() * m)


def test_nothing_is_saved_for_backward():
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    x = torch.randn(200, 64, requires_grad=True)
    seeds = torch.tensor([1, 2])
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = kernels.fixed_count(x, 20, 1)
        z = kernels.fixed_count(x.view(2, 100, 64), 20, 0, 1, member_seeds=seeds)
    assert sum(saved) == 0
    (y.sum() + z.sum()).backward()


def test_gradcheck_float64():
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: kernels.fixed_count(t, 4, 3, 1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: kernels.fixed_count(t, 4, 3, 1), (x,))


# ------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (lambda x: kernels.fixed_count(x, -1, 0), ValueError, r"n_drop.*\[0, 5\].*-1"),
        (lambda x: kernels.fixed_count(x, 6, 0), ValueError, r"n_drop.*\[0, 5\].*6"),
        (lambda x: kernels.fixed_count(x, 1.5, 0), TypeError, "n_drop must be an int"),
        (lambda x: kernels.fixed_count(x, True, 0), TypeError, "n_drop must be an int"),
        (lambda x: kernels.fixed_count(x.long(), 1, 0), TypeError, "x must be a floating"),
        (lambda x: kernels.fixed_count(x[0, 0], 0, 0), ValueError, "at least one dim"),
        (lambda x: kernels.fixed_count(x, 1, 0, scaling="x"), ValueError, "scaling"),
        (lambda x: kernels.fixed_count(x, 1, 0.5), TypeError, "seed must be an int"),
        (lambda x: kernels.fixed_count(x, 1, 0, backend="triton"), ValueError, "triton"),
        (lambda x: kernels.fixed_count(x, 1, 0, backend="nope"), ValueError, "backend"),
        (
            lambda x: kernels.fixed_count(x, 1, 0, member_seeds=torch.tensor([1, 2])),
            ValueError,
            r"member_seeds must have shape \(K,\) = \(3,\)",
        ),
        (
            lambda x: kernels.fixed_count(x[0], 1, 0, member_seeds=torch.tensor([1] * 5)),
            ValueError,
            "at least 2 dims",
        ),
    ],
)
def test_clear_errors(call, err, match):
    with pytest.raises(err, match=match):
        call(torch.ones(3, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs_the_torch_reference():
    x = torch.randn(50, 33)
    y = kernels.fixed_count(x.cuda(), 10, 4, 2)
    assert torch.equal(y.cpu(), kernels.fixed_count(x, 10, 4, 2, backend="torch"))


# ------------------------------------------------------------ functional and layer


def test_functional_and_layer_use_the_kernel_unless_backend_torch():
    import droplab as dl
    from droplab import functional as F

    x = torch.randn(8, 20)
    seed = F._kernel_seed(torch.Generator().manual_seed(3))  # the one draw the op makes
    y = F.fixed_count_dropout(x, 0.3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(y, kernels.fixed_count(x, 6, seed))  # round(0.3 * 20) = 6
    t = F.fixed_count_dropout(x, 0.3, generator=torch.Generator().manual_seed(3), backend="torch")
    assert ((t == 0).sum(-1) == 6).all() and not torch.equal(t, y)
    layer = dl.FixedCountDropout(0.3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(layer(x), y) and "backend" not in repr(layer)
    layer = dl.FixedCountDropout(0.3, backend="torch")
    assert (
        repr(layer) == "FixedCountDropout(rate=0.3, keep=0.7, scaling='inverted', backend='torch')"
    )
    with pytest.raises(ValueError, match="backend"):
        dl.FixedCountDropout(0.3, backend="numba")
