"""Fast, low-memory dropout: counter-based random masks, regenerated instead of stored.

Each element's random bits are a pure function of ``(seed, offset, index)`` (see
``_hash.py`` for the hash), so the backward pass recomputes the mask from the seed and
offset: autograd keeps a few bytes per call instead of a mask per element, and results
are identical for any number of threads, any chunking and every backend.

    bernoulli(x, keep, seed, offset=0, *, scaling="inverted", broadcast_dims=(),
              member_seeds=None, backend="auto") -> Tensor
    gaussian(x, sigma, seed, offset=0, *, member_seeds=None, backend="auto") -> Tensor
    fixed_count(x, n_drop, seed, offset=0, *, scaling="inverted", member_seeds=None,
                backend="auto") -> Tensor
    backend_name(device="cpu") -> "numba" | "triton" | "torch"

Backends: ``"numba"`` (CPU, float32/float64; a JIT, no C compiler needed), ``"triton"``
(CUDA, when triton is installed) and ``"torch"`` (no compiler: the same hash with numpy
uint32 loops on CPU or torch integer ops on other devices, then torch ops for the
values; any device and dtype, slower). ``"compile"`` (torch.compile) is not implemented. ``"auto"``/``"fast"`` pick the fastest available and
fall back to ``"torch"`` with a one-time warning when numba is missing. Bernoulli masks
are bit-identical across backends; Gaussian noise agrees to float32 rounding of log/cos.

Example:
    >>> import torch
    >>> from droplab import kernels
    >>> x = torch.ones(4, 8, requires_grad=True)
    >>> y = kernels.bernoulli(x, 0.5, seed=7)
    >>> sorted(set(y.flatten().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from droplab.kernels import _hash, _pool
from droplab.kernels._hash import Params

try:  # the compiled CPU backend is optional (extra "fast")
    from droplab.kernels import _numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    _numba = None

__all__ = ["RowBernoulli", "backend_name", "bernoulli", "fixed_count", "gaussian"]

BACKENDS = ("auto", "fast", "numba", "triton", "torch")
SCALINGS = ("inverted", "classic")
_NUMBA_DTYPES = (torch.float32, torch.float64)
_NUMBA_BACKENDS = frozenset(("auto", "fast", "numba"))  # where a CPU float32/64 x runs numba
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_triton_state: dict[str, object] = {}
_noticed: set[str] = set()


def _triton_backend():
    """The triton backend module, or None when triton (or CUDA) is unavailable."""
    if "mod" not in _triton_state:
        mod = None
        if torch.cuda.is_available():
            try:
                mod = importlib.import_module("droplab.kernels._triton")
            except Exception:  # triton missing or broken: fall back to torch ops
                mod = None
        _triton_state["mod"] = mod
    return _triton_state["mod"]


def backend_name(device: str | torch.device = "cpu") -> str:
    """The backend that ``backend="auto"`` uses for float32 tensors on ``device``.

    ``"numba"`` on CPU when numba is installed, ``"triton"`` on CUDA when triton is,
    else ``"torch"`` (the same counter hash in plain torch ops).
    """
    dev = torch.device(device)
    if dev.type == "cpu":
        return "numba" if _numba is not None else "torch"
    if dev.type == "cuda":
        return "triton" if _triton_backend() is not None else "torch"
    return "torch"


def _notice(what: str) -> None:
    if what not in _noticed:
        _noticed.add(what)
        warnings.warn(what, RuntimeWarning, stacklevel=4)


def _resolve(backend: str, x: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    dev = x.device.type
    if backend in ("auto", "fast"):
        name = backend_name(x.device)
        if name == "torch" and dev == "cpu":
            _notice(
                "droplab.kernels: numba is not installed, so dropout masks use the slower "
                "pure-torch counter hash (same results); `pip install numba` for speed."
            )
        if name == "numba" and x.dtype not in _NUMBA_DTYPES:
            return "torch"
        if name == "triton" and x.dtype not in _TRITON_DTYPES:
            return "torch"
        return name
    if backend == "numba" and (_numba is None or dev != "cpu" or x.dtype not in _NUMBA_DTYPES):
        raise ValueError(
            f"backend='numba' needs numba installed and a float32/float64 CPU tensor, got "
            f"numba={'yes' if _numba else 'no'}, device={dev}, dtype={x.dtype}"
        )
    if backend == "triton" and (
        dev != "cuda" or _triton_backend() is None or x.dtype not in _TRITON_DTYPES
    ):
        raise ValueError(
            f"backend='triton' needs triton and a floating CUDA tensor, got device={dev}, "
            f"dtype={x.dtype}, triton={'yes' if _triton_backend() else 'no'}"
        )
    return backend


# ---------------------------------------------------------------- argument checks


def _as_int(v, name: str) -> int:
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point():
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    return int(v)


_MEMO: dict = {}
_MEMO_MAX = 256
_MEMO_NUMEL = 4096  # tensors up to this size are memoized by value


def _memo(key, compute):
    """``compute()``, memoized under ``key`` (None: not memoized). Keys hold values, not
    tensor identities, so in-place changes of a tensor can never return stale results."""
    if key is None:
        return compute()
    hit = _MEMO.get(key)
    if hit is None:
        hit = compute()
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.pop(next(iter(_MEMO)), None)
        _MEMO[key] = hit
    return hit


def _values(v: torch.Tensor, dtype: torch.dtype) -> tuple[np.ndarray, tuple | None]:
    """v's values as a numpy array of ``dtype`` (on CPU) and a memo key for them."""
    a = v.detach().to("cpu", dtype).numpy()
    return a, ((a.tobytes(), a.shape) if a.size <= _MEMO_NUMEL else None)


