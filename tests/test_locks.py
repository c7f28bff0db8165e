"""curvax.core.locks: process-wide locks that a forked child gets back unlocked."""

from __future__ import annotations

import os
import sys
import threading
import warnings

import pytest

from curvax.batch import fit as batch_fit
from curvax.core import engine, host_buffers, pointwise, sparsity, threaded
from curvax.core.locks import ForkSafeLock, renew_after_fork
from curvax.scale import dask_backend, host_reduce

curve_fit_module = sys.modules["curvax.curve_fit"]


def test_it_is_a_mutual_exclusion_lock() -> None:
    lock = ForkSafeLock()
    assert not lock.locked()
    with lock:
        assert lock.locked()
        assert not lock.acquire(blocking=False)  # held: a second acquire fails
        assert not lock.acquire(timeout=0.01)
    assert not lock.locked()
    assert lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()  # as threading.Lock: releasing an unlocked lock is an error


def test_renewal_frees_a_held_lock() -> None:
    """What the child of a fork sees: the lock is held by a thread that does not exist
    there.  After renew_after_fork (the registered at-fork hook) it can be taken."""
    lock = ForkSafeLock()
    assert lock.acquire(blocking=False)  # as if held by another thread at the fork
    old = lock._lock
    renew_after_fork()
    assert lock._lock is not old and not lock.locked()
    assert lock.acquire(blocking=False)
    lock.release()
    old.release()


def test_the_process_wide_locks_are_fork_safe() -> None:
    """Every lock guarding a process-wide cache or registry is a ForkSafeLock."""
    locks = [
        curve_fit_module._PROBE_CACHE._lock,
        engine.COMPILE_CACHE._lock,
        host_buffers.POOL._lock,
        threaded._SAFE._lock,
        threaded._ACTIVE._lock,
        host_reduce._KERNEL_CACHE._lock,
        dask_backend._SHIPPED._lock,
        batch_fit._PROGRAMS._lock,
        pointwise._CACHE._lock,
        sparsity._DETECTED._lock,
    ]
    assert all(isinstance(lock, ForkSafeLock) for lock in locks)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_can_take_a_lock_held_at_the_fork() -> None:
    """A real fork while another thread holds the model-probe lock: the child takes it
    at once (it would wait for ever on a plain threading.Lock)."""
    lock = curve_fit_module._PROBE_CACHE._lock
    held, finish = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            finish.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        with warnings.catch_warnings():  # JAX warns that a fork of a threaded process
            warnings.simplefilter("ignore")  # must not use JAX; the child does not
            pid = os.fork()
        if pid == 0:  # the child: only the lock, then leave without cleanup
            os._exit(0 if lock.acquire(timeout=5) else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        finish.set()
        t.join()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
