"""Pooled host buffers: reused only when nothing refers to them, aligned, bounded."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core import host_buffers
from curvax.core.host_buffers import ALIGNMENT, BufferPool
from curvax.core.host_buffers import _address as address
from curvax.core.locks import renew_after_fork
from curvax.curve_fit import pad_points

N = 100_000  # 800 kB of float64: above the pooling threshold


def test_a_buffer_is_handed_out_again_only_when_no_view_is_alive() -> None:
    pool = BufferPool(16 * 2**20)
    a = pool.empty((N,), np.float64)
    b = pool.empty((N,), np.float64)
    assert address(a) % ALIGNMENT == 0 and address(b) % ALIGNMENT == 0
    assert address(a) != address(b)  # a is alive
    first = address(a)
    tail = a[N // 2 :]  # a view keeps the buffer in use
    del a
    c = pool.empty((N,), np.float64)
    assert address(c) not in (first, address(b))
    del tail
    d = pool.empty((N,), np.float64)
    assert address(d) == first  # free again: reused, not allocated
    assert pool.nbytes == 3 * (N * 8 + ALIGNMENT)


def test_a_device_array_sharing_the_memory_keeps_it_in_use() -> None:
    pool = BufferPool(16 * 2**20)
    a = pool.empty((N,), np.float64)
    a[:] = np.arange(N)
    first = address(a)
    with jax.enable_x64(True):
        d = jax.device_put(a)
    del a
    b = pool.empty((N,), np.float64)
    b[:] = -1.0
    assert address(b) != first
    np.testing.assert_array_equal(np.asarray(d), np.arange(N))  # not overwritten
    del b


def test_limits_small_requests_and_eviction() -> None:
    pool = BufferPool(2 * (N * 8 + ALIGNMENT))
    small = pool.empty((100,), np.float64)
    assert pool.nbytes == 0 and address(small) % ALIGNMENT == 0  # below 64 KiB: not pooled
    big = pool.empty((4 * N,), np.float64)
    assert pool.nbytes == 0 and big.shape == (4 * N,)  # over the limit: unpooled
    a = pool.empty((N,), np.float64)
    b = pool.empty((N,), np.float64)
    assert pool.nbytes == 2 * (N * 8 + ALIGNMENT)
    c = pool.empty((N,), np.float64)  # full and both in use: c is not kept
    assert pool.nbytes == 2 * (N * 8 + ALIGNMENT)
    del a, c
    d = pool.empty((N // 2,), np.int64)  # another size: the free buffer of a makes room
    assert pool.nbytes == N * 8 + ALIGNMENT + N // 2 * 8 + ALIGNMENT
    del b, d
    off = BufferPool(0)
    e = off.empty((N,), np.float64)
    assert off.nbytes == 0 and address(e) % ALIGNMENT == 0


def test_limit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURVAX_HOST_BUFFER_MB", "1.5")
    assert host_buffers._limit_from_environment() == int(1.5 * 2**20)
    monkeypatch.setenv("CURVAX_HOST_BUFFER_MB", "0")
    assert host_buffers._limit_from_environment() == 0
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv("CURVAX_HOST_BUFFER_MB", bad)
        with pytest.raises(ValueError, match="CURVAX_HOST_BUFFER_MB"):
            host_buffers._limit_from_environment()
    monkeypatch.delenv("CURVAX_HOST_BUFFER_MB")
    assert host_buffers._limit_from_environment() == host_buffers.DEFAULT_LIMIT_MB * 2**20


def pooled_decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def test_fits_reuse_padded_copies_and_keep_their_answers() -> None:
    """Consecutive fits write their padded data into the same memory; a padded copy
    the caller still holds is never reused, and the answers are those of fits that
    each had fresh memory (the same fit with the pool off)."""
    rng = np.random.default_rng(5)
    x = np.linspace(0, 5, N)
    ys = [2.5 * np.exp(-1.3 * x) + 0.5 + 0.01 * rng.normal(size=N) for _ in range(3)]
    held = pad_points(ys[0], 131_072, 0)
    fits = [curvax.fit_curve(pooled_decay, x, y, p0=[1, 1, 0]) for y in ys]
    np.testing.assert_array_equal(held[:N], ys[0])  # not overwritten by the fits
    first = address(pad_points(ys[1], 131_072, 0))
    assert address(pad_points(ys[2], 131_072, 0)) == first  # the freed copy is reused
    fresh = BufferPool(0)
    saved = host_buffers.POOL
    try:
        host_buffers.POOL = fresh
        again = [curvax.fit_curve(pooled_decay, x, y, p0=[1, 1, 0]) for y in ys]
    finally:
        host_buffers.POOL = saved
    for a, b in zip(fits, again, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.pcov, b.pcov)


def test_release_host_buffers_gives_back_the_free_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = BufferPool(16 * 2**20)
    monkeypatch.setattr(host_buffers, "POOL", pool)
    kept = host_buffers.pooled_empty((N,), np.float64)
    free = host_buffers.pooled_empty((N,), np.float64)
    del free
    assert pool.nbytes == 2 * (N * 8 + ALIGNMENT)
    assert curvax.release_host_buffers() == N * 8 + ALIGNMENT  # only the free one
    assert pool.nbytes == 0
    kept[:] = 1.0  # the buffer in use lives on with its array
    assert host_buffers.pooled_empty((N,), np.float64) is not kept


def test_a_forked_child_gets_a_free_lock() -> None:
    """The pool's lock is renewed in a forked child (curvax.core.locks, registered with
    os.register_at_fork): a lock held by another thread at the fork would otherwise
    stay held in the child for ever."""
    pool = BufferPool(16 * 2**20)
    pool._lock.acquire()  # as if another thread were inside empty() at the fork
    renew_after_fork()
    assert pool._lock.acquire(blocking=False)
    pool._lock.release()
    a = pool.empty((N,), np.float64)
    assert a.shape == (N,)


def test_a_miss_collects_garbage_before_allocating_a_large_buffer() -> None:
    """A large buffer held only through a reference cycle (as JAX's references dropped on
    its own threads are, until a collection) is found free after the pool's youngest-
    generation collection; a small one is not worth a collection."""
    import gc

    class Holder:
        pass

    big = host_buffers.COLLECT_BYTES // 8  # float64 values
    pool = BufferPool(64 * 2**20)
    gc.disable()
    try:
        for n, expect_reuse in ((big, True), (big // 16, False)):
            a = pool.empty((n,), np.float64)
            where = address(a)
            h = Holder()
            h.cycle, h.view = h, a  # only a collection frees it
            del h, a
            b = pool.empty((n,), np.float64)
            assert (address(b) == where) is expect_reuse
            gc.collect()
    finally:
        gc.enable()


def test_consecutive_large_fits_reuse_one_set_of_buffers(recorded_pool: list[list[int]]) -> None:
    """curve_fit of 5 MiB copies, result discarded: from the second fit on, every padded
    copy comes from the buffers of the first (JAX's deferred release of the previous
    program's arguments used to make fits alternate between two sets)."""
    handed = recorded_pool
    n = 600_000  # padded to 655 360 points: 5 MiB per float64 copy
    x = np.linspace(0.0, 5.0, n)
    rng = np.random.default_rng(3)
    for _ in range(3):
        y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.01 * rng.standard_normal(n)
        handed.append([])
        popt, _ = curvax.curve_fit(pooled_decay, x, y, p0=[1, 1, 0], workers=1)
        np.testing.assert_allclose(popt, [2.5, 1.3, 0.5], rtol=1e-2)
    assert len(handed[0]) >= 2
    for later in handed[1:]:
        assert set(later) <= set(handed[0]), (handed[0], later)
