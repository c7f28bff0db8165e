"""Divisions in float64 models with fewer divide instructions, for XLA:CPU.

Why
---
A curve model divides arrays by parameter expressions (``(x − μ)² / (2σ²)`` in a
Gaussian peak, ``x / ec50`` in a dose–response curve) and by arrays
(``vmax·x / (km + x)``).  XLA:CPU computes each division element by element with a
divide instruction, several times slower than a multiplication, and forward
differentiation multiplies the count: every Jacobian row of a three-peak model repeats
the divisions of the value and adds those of the quotient rule.  Measured on the
CI-class VM (one core, 2²⁰ points; whole fits, per point and evaluation): three
Gaussian peaks 29.3–29.5 → 25.8–26.1 ns, one Gaussian peak 8.4–8.6 → 7.4–7.6 ns, with a
scalar divisor's reciprocal taken once (``benchmarks/README.md``, session 18).

What
----
:func:`divide` takes a model's ``a / b`` and picks one of two forms.

*A scalar divisor* (``b`` a scalar, ``a`` an array). :func:`div_by_scalar` computes
``a / b`` as ``a · fl(1/b)``: the reciprocal once, then one product per element.  Its
error is that of two roundings, at most one unit in the last place of the quotient
(``a / b`` itself: half a unit).  One product matters: a second one per element (to
scale by a power of two) gave back half of the gain in the three-peak model.

Special divisors give XLA:CPU's own quotient, which treats a subnormal operand as
zero: a zero or subnormal ``b`` gives ``a · (1/b)`` (``±∞``, NaN for ``a = 0``),
``b = ±∞`` gives ``±0`` (NaN for infinite ``a``), NaN gives NaN.  One range is left
out: for ``2^1022 < |b| < ∞`` the reciprocal would be subnormal, which XLA:CPU
flushes to zero, and ``a · 0`` would be a wrong answer where the quotient is a normal
number.  There the result is NaN instead: a fit that steps to a parameter expression
beyond 4·10³⁰⁷ rejects the step as non-finite, as it does an overflow.

Derivatives are those of ``a / b``: ``∂/∂a = 1/b`` (the same product on the tangent)
and ``∂/∂b = −(a/b)·(1/b)``, the scalar ``ḃ/b`` formed once.

*An array divisor* (``x / (km + x)``, ``1 / (1 + u)``). The value stays XLA's own
division, correctly rounded.  Only the derivative changes: JAX's rule for ``a / b``
divides twice per tangent element (``ȧ/b`` and ``ḃ·a·b⁻²``), and each Jacobian row
repeats both.  :func:`div_by_array` forms ``d = (ȧ − ḃ·(a·r))·r`` with ``r = 1/b``:
one division per element.  The derivative then differs from JAX's by rounding only (a
few units in the last place, the same cancellation between the two terms).  Measured
as above, on the compiled block loop alone: Michaelis–Menten ``vmax·x/(km + x)``
3.95 → 3.40 ns, three Lorentzian peaks 20.6 → 19.2 ns, the 4PL 14.5 → 13.8 ns.

Where
-----
:func:`curvax.core.fast_math.with_fast_math` puts :func:`divide` in place of a
model's float64 ``div`` with an array operand (see there for which operations are
reached) in fits compiled for a CPU (:func:`curvax.core.fast_math.enabled_kinds`).
``CURVAX_FAST_DIV=0`` (read once) turns both off.  Accelerators never get them.
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


@jax.custom_jvp
def div_by_array(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` with an array divisor: XLA's division, and a derivative that divides
    once per element (module docstring).

    Parameters
    ----------
    a, b : jax.Array
        Float64 arrays of broadcastable shapes.

    Returns
    -------
    jax.Array
        ``a / b``, correctly rounded, with the derivatives of ``a / b`` to rounding.
    """
    return a / b


def _div_by_array_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    """``d(a/b) = (ȧ − ḃ·(a/b))/b`` with ``1/b`` formed once; an argument without a
    tangent adds no term."""
    a, b = primals
    ta, tb = tangents
    q = a / b
    if isinstance(tb, SymbolicZero):
        if isinstance(ta, SymbolicZero):
            return q, jnp.zeros_like(q)
        return q, ta / b
    r = 1.0 / b
    t = -tb * (a * r)
    if not isinstance(ta, SymbolicZero):
        t = ta + t
    return q, t * r


div_by_array.defjvp(_div_by_array_jvp, symbolic_zeros=True)


def divide(a: jax.Array, b: jax.Array) -> jax.Array:
    """A model's float64 ``a / b``: :func:`div_by_scalar` for an array over a scalar,
    :func:`div_by_array` when ``b`` is an array, XLA's division for two scalars."""
    if jnp.ndim(b) == 0:
        return div_by_scalar(a, b) if jnp.ndim(a) >= 1 else a / b
    return div_by_array(a, b)
