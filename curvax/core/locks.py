"""Locks that stay usable in a child process made by ``os.fork``.

``os.fork`` copies the memory of the parent but only its calling thread.  A
``threading.Lock`` that another thread of the parent held at that moment is copied
held, and no thread of the child will ever release it: the child's first fit that
takes it (the compiled-program cache, the model probe cache, the host buffer pool…)
waits for ever.  ``multiprocessing`` forks by default on Linux before Python 3.14, so
a pool of worker processes started while a threaded fit runs in the parent meets this.

:class:`ForkSafeLock` is a ``threading.Lock`` (``with``, ``acquire``, ``release``)
whose underlying lock is replaced by a fresh, unlocked one in the child, through one
``os.register_at_fork`` hook for all of them.  The state the lock guarded was copied as
it was; every structure curvax guards with it (caches, registries, the buffer pool)
stays consistent at any instant its lock is free, and a cache entry half-written at
the fork is at worst missing in the child.  (JAX itself warns that a forked child
should not use the parent's JAX state; curvax's own locks are just not a reason more
to hang.)
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any


class ForkSafeLock:
    """A mutual-exclusion lock that a forked child gets back unlocked (module docstring)."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _LOCKS.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``threading.Lock.acquire``."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """As ``threading.Lock.release``."""
        self._lock.release()

    def locked(self) -> bool:
        """Whether some thread holds the lock."""
        return self._lock.locked()

    def __enter__(self) -> ForkSafeLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    def _renew(self) -> None:
        self._lock = threading.Lock()


_LOCKS: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def renew_after_fork() -> None:
    """Give every :class:`ForkSafeLock` of this process a fresh, unlocked lock.

    Called in a forked child (``os.register_at_fork``), where only the forking thread
    exists: no other thread can hold or wait for any of them.
    """
    for lock in list(_LOCKS):
        lock._renew()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=renew_after_fork)
