"""Reused output buffers for large CPU kernel outputs.

glibc serves every allocation above 32 MiB (and, after trimming, many smaller ones) with a
fresh ``mmap`` and unmaps it on free, so each new large output is first touched page by
page: on the 2-core VM of this project, ``torch.empty(16M).fill_(1)`` takes 64 ms against
3.6 ms when the memory is reused (``benchmarks/bench_dropout.py`` prints the table). A
dropout kernel's output is a fresh tensor on every call, so page faults, not the hash,
would set its speed.

This pool hands out NumPy buffers wrapped as tensors; when the last tensor (or view) of a
buffer dies, a ``weakref.finalize`` puts the buffer back, and the next request of the same
byte size reuses it without a page fault. Only buffers of at least ``MIN_BYTES`` are
pooled; at most ``limit_bytes()`` of idle buffers are kept (oldest dropped first), set by
``DROPLAB_KERNEL_POOL_MB`` (0 turns the pool off). A buffer is only ever handed out again
after every tensor that used it is gone, so reuse can never alias live data.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

__all__ = ["MIN_BYTES", "cached_bytes", "clear", "empty", "limit_bytes"]

MIN_BYTES = 1 << 20  # smaller outputs come from torch's allocator (glibc reuses those)
_DEFAULT_LIMIT_MB = 512

_NP = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.int32: np.int32,
    torch.int64: np.int64,
}

_lock = threading.Lock()
_idle: OrderedDict[int, list[np.ndarray]] = OrderedDict()  # nbytes -> idle buffers
_idle_bytes = 0
_pid = os.getpid()


def limit_bytes() -> int:
    """Most bytes of idle buffers kept (``DROPLAB_KERNEL_POOL_MB``, default 512 MiB)."""
    raw = os.environ.get("DROPLAB_KERNEL_POOL_MB", "")
    try:
        mb = float(raw) if raw.strip() else _DEFAULT_LIMIT_MB
    except ValueError:
        mb = _DEFAULT_LIMIT_MB
    return max(0, int(mb * (1 << 20)))


def cached_bytes() -> int:
    """Bytes of idle buffers held now."""
    return _idle_bytes


def clear() -> None:
    """Release every idle buffer to the system allocator."""
    global _idle_bytes
    with _lock:
        _idle.clear()
        _idle_bytes = 0


def _release(buf: np.ndarray) -> None:
    """Finalizer of a handed-out buffer: keep it for reuse, within the byte limit."""
    global _idle_bytes
    if os.getpid() != _pid:  # a forked child: its copy of the pool is not ours to grow
        return
    limit = limit_bytes()
    with _lock:
        if buf.nbytes > limit:
            return
        _idle.setdefault(buf.nbytes, []).append(buf)
        _idle.move_to_end(buf.nbytes)
        _idle_bytes += buf.nbytes
        while _idle_bytes > limit and _idle:
            size, bufs = next(iter(_idle.items()))
            bufs.pop(0)
            _idle_bytes -= size
            if not bufs:
                del _idle[size]


def _take(nbytes: int) -> np.ndarray | None:
    global _idle_bytes
    with _lock:
        bufs = _idle.get(nbytes)
        if not bufs:
            return None
        buf = bufs.pop()
        _idle_bytes -= nbytes
        if not bufs:
            del _idle[nbytes]
        return buf


def empty(shape: tuple[int, ...], dtype: torch.dtype, advise=None) -> torch.Tensor | None:
    """An uninitialized CPU tensor from the pool, or None when it does not pool this
    request (small, unsupported dtype, or pool off); ``advise(ptr, nbytes)`` is called on a
    newly allocated buffer (e.g. to ask for huge pages)."""
    global _pid
    if dtype not in _NP:
        return None
    npdt = np.dtype(_NP[dtype])
    count = 1
    for s in shape:
        count *= int(s)
    nbytes = count * npdt.itemsize
    if nbytes < MIN_BYTES or limit_bytes() < nbytes:
        return None
    if os.getpid() != _pid:  # after a fork, start an own pool
        clear()
        _pid = os.getpid()
    buf = _take(nbytes)
    if buf is None:
        buf = np.empty(nbytes, dtype=np.uint8)
        if advise is not None:
            advise(buf.ctypes.data, nbytes)
    arr = buf.view(npdt).reshape(shape)
    weakref.finalize(arr, _release, buf).atexit = False
    return torch.from_numpy(arr)
