"""A bounded, thread-safe memo: the one cache structure curvax keeps in a process.

Several things are worth computing once per process and looking up afterwards: the
verdict on whether a model is point-by-point, the traced output shape of a model, a
compiled batch program, a compiled chunk kernel, an object unpickled on a Dask
worker.  Each lives in a :class:`BoundedCache`: a least-recently-used map with a fixed
number of entries (so a stream of fresh lambdas cannot grow it without limit), guarded
by a :class:`~curvax.core.locks.ForkSafeLock` (so threads may share it and a forked
child does not inherit a held lock).  The value is made *outside* the lock — making
it may trace or compile for seconds — and the first value stored for a key wins, so
two threads that raced to make it end up sharing one object.

Keys must be hashable; :func:`hashable` turns a key that is not (a model closing over
an array, say) into None, which every method treats as "do not memoise".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from curvax.core.locks import ForkSafeLock

V = TypeVar("V")


def hashable(key: Any) -> Hashable | None:
    """``key`` itself if it can be hashed, else None (see the module docstring)."""
    try:
        hash(key)
    except TypeError:
        return None
    return key


class BoundedCache(Generic[V]):
    """Least-recently-used map of at most ``size`` entries (module docstring).

    A None key is never stored or found: :meth:`get` returns None and :meth:`put` returns
    the value unchanged, so callers need no separate path for unhashable keys.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size: expected a positive number of entries, got {size!r}")
        self.size = size
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = ForkSafeLock()

    def get(self, key: Hashable | None) -> V | None:
        """The value stored for ``key`` (now the most recently used), or None."""
        if key is None:
            return None
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable | None, value: V) -> V:
        """Store ``value`` for ``key`` unless one is stored already; return the stored one.

        The least recently used entries beyond ``size`` are dropped.
        """
        if key is None:
            return value
        with self._lock:
            value = self._entries.setdefault(key, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return value

    def get_or_make(self, key: Hashable | None, make: Callable[[], V]) -> V:
        """The stored value for ``key``, or ``make()`` stored and returned."""
        value = self.get(key)
        if value is None:
            value = self.put(key, make())
        return value

    def values(self) -> list[V]:
        """The stored values, least recently used first."""
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
