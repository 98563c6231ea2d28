"""numba CPU kernels for the counter hash of ``_hash.py`` (imported only if numba is).

The hash is emitted as 32-bit LLVM IR through ``numba.extending.intrinsic``: numba's own
integer typing widens uint32 arithmetic to 64 bits, which would stop LLVM from using
8-lane AVX2 multiplies; with 32-bit IR the loops vectorize and run near copy bandwidth.
Every element depends only on (key, counter), so results are identical for any thread
count and chunking.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from droplab.kernels import _pool
from droplab.kernels._hash import G32, MIX32_A, MIX32_B, TWO_PI_F32

CHUNK = 1 << 15  # elements per task: fits L1/L2
PARALLEL_MIN = 1 << 19  # below this many elements one thread wins (a hand-off costs ~20-50 us)

_I32 = ir.IntType(32)


def _hash_ir(builder, lo, hi, a, b):
    """LLVM IR of h = mix32(mix32(lo ^ a) ^ b ^ hi * G32), all i32 wrapping arithmetic."""
    c = lambda v: ir.Constant(_I32, v)  # noqa: E731

    def mix(h):
        h = builder.xor(h, builder.lshr(h, c(16)))
        h = builder.mul(h, c(MIX32_A))
        h = builder.xor(h, builder.lshr(h, c(15)))
        h = builder.mul(h, c(MIX32_B))
        return builder.xor(h, builder.lshr(h, c(15)))

    h = mix(builder.xor(lo, a))
    h = builder.xor(builder.xor(h, b), builder.mul(hi, c(G32)))
    return mix(h)


def _high_word(builder, i):
    return builder.trunc(builder.lshr(i, ir.Constant(ir.IntType(64), 32)), _I32)


@intrinsic
def _hash32(typingctx, idx, k0, k1):
    """h = mix32(mix32(lo ^ k0) ^ k1 ^ hi * G32), all in 32-bit wrapping arithmetic."""
    sig = types.uint32(types.int64, types.uint32, types.uint32)

    def codegen(context, builder, signature, args):
        i, a, b = args
        return _hash_ir(builder, builder.trunc(i, _I32), _high_word(builder, i), a, b)

    return sig, codegen


@intrinsic
def _hash32s(typingctx, c0, j, k0, k1):
    """``_hash32(c0 + j, k0, k1)`` for a segment whose counters c0..c0+j share their high
    word: the high-word term is loop-invariant and the index arithmetic stays 32-bit."""
    sig = types.uint32(types.int64, types.int64, types.uint32, types.uint32)

    def codegen(context, builder, signature, args):
        c0_, j_, a, b = args
        lo = builder.add(builder.trunc(c0_, _I32), builder.trunc(j_, _I32))
        return _hash_ir(builder, lo, _high_word(builder, c0_), a, b)

    return sig, codegen


def _segment_end(c0, length):
    # elements from counter c0 before the next multiple of 2**32 (at most length)
    return min(length, (((c0 >> 32) + 1) << 32) - c0)


def _bernoulli(x, out, base, k0, k1, thr, mult, n, t0, t1):
    # x, out: flat (R*n,); base int64, k0/k1/thr uint32, mult x.dtype: all (R,)
    nc = (n + CHUNK - 1) // CHUNK
    for t in range(t0, t1):  # tasks t0..t1-1 of the R * nc (row, chunk) tasks
        r = t // nc
        s = (t % nc) * CHUNK
        e = min(s + CHUNK, n)
        a = k0[r]
        b = k1[r]
        tr = thr[r]
        m = mult[r]
        zero = m - m  # 0 in x's dtype (m is finite)
        j0 = 0
        while j0 < e - s:  # segments of constant high counter word (one, but at 2**32)
            c0 = base[r] + s + j0
            j1 = j0 + _segment_end(c0, e - s - j0)
            xs = x[r * n + s + j0 : r * n + s + j1]  # local indices let LLVM vectorize
            os = out[r * n + s + j0 : r * n + s + j1]
            for j in range(j1 - j0):
                h = _hash32s(c0, j, a, b)
                os[j] = xs[j] * m if (h >> np.uint32(8)) < tr else zero
            j0 = j1


def _relu_bernoulli_inplace(x, base, k0, k1, thr, mult, n, t0, t1):
    # x <- relu(x) * mult where kept else 0 (_bernoulli applied to relu(x), one pass), in
    # place: one array, so LLVM vectorizes (separate x/out arrays that alias would fail
    # its overlap check and run the branchy scalar loop, ~15x slower)
    nc = (n + CHUNK - 1) // CHUNK
    for t in range(t0, t1):
        r = t // nc
        s = (t % nc) * CHUNK
        e = min(s + CHUNK, n)
        a = k0[r]
        b = k1[r]
        tr = thr[r]
        m = mult[r]
        zero = m - m
        j0 = 0
        while j0 < e - s:
            c0 = base[r] + s + j0
            j1 = j0 + _segment_end(c0, e - s - j0)
            xs = x[r * n + s + j0 : r * n + s + j1]
            for j in range(j1 - j0):
                h = _hash32s(c0, j, a, b)
                v = xs[j]
                v = zero if v <= zero else v  # relu; NaN stays NaN like torch.relu
                xs[j] = v * m if (h >> np.uint32(8)) < tr else zero
            j0 = j1


def _positive_scale_inplace(g, y, mult, n, t0, t1):
    # g <- g * mult where y > 0 else 0: the backward of relu + dropout read off the output
    nc = (n + CHUNK - 1) // CHUNK
    for t in range(t0, t1):
        r = t // nc
        s = (t % nc) * CHUNK
        e = min(s + CHUNK, n)
        m = mult[r]
        zero = m - m
        gs = g[r * n + s : r * n + e]
        ys = y[r * n + s : r * n + e]
        for j in range(e - s):
            gs[j] = gs[j] * m if ys[j] > zero else zero


def _bits(out, base, k0, k1, n, t0, t1):
    # out: int32 (R*n,) receiving h >> 8 (24-bit uniforms as integers)
    nc = (n + CHUNK - 1) // CHUNK
    for t in range(t0, t1):  # tasks t0..t1-1 of the R * nc (row, chunk) tasks
        r = t // nc
        s = (t % nc) * CHUNK
        e = min(s + CHUNK, n)
        a = k0[r]
        b = k1[r]
        j0 = 0
        while j0 < e - s:  # segments of constant high counter word, as in _bernoulli
            c0 = base[r] + s + j0
            j1 = j0 + _segment_end(c0, e - s - j0)
            os = out[r * n + s + j0 : r * n + s + j1]
            for j in range(j1 - j0):
                os[j] = np.int32(_hash32s(c0, j, a, b) >> np.uint32(8))
            j0 = j1


def _gaussian(x, out, base, k0, k1, g0, g1, sigma, n, t0, t1):
    # out = x * (1 + sigma * z), z by Box-Muller in float32 (see _hash.normal_torch)
    nc = (n + CHUNK - 1) // CHUNK
    two_pi = np.float32(TWO_PI_F32)
    scale = np.float32(2.0**-24)
    one = np.float32(1.0)
    for t in range(t0, t1):  # tasks t0..t1-1 of the R * nc (row, chunk) tasks
        r = t // nc
        s = (t % nc) * CHUNK
        e = min(s + CHUNK, n)
        a = k0[r]
        b = k1[r]
        c = g0[r]
        d = g1[r]
        sg = sigma[r]
        b0 = base[r] + s
        xs = x[r * n + s : r * n + e]
        os = out[r * n + s : r * n + e]
        for j in range(e - s):
            h1 = _hash32(b0 + j, a, b)
            h2 = _hash32(b0 + j, c, d)
            u1 = np.float32((h1 >> np.uint32(8)) + np.uint32(1)) * scale
            u2 = np.float32(h2 >> np.uint32(8)) * scale
            z = np.float32(math.sqrt(np.float32(-2.0) * np.float32(math.log(u1)))) * np.float32(
                math.cos(two_pi * u2)
            )
            os[j] = xs[j] * (one + sg * z)


def _normal(out, base, k0, k1, g0, g1, n, t0, t1):
    # out: float32 (R*n,) receiving z (same formula as _gaussian)
    nc = (n + CHUNK - 1) // CHUNK
    two_pi = np.float32(TWO_PI_F32)
    scale = np.float32(2.0**-24)
    for t in range(t0, t1):  # tasks t0..t1-1 of the R * nc (row, chunk) tasks
        r = t // nc
        s = (t % nc) * CHUNK
        e = min(s + CHUNK, n)
        a = k0[r]
        b = k1[r]
        c = g0[r]
        d = g1[r]
        b0 = base[r] + s
        os = out[r * n + s : r * n + e]
        for j in range(e - s):
            h1 = _hash32(b0 + j, a, b)
            h2 = _hash32(b0 + j, c, d)
            u1 = np.float32((h1 >> np.uint32(8)) + np.uint32(1)) * scale
            u2 = np.float32(h2 >> np.uint32(8)) * scale
            os[j] = np.float32(math.sqrt(np.float32(-2.0) * np.float32(math.log(u1)))) * np.float32(
                math.cos(two_pi * u2)
            )


def _select(a, k):
    # the (k+1)-th smallest of the distinct int64 values in a (0 <= k < len(a)), by
    # Hoare's quickselect with a median-of-three pivot; a is permuted in place
    lo = 0
    hi = len(a) - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        p, q, s = a[lo], a[mid], a[hi]
        pivot = max(min(p, q), min(max(p, q), s))  # median of the three
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        if k <= j:  # a[lo..j] <= pivot <= a[i..hi], j < i
            hi = j
        elif k >= i:
            lo = i
        else:  # j < k < i: a[k] == pivot is in place
            return a[k]
    return a[k]


def _fixed_count(x, out, base, k0, k1, n_drop, mult, n, rows, rows_per_task, lo, hi, t0, t1):
    # x, out: flat (R*n,); base int64, k0/k1 uint32: (R,); mult: x's dtype. Task t covers
    # rows t*rows_per_task .. (t+1)*rows_per_task - 1. Row r drops the n_drop units with
    # the smallest keys ((h >> 8) << 32) | j, distinct within a row. [lo, hi) is a key
    # window that holds the n_drop-th smallest key with high probability (see
    # fixed_count_window): the selection runs on the few keys inside it, or on all keys
    # of the row when the count below lo shows the window missed (exact either way).
    keys = np.empty(n, dtype=np.int64)  # (n,) in unit order
    work = np.empty(n, dtype=np.int64)  # (n,) candidates, permuted by the selection
    m = mult
    zero = m - m  # 0 in x's dtype (m is finite)
    for t in range(t0, t1):
        r0 = t * rows_per_task
        r1 = min(r0 + rows_per_task, rows)
        for r in range(r0, r1):
            a = k0[r]
            b = k1[r]
            c0 = base[r]
            for j in range(n):
                h = _hash32(c0 + j, a, b)
                keys[j] = (np.int64(h >> np.uint32(8)) << 32) | j
            thr = np.int64(-1)  # n_drop = 0: every key (>= 0) is above it
            if n_drop > 0:
                below = 0
                for j in range(n):
                    below += keys[j] < lo
                c = 0
                for j in range(n):  # branch-free compaction of the keys in [lo, hi)
                    v = keys[j]
                    work[c] = v
                    c += (v >= lo) & (v < hi)
                k = n_drop - 1 - below
                if 0 <= k < c:
                    thr = _select(work[:c], k)
                else:  # the window missed: select among all keys
                    work[:] = keys
                    thr = _select(work, n_drop - 1)
            xs = x[r * n : (r + 1) * n]
            os = out[r * n : (r + 1) * n]
            for j in range(n):
                os[j] = xs[j] * m if keys[j] > thr else zero


@functools.lru_cache(maxsize=1024)
def fixed_count_window(n: int, n_drop: int, sigmas: float = 3.0) -> tuple[int, int]:
    """A key window [lo, hi) for rows of n keys that holds the n_drop-th smallest key
    except with probability ~3e-3 (then the kernel selects among all keys: exact either
    way; 3 sigmas measured fastest at n = 256, ~1.5x faster than 6).

    That key's 24-bit part, divided by 2**24, is close to the n_drop-th order statistic
    of n uniforms: mean ~ q = (n_drop - 1/2) / n, sd <= sqrt(q (1 - q) / n) + 1/(2n)
    (its Beta law); the window spans ``sigmas`` of those around q.
    """
    if n_drop <= 0 or n <= 0:
        return 0, 0  # unused: nothing is selected
    q = (n_drop - 0.5) / n
    sd = math.sqrt(q * (1 - q) / n) + 0.5 / n
    lo = max(0, math.floor((q - sigmas * sd) * 2**24))
    hi = min(2**24, math.ceil((q + sigmas * sd) * 2**24) + 1)
    return lo << 32, hi << 32


def _jit(fn):
    """Compile lazily with an on-disk cache; without a writable cache dir, no cache."""
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=False)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, error_model="numpy", fastmath=False)(fn)


_segment_end = _jit(_segment_end)
bernoulli = _jit(_bernoulli)
relu_bernoulli_inplace = _jit(_relu_bernoulli_inplace)
positive_scale_inplace = _jit(_positive_scale_inplace)
bits = _jit(_bits)
gaussian = _jit(_gaussian)
normal = _jit(_normal)
_select = _jit(_select)
fixed_count = _jit(_fixed_count)

HUGE_MIN = 8 << 20  # outputs of at least 8 MiB get transparent huge pages
_HUGE = 1 << 21


def _madvise():
    if not sys.platform.startswith("linux") or os.environ.get("DROPLAB_NO_HUGEPAGES"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return fn


_MADVISE = _madvise()
_MADV_HUGEPAGE = 14


def _advise_huge(ptr: int, nbytes: int) -> None:
    if _MADVISE is None or nbytes < HUGE_MIN:
        return
    start = (ptr + _HUGE - 1) & ~(_HUGE - 1)
    end = (ptr + nbytes) & ~(_HUGE - 1)
    if end > start:
        _MADVISE(start, end - start, _MADV_HUGEPAGE)  # a hint: failure changes nothing


def empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor for a kernel's output; large ones are reused buffers or huge pages.

    A fresh large output is mmap-ed by the allocator and first-touched by the kernel,
    and its page faults cost several times the kernel itself. Outputs of at least 1 MiB
    come from ``_pool`` (a buffer whose tensors have all died is handed out again, so it
    is not faulted in again); a newly allocated one is advised to use transparent huge
    pages (allocate+fill of 64 MiB measured 133 ms -> 32 ms). ``DROPLAB_NO_HUGEPAGES=1``
    turns the advice off, ``DROPLAB_KERNEL_POOL_MB=0`` the pool.
    """
    if math.prod(shape) * dtype.itemsize < _pool.MIN_BYTES:  # never pooled nor advised
        return torch.empty(shape, dtype=dtype)
    out = _pool.empty(tuple(shape), dtype, advise=_advise_huge)
    if out is not None:
        return out
    out = torch.empty(shape, dtype=dtype)
    _advise_huge(out.data_ptr(), out.numel() * out.element_size())
    return out