def _rate(v, name: str, mask_shape: torch.Size, lo: float, hi: float):
    """Classify keep/sigma: ("scalar", float) | ("rows", (R,) array) | ("general", array).

    "rows" is the per-member form: shape (K, 1, ..., 1) with K = mask_shape[0];
    "general" holds the values (float64 numpy) in the rate's own shape.
    """
    if isinstance(v, bool) or not isinstance(
        v, (int, float, np.floating, np.integer, torch.Tensor)
    ):
        raise TypeError(f"{name} must be a float or a tensor, got {type(v).__name__} {v!r}")
    if not isinstance(v, torch.Tensor):
        f = float(v)
        if not (lo <= f <= hi and math.isfinite(f)):
            raise ValueError(f"{name} must be finite and in [{lo}, {hi}], got {f}")
        return "scalar", f
    if v.is_complex() or v.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor, got dtype {v.dtype}")
    vd, key = _values(v, torch.float64)
    if key is not None:
        key = ("rate", name, *key, tuple(mask_shape))
    return _memo(key, lambda: _classify(vd, name, mask_shape, lo, hi))


def _classify(vd: np.ndarray, name: str, mask_shape: torch.Size, lo: float, hi: float):
    if vd.size and not bool(np.all((vd >= lo) & (vd <= hi) & np.isfinite(vd))):
        raise ValueError(
            f"{name} must be finite and lie in [{lo}, {hi}], got values from "
            f"{np.nanmin(vd)} to {np.nanmax(vd)}"
        )
    shape, ms = tuple(vd.shape), tuple(mask_shape)
    padded = (1,) * (len(ms) - len(shape)) + shape
    if len(shape) > len(ms) or any(d not in (1, m) for d, m in zip(padded, ms)):
        raise ValueError(f"{name} of shape {shape} must broadcast to the mask shape {ms}")
    if vd.size == 1:
        return "scalar", float(vd.reshape(()))
    if padded[0] == ms[0] and all(d == 1 for d in padded[1:]):
        return "rows", vd.reshape(-1)  # (K,)
    return "general", vd


def _member_seeds(member_seeds, x: torch.Tensor) -> np.ndarray | None:
    """``premix(member_seeds)``: shape (K,) uint64, memoized by value; None if absent."""
    if member_seeds is None:
        return None
    if (
        not isinstance(member_seeds, torch.Tensor)
        or member_seeds.is_floating_point()
        or (member_seeds.dtype == torch.bool or member_seeds.is_complex())
    ):
        raise TypeError(
            f"member_seeds must be an integer tensor of shape (K,), got {member_seeds!r}"
        )
    if x.dim() == 0 or member_seeds.shape != (x.shape[0],):
        raise ValueError(
            f"member_seeds must have shape (K,) = ({x.shape[0] if x.dim() else '?'},) to match "
            f"x's member axis (dim 0), got shape {tuple(member_seeds.shape)} for x of shape "
            f"{tuple(x.shape)}"
        )
    seeds, key = _values(member_seeds, torch.int64)
    return _memo(key and ("seeds", *key), lambda: _hash.premix(seeds))


def _mask_shape(x: torch.Tensor, broadcast_dims: Sequence[int], members: bool) -> torch.Size:
    if isinstance(broadcast_dims, int):
        broadcast_dims = (broadcast_dims,)
    shape = list(x.shape)
    for d in broadcast_dims:
        if isinstance(d, bool) or not isinstance(d, int) or not -x.dim() <= d < x.dim():
            raise ValueError(
                f"broadcast_dims must hold dims of x (ndim {x.dim()}), got {tuple(broadcast_dims)}"
            )
        if members and d % x.dim() == 0:
            raise ValueError(
                "broadcast_dims cannot contain dim 0 (the member axis) with member_seeds"
            )
        shape[d] = 1
    return torch.Size(shape)


# ---------------------------------------------------------------- plans


