"""``curvax.core.fast_pow``: a vectorised float64 ``pow`` for models fitted on a CPU.

References are independent of the code under test: NumPy's ``**`` (the C library's
``pow``, correctly rounded in practice), JAX's own ``lax.pow`` and its derivative rules,
and SciPy's ``curve_fit``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax.core.fast_log as fl
import curvax.core.fast_pow as fp
from curvax.core.fast_math import with_fast_math
from tests._fast_math_fits import all_equations, assert_fit_goes_through, ulps

pytestmark = pytest.mark.usefixtures("float64_only")

# Subnormal operands are left out: XLA:CPU flushes them to zero (module docstring).
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0,
           1.5, -1.5, 1e300, -1e300, 1e-300, 0.9999999999999999, 1.0000000000000002, 7.0]


def _same(got: np.ndarray, ref: np.ndarray, ulps: float) -> np.ndarray:
    """Elementwise: both NaN, or equal with the same sign (zeros, infinities), or finite
    and within ``ulps`` units in the last place of ``ref``."""
    both_nan = np.isnan(got) & np.isnan(ref)
    exact = (got == ref) & (np.signbit(got) == np.signbit(ref))
    with np.errstate(invalid="ignore"):
        close = np.isfinite(ref) & (np.abs(got - ref) <= ulps * np.spacing(np.abs(ref)))
    return both_nan | exact | close


def test_special_operands_give_the_c_librarys_answer():
    x, y = np.array(list(itertools.product(SPECIAL, SPECIAL))).T
    with np.errstate(all="ignore"):
        ref = x**y
    got = np.asarray(jax.jit(fp.fast_pow)(x, y))
    ok = _same(got, ref, 2)
    assert ok.all(), list(zip(x[~ok], y[~ok], got[~ok], ref[~ok], strict=True))[:10]
    # one exponent (a scalar, as a fitted parameter is) against every base; the
    # reference takes it as an array (NumPy computes ``x ** 0.5`` as ``sqrt(x)``, which
    # is not ``pow`` at -inf)
    for yy in (-3.0, -1.5, 0.0, 0.5, 2.0, np.inf, np.nan):
        with np.errstate(all="ignore"):
            ref = np.power(np.asarray(SPECIAL), np.full(len(SPECIAL), yy))
        got = np.asarray(jax.jit(fp.fast_pow)(np.asarray(SPECIAL), yy))
        assert _same(got, ref, 2).all(), yy


@pytest.mark.parametrize("force_general", [False, True])
def test_accuracy_against_the_c_library(force_general):
    """Positive finite bases take the short path, within 2·(1 + |y|) units in the last
    place of ``pow`` as the module docstring says; one negative base in the array sends
    the whole call to ``lax.pow`` (the branch is chosen per call)."""
    rng = np.random.default_rng(7)
    f = jax.jit(fp.fast_pow)
    for lo, hi, ymax, bound in [
        (1e-300, 1e300, 1.0, 3.0),
        (1e-5, 1e5, 3.0, 4.0),
        (1e-3, 1e3, 20.0, 16.0),
    ]:
        x = np.exp(rng.uniform(np.log(lo), np.log(hi), 100_000))
        y = rng.uniform(-ymax, ymax, 100_000)
        if force_general:
            x[0] = -2.0
            y[0] = 3.0
        ref = x**y
        got = np.asarray(f(x, y))
        assert np.all(np.isfinite(ref))
        err = ulps(got, ref)
        assert np.all(err <= 2.0 * (1.0 + np.abs(y))), (lo, hi, ymax, err.max())
        assert err.max() <= bound, (lo, hi, ymax, err.max())
        assert np.median(err) <= 1.0


def test_negative_bases_and_integer_exponents():
    x = np.array([-2.0, -0.5, -3.0, -1e10, -7.0])
    for y in (2.0, 3.0, -1.0, -2.0, 5.0, 0.5, -1.5):
        with np.errstate(invalid="ignore"):
            ref = x**y
        got = np.asarray(jax.jit(fp.fast_pow)(x, y))
        assert _same(got, ref, 2).all(), (y, got, ref)


@pytest.mark.parametrize(
    "x",
    [
        np.array([0.3, 1.0, 2.5, 40.0]),  # positive bases: the short path
        np.array([0.0, 0.3, 2.5, 40.0]),  # a zero base: the general path
        np.array([-2.0, 0.3, 2.5, 1e-3]),  # a negative base: the general path
    ],
)
@pytest.mark.parametrize("y", [3.0, 1.7, 1.0, 0.4, -1.3])
def test_derivatives_are_those_of_lax_pow(x, y):
    if np.any(x < 0):
        y = np.round(y) if np.round(y) != 0 else 2.0  # real values need an integer power
    tx = np.linspace(0.5, 1.5, x.size)

    def jvps(fn):
        return jax.jit(lambda a, b: jax.jvp(fn, (a, b), (tx, 0.7)))(x, y)

    (v, t) = (np.asarray(a) for a in jvps(fp.fast_pow))
    (v0, t0) = (np.asarray(a) for a in jvps(lambda a, b: a**b))
    assert _same(v, v0, 4).all(), (v, v0)
    assert _same(t, t0, 16).all(), (t, t0)
    # the Jacobian with respect to the exponent, as a fitted parameter's column
    jy = np.asarray(jax.jit(jax.jacfwd(fp.fast_pow, argnums=1))(x, y))
    jy0 = np.asarray(jax.jit(jax.jacfwd(lambda a, b: a**b, argnums=1))(x, y))
    assert _same(jy, jy0, 16).all(), (jy, jy0)


def _has_primitive(jaxpr, name: str) -> bool:
    return any(eqn.primitive.name == name for eqn in all_equations(jaxpr))


def _rewritten(fn):
    return with_fast_math(fn, frozenset({"pow"}))


def test_the_rewrite_replaces_pow_also_inside_nested_jit():
    @jax.jit
    def inner(r, h):
        return r**h

    def model(x, a, h):
        return a * inner(x, h) + x**2.5

    x = jnp.linspace(0.1, 3.0, 7)
    before = jax.make_jaxpr(model)(x, 2.0, 1.3).jaxpr
    after = jax.make_jaxpr(_rewritten(model))(x, 2.0, 1.3).jaxpr
    assert _has_primitive(before, "pow") and not _has_primitive(after, "pow")
    np.testing.assert_allclose(
        _rewritten(model)(x, 2.0, 1.3), model(x, 2.0, 1.3), rtol=1e-15
    )


def test_the_rewrite_keeps_a_users_derivative_rule_and_float32():
    @jax.custom_jvp
    def my_pow(r, h):
        return r**h

    @my_pow.defjvp
    def _rule(primals, tangents):
        (r, h), (tr, th) = primals, tangents
        return my_pow(r, h), 42.0 * tr + 0.0 * th  # a rule nobody would derive

    def model(x, h):
        return my_pow(x, h)

    x = jnp.linspace(0.5, 2.0, 5)
    _, t = jax.jvp(_rewritten(model), (x, 1.5), (jnp.ones(5), 0.0))
    np.testing.assert_array_equal(t, 42.0)
    x32 = jnp.linspace(0.5, 2.0, 5, dtype=jnp.float32)
    after = jax.make_jaxpr(_rewritten(lambda a, b: a**b))(x32, jnp.float32(1.5)).jaxpr
    assert _has_primitive(after, "pow")  # float32 is left to XLA


def _logistic4(x, bottom, hill, ec50, top):
    return top + (bottom - top) / (1.0 + (x / ec50) ** hill)


@pytest.mark.parametrize("n", [500, 20_000])
def test_four_parameter_logistic_fit_equals_scipy_and_the_native_pow(n, monkeypatch):
    """A fit on a CPU goes through fast_pow (counted), agrees with SciPy, and gives the
    fit of the same model with XLA's own pow to ~1e-10."""
    rng = np.random.default_rng(n)
    x = np.logspace(-3, 3, n)
    y = _logistic4(x, 0.05, 1.2, 1.5, 1.0) + 0.01 * rng.standard_normal(n)
    p0 = [0.07, 1.0, 1.2, 0.9]

    def fresh():  # a new function each time: no compiled program is reused
        def model(x, bottom, hill, ec50, top):
            return top + (bottom - top) / (1.0 + (x / ec50) ** hill)

        return model

    assert_fit_goes_through(monkeypatch, fp, "fast_pow", fresh, _logistic4, x, y, p0)