_threads: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)
_pool_lock = threading.Lock()


def _workers(n: int) -> ThreadPoolExecutor:
    """A thread pool with at least ``n`` workers, recreated after a fork."""
    global _threads
    with _pool_lock:
        if _threads is None or _threads[0] != os.getpid() or _threads[1] < n:
            _threads = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="droplab-kernels"))
        return _threads[2]


def run(kernel, rows: int, n: int, threads: int, *args) -> None:
    """Run ``kernel(*args, t0, t1)`` over all (row, chunk) tasks on ``threads`` threads.

    The kernels release the GIL, so the caller and ``threads - 1`` pool threads split the
    tasks into contiguous ranges. Idle pool threads sleep (no OpenMP-style spinning that
    would fight torch's own thread pool for the cores).
    """
    run_tasks(kernel, rows * ((n + CHUNK - 1) // CHUNK), rows * n, threads, *args)


def run_tasks(kernel, tasks: int, elements: int, threads: int, *args) -> None:
    """Run ``kernel(*args, t0, t1)`` over tasks 0..tasks-1 that cover ``elements``
    elements in all, as :func:`run` (one thread below ``PARALLEL_MIN`` elements)."""
    parts = min(threads, tasks)
    if elements < PARALLEL_MIN or parts <= 1:
        kernel(*args, 0, tasks)
        return
    bounds = [tasks * i // parts for i in range(parts + 1)]
    pool = _workers(parts - 1)
    futures = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    kernel(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()
