"""A vectorised float64 ``log`` for models on XLA:CPU.

Why
---
XLA:CPU vectorises ``log`` only where it fuses it into the kernel that consumes it (a
sum, say).  In a fit's pass over the data the logarithm of a block is used by several
kernels — the model value and each Jacobian row — so XLA computes it in a kernel of its
own, and there it calls the C library once per value: about 2 ns per value on the
CI-class VM (AMD EPYC, Zen 5, jaxlib 0.10.2), where the same ``log`` fused into a sum
costs 0.3 ns.  In a fit of the four-parameter logistic, whose ``(x/ec50)**hill`` takes
the logarithm of every point (:mod:`curvax.core.fast_pow`), that was a third of the
pass.  The same holds for a model's own ``log`` (log-normal peaks, power laws written
as ``exp(b·log x)``, log-scaled responses).

What
----
For finite ``a ≥ 2⁻¹⁰²²`` write ``a = 2ᵏ·m`` with ``m ∈ [√½, √2)`` (read from the bits of
``a``: no division, no library call), so that ``ln a = k·ln 2 + ln m``.  With
``f = m − 1`` and ``s = f / (2 + f)``, ``m = (1 + s)/(1 − s)`` and

    ``ln m = 2·atanh(s) = 2s + (2/3)s³ + (2/5)s⁵ + …``,  ``|s| ≤ (√2 − 1)/(√2 + 1) < 0.1716``.

Since ``2s = f − s·f``, this is ``ln m = f − h + s·(h + R(s²))`` with ``h = f²/2`` and
``R(z) ≈ (2/3)z + (2/5)z² + …``; ``R`` is the minimax polynomial of degree 7 of fdlibm's
``e_log.c`` (Sun Microsystems, 1993), whose published coefficients are used below (its
error below 2⁻⁵⁸·⁴⁵ on that range).  ``ln 2`` is split as ``LN2_HI + LN2_LO`` with
``LN2_HI`` of 21 significant bits, so that ``k·LN2_HI`` is exact, and the terms are added
smallest first:

    ``ln a = k·LN2_HI − ((h − (s·(h + R) + k·LN2_LO)) − f)``.

Measured against the C library on 10⁶ values per range (``tests/test_fast_log.py``
checks 2·10⁵): at most 1 unit in the last place; 91 % of the values in ``[½, 2]`` and
almost all others correctly rounded.  Special operands get XLA:CPU's answers, chosen
by selects (no branch): ``ln(±0) = −∞``, ``ln(+∞) = +∞``, NaN for negative ``a`` and
for NaN; XLA:CPU flushes subnormal numbers to zero, so a subnormal ``a`` of either sign
gives ``−∞`` here as there.

The quotient ``s`` is ``f`` times a reciprocal of ``2 + f`` formed with products only
(:func:`_reciprocal`): in a fused kernel XLA:CPU's float64 division, one instruction
per value whose latency the rest cannot hide, cost about 1 ns per value, more than all
the rest of the logarithm.

The derivative is that of ``lax.log``, ``ṫ/a``, formed as ``ṫ·(1/a)`` with the one
reciprocal shared by every Jacobian row.

*Held, not fused.* Made of additions and products only, the logarithm is what XLA
calls cheap, and XLA then copies it into every kernel that reads it: each Jacobian row
of a block would compute it again.  :func:`fast_log` (and :func:`held_log_parts`, for
:mod:`curvax.core.fast_pow`) therefore compute it inside a conditional
(:func:`curvax.core.materialize.hold`), whose result XLA keeps in memory; the
conditional costs a few microseconds per block of 4096 points.  Where XLA may split a
kernel over its own threads (:func:`curvax.core.xla_options.kernels_stay_whole` false),
the part programs of a threaded reduction keep XLA's ``log`` instead
(:func:`curvax.core.materialize.holding`): the split kernels of the conditional then
competed with the part programs for the cores.

Cost, measured on the CI-class VM, one core: one array of 10⁵ logarithms 0.57 against
1.1–2.2 ns per value for XLA's ``log``; a pass over the data (value, Jacobian and Gram
product, blocks of 4096 points) of ``top + (bottom − top)/(1 + exp(hill·(ln x − ln
ec50)))`` 4.5–4.8 → 3.4 ns per point, and of the 4PL through ``fast_pow`` 7.1–7.3 →
4.7–5.3 ns; whole 4PL fits at 10⁵ points 4.8–5.6 → 3.8–5.7 ms (``benchmarks/README.md``,
session 24).

Where: :func:`curvax.core.fast_math.with_fast_math` puts :func:`fast_log` in place of a
model's float64 ``log`` of an array in fits compiled for a CPU
(:func:`curvax.core.fast_math.enabled_kinds`); ``CURVAX_FAST_LOG=0`` (read once) turns
it off.  :mod:`curvax.core.fast_pow` takes its logarithm from :func:`log_parts` whether
or not that switch is set (its own switch is ``CURVAX_FAST_POW``).  Under ``vmap``
with batched values the conditional becomes a select that computes both (identical)
branches: the same answer at twice the cost; curvax's batch fits do not use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from curvax.core.materialize import hold, holding_enabled

ENV_VAR = "CURVAX_FAST_LOG"

# ln 2 split in two doubles: LN2_HI is ln 2 cut to 21 significant bits (k·LN2_HI is exact
# for |k| < 2^32, and so is y_hi·k·LN2_HI in fast_pow for |k| ≤ 1075 and y_hi of 21
# bits); LN2_LO is ln 2 − LN2_HI rounded to a double, from the digits of ln 2 (OEIS
# A002162), so that LN2_HI + LN2_LO = ln 2 to 2.4e-23 (tests/test_fast_pow.py checks both).
LN2_HI = float.fromhex("0x1.62e42p-1")
LN2_LO = float.fromhex("0x1.fdf473de6af28p-22")

# fdlibm e_log.c: R(z) ≈ LG1·z + LG2·z² + … + LG7·z⁷ on 0 ≤ z ≤ 0.1716².
LG1 = 6.666666666666735130e-01
LG2 = 3.999999999940941908e-01
LG3 = 2.857142874366239149e-01
LG4 = 2.222219843214978396e-01
LG5 = 1.818357216161805012e-01
LG6 = 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01

# 1/d ≈ ((((R4·d + R3)·d + R2)·d + R1)·d + R0) on 1 + √½ ≤ d ≤ 1 + √2: the polynomial
# through 1/d at the five Chebyshev nodes of that interval, |d·p(d) − 1| < 9.7e-6 there
# (tests/test_fast_log.py checks the bound).
R4 = 0.02793367073505407
R3 = -0.28780901367667383
R2 = 1.1817885070731622
R1 = -2.4172764446381474
R0 = 2.462928577408588

# Bit pattern of √½ (0x3FE6A09E667F3BCD): mantissas at or above it are kept in
# [√½, 1) or moved to [1, √2) by the exponent arithmetic in :func:`log_parts`.
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_ONE_BITS = 0x3FF0000000000000
# 2^52 as the high word of a double: bits (E | _MAGIC_BITS) read as a double are 2^52 + E.
_MAGIC_BITS = 0x4330000000000000
_MAGIC = 4503599627370496.0
# The smallest normal double.
_TINY = 2.2250738585072014e-308


def _reciprocal(d: jax.Array) -> jax.Array:
    """``1/d`` for ``1 + √½ ≤ d ≤ 1 + √2``: :data:`R4` … :data:`R0`'s polynomial (relative
    error below 1e-5), then two of Newton's steps ``r ← r + r·(1 − d·r)``, each squaring
    the relative error (to below 1e-20 before rounding; the result is within about one
    unit in the last place).  Products and sums only: XLA:CPU's float64 division is one
    instruction per value that other work cannot hide, and cost 1 ns per value here."""
    r = (((R4 * d + R3) * d + R2) * d + R1) * d + R0
    r = r + r * (1.0 - d * r)
    return r + r * (1.0 - d * r)


def _reduce(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(k, m)`` with ``a = 2ᵏ·m``, ``m ∈ [√½, √2)`` and ``k`` a float, for finite
    normal ``a > 0``, from the bits of ``a``."""
    bits = lax.bitcast_convert_type(a, jnp.int64)
    e = (bits + (_ONE_BITS - _SQRT_HALF_BITS)) >> 52  # biased exponent after the shift
    m = lax.bitcast_convert_type(bits - ((e - 1023) << 52), jnp.float64)
    k = lax.bitcast_convert_type(e | _MAGIC_BITS, jnp.float64) - (_MAGIC + 1023.0)
    return k, m


