"""The output buffer pool: reuse only after every tensor of a buffer is gone."""

from __future__ import annotations

import gc

import pytest
import torch

from droplab import kernels
from droplab.kernels import _pool

N = _pool.MIN_BYTES // 4  # float32 elements of the smallest pooled output


@pytest.fixture(autouse=True)
def _fresh_pool(monkeypatch):
    monkeypatch.delenv("DROPLAB_KERNEL_POOL_MB", raising=False)
    _pool.clear()
    yield
    _pool.clear()


def test_buffer_is_reused_after_its_tensors_die():
    a = _pool.empty((N,), torch.float32)
    ptr = a.data_ptr()
    del a
    gc.collect()
    assert _pool.cached_bytes() == N * 4
    b = _pool.empty((N,), torch.float32)
    assert b.data_ptr() == ptr and _pool.cached_bytes() == 0


def test_live_views_keep_the_buffer_out_of_the_pool():
    a = _pool.empty((2, N // 2), torch.float32)
    v = a[1]  # a view outlives the tensor it came from
    ptr = a.data_ptr()
    del a
    gc.collect()
    assert _pool.cached_bytes() == 0
    b = _pool.empty((2, N // 2), torch.float32)
    assert b.data_ptr() != ptr  # never aliases live data
    v.fill_(3.0)
    b.fill_(1.0)
    assert torch.all(v == 3.0)


def test_small_and_unsupported_requests_are_not_pooled():
    assert _pool.empty((N - 1,), torch.float32) is None
    assert _pool.empty((N,), torch.float16) is None


def test_limit_and_off_switch(monkeypatch):
    monkeypatch.setenv("DROPLAB_KERNEL_POOL_MB", "0")
    assert _pool.empty((N,), torch.float32) is None
    monkeypatch.setenv("DROPLAB_KERNEL_POOL_MB", str(1.5 * N * 4 / 2**20))  # room for one
    a, b = _pool.empty((N,), torch.float32), _pool.empty((N,), torch.float32)
    del a, b
    gc.collect()
    assert _pool.cached_bytes() == N * 4  # the second buffer exceeded the limit


@pytest.mark.skipif(kernels._numba is None, reason="numba not installed")
def test_dropout_outputs_from_the_pool_are_correct():
    x = torch.randn(N)
    ys = [kernels.bernoulli(x, 0.5, 3, offset=k) for k in range(3)]  # all alive at once
    ptrs = {y.data_ptr() for y in ys}
    assert len(ptrs) == 3
    want = [kernels.bernoulli(x, 0.5, 3, offset=k, backend="torch") for k in range(3)]
    for y, w in zip(ys, want):
        assert torch.equal(y, w)
    del ys
    gc.collect()
    y = kernels.bernoulli(x, 0.5, 3, offset=1)  # a reused buffer, fully overwritten
    assert y.data_ptr() in ptrs and torch.equal(y, want[1])
