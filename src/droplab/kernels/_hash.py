"""The counter-based hash that every backend implements, and its pure-torch reference.

Each element's random bits are a pure function of a 64-bit key and the element's index:

    key  = mix64(mix64(seed + G64) ^ mix64(offset ^ O64))        (once per call / member)
    k0, k1 = key mod 2**32, key >> 32
    lo, hi = index mod 2**32, index >> 32
    h    = mix32(mix32(lo ^ k0) ^ k1 ^ (hi * G32 mod 2**32))      (once per element)

``mix64`` is the splitmix64 finalizer (Steele, Lea & Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014); ``mix32`` is a 32-bit xorshift-multiply finalizer with
the "lowbias32" constants found by C. Wellons' hash-prospector search (two multiplies,
full avalanche). Two keyed rounds of ``mix32`` make ``h`` an invertible, key-dependent
scramble of the index; its statistical quality for dropout (uniformity, serial and
2x2-pattern independence, independence across seeds and offsets) is what
``tests/kernels`` checks.

A uniform is ``u = (h >> 8) * 2**-24`` (24 bits, exactly representable in float32), and
an element is kept when ``u < keep``, i.e. when ``h >> 8 < ceil(keep * 2**24)``: every
backend compares integers, so masks are bit-identical across numba, Triton and torch.
The offset is hashed into the key rather than added to the index, so masks of different
offsets are independent, not shifted copies of each other.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "GAUSS_KEY",
    "Params",
    "bits_torch",
    "keys",
    "mix64",
    "thresholds",
]

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
G64 = 0x9E3779B97F4A7C15  # 2**64 / golden ratio
O64 = 0xD1B54A32D192ED03  # separates the offset's hash from the seed's
GAUSS_KEY = 0x632BE59BD9B4E019  # derives the second (angle) stream of the Gaussian
G32 = 0x9E3779B9  # 2**32 / golden ratio: spreads the index's high word into the key
MIX32_A = 0x21F0AAAD
MIX32_B = 0x735A2D97


def mix64(v: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, elementwise on a uint64 array (wrapping arithmetic)."""
    v = np.asarray(v, dtype=np.uint64)
    v = v ^ (v >> np.uint64(30))
    v = v * np.uint64(0xBF58476D1CE4E5B9)
    v = v ^ (v >> np.uint64(27))
    v = v * np.uint64(0x94D049BB133111EB)
    return v ^ (v >> np.uint64(31))


def mix64_int(v: int) -> int:
    """splitmix64 finalizer on one Python int in [0, 2**64)."""
    v = (v ^ (v >> 30)) * 0xBF58476D1CE4E5B9 & M64
    v = (v ^ (v >> 27)) * 0x94D049BB133111EB & M64
    return v ^ (v >> 31)


def premix(seeds: np.ndarray) -> np.ndarray:
    """``mix64(seed + G64)`` of int64 seeds (two's complement), shape (K,) uint64."""
    s = np.atleast_1d(np.asarray(seeds).astype(np.int64)).view(np.uint64)  # (K,)
    with np.errstate(over="ignore"):
        return mix64(s + np.uint64(G64))


