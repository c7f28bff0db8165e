"""Element-wise selection for the solver's traced code, without a nested ``jit``.

``jnp.where(c, x, y)`` is a ``jax.jit``-wrapped function: every call made while a fit
program is traced adds a nested ``jit`` equation, goes through JAX's call machinery
(argument checks, cache lookups) and becomes a function of its own in the lowered
module.  The solver calls it about a hundred times per program, so in a fresh process —
where the fit program is traced and lowered even when the persistent cache then
supplies the compiled code — those calls cost ~20 ms of tracing and ~8 ms of lowering
(exponential, 10⁴ points, 2-core CI-class VM; ``benchmarks/README.md``, session 23).
The compiled code is the same: XLA inlines the nested functions.

:func:`where` emits the ``select`` directly.  It gives what ``jnp.where`` gives — the
same values, shape, dtype and weak type — and defers to ``jnp.where`` itself wherever
the two could differ: a weakly typed operand other than a Python number beside an array
of its kind (two Python numbers, an integer beside a float array, a weakly typed JAX
value), whose promotion rules are ``jnp.where``'s own.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array


def _weak(v: Any) -> bool:
    """Whether ``v`` takes part in type promotion as a weak type (a Python scalar, or a
    JAX value derived from one)."""
    if isinstance(v, (bool, int, float, complex)):
        return True
    return bool(getattr(getattr(v, "aval", None), "weak_type", False))


#: Python scalar types and the dtype kinds whose arrays they join without changing the
#: array's dtype or making the result weak.
_SAME_KIND = {bool: "b", int: "iu", float: "f", complex: "c"}


def _plain(weak: Any, strong: Any) -> bool:
    """Whether a Python scalar ``weak`` beside the strongly typed ``strong`` leaves
    ``strong``'s dtype as the result, strongly typed (a float beside a float array)."""
    kinds = _SAME_KIND.get(type(weak))
    return kinds is not None and not _weak(strong) and jnp.result_type(strong).kind in kinds


def where(condition: Any, x: Any, y: Any) -> Array:
    """``jnp.where(condition, x, y)``, traced as one ``select`` (module docstring).

    Either both ``x`` and ``y`` are strongly typed, or one is a Python number of the
    other's kind (``0.0`` beside a float array); anything else is handed to
    ``jnp.where``.
    """
    wx, wy = _weak(x), _weak(y)
    if (wx and not _plain(x, y)) or (wy and not _plain(y, x)):
        return jnp.where(condition, x, y)
    dtype = jnp.result_type(x, y)
    c = jnp.asarray(condition)
    if c.dtype != np.bool_:
        c = c != 0
    x = lax.convert_element_type(x, dtype)
    y = lax.convert_element_type(y, dtype)
    if c.ndim == 0 and np.shape(x) == np.shape(y):
        return lax.select(c, x, y)
    shape = np.broadcast_shapes(np.shape(c), np.shape(x), np.shape(y))
    return lax.select(
        jnp.broadcast_to(c, shape), jnp.broadcast_to(x, shape), jnp.broadcast_to(y, shape)
    )
