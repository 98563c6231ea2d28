"""Triton CUDA kernels for the counter hash of ``_hash.py`` (imported only if triton is).

Same integer hash, thresholds and Box-Muller formula as the CPU backends, so CUDA masks
are bit-identical to the CPU's for the same (seed, offset); Gaussian noise agrees to a
few float32 ulps (the GPU's log/cos differ from the CPU's in the last bits).
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from droplab.kernels._hash import TWO_PI_F32, Params

BLOCK = 2048


@triton.jit
def _mix32(h):
    h = h ^ (h >> 16)
    h = h * 0x21F0AAAD
    h = h ^ (h >> 15)
    h = h * 0x735A2D97
    return h ^ (h >> 15)


@triton.jit
def _hash32(idx, k0, k1):
    # idx: int64 counters; k0, k1: uint32 scalars; returns uint32
    lo = idx.to(tl.uint32)
    hi = (idx >> 32).to(tl.uint32)
    h = _mix32(lo ^ k0)
    return _mix32(h ^ k1 ^ (hi * 0x9E3779B9))


@triton.jit
def _bernoulli_kernel(x_ptr, out_ptr, ints_ptr, mult_ptr, n, BLOCK: tl.constexpr):
    r = tl.program_id(1)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < n
    base = tl.load(ints_ptr + 4 * r)
    k0 = tl.load(ints_ptr + 4 * r + 1).to(tl.uint32)
    k1 = tl.load(ints_ptr + 4 * r + 2).to(tl.uint32)
    thr = tl.load(ints_ptr + 4 * r + 3).to(tl.uint32)
    m = tl.load(mult_ptr + r)
    row = r.to(tl.int64) * n
    h = _hash32(base + offs, k0, k1)
    x = tl.load(x_ptr + row + offs, mask=inb)
    y = tl.where((h >> 8) < thr, x * m, tl.zeros_like(x))
    tl.store(out_ptr + row + offs, y, mask=inb)


@triton.jit
def _normal(idx, k0, k1, g0, g1, two_pi):
    h1 = _hash32(idx, k0, k1)
    h2 = _hash32(idx, g0, g1)
    u1 = ((h1 >> 8) + 1).to(tl.float32) * 5.9604644775390625e-08  # 2**-24
    u2 = (h2 >> 8).to(tl.float32) * 5.9604644775390625e-08
    return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(u2 * two_pi)


@triton.jit
def _gaussian_kernel(x_ptr, out_ptr, ints_ptr, sigma_ptr, n, two_pi, BLOCK: tl.constexpr):
    r = tl.program_id(1)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < n
    base = tl.load(ints_ptr + 6 * r)
    k0 = tl.load(ints_ptr + 6 * r + 1).to(tl.uint32)
    k1 = tl.load(ints_ptr + 6 * r + 2).to(tl.uint32)
    g0 = tl.load(ints_ptr + 6 * r + 3).to(tl.uint32)
    g1 = tl.load(ints_ptr + 6 * r + 4).to(tl.uint32)
    s = tl.load(sigma_ptr + r)
    row = r.to(tl.int64) * n
    z = _normal(base + offs, k0, k1, g0, g1, two_pi)
    x = tl.load(x_ptr + row + offs, mask=inb)
    y = x * (1.0 + s * z.to(x.dtype))
    tl.store(out_ptr + row + offs, y, mask=inb)


@triton.jit
def _bits_kernel(out_ptr, ints_ptr, n, BLOCK: tl.constexpr):
    r = tl.program_id(1)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < n
    base = tl.load(ints_ptr + 4 * r)
    k0 = tl.load(ints_ptr + 4 * r + 1).to(tl.uint32)
    k1 = tl.load(ints_ptr + 4 * r + 2).to(tl.uint32)
    h = _hash32(base + offs, k0, k1)
    tl.store(out_ptr + r.to(tl.int64) * n + offs, (h >> 8).to(tl.int32), mask=inb)


@triton.jit
def _normal_kernel(out_ptr, ints_ptr, n, two_pi, BLOCK: tl.constexpr):
    r = tl.program_id(1)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < n
    base = tl.load(ints_ptr + 6 * r)
    k0 = tl.load(ints_ptr + 6 * r + 1).to(tl.uint32)
    k1 = tl.load(ints_ptr + 6 * r + 2).to(tl.uint32)
    g0 = tl.load(ints_ptr + 6 * r + 3).to(tl.uint32)
    g1 = tl.load(ints_ptr + 6 * r + 4).to(tl.uint32)
    z = _normal(base + offs, k0, k1, g0, g1, two_pi)
    tl.store(out_ptr + r.to(tl.int64) * n + offs, z, mask=inb)


def _ints(p: Params, device: torch.device, gauss: bool) -> torch.Tensor:
    fourth = p.thr if p.thr is not None else p.base
    cols = [p.base, p.k0, p.k1] + ([p.g0, p.g1, p.base] if gauss else [fourth])
    a = np.stack([np.asarray(c, dtype=np.int64) for c in cols], axis=1)  # (R, 4 or 6)
    return torch.from_numpy(a).to(device, non_blocking=True)


def _grid(p: Params):
    return (triton.cdiv(max(p.n, 1), BLOCK), p.rows)


def bernoulli(x2: torch.Tensor, p: Params) -> torch.Tensor:
    out = torch.empty_like(x2)  # (R, n)
    mult = torch.as_tensor(p.mult, device=x2.device).to(x2.dtype)  # (R,)
    _bernoulli_kernel[_grid(p)](x2, out, _ints(p, x2.device, False), mult, p.n, BLOCK=BLOCK)
    return out


def gaussian(x2: torch.Tensor, p: Params) -> torch.Tensor:
    out = torch.empty_like(x2)  # (R, n)
    sigma = torch.as_tensor(p.mult, device=x2.device).to(x2.dtype)  # (R,)
    _gaussian_kernel[_grid(p)](
        x2, out, _ints(p, x2.device, True), sigma, p.n, TWO_PI_F32, BLOCK=BLOCK
    )
    return out


def bits(p: Params, device: torch.device) -> torch.Tensor:
    out = torch.empty((p.rows, p.n), dtype=torch.int32, device=device)
    _bits_kernel[_grid(p)](out, _ints(p, device, False), p.n, BLOCK=BLOCK)
    return out


def normal(p: Params, device: torch.device) -> torch.Tensor:
    out = torch.empty((p.rows, p.n), dtype=torch.float32, device=device)
    _normal_kernel[_grid(p)](out, _ints(p, device, True), p.n, TWO_PI_F32, BLOCK=BLOCK)
    return out
