"""``curvax.core.fast_log``: a vectorised float64 ``log`` for models fitted on a CPU.

References are independent of the code under test: NumPy's ``log`` (the C library's,
correctly rounded in practice), JAX's own ``lax.log`` and its derivative, exact rational
arithmetic, and SciPy's ``curve_fit``.
"""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
import curvax.core.fast_log as fl
from curvax.core.fast_math import with_fast_math
from tests._fast_math_fits import all_equations, assert_fit_goes_through, ulps

pytestmark = pytest.mark.usefixtures("float64_only")


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (1e-300, 1e300),  # every exponent
        (0.5, 2.0),  # k in {-1, 0, 1}: the polynomial does all the work
        (1.0 - 1e-3, 1.0 + 1e-3),  # near 1, where ln x is small
        (np.sqrt(0.5) * (1 - 1e-9), np.sqrt(0.5) * (1 + 1e-9)),  # the reduction's edges
        (np.sqrt(2.0) * (1 - 1e-9), np.sqrt(2.0) * (1 + 1e-9)),
    ],
)
def test_within_one_ulp_of_the_c_library(lo, hi):
    x = np.exp(np.random.default_rng(3).uniform(np.log(lo), np.log(hi), 200_000))
    ref = np.log(x)
    for fn in (fl.fast_log, fl.held_log):
        got = np.asarray(jax.jit(fn)(x))
        err = ulps(got, ref)
        assert err.max() <= 1.0, (lo, hi, err.max())
        assert np.mean(got == ref) >= 0.85  # most values correctly rounded


def test_exact_values():
    x = np.array([1.0, 2.0, 0.5, 1024.0, 2.0**-1022, 2.0**1023])
    got = np.asarray(jax.jit(fl.fast_log)(x))
    np.testing.assert_array_equal(got[0], 0.0)  # ln 1 = 0 exactly
    assert np.all(ulps(got[1:], np.log(x[1:])) <= 0.5)  # k·ln 2, correctly rounded


def test_special_operands_give_xlas_answer():
    """Zeros, subnormals (flushed by XLA:CPU), infinities, NaN and negatives: the same
    value as ``jnp.log`` compiled by XLA, sign of infinities included."""
    x = np.array(
        [
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            1e-310,
            np.inf,
            -np.inf,
            np.nan,
            -1.0,
            -1e300,
            2.2250738585072014e-308,
            1.7976931348623157e308,
        ]
    )
    got = np.asarray(jax.jit(fl.fast_log)(x))
    ref = np.asarray(jax.jit(jnp.log)(x))
    same = (np.isnan(got) & np.isnan(ref)) | (got == ref)
    assert same.all(), list(zip(x[~same], got[~same], ref[~same], strict=True))
    assert got[0] == -np.inf and got[5] == np.inf and np.isnan(got[8])


def test_the_reciprocal_polynomial_and_its_newton_steps():
    """The polynomial's relative error on [1 + √½, 1 + √2] is below the documented 9.7e-6
    (NumPy's evaluation, exact rational arithmetic at the ends), and the two Newton steps
    give 1/d within one unit in the last place."""
    lo, hi = 1.0 + np.sqrt(0.5), 1.0 + np.sqrt(2.0)
    d = np.linspace(lo, hi, 100_001)
    p = np.polyval([fl.R4, fl.R3, fl.R2, fl.R1, fl.R0], d)
    assert np.max(np.abs(d * p - 1.0)) < 9.7e-6
    for end in (Fraction(lo), Fraction(hi)):
        coefficients = [Fraction(c) for c in (fl.R4, fl.R3, fl.R2, fl.R1, fl.R0)]
        value = Fraction(0)
        for c in coefficients:
            value = value * end + c
        assert abs(end * value - 1) < Fraction(97, 10**7)
    r = np.asarray(jax.jit(fl._reciprocal)(d))
    assert np.max(ulps(r, 1.0 / d)) <= 1.0


def test_log_parts_add_up_to_the_logarithm():
    """``k`` is the binary exponent of the mantissa reduction (an integer, ``m`` in
    ``[√½, √2)``) and ``k·LN2_HI + l`` is ``ln a``."""
    a = np.exp(np.random.default_rng(4).uniform(-700.0, 700.0, 10_000))
    k, l = (np.asarray(v) for v in jax.jit(fl.log_parts)(a))
    assert np.all(k == np.round(k))
    m = a / 2.0**k
    assert np.all((m >= np.sqrt(0.5) * (1 - 1e-15)) & (m < np.sqrt(2.0) * (1 + 1e-15)))
    assert np.all(np.abs(l) <= 0.35 + np.abs(k) * fl.LN2_LO)
    assert np.max(ulps(k * fl.LN2_HI + l, np.log(a))) <= 1.0


@pytest.mark.parametrize("x", [np.array([0.3, 1.0, 2.5, 4e5]), np.array([0.0, 1.0, -2.0, 3.0])])
def test_derivative_is_that_of_lax_log(x):
    t = np.linspace(0.5, 1.5, x.size)
    v, dv = (np.asarray(a) for a in jax.jit(lambda a: jax.jvp(fl.fast_log, (a,), (t,)))(x))
    v0, dv0 = (np.asarray(a) for a in jax.jit(lambda a: jax.jvp(jnp.log, (a,), (t,)))(x))
    exact = (np.isnan(v) & np.isnan(v0)) | (v == v0)
    assert np.all(ulps(v[~exact], v0[~exact]) <= 1.0), (v, v0)
    finite = np.isfinite(dv0)
    assert np.all(ulps(dv[finite], dv0[finite]) <= 1.0)
    np.testing.assert_array_equal(dv[~finite], dv0[~finite])  # ±∞ at 0
    # the second derivative, through the rule's reciprocal: -t·s/a²
    d2 = jax.jit(jax.grad(jax.grad(lambda a: fl.fast_log(a))))(2.5)
    np.testing.assert_allclose(d2, -1.0 / 2.5**2, rtol=1e-15)


