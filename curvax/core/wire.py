"""float64 values across a host callback, as raw bits.

XLA may run a ``jax.pure_callback`` / ``io_callback`` on a thread where JAX's 64-bit
mode is off; float64 operands are then handed to Python converted to float32, and
float64 results are checked against float32 shapes.  Every callback of curvax that
moves float64 values (NumPy models, the chunked fit's host reduction, the per-iteration
monitor) therefore ships them as their bits, pairs of uint32, which no conversion
touches.  (Found as run-to-run differences of chunked fits: the host reduction was
being evaluated at parameters rounded to float32 on some threads.)

A callback finds the host object it serves (a monitor, a chunked or threaded reducer)
in a :class:`TokenRegistry`, by an integer token the compiled program receives as an
argument, so that one compiled program serves every fit.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.locks import ForkSafeLock

Array = jax.Array


def to_wire(a: Array) -> Array:
    """In a traced program: float64 → its bits as uint32 pairs; other dtypes unchanged."""
    return jax.lax.bitcast_convert_type(a, jnp.uint32) if a.dtype == jnp.float64 else a


def from_wire(a: Any, dtype: np.dtype) -> np.ndarray:
    """On the host: the array sent by :func:`to_wire`, back in ``dtype``."""
    a = np.asarray(a)
    if dtype == np.float64:
        return np.ascontiguousarray(a).view(np.float64)[..., 0]
    return a.astype(dtype, copy=False)


def wire_shape(shape: tuple[int, ...], dtype: np.dtype) -> jax.ShapeDtypeStruct:
    """The result shape a callback declares for a ``dtype`` array of ``shape``."""
    if dtype == np.float64:
        return jax.ShapeDtypeStruct((*shape, 2), jnp.uint32)
    return jax.ShapeDtypeStruct(shape, dtype)


def host_out(a: Any, dtype: np.dtype) -> np.ndarray:
    """On the host: a callback result in ``dtype``, as :func:`wire_shape` declares it."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a.view(np.uint32).reshape(*a.shape, 2) if dtype == np.float64 else a


def from_host(a: Array, dtype: np.dtype) -> Array:
    """In a traced program: a callback result back in ``dtype``."""
    return jax.lax.bitcast_convert_type(a, jnp.float64) if dtype == np.float64 else a


#: Shapes and dtypes of the values :func:`pack_words` packed, in order.
Layout = tuple[tuple[tuple[int, ...], np.dtype], ...]


def words_layout(*values: Any) -> Layout:
    """The :data:`Layout` of ``values`` (traced arrays or scalars), for :func:`unpack_words`."""
    return tuple((tuple(jnp.shape(v)), np.dtype(jnp.result_type(v))) for v in values)


def pack_words(*values: Any) -> Array:
    """In a traced program: ``values`` as one flat uint32 vector — 64-bit values as
    pairs of words (their bits, as :func:`to_wire`), 32-bit ones bitcast, booleans as 0/1.

    A host callback then takes one operand instead of several: JAX places every operand
    of ``pure_callback``/``io_callback`` on a device before calling Python (~20 µs each
    on the 2-core VM), and a callback of the solver's loop runs every iteration.  Used by
    the monitor's hook (:mod:`curvax.core.monitor`).  Not by the threaded reduction:
    computing its operand from the token moved the fit program onto XLA's threads
    (``tests/test_threaded.py``), where its callbacks must not run.
    """
    parts = []
    for v in values:
        v = jnp.asarray(v)
        if v.dtype == jnp.bool_:
            w = v.astype(jnp.uint32)
        else:
            w = jax.lax.bitcast_convert_type(v, jnp.uint32)
        parts.append(w.reshape(-1))
    return jnp.concatenate(parts)


def unpack_words(words: Any, layout: Layout) -> list[np.ndarray]:
    """On the host: the values :func:`pack_words` packed, given their :data:`Layout`."""
    words = np.ascontiguousarray(np.asarray(words), dtype=np.uint32)
    out, start = [], 0
    for shape, dtype in layout:
        size = math.prod(shape) * (2 if dtype.itemsize == 8 else 1)
        w = words[start : start + size]
        start += size
        out.append((w != 0) if dtype == np.bool_ else w.view(dtype))
        out[-1] = out[-1].reshape(shape)
    return out


class TokenRegistry:
    """Host objects that compiled programs reach from a host callback, by int32 token."""

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}
        self._lock = ForkSafeLock()
        self._tokens = itertools.count(1)

    def new_token(self) -> int:
        """A fresh token (positive, within int32; 0 is never given out)."""
        return next(self._tokens) % (2**31 - 1) or 1

    def add(self, token: int, obj: Any) -> None:
        with self._lock:
            self._objects[token] = obj

    def remove(self, token: int) -> None:
        with self._lock:
            self._objects.pop(token, None)

    def get(self, token: Any) -> Any:
        """The object registered under ``token`` (None if there is none)."""
        with self._lock:
            return self._objects.get(int(token))

    @contextlib.contextmanager
    def registered(self, obj: Any) -> Iterator[np.int32]:
        """``obj`` registered under the token this yields, for the ``with`` block."""
        token = self.new_token()
        self.add(token, obj)
        try:
            yield np.int32(token)
        finally:
            self.remove(token)