class _Plan:
    """How to regenerate one call's multiplier: ``y = x * M``, M from (seed, offset).

    ``fused``: M has x's shape and is a per-row constant where kept, so one kernel pass
    computes x * M. Otherwise M (mask shape, broadcast over x) is built, then multiplied.
    x * M is formed in ``_hash.mult_dtype`` (float32, or float64 for float64 x and where
    float32 cannot hold M) and rounded once to x's dtype; the Triton kernels form it in
    x's dtype and run only where M fits that dtype (else the torch backend runs).
    """

    def __init__(self, kind, backend, p, mask_shape, x_shape, general=None):
        self.kind, self.backend, self.p = kind, backend, p
        self.mask_shape, self.x_shape = mask_shape, x_shape
        self.general = general  # (thr tensor, mult tensor) / sigma tensor, rate's shape
        self.fused = general is None and mask_shape == x_shape
        self._bound: float | None = None

    @property
    def bound(self) -> float:
        """An upper bound on |M|: the largest kept multiplier, or 1 + 5.8 max(sigma)."""
        if self._bound is None:
            g = self.general  # CPU float64 tensors made from numpy arrays, or None
            if g is None:
                values = self.p.mult
            else:
                values = (g[1] if self.kind == "bernoulli" else g).numpy()
            top = _hash.largest(values)
            self._bound = top if self.kind == "bernoulli" else 1.0 + _hash.Z_MAX * top
        return self._bound

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        if self.fused:
            if not t.is_contiguous():
                return _in_layout_of(t, self.apply(t.contiguous()))
            t2 = t.view(self.p.rows, self.p.n)  # (R, n)
            return self._rows(t2).view(t.shape)
        w = _hash.mult_dtype(t.dtype, self.bound)
        m = self.multiplier(w, t.device)  # mask shape, broadcast over x
        return t * m if w == t.dtype else (t.to(w) * m).to(t.dtype)

    def _rows(self, t2: torch.Tensor) -> torch.Tensor:
        p, b = self.p, self.backend
        if b == "numba" and t2.dtype == torch.float32 and not self.bound <= _hash.F32_MAX:
            b = "torch"  # M beyond float32 (keep < ~2.9e-39): formed in float64 there
        if b == "triton" and not self.bound <= torch.finfo(t2.dtype).max:
            b = "torch"  # triton forms x * M in x's dtype, where M would be inf
        mult = np.asarray(p.mult, dtype=np.float64)
        if b == "numba":
            out = _numba.empty(t2.shape, t2.dtype)
            xa, oa = t2.detach().view(-1).numpy(), out.view(-1).numpy()
            m = mult.astype(xa.dtype)
            if self.kind == "bernoulli":
                _numba.run(
                    _numba.bernoulli, p.rows, p.n, torch.get_num_threads(),
                    xa, oa, p.base, p.k0, p.k1, p.thr, m, p.n,
                )  # fmt: skip
            else:
                _numba.run(
                    _numba.gaussian, p.rows, p.n, torch.get_num_threads(),
                    xa, oa, p.base, p.k0, p.k1, p.g0, p.g1, m, p.n,
                )  # fmt: skip
            return out
        if b == "triton":
            fn = (
                _triton_backend().bernoulli
                if self.kind == "bernoulli"
                else _triton_backend().gaussian
            )
            return fn(t2, p)
        fn = _hash.bernoulli_torch if self.kind == "bernoulli" else _hash.gaussian_torch
        return fn(t2, p)

    def multiplier(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """M of the mask shape in ``dtype`` (float32/float64 from :meth:`apply`):
        {0, scale} (Bernoulli) or 1 + sigma z (Gaussian)."""
        p = self.p
        if self.general is None:  # per-row rates, only the shape is broadcast
            if self.backend == "numba" and dtype not in _NUMBA_DTYPES:
                plan = _Plan(self.kind, "torch", p, self.mask_shape, self.mask_shape)
            else:
                plan = _Plan(self.kind, self.backend, p, self.mask_shape, self.mask_shape)
            return plan.apply(torch.ones(self.mask_shape, dtype=dtype, device=device))
        if self.kind == "bernoulli":
            thr, mult = self.general
            u = self._bits(device).view(self.mask_shape)  # 24-bit integers, mask shape
            kept = u < thr.to(device)
            return torch.where(
                kept, mult.to(device, dtype), torch.zeros((), dtype=dtype, device=device)
            )
        z = self._normal(device).view(self.mask_shape).to(dtype)
        return 1 + self.general.to(device, dtype) * z

    def _bits(self, device: torch.device) -> torch.Tensor:
        p = self.p
        if self.backend == "numba":
            out = _numba.empty((p.rows, p.n), torch.int32)
            _numba.run(
                _numba.bits, p.rows, p.n, torch.get_num_threads(),
                out.view(-1).numpy(), p.base, p.k0, p.k1, p.n,
            )  # fmt: skip
            return out
        if self.backend == "triton":
            return _triton_backend().bits(p, device)
        return _hash.bits24(p.base, p.n, p.k0, p.k1, device)

    def _normal(self, device: torch.device) -> torch.Tensor:
        p = self.p
        if self.backend == "numba":
            out = _numba.empty((p.rows, p.n), torch.float32)
            _numba.run(
                _numba.normal, p.rows, p.n, torch.get_num_threads(),
                out.view(-1).numpy(), p.base, p.k0, p.k1, p.g0, p.g1, p.n,
            )  # fmt: skip
            return out
        if self.backend == "triton":
            return _triton_backend().normal(p, device)
        return _hash.normal_torch(p, device)


def _layout(
    mask_shape: torch.Size,
    premixed: np.ndarray | None,
    seed: int,
    offset: int,
    per_row: bool,
    stream: int = 0,
):
    """Rows, row length, row counters and keys for a mask of ``mask_shape``."""
    numel = math.prod(mask_shape)
    if premixed is not None:
        rows = mask_shape[0]
        n = numel // rows if rows else 0
        k0, k1 = _hash.keys(None, offset, stream, premixed=premixed)
        return rows, n, np.zeros(rows, dtype=np.int64), k0, k1
    k0, k1 = _hash.keys(seed, offset, stream)
    if per_row:
        rows = mask_shape[0]
        n = numel // rows if rows else 0
        base = np.arange(rows, dtype=np.int64) * n  # global counters, row by row
        return rows, n, base, np.repeat(k0, rows), np.repeat(k1, rows)
    return 1, numel, np.zeros(1, dtype=np.int64), k0, k1


def _bernoulli_rates(form: str, k, rows: int, scaling: str):
    """(thr (R,) uint32, mult (R,) float64, general) for the rate form of :func:`_rate`."""
    if form == "general":
        kt = torch.from_numpy(k).to(torch.float32).to(torch.float64)  # keep's shape
        thr = torch.ceil(kt * 2.0**24).to(torch.int32)
        mult = torch.from_numpy(_hash.scales(kt.numpy(), scaling))
        return None, None, (thr, mult)
    kr = np.full(rows, k) if form == "scalar" else np.asarray(k)
    return _hash.thresholds(kr).astype(np.uint32), _hash.scales(kr, scaling), None


_ROW0 = np.zeros(1, dtype=np.int64)  # base of a one-row plan (read only by the kernels)


def _np_dtype(dtype: torch.dtype) -> type:
    return np.float32 if dtype == torch.float32 else np.float64


def _flat_rates(keep: float, scaling: str, dtype: torch.dtype):
    """(thr (1,) uint32, mult (1,) float64, m (1,) of ``dtype``) of a scalar keep, as
    :func:`_bernoulli_rates` and :meth:`_Plan._rows` form them; None where the numba
    loop cannot run (float32 x with a multiplier beyond float32), memoized."""

    def compute():
        thr, mult, _ = _bernoulli_rates("scalar", keep, 1, scaling)
        if dtype != torch.float64 and _hash.largest(mult) > _hash.F32_MAX:
            return (None,)
        return ((thr, mult, np.asarray(mult, dtype=np.float64).astype(_np_dtype(dtype))),)

    return _memo(("flat-rates", keep, scaling, dtype), compute)[0]  # (x,): None is a value


def _in_layout_of(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` (t's shape, C-contiguous) copied into t's memory layout, the one torch's own
    element-wise ops give their output (``empty_like``'s ``preserve_format``: the strides of
    a permuted dense t such as channels_last, else its suggested memory format). The
    kernels work on C-order memory, whose counters are C-order indices whatever the
    layout; only non-contiguous inputs pay this copy."""
    out = torch.empty_like(t, dtype=y.dtype)
    return y if out.is_contiguous() else out.copy_(y)


def _numpy_io(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A contiguous CPU ``t`` as a NumPy array (its memory, detached) and a fresh output
    of its shape as (array, tensor): below ``_pool.MIN_BYTES`` a NumPy array wrapped as a
    tensor (~6 us less than ``torch.empty`` + ``.numpy()`` on the dev VM), else
    :func:`_numba.empty` (pooled)."""
    xa = t.numpy(force=True)
    if xa.nbytes < _pool.MIN_BYTES:
        oa = np.empty(xa.shape, xa.dtype)
        return xa, oa, torch.from_numpy(oa)
    out = _numba.empty(t.shape, t.dtype)
    return xa, out.numpy(), out


class _FlatPlan:
    """The :class:`_Plan` of a one-seed call with a float rate and no broadcast dims on a
    float32/float64 CPU tensor under the numba backend, cut to what its ``apply`` needs:
    one row of ``n`` counters from 0 and the kernel's (1,) arrays (``args``: row base,
    keys, then threshold and multiplier, or angle-stream keys and sigma, in x's dtype).
    ``apply`` makes the kernel call that :meth:`_Plan._rows` makes for it (same arrays,
    same bits) without its per-call views, casts and checks; a tensor of another dtype
    or device goes to the general plan. An output below ``_pool.MIN_BYTES`` is a NumPy
    array wrapped as a tensor (as pooled outputs are): ~6 us less than ``torch.empty`` +
    ``.numpy()`` on this VM."""

    __slots__ = ("args", "dtype", "kernel", "kind", "n", "p", "shape")

    def __init__(self, kind: str, x: torch.Tensor, p: Params, m: np.ndarray) -> None:
        self.kind, self.p, self.dtype, self.shape, self.n = kind, p, x.dtype, x.shape, p.n
        if kind == "bernoulli":
            self.kernel, self.args = _numba.bernoulli, (p.base, p.k0, p.k1, p.thr, m)
        else:
            self.kernel, self.args = _numba.gaussian, (p.base, p.k0, p.k1, p.g0, p.g1, m)

    def general(self) -> _Plan:
        return _Plan(self.kind, "numba", self.p, self.shape, self.shape)

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype is not self.dtype or not t.is_cpu or t.numel() != self.n:
            return self.general().apply(t)
        if not t.is_contiguous():
            return _in_layout_of(t, self.apply(t.contiguous()))
        xa, oa, out = _numpy_io(t)
        n = self.n
        tasks = (n + _numba.CHUNK - 1) // _numba.CHUNK  # one row of n elements
        _numba.run_tasks(
            self.kernel, tasks, n, torch.get_num_threads(), xa.ravel(), oa.ravel(), *self.args, n
        )
        return out


def _flat_plan(x: torch.Tensor, keep: float, seed: int, offset: int, scaling: str):
    """The :class:`_FlatPlan` of ``bernoulli(x, keep, seed, offset, scaling=scaling)``,
    unchecked: x a float32/float64 CPU tensor, keep a float in [0, 1], seed and offset
    ints, scaling valid, numba present. None where float32 cannot hold the multiplier."""
    rates = _flat_rates(keep, scaling, x.dtype)
    if rates is None:
        return None
    thr, mult, m = rates
    k0, k1 = _hash.keys(seed, offset)
    return _FlatPlan("bernoulli", x, Params(1, x.numel(), _ROW0, k0, k1, thr=thr, mult=mult), m)


def _flat_gaussian(x, sigma, seed, offset, backend, member_seeds):
    """:func:`gaussian`'s :class:`_FlatPlan` for the common call (one seed, a float sigma,
    a float32/float64 CPU x, the numba backend), else None (the general path), as
    :func:`_flat_bernoulli`: the same keys, sigma array and kernel, so the same bits."""
    if not (
        member_seeds is None
        and type(sigma) is float
        and type(seed) is int
        and type(offset) is int
        and backend in _NUMBA_BACKENDS
        and type(x) is torch.Tensor
        and x.is_cpu
        and (x.dtype is torch.float32 or x.dtype is torch.float64)
        and 0.0 <= sigma < math.inf
        and _numba is not None
    ):
        return None

    def compute():
        mult = np.full(1, sigma)  # as gaussian's scalar form
        if x.dtype != torch.float64 and 1.0 + _hash.Z_MAX * _hash.largest(mult) > _hash.F32_MAX:
            return (None,)
        return ((mult, np.asarray(mult, dtype=np.float64).astype(_np_dtype(x.dtype))),)

    rates = _memo(("flat-sigma", sigma, x.dtype), compute)[0]  # (x,): None is a value
    if rates is None:
        return None
    k0, k1 = _hash.keys(seed, offset)
    g0, g1 = _hash.keys(seed, offset, _hash.GAUSS_KEY)
    p = Params(1, x.numel(), _ROW0, k0, k1, mult=rates[0], g0=g0, g1=g1)
    return _FlatPlan("gaussian", x, p, rates[1])


def _flat_bernoulli(x, keep, seed, offset, scaling, backend, broadcast_dims, member_seeds):
    """The plan of the common call (one seed, a float keep, no broadcast dims, a float32 /
    float64 CPU x, the numba backend), or None for every other call (which the general
    path then checks and runs). Same keys, threshold, multiplier and kernel as the general
    path, so the same bits; it skips the general checks and conversions, a fixed
    ~30 us that set the speed of small tensors (docs/performance.md, "Small tensors")."""
    if not (
        member_seeds is None
        and type(keep) is float
        and type(seed) is int
        and type(offset) is int
        and type(broadcast_dims) is tuple
        and not broadcast_dims
        and backend in _NUMBA_BACKENDS
        and type(x) is torch.Tensor
        and x.is_cpu
        and (x.dtype is torch.float32 or x.dtype is torch.float64)
        and scaling in SCALINGS
        and 0.0 <= keep <= 1.0
        and _numba is not None
    ):
        return None
    return _flat_plan(x, keep, seed, offset, scaling)


def _dropout(x: torch.Tensor, keep: float, seed: int, scaling: str) -> torch.Tensor | None:
    """``bernoulli(x, keep, seed, scaling=scaling)`` for :func:`droplab.functional.dropout`,
    which has checked x (a float32/float64 CPU tensor), keep (a float in (0, 1)), seed (an
    int) and scaling; None where the short path does not apply (no numba, or a
    multiplier beyond float32): then call :func:`bernoulli`."""
    if _numba is None:
        return None
    plan = _flat_plan(x, keep, seed, 0, scaling)
    return None if plan is None else _run(x, plan)


class _Regenerated(torch.autograd.Function):
    """y = x * M(plan); backward g * M(plan) regenerates M from the plan's keys.

    The plan holds only numpy key/threshold arrays (a few bytes per row), so autograd
    saves no tensor for this op. Backward calls the op again, so it is twice
    differentiable.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: _Plan) -> torch.Tensor:
        ctx.plan = plan
        return plan.apply(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # grad * M through the op again where a graph is built (create_graph=True and grad
        # requiring grad), else directly: the same values either way
        return _run(grad, ctx.plan), None


def _function_apply():
    """``_Regenerated.apply`` without its Python wrapper, or None where this torch lacks
    the pieces. ``torch.autograd.Function.apply``, for a Function without
    ``setup_context`` and outside functorch transforms (vmap, grad, ...), only unwraps
    dead functorch wrappers and calls the C ``_FunctionBase.apply``; doing the same here
    saves ~6 us a call (docs/performance.md, "Small tensors")."""
    try:
        from torch._C._functorch import unwrap_if_dead

        apply = torch._C._FunctionBase.__dict__["apply"].__get__(None, _Regenerated)
        active = torch._C._are_functorch_transforms_active
    except (AttributeError, ImportError, KeyError, TypeError):  # pragma: no cover
        return None
    if _Regenerated.setup_context is not torch.autograd.Function.setup_context:
        return None  # pragma: no cover - Function.apply would bind default arguments

    def run(x: torch.Tensor, plan) -> torch.Tensor:
        if active():
            return _Regenerated.apply(x, plan)
        return apply(unwrap_if_dead(x), plan)

    return run


_APPLY = _function_apply() or _Regenerated.apply


def _run(x: torch.Tensor, plan: _Plan) -> torch.Tensor:
    if x.requires_grad and torch.is_grad_enabled():
        return _APPLY(x, plan)
    return plan.apply(x)


# ---------------------------------------------------------------- public ops


def bernoulli(
    x: torch.Tensor,
    keep: float | torch.Tensor,
    seed: int,
    offset: int = 0,
    *,
    scaling: str = "inverted",
    broadcast_dims: Sequence[int] = (),
    member_seeds: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Bernoulli dropout with a counter-based mask: ``y = x * m * s``.

    ``m_i = 1[u_i < keep]`` with ``u_i = hash(seed, offset, i) >> 8`` scaled to [0, 1)
    (24 bits; exact keep probability ``ceil(keep 2^24) / 2^24``), and ``s = 1 / keep``
    for ``scaling="inverted"`` (so E[y] = x) or ``s = 1`` for ``"classic"`` (scale by
    keep at evaluation instead). Elements with keep = 0 are 0 (never NaN). ``x * m * s`` is
    formed in float32 (float64 for float64 x and for ``s`` beyond float32, keep < ~2.9e-39)
    and rounded once to x's dtype: kept zeros stay 0 even where ``s`` exceeds x's dtype
    (float16: keep < ~1.5e-5), and a kept x is +-inf only where ``x * s`` is beyond it.

    Args:
        x: input of any shape (..), any floating dtype and device.
        keep: P(keep), a float in [0, 1] or a tensor broadcastable to the mask shape;
            the fast per-member form is (K, 1, ..., 1) for x of shape (K, ...).
        seed: any int (taken mod 2^64). Ignored when ``member_seeds`` is given.
        offset: any int (mod 2^64), hashed into the key together with the seed; distinct
            offsets give independent masks (use e.g. the step and layer index).
        scaling: "inverted" or "classic".
        broadcast_dims: dims along which one mask value is shared (mask shape has 1
            there), as Flax's ``Dropout(broadcast_dims=...)``.
        member_seeds: optional integer tensor of shape (K,) with K = x.shape[0]: member k
            uses the key of (member_seeds[k], offset) and the C-order index of the element
            within x[k] (within the mask of x[k] under broadcast_dims). Member k's mask is
            then the same whether it is computed alone (K = 1) or in any batch.
        backend: "auto" / "fast" (best available), "numba", "triton" or "torch".

    Returns:
        A tensor of x's shape and dtype. Without ``member_seeds`` the counter of an
        element is its C-order index in the mask shape, whatever x's memory layout.

    Shape:
        x: (*), keep: () or broadcastable to the mask shape, output: (*).
    """
    plan = _flat_bernoulli(x, keep, seed, offset, scaling, backend, broadcast_dims, member_seeds)
    if plan is not None:
        return _run(x, plan)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    seed, offset = _as_int(seed, "seed"), _as_int(offset, "offset")
    seeds = _member_seeds(member_seeds, x)
    mask_shape = _mask_shape(x, broadcast_dims, seeds is not None)
    backend = _resolve(backend, x)
    form, k = _rate(keep, "keep", mask_shape, 0.0, 1.0)
    rows, n, base, k0, k1 = _layout(mask_shape, seeds, seed, offset, form == "rows")
    key = None if form == "general" else (form, k if form == "scalar" else k.tobytes(), rows)
    thr, mult, general = _memo(
        key and ("bern", *key, scaling), lambda: _bernoulli_rates(form, k, rows, scaling)
    )
    p = Params(rows, n, base, k0, k1, thr=thr, mult=mult)
    return _run(x, _Plan("bernoulli", backend, p, mask_shape, x.shape, general))


def gaussian(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    seed: int,
    offset: int = 0,
    *,
    member_seeds: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Multiplicative Gaussian noise from the counter stream: ``y = x * (1 + sigma z)``.

    ``z_i`` is a standard normal by Box-Muller from two hash streams of (seed, offset,
    i): ``z = sqrt(-2 ln u1) cos(2 pi u2)`` with 24-bit uniforms (|z| <= 5.77). Gaussian
    dropout of rate p uses ``sigma = sqrt(p / (1 - p))`` (Srivastava et al., JMLR 2014).
    Arguments as :func:`bernoulli`; ``sigma`` >= 0 is a float or a tensor broadcastable to
    x (per member: (K, 1, ..., 1)).

    Shape:
        x: (*), output: (*).
    """
    plan = _flat_gaussian(x, sigma, seed, offset, backend, member_seeds)
    if plan is not None:
        return _run(x, plan)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    seed, offset = _as_int(seed, "seed"), _as_int(offset, "offset")
    seeds = _member_seeds(member_seeds, x)
    backend = _resolve(backend, x)
    form, s = _rate(sigma, "sigma", x.shape, 0.0, math.inf)
    rows, n, base, k0, k1 = _layout(x.shape, seeds, seed, offset, form == "rows")
    _, _, _, g0, g1 = _layout(x.shape, seeds, seed, offset, form == "rows", _hash.GAUSS_KEY)
    general = None
    if form == "general":
        general, mult = torch.from_numpy(s), None
    else:
        mult = np.full(rows, s) if form == "scalar" else np.asarray(s)
    p = Params(rows, n, base, k0, k1, mult=mult, g0=g0, g1=g1)
    return _run(x, _Plan("gaussian", backend, p, x.shape, x.shape, general))


class _FixedCountPlan:
    """How to regenerate one :func:`fixed_count` call's multiplier (``apply`` as in
    :class:`_Plan`): rows of n units, per-row counters and keys, numpy arrays only."""

    def __init__(self, backend: str, p: Params, n_drop: int, mult: float) -> None:
        self.backend, self.p, self.n_drop, self.mult = backend, p, n_drop, mult

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        if not t.is_contiguous():
            return _in_layout_of(t, self.apply(t.contiguous()))
        p = self.p
        elements = p.rows * p.n
        if self.backend != "numba" or elements == 0:
            t2 = t.view(p.rows, p.n)  # (R, n)
            return _hash.fixed_count_torch(t2, p, self.n_drop, self.mult).view(t.shape)
        if t.dtype not in _NUMBA_DTYPES:  # float16/bfloat16: x * M in float32, rounded once
            return self.apply(t.float()).to(t.dtype)
        xa, oa, out = _numpy_io(t)
        per_task = max(1, _numba.CHUNK // p.n)  # rows per task: ~CHUNK elements each
        tasks = -(-p.rows // per_task)
        args = (
            xa.ravel(), oa.ravel(), p.base, p.k0, p.k1, self.n_drop, xa.dtype.type(self.mult),
            p.n, p.rows, per_task, *_numba.fixed_count_window(p.n, self.n_drop),
        )  # fmt: skip
        _numba.run_tasks(_numba.fixed_count, tasks, elements, torch.get_num_threads(), *args)
        return out


def fixed_count(
    x: torch.Tensor,
    n_drop: int,
    seed: int,
    offset: int = 0,
    *,
    scaling: str = "inverted",
    member_seeds: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Fixed-count dropout with counter-based keys: every row drops exactly ``n_drop`` units.

    Along the last dim (length n), each row (each index of the leading dims) drops the
    ``n_drop`` units of smallest key ``key_j = ((h_j >> 8) << 32) | j``, where ``h_j`` is
    the 32-bit counter hash of the element (as in :func:`bernoulli`: keys of
    ``(seed, offset)``, counter = the element's C-order index in x). The 24-bit uniforms
    ``h >> 8`` order the units and the unit index breaks their ties, so the dropped set
    is a uniformly random ``n_drop``-subset of the row (up to the hash's quality). Kept
    units are multiplied by ``n / (n - n_drop)`` (``scaling="inverted"``, so E[y] = x)
    or 1 (``"classic"``): ``y = x * M``. The backward regenerates M from (seed, offset)
    and saves no tensor. ``x * M`` is formed in float32 (float64 for float64 x) and
    rounded once to x's dtype. ``n_drop = 0`` gives x, ``n_drop = n`` zeros (never NaN).

    Backends: ``"numba"`` (CPU float32/float64, and under ``"auto"`` float16/bfloat16
    through float32 copies: one task per block of rows; per row the keys, a quickselect of
    the ``n_drop``-th smallest, then ``x * M``) and ``"torch"``
    (the same keys in torch integer ops and ``kthvalue``; any device and dtype),
    bit-identical to each other. There is no Triton fixed-count kernel: on CUDA
    ``"auto"`` runs the torch backend, and ``backend="triton"`` is an error.

    Args:
        x: floating-point input of shape (*, n), at least 1-d.
        n_drop: units dropped per row, an int in [0, n].
        seed: any int (mod 2^64); ignored when ``member_seeds`` is given.
        offset: any int (mod 2^64), hashed into the key with the seed.
        scaling: "inverted" or "classic".
        member_seeds: optional integer tensor of shape (K,), K = x.shape[0], x at least
            2-d: member k uses the key of (member_seeds[k], offset) and counters = the
            C-order index within x[k], so its mask is the same alone (K = 1) or in a batch.
        backend: "auto" / "fast", "numba" or "torch".

    Shape:
        x: (*, n), output: (*, n), x's dtype.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor, got "
            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    if x.dim() == 0:
        raise ValueError("x must have shape (*, n) with at least one dim, got a 0-d tensor")
    n = x.shape[-1]
    n_drop = _as_int(n_drop, "n_drop")
    if not 0 <= n_drop <= n:
        raise ValueError(f"n_drop must be an int in [0, n] = [0, {n}], got {n_drop}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    seed, offset = _as_int(seed, "seed"), _as_int(offset, "offset")
    if backend == "triton":
        raise ValueError(
            "backend='triton' has no fixed-count kernel; use 'auto' or 'torch' (on CUDA the "
            "torch backend runs)"
        )
    if member_seeds is not None and x.dim() < 2:
        raise ValueError(
            f"member_seeds needs x of shape (K, ..., n) with at least 2 dims, got shape "
            f"{tuple(x.shape)}"
        )
    seeds = _member_seeds(member_seeds, x)
    auto = backend in ("auto", "fast")
    backend = _resolve(backend, x)
    if backend == "triton":
        backend = "torch"  # no Triton fixed-count kernel: the torch reference on CUDA
    if auto and backend == "torch" and x.device.type == "cpu" and _numba is not None:
        backend = "numba"  # float16/bfloat16 on CPU: the numba kernel on float32 copies
    rows = x.numel() // n if n else 0
    if seeds is not None:
        k = x.shape[0]
        per_member = rows // k if k else 0  # rows of one member x[k]
        k0, k1 = _hash.keys(None, offset, premixed=seeds)  # (K,)
        base = np.tile(np.arange(per_member, dtype=np.int64) * n, k)  # (R,)
        k0, k1 = np.repeat(k0, per_member), np.repeat(k1, per_member)
    else:
        k0, k1 = _hash.keys(seed, offset)
        base = _memo(  # (R,) global counters, row by row (read only by the kernels)
            ("fixed-count-base", rows, n), lambda: np.arange(rows, dtype=np.int64) * n
        )
        k0, k1 = np.repeat(k0, rows), np.repeat(k1, rows)
    if n_drop == n:
        mult = 0.0  # every unit dropped
    else:
        mult = n / (n - n_drop) if scaling == "inverted" else 1.0
    p = Params(rows, n, base, k0, k1)
    return _run(x, _FixedCountPlan(backend, p, n_drop, mult))


class RowBernoulli:
    """Bernoulli masks with one keep probability per member row, set up once and applied
    at many offsets: the batched trainer's ReLU + dropout, fused into one pass.

    ``relu(z, offset)`` equals ``bernoulli(torch.relu(z), keep, 0, offset, scaling=...,
    member_seeds=member_seeds)`` bit for bit (same keys, thresholds and multipliers), in
    one pass over ``z`` instead of two and without the per-call argument checks;
    ``backward(g, y)`` is its gradient read off the output, ``g * s_k`` where ``y > 0``
    and 0 elsewhere (``y = relu(z) m s_k`` is positive exactly where ``z > 0`` and the
    unit is kept, as ``s_k > 0``).

    Args:
        keep: P(keep) per member, K floats in [0, 1].
        member_seeds: (K,) integer tensor, as in :func:`bernoulli`.
        scaling: "inverted" (``s_k = 1 / keep_k``) or "classic" (``s_k = 1``).

    ``supports(t)`` says whether the fused numba path can run on ``t`` (CPU, float32 or
    float64, numba installed); callers fall back to :func:`bernoulli` otherwise.
    """

    def __init__(self, keep: Sequence[float], member_seeds: torch.Tensor, *, scaling: str) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        k = np.asarray(keep, dtype=np.float64)
        if k.ndim != 1 or not bool(np.all((k >= 0) & (k <= 1))):
            raise ValueError(f"keep must be K floats in [0, 1], got {k.tolist()}")
        if member_seeds.shape != k.shape:
            raise ValueError(
                f"member_seeds must have shape ({k.size},) like keep, got "
                f"{tuple(member_seeds.shape)}"
            )
        self.K = k.size
        self.premixed = _hash.premix(member_seeds.detach().cpu().numpy())
        self.thr = _hash.thresholds(k).astype(np.uint32)
        self.mult = _hash.scales(k, scaling)
        self._top = _hash.largest(self.mult)  # the largest multiplier
        self._mult: dict = {}  # NumPy multipliers per np.dtype, tensors per torch.dtype
        self._base = np.zeros(self.K, dtype=np.int64)  # member rows count from 0

    @staticmethod
    def supports(t: torch.Tensor) -> bool:
        return _numba is not None and t.device.type == "cpu" and t.dtype in _NUMBA_DTYPES

    def _m(self, dtype: np.dtype) -> np.ndarray:
        if dtype not in self._mult:
            self._mult[dtype] = self.mult.astype(dtype)
        return self._mult[dtype]

    @staticmethod
    def _out(out: torch.Tensor | None, src: torch.Tensor) -> torch.Tensor:
        """The (K, n) destination holding ``src``'s values, for an in-place kernel: ``out``
        itself when it is ``src``'s memory, else ``out`` (checked) or a new buffer with
        ``src`` copied in."""
        if out is None:
            return _numba.empty(src.shape, src.dtype).copy_(src)
        if out.dtype != src.dtype or out.numel() != src.numel() or not out.is_contiguous():
            raise ValueError(
                f"out must be a contiguous {src.dtype} tensor of {src.numel()} elements, "
                f"got {out.dtype} {tuple(out.shape)} (contiguous={out.is_contiguous()})"
            )
        dst = out.detach().view(src.shape)
        return dst if dst.data_ptr() == src.data_ptr() else dst.copy_(src)

    def multipliers(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The kept units' factors ``s_k`` as a (K,) tensor of ``dtype``, exactly the values
        the kernels multiply by (so ``torch.where(y > 0, g * s, 0)`` equals
        :meth:`backward` bit for bit), or None where ``dtype`` cannot hold them (then only
        :meth:`backward` is exact)."""
        if dtype not in _NUMBA_DTYPES or _hash.mult_dtype(dtype, self._top) != dtype:
            return None
        if dtype not in self._mult:  # torch dtypes beside _m's NumPy ones
            self._mult[dtype] = torch.from_numpy(self._m(np.dtype(_np_dtype(dtype))))
        return self._mult[dtype]

    def _wide(self, t: torch.Tensor) -> bool:
        """Whether t's dtype cannot hold a multiplier (float32, keep < ~2.9e-39): the numba
        loops would get inf and give NaN, so a float64 torch path runs instead."""
        return _hash.mult_dtype(t.dtype, self._top) != t.dtype

    def relu(
        self, z: torch.Tensor, offset: int, *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``dropout(relu(z))`` of member rows; z (K, ...) -> same shape.

        ``out``: a contiguous tensor of z's shape and dtype to write into; ``out=z``
        (contiguous) works in place. The kernel always works in place (a copy of z goes
        into ``out`` or a new buffer first): writing into z, just produced by a GEMM and
        still in cache, instead of a fresh buffer halves the memory traffic of the call.
        """
        z2 = z.detach().contiguous().view(self.K, -1)  # (K, n)
        n = z2.shape[1]
        k0, k1 = _hash.keys(None, offset, premixed=self.premixed)
        base = self._base
        if self._wide(z2):
            p = Params(self.K, n, base, k0, k1, thr=self.thr, mult=self.mult)
            return _hash.bernoulli_torch(torch.relu(z2), p).view(z.shape)
        out = self._out(out, z2)  # z's values, in z itself (in place) or a copy
        oa = out.view(-1).numpy()
        _numba.run(
            _numba.relu_bernoulli_inplace, self.K, n, torch.get_num_threads(),
            oa, base, k0, k1, self.thr, self._m(oa.dtype), n,
        )  # fmt: skip
        return out.view(z.shape)

    def backward(
        self, g: torch.Tensor, y: torch.Tensor, *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``g * s_k`` where ``y > 0``, else 0; g, y (K, ...) -> same shape (``out`` as in
        :meth:`relu`, e.g. ``out=g``)."""
        g2 = g.detach().contiguous().view(self.K, -1)  # (K, n)
        y2 = y.detach().contiguous().view(self.K, -1)
        n = g2.shape[1]
        if self._wide(g2):
            m = torch.from_numpy(self.mult)[:, None]  # (K, 1) float64
            zero = torch.zeros((), dtype=torch.float64)
            return torch.where(y2 > 0, g2.double() * m, zero).to(g.dtype).view(g.shape)
        out = self._out(out, g2)  # g's values, in g itself (in place) or a copy
        oa = out.view(-1).numpy()
        _numba.run(
            _numba.positive_scale_inplace, self.K, n, torch.get_num_threads(),
            oa, y2.view(-1).numpy(), self._m(oa.dtype), n,
        )  # fmt: skip
        return out.view(g.shape)