def test_split_constants_carry_y_times_k_ln2_exactly():
    """``LN2_HI`` has 21 significant bits and ``LN2_HI + LN2_LO`` is ln 2 to 3e-23 (digits
    of ln 2 from OEIS A002162); the split of ``y`` keeps 21 bits, so ``y_hi·k·LN2_HI`` is
    exact for every exponent a double can have (checked in exact rational arithmetic)."""
    from decimal import Decimal, getcontext
    from fractions import Fraction

    getcontext().prec = 50
    ln2 = Decimal("0.69314718055994530941723212145817656807550013436026")
    assert abs(Decimal(fp.LN2_HI) + Decimal(fl.LN2_LO) - ln2) < Decimal("3e-23")
    mantissa = Fraction(fp.LN2_HI) * 2**21  # 21 significant bits: an integer here
    assert mantissa.denominator == 1
    rng = np.random.default_rng(5)
    ys = np.concatenate([rng.uniform(-20, 20, 300), rng.standard_normal(300) * 1e6])
    ks = rng.integers(-1075, 1076, ys.size).astype(np.float64)
    for y, k in zip(ys, ks, strict=True):
        c = fp._SPLIT * y
        y_hi = c - (c - y)
        t = k * fp.LN2_HI
        assert Fraction(t) == Fraction(int(k)) * Fraction(fp.LN2_HI)
        assert Fraction(y_hi * t) == Fraction(y_hi) * Fraction(t)
        assert abs(y - y_hi) <= 2.0**-20 * abs(y)
