"""Vectorised float64 ``sin`` and ``cos`` for models on XLA:CPU.

Why
---
XLA:CPU computes float64 ``sin`` and ``cos`` at about 9 ns per value on the CI-class
machine (one core), against 1 ns for ``exp``: in a fit of ``a·sin(ωx + φ) + c`` the
sine and its derivative's cosine are most of the time per point.

What
----
The method of fdlibm (Sun Microsystems, 1993: ``e_rem_pio2.c``, ``k_sin.c``,
``k_cos.c``), whose published constants are used below, written with array operations
that XLA vectorises:

1. Reduction: ``n = round(x·2/π)`` and ``r = x − n·π/2`` in three steps with π/2 split
   into pieces of 33 significant bits (Cody and Waite), so that each ``n·piece`` is
   exact for ``|n| < 2²⁰``; ``r`` is carried as a sum of two doubles ``y0 + y1``, with
   about 118 bits of π/2 in all, enough for every double below the bound that follows.
2. Kernels on ``|r| ≤ π/4``: ``sin r ≈ r + r³·S(r²)`` and ``cos r ≈ 1 − r²/2 +
   r⁴·C(r²)``, fdlibm's minimax polynomials of degree 13 and 14 (errors below
   2⁻⁵⁸), with the tail ``y1`` folded in to first order.
3. The quadrant ``n mod 4`` picks ``±sin r`` or ``±cos r``.

For ``|x| < 2⁻²⁷``, ``sin x`` is ``x`` (which keeps the sign of zero) and ``cos x`` is 1,
as rounded.  Measured against the C library (``tests/test_fast_trig.py``): at most
1 unit in the last place, near multiples of π/2 included.

Each call tests whether every argument is finite with ``|x| ≤ 2¹⁹·π/2`` (fdlibm's
bound for this reduction; about 8.2·10⁵).  If one is not, the whole call is computed by
``lax.sin``/``lax.cos`` (``lax.cond``: only the branch taken runs), so infinities, NaN
and large arguments get XLA's own answer.  Derivatives: ``sin′ = cos`` and
``cos′ = −sin``, both from one reduction.

Cost, one core, per value above a fused ``x·y + 1``: ``sin`` 1.7 ns, ``sin`` and ``cos``
of the same argument 2.0 ns, against 9.0 ns for XLA's ``sin`` alone.

Where: :func:`curvax.core.fast_math.with_fast_math` puts these in place of a model's
float64 ``sin`` and ``cos`` in fits compiled for a CPU
(:func:`curvax.core.fast_math.enabled_kinds`);
``CURVAX_FAST_TRIG=0`` (read once) turns it off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

ENV_VAR = "CURVAX_FAST_TRIG"

# fdlibm k_sin.c: sin(r) ≈ r + S1·r³ + … + S6·r¹³ on |r| ≤ π/4.
S1 = -1.66666666666666324348e-01
S2 = 8.33333333332248946124e-03
S3 = -1.98412698298579493134e-04
S4 = 2.75573137070700676789e-06
S5 = -2.50507602534068634195e-08
S6 = 1.58969099521155010221e-10
# fdlibm k_cos.c: cos(r) ≈ 1 − r²/2 + C1·r⁴ + … + C6·r¹⁴ on |r| ≤ π/4.
C1 = 4.16666666666666019037e-02
C2 = -1.38888888888741095749e-03
C3 = 2.48015872894767294178e-05
C4 = -2.75573143513906633035e-07
C5 = 2.08757232129817482790e-09
C6 = -1.13596475577881948265e-11
# fdlibm e_rem_pio2.c: 2/π, and π/2 in three 33-bit pieces, each with its tail.
INV_PIO2 = 6.36619772367581382433e-01
PIO2_1 = 1.57079632673412561417e00
PIO2_1T = 6.07710050650619224932e-11
PIO2_2 = 6.07710050630396597660e-11
PIO2_2T = 2.02226624879595063154e-21
PIO2_3 = 2.02226624871116645580e-21
PIO2_3T = 8.47842766036889956997e-32
#: Largest |x| reduced here (2¹⁹·π/2); beyond it XLA's functions are used.
BOUND = 524288.0 * 1.5707963267948966
# Below this |x|, sin x rounds to x and cos x to 1.
_TINY = 2.0**-27


def _reduce(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(n, y0, y1)`` with ``x ≈ n·π/2 + y0 + y1``, ``|y0| ≲ π/4``."""
    n = jnp.round(x * INV_PIO2)
    r = x - n * PIO2_1
    w = n * PIO2_1T
    for piece, tail in ((PIO2_2, PIO2_2T), (PIO2_3, PIO2_3T)):
        t = r
        w = n * piece
        r = t - w
        w = n * tail - ((t - r) - w)
    y0 = r - w
    return n, y0, (r - y0) - w


def _kernel_sin(x: jax.Array, y: jax.Array) -> jax.Array:
    z = x * x
    v = z * x
    r = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)))
    return x - ((z * (0.5 * y - v * r) - y) - v * S1)


def _kernel_cos(x: jax.Array, y: jax.Array) -> jax.Array:
    z = x * x
    r = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))))
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (z * r - x * y))


def _quadrant(n: jax.Array, s: jax.Array, c: jax.Array, shift: int) -> jax.Array:
    """``sin x`` (``shift`` 0) or ``cos x`` (``shift`` 1) from ``s = sin r``,
    ``c = cos r`` and the quadrant ``n``."""
    q = (n.astype(jnp.int32) + shift) & 3
    return jnp.where(q == 0, s, jnp.where(q == 1, c, jnp.where(q == 2, -s, -c)))


def _ordinary(x: jax.Array) -> jax.Array:
    """Whether every argument is reduced here: finite and ``|x| ≤ BOUND``."""
    return jnp.all(jnp.abs(x) <= BOUND)  # false for NaN and ±∞


def _short(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sin x, cos x)`` for arguments that pass :func:`_ordinary`."""
    n, y0, y1 = _reduce(x)
    s, c = _kernel_sin(y0, y1), _kernel_cos(y0, y1)
    tiny = jnp.abs(x) < _TINY
    return (jnp.where(tiny, x, _quadrant(n, s, c, 0)),
            jnp.where(tiny, 1.0, _quadrant(n, s, c, 1)))


def _sincos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sin x, cos x)`` from one reduction, or from XLA for unusual arguments."""
    return lax.cond(_ordinary(x), lambda: _short(x), lambda: (lax.sin(x), lax.cos(x)))


@jax.custom_jvp
def fast_sin(x: jax.Array) -> jax.Array:
    """``sin x`` for float64 ``x`` (module docstring)."""
    return lax.cond(_ordinary(x), lambda: _short(x)[0], lambda: lax.sin(x))


@jax.custom_jvp
def fast_cos(x: jax.Array) -> jax.Array:
    """``cos x`` for float64 ``x`` (module docstring)."""
    return lax.cond(_ordinary(x), lambda: _short(x)[1], lambda: lax.cos(x))


@fast_sin.defjvp
def _fast_sin_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    s, c = _sincos(primals[0])
    return s, c * tangents[0]


@fast_cos.defjvp
def _fast_cos_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    s, c = _sincos(primals[0])
    return c, -s * tangents[0]
