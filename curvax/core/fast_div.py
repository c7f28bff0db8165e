"""Division of an array by a scalar as two multiplications, for float64 models on XLA:CPU.

Why
---
A curve model divides arrays by parameter expressions: ``(x − μ)² / (2σ²)`` in a
Gaussian peak, ``x / ec50`` in a dose–response curve.  XLA:CPU computes each such
division element by element with a divide instruction, several times slower than a
multiplication, and forward differentiation multiplies the count: every Jacobian row
of a three-peak model repeats the divisions of the value and adds those of the
quotient rule.  Measured on the CI-class VM (one core, 2²⁰ points, value, Jacobian and
Gram product per point and evaluation): three Gaussian peaks 29.8 → 25 ns, one
Gaussian peak 8.2 → 7.3 ns, with ``a · (1/b)`` in place of ``a / b``.

What
----
:func:`div_by_scalar` computes ``a / b`` for a scalar ``b`` as ``a · fl(1/b)``: the
reciprocal once, then one product per element.  Its error is that of two roundings, at
most one unit in the last place of the quotient (``a / b`` itself: half a unit).  One
product matters: a second one per element (to scale by a power of two) gave back half
of the gain in the three-peak model.

Special divisors give XLA:CPU's own quotient, which treats a subnormal operand as
zero: a zero or subnormal ``b`` gives ``a · (1/b)`` (``±∞``, NaN for ``a = 0``),
``b = ±∞`` gives ``±0`` (NaN for infinite ``a``), NaN gives NaN.  One range is left
out: for ``2^1022 < |b| < ∞`` the reciprocal would be subnormal, which XLA:CPU
flushes to zero, and ``a · 0`` would be a wrong answer where the quotient is a normal
number.  There the result is NaN instead: a fit that steps to a parameter expression
beyond 4·10³⁰⁷ rejects the step as non-finite, as it does an overflow.

Derivatives are those of ``a / b``: ``∂/∂a = 1/b`` (the same product on the tangent)
and ``∂/∂b = −(a/b)·(1/b)``, the scalar ``ḃ/b`` formed once.

Where
-----
:func:`curvax.core.fast_math.with_fast_math` puts it in place of a model's float64
``div`` whose divisor is a scalar and whose dividend is not (see there for which
operations are reached), in fits compiled for a CPU
(:func:`curvax.core.fast_math.enabled_kinds`); ``CURVAX_FAST_DIV=0`` (read once) turns
it off.  Accelerators never get it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

#: Set to ``0`` to keep XLA's division in models (read once; :mod:`curvax.core.fast_math`).
ENV_VAR = "CURVAX_FAST_DIV"

#: Divisors beyond this magnitude have a subnormal reciprocal (module docstring).
LARGEST_DIVISOR = 2.0**1022


def _reciprocal(b: jax.Array) -> jax.Array:
    """``1/b``, and NaN for finite ``|b| > 2^1022`` (module docstring)."""
    huge = (jnp.abs(b) > LARGEST_DIVISOR) & jnp.isfinite(b)
    return jnp.where(huge, jnp.nan, 1.0 / b)


@jax.custom_jvp
def div_by_scalar(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` for a float64 array ``a`` and a float64 scalar ``b`` (module docstring).

    Parameters
    ----------
    a : jax.Array
        Float64 dividend, any shape.
    b : jax.Array
        Float64 scalar divisor (shape ``()``).

    Returns
    -------
    jax.Array
        ``a / b`` to one unit in the last place, shaped as ``a``, with the
        derivatives of ``a / b``.
    """
    return a * _reciprocal(b)


def _div_by_scalar_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    """``d(a/b) = ȧ/b − (a/b)·(ḃ/b)``; an argument without a tangent adds no term."""
    a, b = primals
    ta, tb = tangents
    inv = _reciprocal(b)
    q = a * inv
    terms = []
    if not isinstance(ta, SymbolicZero):
        terms.append(ta * inv)
    if not isinstance(tb, SymbolicZero):
        terms.append(-q * (tb / b))
    if not terms:
        return q, jnp.zeros_like(q)
    return q, terms[0] if len(terms) == 1 else terms[0] + terms[1]


div_by_scalar.defjvp(_div_by_scalar_jvp, symbolic_zeros=True)