def _rewritten(fn):
    return with_fast_math(fn, frozenset({"log"}))


def test_the_rewrite_replaces_array_logs_only():
    """A logarithm of an array (also inside a nested ``jit``) is replaced; one of a scalar
    parameter, computed once per evaluation, and float32 are left to XLA."""

    @jax.jit
    def inner(x, b):
        return b * jnp.log(x)

    def model(x, a, b, c):
        return jnp.exp(inner(x, b) - jnp.log(c)) * a

    x = jnp.linspace(0.1, 3.0, 7)
    after = jax.make_jaxpr(_rewritten(model))(x, 2.0, 1.3, 0.7).jaxpr
    logs = [e for e in all_equations(after) if e.primitive.name == "log"]
    assert [e.invars[0].aval.shape for e in logs] == [()]  # ln c only
    np.testing.assert_allclose(
        _rewritten(model)(x, 2.0, 1.3, 0.7), model(x, 2.0, 1.3, 0.7), rtol=1e-14
    )
    x32 = jnp.linspace(0.5, 2.0, 5, dtype=jnp.float32)
    after32 = jax.make_jaxpr(_rewritten(jnp.log))(x32).jaxpr
    assert any(e.primitive.name == "log" for e in all_equations(after32))


def _log_normal_np(x, a, mu, s, c):
    return a * np.exp(-((np.log(x) - mu) ** 2) / (2.0 * s**2)) + c


@pytest.mark.parametrize("n", [500, 20_000])
def test_log_normal_peak_fit_equals_scipy_and_xlas_log(n, monkeypatch):
    """A fit on a CPU goes through fast_log (counted), agrees with SciPy, and gives the
    fit with XLA's ``log`` to ~1e-10."""
    rng = np.random.default_rng(n)
    x = np.logspace(-2, 2, n)
    y = _log_normal_np(x, 2.0, 0.3, 0.8, 0.1) + 0.02 * rng.standard_normal(n)
    p0 = [1.8, 0.2, 0.9, 0.12]

    def fresh():  # a new function each time: no compiled program is reused
        def model(x, a, mu, s, c):
            return a * jnp.exp(-((jnp.log(x) - mu) ** 2) / (2.0 * s**2)) + c

        return model

    assert_fit_goes_through(monkeypatch, fl, "fast_log", fresh, _log_normal_np, x, y, p0)


def _power_law_np(x, a, b, c):
    return a * np.exp(b * np.log(x)) + c


def test_power_law_with_the_exponent_fitted_equals_scipy(monkeypatch):
    """The logarithm's value feeds the model and the exponent's Jacobian column."""
    rng = np.random.default_rng(11)
    x = np.linspace(0.5, 20.0, 3000)
    y = _power_law_np(x, 1.5, 0.7, 0.2) + 0.01 * rng.standard_normal(x.size)

    def fresh():
        def model(x, a, b, c):
            return a * jnp.exp(b * jnp.log(x)) + c

        return model

    assert_fit_goes_through(
        monkeypatch, fl, "fast_log", fresh, _power_law_np, x, y, [1.0, 0.5, 0.0]
    )


def test_holding_is_switched_off_for_threaded_parts():
    """``hold=True`` computes the logarithm inside a conditional (held in memory);
    ``hold=False`` (a threaded reduction's parts) leaves it to XLA's ``log``.  Values
    and derivatives agree either way."""

    def model(x, b):
        return jnp.exp(b * jnp.log(x))

    x = jnp.linspace(0.5, 3.0, 64)
    names = {}
    for hold in (True, False):
        rewritten = with_fast_math(model, frozenset({"log"}), hold=hold)
        jaxpr = jax.make_jaxpr(jax.jacfwd(rewritten, argnums=1))(x, 1.3).jaxpr
        names[hold] = {e.primitive.name for e in all_equations(jaxpr)}
        v, dv = jax.jvp(lambda b, f=rewritten: f(x, b), (1.3,), (1.0,))
        ref = np.exp(1.3 * np.log(np.asarray(x)))
        np.testing.assert_allclose(v, ref, rtol=2e-15)
        np.testing.assert_allclose(dv, np.log(np.asarray(x)) * ref, rtol=2e-15, atol=1e-15)
    assert "cond" in names[True] and "log" not in names[True]
    assert "cond" not in names[False] and "log" in names[False]


def test_threaded_fit_of_a_log_model_equals_the_one_program_fit():
    rng = np.random.default_rng(2)
    x = np.logspace(-2, 2, 40_000)
    y = _log_normal_np(x, 2.0, 0.3, 0.8, 0.1) + 0.02 * rng.standard_normal(x.size)

    def model(x, a, mu, s, c):
        return a * jnp.exp(-((jnp.log(x) - mu) ** 2) / (2.0 * s**2)) + c

    p1, c1 = curvax.curve_fit(model, x, y, p0=[1.8, 0.2, 0.9, 0.12], workers=1)
    p2, c2 = curvax.curve_fit(model, x, y, p0=[1.8, 0.2, 0.9, 0.12], workers=2)
    np.testing.assert_allclose(p2, p1, rtol=1e-10)
    np.testing.assert_allclose(c2, c1, rtol=1e-7)
