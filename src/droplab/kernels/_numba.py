"""numba CPU kernels for the counter hash of ``_hash.py`` (imported only if numba is).

The hash is emitted as 32-bit LLVM IR through ``numba.extending.intrinsic``: numba's own
integer typing widens uint32 arithmetic to 64 bits, which would stop LLVM from using
8-lane AVX2 multiplies; with 32-bit IR the loops vectorize and run near copy bandwidth.
Every element depends only on (key, counter), so results are identical for any thread
count and chunking.
"""

from __future__ import annotations

import ctypes
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

from droplab.kernels._hash import G32, MIX32_A, MIX32_B, TWO_PI_F32

CHUNK = 1 << 15  # elements per task: fits L1/L2
PARALLEL_MIN = 1 << 19  # below this many elements one thread wins (a hand-off costs ~20-50 us)

_I32 = ir.IntType(32)


@intrinsic
def _hash32(typingctx, idx, k0, k1):
    """h = mix32(mix32(lo ^ k0) ^ k1 ^ hi * G32), all in 32-bit wrapping arithmetic."""
    sig = types.uint32(types.int64, types.uint32, types.uint32)

    def codegen(context, builder, signature, args):
        i, a, b = args
        c = lambda v: ir.Constant(_I32, v)  # noqa: E731

        def mix(h):
            h = builder.xor(h, builder.lshr(h, c(16)))
            h = builder.mul(h, c(MIX32_A))
            h = builder.xor(h, builder.lshr(h, c(15)))
            h = builder.mul(h, c(MIX32_B))
            return builder.xor(h, builder.lshr(h, c(15)))

        lo = builder.trunc(i, _I32)
        hi = builder.trunc(builder.lshr(i, ir.Constant(ir.IntType(64), 32)), _I32)
        h = mix(builder.xor(lo, a))
        h = builder.xor(builder.xor(h, b), builder.mul(hi, c(G32)))
        return mix(h)

    return sig, codegen


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
        b0 = base[r] + s
        xs = x[r * n + s : r * n + e]  # slices with a local index let LLVM vectorize
        os = out[r * n + s : r * n + e]
        for j in range(e - s):
            h = _hash32(b0 + j, a, b)
            os[j] = xs[j] * m if (h >> np.uint32(8)) < tr else zero


def _bits(out, base, k0, k1, n, t0, t1):
    # out: int32 (R*n,) receiving h >> 8 (24-bit uniforms as integers)
    nc = (n + CHUNK - 1) // CHUNK
    for t in range(t0, t1):  # tasks t0..t1-1 of the R * nc (row, chunk) tasks
        r = t // nc
        s = (t % nc) * CHUNK
        e = min(s + CHUNK, n)
        a = k0[r]
        b = k1[r]
        b0 = base[r] + s
        os = out[r * n + s : r * n + e]
        for j in range(e - s):
            os[j] = np.int32(_hash32(b0 + j, a, b) >> np.uint32(8))


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


def _jit(fn):
    """Compile lazily with an on-disk cache; without a writable cache dir, no cache."""
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=False)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, error_model="numpy", fastmath=False)(fn)


bernoulli = _jit(_bernoulli)
bits = _jit(_bits)
gaussian = _jit(_gaussian)
normal = _jit(_normal)

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


def empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """A fresh CPU tensor; large ones are advised to use transparent huge pages.

    A fresh large output is mmap-ed by the allocator and first-touched by the kernel;
    with 4 KiB pages its page faults cost several times the kernel itself (measured:
    allocate+fill of 64 MiB 133 ms -> 32 ms with huge pages). The advice only concerns
    this new buffer; set DROPLAB_NO_HUGEPAGES=1 to turn it off.
    """
    out = torch.empty(shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    if _MADVISE is not None and nbytes >= HUGE_MIN:
        start = (out.data_ptr() + _HUGE - 1) & ~(_HUGE - 1)
        end = (out.data_ptr() + nbytes) & ~(_HUGE - 1)
        if end > start:
            _MADVISE(start, end - start, _MADV_HUGEPAGE)  # a hint: failure changes nothing
    return out


_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)
_pool_lock = threading.Lock()


def _workers(n: int) -> ThreadPoolExecutor:
    """A thread pool with at least ``n`` workers, recreated after a fork."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < n:
            _pool = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="droplab-kernels"))
        return _pool[2]


def run(kernel, rows: int, n: int, threads: int, *args) -> None:
    """Run ``kernel(*args, t0, t1)`` over all (row, chunk) tasks on ``threads`` threads.

    The kernels release the GIL, so the caller and ``threads - 1`` pool threads split the
    tasks into contiguous ranges. Idle pool threads sleep (no OpenMP-style spinning that
    would fight torch's own thread pool for the cores).
    """
    tasks = rows * ((n + CHUNK - 1) // CHUNK)
    parts = min(threads, tasks)
    if rows * n < PARALLEL_MIN or parts <= 1:
        kernel(*args, 0, tasks)
        return
    bounds = [tasks * i // parts for i in range(parts + 1)]
    pool = _workers(parts - 1)
    futures = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    kernel(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()