def keys(
    seeds: np.ndarray | int, offset: int, stream: int = 0, *, premixed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed 32-bit keys ``(k0, k1)`` (uint32 arrays of seeds' shape, at least 1-d).

    ``seeds`` and ``offset`` are taken modulo 2**64 (negative values allowed). A nonzero
    ``stream`` derives a second independent key from the same (seed, offset).
    ``premixed`` may pass ``premix(seeds)`` computed earlier (it does not depend on the
    offset).
    """
    o = mix64_int((offset % 2**64) ^ O64)
    if premixed is None and not isinstance(seeds, np.ndarray):  # one seed: Python ints
        key = mix64_int(mix64_int((int(seeds) + G64) % 2**64) ^ o)
        if stream:
            key = mix64_int(key ^ stream)
        return np.array([key & M32], dtype=np.uint32), np.array([key >> 32], dtype=np.uint32)
    pre = premix(seeds) if premixed is None else premixed
    key = mix64(pre ^ np.uint64(o))
    if stream:
        key = mix64(key ^ np.uint64(stream))
    return (key & np.uint64(M32)).astype(np.uint32), (key >> np.uint64(32)).astype(np.uint32)


def thresholds(keep: np.ndarray) -> np.ndarray:
    """Integer thresholds ``ceil(keep * 2**24)`` (int64): keep when ``h >> 8 < t``.

    ``keep`` is first rounded to float32, so a float and a float32 tensor of the same
    value give the same mask.
    """
    k32 = np.asarray(keep, dtype=np.float32).astype(np.float64)
    return np.ceil(k32 * 2.0**24).astype(np.int64)


F32_MAX = float(np.finfo(np.float32).max)
Z_MAX = 5.8  # bound on |z| of the Box-Muller normals below (sqrt(48 ln 2) ~ 5.77)


def mult_dtype(dtype: torch.dtype, bound: float) -> torch.dtype:
    """The dtype in which ``x * M`` is formed for x of ``dtype`` and ``|M| <= bound``.

    float32 for float16/bfloat16/float32 x, float64 for float64 x and wherever ``bound``
    exceeds float32's range (keep below ~2.9e-39). The product is then rounded once to
    x's dtype, so a multiplier beyond float16's 65504 (``1/keep`` for keep < ~1.5e-5)
    never becomes inf, kept zeros stay exactly 0 and a kept x is +-inf only where
    ``x * M`` itself lies beyond x's dtype's range.
    """
    if dtype == torch.float64 or not bound <= F32_MAX:
        return torch.float64
    return torch.float32


def largest(values: np.ndarray) -> float:
    """``max(values, 0)`` as a float; the common one-value case skips numpy's reduction."""
    a = np.asarray(values)
    if a.size == 1:
        return max(float(a.reshape(-1)[0]), 0.0)
    return float(np.max(a, initial=0.0))


def scales(keep: np.ndarray, scaling: str) -> np.ndarray:
    """Multiplier of a kept element: ``1/keep`` (inverted) or 1 (classic); 0 if keep=0."""
    k32 = np.asarray(keep, dtype=np.float32).astype(np.float64)
    if scaling == "classic":
        return np.where(k32 > 0, 1.0, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(k32 > 0, 1.0 / np.where(k32 > 0, k32, 1.0), 0.0)


class Params:
    """Everything a kernel needs for R rows of n elements (row r = member or block).

    ``base[r]`` is the counter of row r's first element, ``k0, k1`` its key words,
    ``thr`` its threshold, ``mult`` its kept-element multiplier (Bernoulli) or sigma
    (Gaussian), with ``g0, g1`` the angle-stream key for the Gaussian. All are numpy
    arrays of shape (R,); nothing here is a tensor, so autograd saves none of it.
    """

    __slots__ = ("base", "g0", "g1", "k0", "k1", "mult", "n", "rows", "thr")

    def __init__(self, rows, n, base, k0, k1, thr=None, mult=None, g0=None, g1=None):
        self.rows, self.n = rows, n
        self.base, self.k0, self.k1 = base, k0, k1
        self.thr, self.mult, self.g0, self.g1 = thr, mult, g0, g1


# ---------------------------------------------------------------- torch reference


def _mix32_t(h: torch.Tensor) -> torch.Tensor:
    """mix32 in place on int64 ``h`` holding values in [0, 2**32) (products < 2**63)."""
    h ^= h >> 16
    h.mul_(MIX32_A).bitwise_and_(M32)
    h ^= h >> 15
    h.mul_(MIX32_B).bitwise_and_(M32)
    h ^= h >> 15
    return h


def bits_torch(
    idx: torch.Tensor, k0: torch.Tensor | int, k1: torch.Tensor | int, wide: bool = True
) -> torch.Tensor:
    """The 32-bit hash ``h`` (as int64 in [0, 2**32)) of int64 counters ``idx`` >= 0.

    ``k0, k1`` are ints or int64 tensors broadcastable to ``idx``; ``wide=False`` promises
    every counter is below 2**32 (the high-word term is then 0 and skipped).
    """
    h = _mix32_t((idx & M32) ^ k0)
    h ^= k1
    if wide:
        h ^= ((idx >> 32) * G32) & M32
    return _mix32_t(h)


def _col(a: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # via int64/float64 in numpy: uint32 tensors have few ops on some devices
    a = np.asarray(a)
    a = a.astype(np.int64) if a.dtype.kind in "ui" else a.astype(np.float64)
    return torch.as_tensor(a, device=device).to(dtype)[:, None]  # (R, 1)


_BLOCK = 1 << 15  # columns per block of the numpy path: temporaries stay in L1/L2


def _bits24_numpy(out: np.ndarray, base: np.ndarray, k0: np.ndarray, k1: np.ndarray) -> None:
    """``h >> 8`` into int32 ``out`` (R, n) with numpy uint32 arithmetic (wraps mod 2**32).

    Valid when every counter is below 2**32 (the high-word term is then 0). torch's CPU
    integer ops are scalar and ~15x slower than numpy's vectorized uint32 loops.
    """
    rows, n = out.shape
    ramp = np.arange(min(n, _BLOCK), dtype=np.uint32)
    h = np.empty_like(ramp)
    t = np.empty_like(ramp)
    a, b = np.uint32(MIX32_A), np.uint32(MIX32_B)

    def mix(h, t):
        np.right_shift(h, 16, out=t)
        np.bitwise_xor(h, t, out=h)
        np.multiply(h, a, out=h)
        np.right_shift(h, 15, out=t)
        np.bitwise_xor(h, t, out=h)
        np.multiply(h, b, out=h)
        np.right_shift(h, 15, out=t)
        np.bitwise_xor(h, t, out=h)

    for r in range(rows):
        for c in range(0, n, _BLOCK):
            w = min(_BLOCK, n - c)
            hw, tw = h[:w], t[:w]
            np.add(ramp[:w], np.uint32((int(base[r]) + c) & M32), out=hw)  # lo word
            np.bitwise_xor(hw, k0[r], out=hw)
            mix(hw, tw)
            np.bitwise_xor(hw, k1[r], out=hw)
            mix(hw, tw)
            np.right_shift(hw, 8, out=hw)
            out[r, c : c + w] = hw  # < 2**24: exact in int32


def bits24(
    base: np.ndarray, n: int, k0: np.ndarray, k1: np.ndarray, device: torch.device
) -> torch.Tensor:
    """``h >> 8`` (int32, shape (R, n)) of rows with counters ``base[r] + j``, j < n."""
    rows = len(base)
    wide = rows > 0 and n > 0 and int(np.max(base)) + n > 2**32
    if device.type == "cpu" and not wide:
        out = np.empty((rows, n), dtype=np.int32)
        _bits24_numpy(out, base, k0.astype(np.uint32), k1.astype(np.uint32))
        return torch.from_numpy(out)
    idx = torch.as_tensor(base, dtype=torch.int64, device=device)[:, None] + torch.arange(
        n, dtype=torch.int64, device=device
    )  # (R, n)
    k0t = _col(k0.astype(np.int64), device, torch.int64)
    k1t = _col(k1.astype(np.int64), device, torch.int64)
    return (bits_torch(idx, k0t, k1t, wide) >> 8).to(torch.int32)


def bernoulli_torch(x2: torch.Tensor, p: Params) -> torch.Tensor:
    """Reference Bernoulli kernel on x2 of shape (R, n): ``x * mult`` where kept, else 0.

    The product is formed in :func:`mult_dtype` and rounded once to x2's dtype.
    """
    dev = x2.device
    w = mult_dtype(x2.dtype, largest(p.mult))
    kept = bits24(p.base, p.n, p.k0, p.k1, dev) < _col(p.thr, dev, torch.int32)  # (R, n)
    zero = torch.zeros((), dtype=w, device=dev)
    return torch.where(kept, x2.to(w) * _col(p.mult, dev, w), zero).to(x2.dtype)


TWO_PI = 2.0 * math.pi
TWO_PI_F32 = float(np.float32(TWO_PI))  # the float32 constant every backend uses


def normal_torch(p: Params, device: torch.device) -> torch.Tensor:
    """Standard normals z (float32, shape (R, n)) by Box-Muller from the two streams.

    u1 = ((h1 >> 8) + 1) * 2**-24 in (0, 1], u2 = (h2 >> 8) * 2**-24 in [0, 1),
    z = sqrt(-2 ln u1) * cos(2 pi u2); |z| <= sqrt(48 ln 2) ~ 5.77.
    """
    u1 = (bits24(p.base, p.n, p.k0, p.k1, device) + 1).to(torch.float32) * 2.0**-24
    u2 = bits24(p.base, p.n, p.g0, p.g1, device).to(torch.float32) * 2.0**-24
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(u2 * TWO_PI_F32)


def gaussian_torch(x2: torch.Tensor, p: Params) -> torch.Tensor:
    """Reference Gaussian kernel on x2 (R, n): ``x * (1 + sigma * z)``, formed in
    :func:`mult_dtype` and rounded once to x2's dtype."""
    w = mult_dtype(x2.dtype, 1.0 + Z_MAX * largest(p.mult))
    z = normal_torch(p, x2.device).to(w)  # (R, n)
    return (x2.to(w) * (1 + _col(p.mult, x2.device, w) * z)).to(x2.dtype)


def fixed_count_torch(x2: torch.Tensor, p: Params, n_drop: int, mult: float) -> torch.Tensor:
    """Reference fixed-count kernel on x2 (R, n): each row drops its ``n_drop`` units of
    smallest key ``((h >> 8) << 32) | j`` (distinct within a row) and multiplies the kept
    ones by ``mult``; the product is formed in :func:`mult_dtype` and rounded once to
    x2's dtype."""
    dev = x2.device
    w = mult_dtype(x2.dtype, mult)
    zero = torch.zeros((), dtype=w, device=dev)
    if n_drop == 0 or x2.numel() == 0:
        return (x2.to(w) * mult).to(x2.dtype)
    keys = bits24(p.base, p.n, p.k0, p.k1, dev).to(torch.int64) << 32  # (R, n)
    keys |= torch.arange(p.n, dtype=torch.int64, device=dev)
    thr = keys.kthvalue(n_drop, dim=1, keepdim=True).values  # (R, 1): n_drop-th smallest
    return torch.where(keys > thr, x2.to(w) * mult, zero).to(x2.dtype)
