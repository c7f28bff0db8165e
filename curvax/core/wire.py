"""float64 values across a host callback, as raw bits.

XLA may run a ``jax.pure_callback`` / ``io_callback`` on a thread where JAX's 64-bit
mode is off; float64 operands are then handed to Python converted to float32, and
float64 results are checked against float32 shapes.  Every callback of curvax that
moves float64 values (NumPy models, the chunked fit's host reduction, the per-iteration
monitor) therefore ships them as their bits, pairs of uint32, which no conversion
touches.  (Found as run-to-run differences of chunked fits: the host reduction was
being evaluated at parameters rounded to float32 on some threads.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