def log_parts(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(k, l)`` with ``ln a = k·LN2_HI + l`` for finite normal ``a > 0``: ``k`` the
    binary exponent (a float) that puts the mantissa ``m`` in ``[√½, √2)``, and
    ``l = k·LN2_LO + ln m`` (``|l| ≤ 0.35``), summed as the module docstring says.

    Other operands give meaningless numbers (no error): callers select around them."""
    k, m = _reduce(a)
    f = m - 1.0
    s = f * _reciprocal(2.0 + f)
    z = s * s
    w = z * z
    r = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7))) + w * (LG2 + w * (LG4 + w * LG6))
    h = 0.5 * f * f
    return k, f - (h - (s * (h + r) + k * LN2_LO))


def _log(a: jax.Array) -> jax.Array:
    k, l = log_parts(a)
    special = jnp.where(jnp.abs(a) < _TINY, -jnp.inf, jnp.where(a == jnp.inf, jnp.inf, jnp.nan))
    return jnp.where((a >= _TINY) & (a < jnp.inf), k * LN2_HI + l, special)


def _held(compute: Callable[[jax.Array], Any], xla: Callable[[jax.Array], Any], a: Any) -> Any:
    """``compute(a)``, held in memory when ``a`` has more than one value (module
    docstring, :func:`curvax.core.materialize.hold`); ``xla(a)``, the same with XLA's
    ``log``, where holding is off (:func:`curvax.core.materialize.holding`)."""
    a = jnp.asarray(a)
    if a.size <= 1:
        return compute(a)
    if not holding_enabled():
        return xla(a)
    return hold(lambda: compute(a), a.ravel()[0])


def _log_parts_xla(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    k, m = _reduce(a)
    return k, k * LN2_LO + lax.log(m)


def held_log(a: jax.Array) -> jax.Array:
    """``ln a`` (:func:`_log`), held in memory; XLA's ``log`` where holding is off."""
    return _held(_log, lax.log, a)


def held_log_parts(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`log_parts` of ``a``, held in memory; where holding is off, ``ln m`` is
    XLA's ``log``."""
    return _held(log_parts, _log_parts_xla, a)


@jax.custom_jvp
def fast_log(a: jax.Array) -> jax.Array:
    """``ln a`` for a float64 array (see the module docstring for its accuracy).

    Parameters
    ----------
    a : jax.Array
        Float64 array.

    Returns
    -------
    jax.Array
        ``ln a``, within one unit in the last place; ``−∞`` at ``±0`` and at subnormal
        ``a``, ``+∞`` at ``+∞``, NaN for negative ``a`` and NaN; the derivative ``1/a``.
    """
    return held_log(a)


def _fast_log_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    (a,), (t,) = primals, tangents
    return held_log(a), t * (1.0 / a)


fast_log.defjvp(_fast_log_jvp)
