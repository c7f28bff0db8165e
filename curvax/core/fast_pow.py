"""A vectorised ``x ** y`` for float64 models on XLA:CPU.

Why
---
XLA:CPU computes ``pow`` on float64 with a call to the C library for each element:
about 12–18 ns per value on the CI-class machine, against 1–4 ns for ``exp`` or
``log``, which XLA evaluates with its own vectorised polynomials.  A model with a
parameter in an exponent — the Hill equation and the four-parameter logistic
``(x/ec50)**hill``, stretched exponentials ``exp(-(t/tau)**beta)``, power laws — pays
for ``pow`` twice per point and evaluation, since forward differentiation adds
``y * x**(y - 1)``.  In the 4PL benchmark that is over half of the fit's time.

What
----
:func:`fast_pow` computes ``x ** y`` from one ``log`` and one ``exp`` with a little
extra precision.  For ``x > 0`` finite and ``y`` finite, write ``x = m·2^k`` with
``m ∈ [√½, √2)``; then

    ``y·ln x = y·k·ln2_hi + y·(k·ln2_lo + ln m)``

where ``ln2_hi`` has 21 significant bits, so that ``t = k·ln2_hi`` is exact (32 bits
at most, ``|k| ≤ 1075``); ``k`` and ``k·ln2_lo + ln m`` come from
:func:`curvax.core.fast_log.held_log_parts`, a logarithm vectorised with products only
and computed once per point for the value and both partials.  ``y`` is split as
``y_hi + y_lo`` with ``y_hi`` holding its leading 21 bits (Veltkamp's splitting by
``2^32 + 1``), so that ``y_hi·t`` is exact and
``y_lo·t`` (``|y_lo| ≤ 2^-21·|y|``) is rounded by at most ``2^-74·|y·t|``: ``y·t`` is
carried as two doubles, to far better than the ``ln m`` term needs.  With ``s + e`` the
whole exponent rounded to a double and its error, ``x^y = exp(s)·(1 + e)``.  The
rounding left is that of ``ln m`` (``|ln m| ≤ 0.35``) and of ``y·(ln m + …)``, both
scaled by ``|y|``, plus that of ``exp``.  Measured against the C library's ``pow`` on
10⁶ random operands per range: at most 2 units in the last place for ``|y| ≤ 1`` (any
positive normal ``x``), 3 for ``|y| ≤ 3``, 8 for ``|y| ≤ 10`` and 15 for ``|y| ≤ 20``
(``x`` in ``[10⁻³, 10³]``), never more than ``2·(1 + |y|)``, which
``tests/test_fast_pow.py`` asserts; half the values or more are correctly rounded.
(Dekker's exact product of ``y`` and ``t`` gave 7 and 13 where the split gives 8 and 15,
at 17 operations against 5.)  Model values are computed to that accuracy, far inside
any fit's statistical error.

Each call tests whether every base is positive and finite and every exponent finite
(one comparison per value and a reduction).  If any is not — a zero, negative,
infinite, NaN or subnormal base, or an infinite exponent — the whole call is computed
by ``lax.pow`` instead (``lax.cond``: only the branch taken runs), so every special
operand gets XLA's own answer.

:func:`fast_pow` has the derivatives of ``lax.pow`` (``∂/∂x = y·x^(y−1)``,
``∂/∂y = ln(x)·x^y`` with ``ln 0`` read as 0; an argument without a tangent adds no
term).  On the short path the value and both partials share one logarithm and take
one ``exp`` more, for ``x^(y−1)``.

Where
-----
:func:`curvax.core.fast_math.with_fast_math` puts it in place of a model's float64
``pow`` (see there for which ``pow`` operations are reached) in fits compiled for a
CPU (:func:`curvax.core.fast_math.enabled_kinds`); ``CURVAX_FAST_POW=0`` (read once)
turns it off, and
accelerators, whose ``pow`` is already vectorised, never get it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from curvax.core.fast_log import LN2_HI, held_log_parts, log_parts

ENV_VAR = "CURVAX_FAST_POW"

# Veltkamp's splitting constant 2^32 + 1 (float64): (2^32 + 1)·y - ((2^32 + 1)·y - y)
# keeps the leading 53 - 32 = 21 significant bits of y.
_SPLIT = 4294967297.0
# Exponents beyond this give 0 or ∞ for every base ≠ 1 (clipped to keep products finite).
_Y_CLIP = 1e290


def _exp_of_product(y: jax.Array, k: jax.Array, l: jax.Array) -> jax.Array:
    """``exp(y·(k·LN2_HI + l))`` with ``y·k·LN2_HI`` carried in two doubles (module
    docstring); ``y`` finite, clipped to ``±_Y_CLIP`` here.

    The split of ``y`` replaced Dekker's exact product (17 operations against 5): the
    4PL's value, Jacobian and Gram product per point went from 23–27 to 18 ns on the
    CI-class CPU (blocks of 4096 points, one core)."""
    y = jnp.clip(y, -_Y_CLIP, _Y_CLIP)
    t = k * LN2_HI  # exact
    c = _SPLIT * y
    y_hi = c - (c - y)  # the leading 21 bits of y: y_hi·t is exact
    p = y_hi * t
    r = (y - y_hi) * t + y * l
    s = p + r  # |p| ≥ |r| unless p = 0, so s + se = p + r exactly (Fast2Sum)
    se = r - (s - p)
    z = jnp.exp(s)
    return jnp.where(jnp.isinf(z), z, z + z * se)


def _all_ordinary(x: jax.Array, y: jax.Array) -> jax.Array:
    """Whether every base is positive and finite and every exponent finite: then
    :func:`_exp_of_product` alone is ``x ** y`` (``x ** 0 = 1 ** y = 1`` included)."""
    return jnp.all((x > 0) & (x < jnp.inf)) & jnp.all(jnp.abs(y) < jnp.inf)


def _value(x: jax.Array, y: jax.Array) -> jax.Array:
    x, y = jnp.asarray(x), jnp.asarray(y)
    shape = jnp.broadcast_shapes(x.shape, y.shape)

    def ordinary() -> jax.Array:
        # the value alone reads the logarithm once (in its exp): nothing to hold
        return jnp.broadcast_to(_exp_of_product(y, *log_parts(x)), shape)

    def general() -> jax.Array:
        return jnp.broadcast_to(lax.pow(x, y), shape)

    return lax.cond(_all_ordinary(x, y), ordinary, general)


def _value_and_partials(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(x^y, y·x^(y−1), ln(x)·x^y)`` with ``ln 0`` read as 0, as ``lax.pow``'s rules."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    shape = jnp.broadcast_shapes(x.shape, y.shape)

    def ordinary() -> tuple[jax.Array, jax.Array, jax.Array]:
        k, l = held_log_parts(x)  # one logarithm for the value and both partials
        ans = _exp_of_product(y, k, l)
        below = _exp_of_product(y - 1.0, k, l)
        log_x = k * LN2_HI + l
        return tuple(jnp.broadcast_to(v, shape) for v in (ans, y * below, log_x * ans))

    def general() -> tuple[jax.Array, jax.Array, jax.Array]:  # lax.pow and its rules
        ans = lax.pow(x, y)
        d_x = y * lax.pow(x, y - 1.0)
        d_y = jnp.log(jnp.where(x == 0, 1.0, x)) * ans
        return tuple(jnp.broadcast_to(v, shape) for v in (ans, d_x, d_y))

    return lax.cond(_all_ordinary(x, y), ordinary, general)


@jax.custom_jvp
def fast_pow(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x ** y`` for float64 ``x`` and ``y`` (see the module docstring for its accuracy).

    Parameters
    ----------
    x, y : jax.Array
        Float64 arrays of broadcastable shapes.

    Returns
    -------
    jax.Array
        ``x ** y``, with the derivatives of ``lax.pow``.
    """
    return _value(x, y)


def _fast_pow_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    """As ``lax.pow``'s two rules: an argument without a tangent adds no term (so an
    infinite partial, ``∂/∂x`` at ``x = 0`` for ``y < 1``, meets no zero)."""
    x, y = primals
    tx, ty = tangents
    ans, d_x, d_y = _value_and_partials(x, y)
    terms = [d * t for d, t in ((d_x, tx), (d_y, ty)) if not isinstance(t, SymbolicZero)]
    if not terms:
        return ans, jnp.zeros_like(ans)
    return ans, terms[0] if len(terms) == 1 else terms[0] + terms[1]


fast_pow.defjvp(_fast_pow_jvp, symbolic_zeros=True)
