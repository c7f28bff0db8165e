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

Those caches know a model by its function object, which is not what decides what it
computes: :func:`canonical_function` gives one object per computation (code, closure
values, values of the globals it reads).
"""

from __future__ import annotations

import functools
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

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


# --- one function object per computation -------------------------------------------------


def _value_key(v: Any, keep: list[Any]) -> Hashable | None:
    """``(type, value)`` of a value that compares by value; the identity of a module,
    function or class (appended to ``keep``, so that its id cannot be reused while the
    key is stored); None for anything else (an array, a list, ...)."""
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes, np.generic)):
        return (type(v), v) if v == v else None  # NaN never equals itself
    if isinstance(v, tuple):
        parts = tuple(_value_key(e, keep) for e in v)
        return None if any(p is None for p in parts) else (tuple, parts)
    if isinstance(v, (types.ModuleType, type)) or callable(v):
        keep.append(v)
        return ("id", id(v))
    return None


def _global_names(code: types.CodeType) -> set[str]:
    """The names ``code`` and the code nested in it (lambdas, comprehensions) look up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


@functools.lru_cache(maxsize=1024)
def _sorted_global_names(code: types.CodeType) -> tuple[str, ...]:
    """:func:`_global_names`, sorted; memoised per code object (which is immutable)."""
    return tuple(sorted(_global_names(code)))


def function_key(f: Any, keep: list[Any]) -> Hashable | None:
    """A key under which two plain Python functions compute the same thing: the same
    code object and globals dict, and equal defaults, closure values and values of the
    globals the code reads (each compared by type and value, or by identity for
    modules, functions and classes).  None when any of them is something else (an
    array, say), or ``f`` is not a plain function."""
    if not isinstance(f, types.FunctionType):
        return None
    parts: list[Any] = [f.__code__, id(f.__globals__)]
    values: list[Any] = [f.__defaults__ or (), tuple(sorted((f.__kwdefaults__ or {}).items()))]
    for cell in f.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell (a name assigned later)
            return None
    g = f.__globals__
    names = [n for n in _sorted_global_names(f.__code__) if n in g]
    values.append(tuple(names))
    values.extend(g[n] for n in names)
    for v in values:
        k = _value_key(v, keep)
        if k is None:
            return None
        parts.append(k)
    return tuple(parts)


_FUNCTIONS: BoundedCache[tuple[Callable[..., Any], list[Any]]] = BoundedCache(256)


def canonical_function(f: Any) -> Any:
    """One function object per computation, for the caches keyed by the model function.

    A plain function is replaced by a copy shared by every function with the same
    :func:`function_key`: a lambda written anew on each call (``curve_fit(lambda x, a,
    b: ..., x, y)`` in a loop) then reuses the compiled fit instead of compiling again
    (0.7–0.9 s a call); and a function whose globals or closure values changed since
    it was last fitted gets another copy, so no compiled program with the old values
    baked in is reused for it.  The copy runs ``f``'s code with ``f``'s globals,
    defaults and closure, and carries its attributes.  Anything else (a model object,
    a partial, a function reading an array from its globals or closure) comes back
    unchanged.
    """
    keep: list[Any] = []
    key = function_key(f, keep)
    if key is None:
        return f

    def copy() -> tuple[Callable[..., Any], list[Any]]:
        g = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        g.__kwdefaults__ = dict(f.__kwdefaults__) if f.__kwdefaults__ else None
        g.__dict__.update(f.__dict__)
        g.__qualname__, g.__module__, g.__doc__ = f.__qualname__, f.__module__, f.__doc__
        g.__annotations__ = dict(f.__annotations__)
        return g, keep

    return _FUNCTIONS.get_or_make(key, copy)[0]
