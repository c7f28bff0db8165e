"""``curvax.core.fast_div``: an array divided by a scalar as a product, for CPU fits.

References are independent of the code under test: NumPy's division and its product
``a * (1/b)`` (the same two roundings, computed by NumPy), XLA's own division and
JAX's derivative rule for ``a / b``, and SciPy's ``curve_fit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax.core.fast_div as fdv
from curvax.core.fast_math import with_fast_math
from tests._fast_math_fits import all_equations, assert_fit_goes_through

pytestmark = pytest.mark.usefixtures("float64_only")


def _dividends(n: int, seed: int) -> np.ndarray:
    """Signed values spread over magnitudes 1e-150 … 1e150."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) * 10.0 ** rng.uniform(-150, 150, n)


DIVISORS = [3.0, -7.3, 0.75, 1.0, -1.0, 2.0**-1022, 1e-300, 1e-200, 123456.789,
            6.02214076e23, -1.602176634e-19, 2.0**1022, 1e307]


@pytest.mark.parametrize("b", DIVISORS)
def test_quotients_are_within_one_ulp_and_equal_numpys_product_with_the_reciprocal(b):
    with np.errstate(over="ignore", under="ignore"):
        a = _dividends(20_000, 7) * abs(b)  # quotients of magnitude 1e-150 … 1e150
    got = np.asarray(jax.jit(fdv.div_by_scalar)(a, b))
    ref = a / b
    with np.errstate(over="ignore", under="ignore"):
        product = a * (1.0 / b)
    tiny = np.finfo(np.float64).tiny  # XLA:CPU reads subnormal operands as zero
    normal = np.isfinite(a) & (np.abs(a) >= tiny) & np.isfinite(ref) & (np.abs(ref) >= tiny)
    assert normal.sum() > 10_000
    np.testing.assert_array_equal(got[normal], product[normal])
    ulps = np.abs(got[normal] - ref[normal]) / np.spacing(np.abs(ref[normal]))
    assert ulps.max() <= 1.0
    if b in (1.0, -1.0, 2.0**-1022, 2.0**1022):  # exact reciprocals: exact quotients
        np.testing.assert_array_equal(got[normal], ref[normal])
    big = np.array([1e300, -1.7e308, 1e-300])  # overflow exactly where a / b overflows
    with np.errstate(over="ignore", under="ignore"):
        np.testing.assert_array_equal(
            np.isinf(np.asarray(jax.jit(fdv.div_by_scalar)(big, b))), np.isinf(big / b)
        )


SPECIAL_DIVIDENDS = np.array([0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, 1e300, -1e-300])


@pytest.mark.parametrize("b", [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -5e-324])
def test_special_divisors_give_xlas_own_quotient(b):
    """XLA:CPU reads a subnormal divisor as zero; the replacement does the same."""
    got = np.asarray(jax.jit(fdv.div_by_scalar)(SPECIAL_DIVIDENDS, b))
    ref = np.asarray(jax.jit(lambda u, v: u / v)(SPECIAL_DIVIDENDS, b))
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (got, ref)
    ok = ~np.isnan(ref)
    np.testing.assert_array_equal(got[ok], ref[ok])
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(ref[ok]))


@pytest.mark.parametrize("b", [4.5e307, -1e308, np.finfo(np.float64).max])
def test_a_divisor_whose_reciprocal_is_subnormal_gives_nan_not_zero(b):
    got = np.asarray(jax.jit(fdv.div_by_scalar)(np.array([1.0, 1e300, 0.0]), b))
    assert np.isnan(got).all()


@pytest.mark.parametrize(("da", "db"), [(True, True), (True, False), (False, True)])
def test_derivatives_are_those_of_a_quotient(da, db):
    a = _dividends(64, 3)
    b = -2.7
    ta = np.linspace(-1.0, 2.0, a.size) if da else np.zeros(a.size)
    tb = 0.3 if db else 0.0

    def jvps(fn):
        return jax.jit(lambda u, v: jax.jvp(fn, (u, v), (ta, tb)))(a, b)

    v, t = (np.asarray(x) for x in jvps(fdv.div_by_scalar))
    v0, t0 = (np.asarray(x) for x in jvps(lambda u, v: u / v))
    np.testing.assert_allclose(v, v0, rtol=3e-16, atol=0)
    np.testing.assert_allclose(t, t0, rtol=2e-15, atol=0)
    # the Jacobian with respect to the divisor, as a fitted parameter's column
    jb = np.asarray(jax.jit(jax.jacfwd(fdv.div_by_scalar, argnums=1))(a, b))
    np.testing.assert_allclose(jb, -a / b**2, rtol=2e-15, atol=0)


def _divisions(jaxpr) -> list[tuple[int, int]]:
    """``(rank of dividend, rank of divisor)`` of every ``div``, nested jaxprs included."""
    return [
        tuple(len(v.aval.shape) for v in eqn.invars)
        for eqn in all_equations(jaxpr)
        if eqn.primitive.name == "div"
    ]


def _array_divisions(jaxpr) -> int:
    return sum(1 for ranks in _divisions(jaxpr) if max(ranks) >= 1)


def test_the_rewrite_divides_less_and_leaves_values_and_derivatives_as_they_were():
    @jax.jit
    def inner(d, s):
        return d / (2.0 * s * s)

    def model(x, a, mu, s, w, km):
        # by scalars (one inside a nested jit), by an array, and a scalar quotient
        return a * jnp.exp(-inner(x - mu, s)) + x / w + a * x / (km + x) + (a / s) * x

    x = jnp.linspace(0.5, 2.0, 9)
    args = (x, 1.3, 0.2, 0.7, 3.0, 0.4)
    rewritten = with_fast_math(model, frozenset({"div"}))
    before = jax.make_jaxpr(model)(*args).jaxpr
    after = jax.make_jaxpr(rewritten)(*args).jaxpr
    assert sorted(_divisions(before)) == [(0, 0), (1, 0), (1, 0), (1, 1)]
    # the scalar quotient and the array divisor's correctly rounded value stay divisions;
    # the two divisions by a scalar are products (their reciprocals divide scalars)
    assert (1, 0) not in _divisions(after)
    assert (0, 0) in _divisions(after) and (1, 1) in _divisions(after)
    np.testing.assert_allclose(rewritten(*args), model(*args), rtol=4e-16, atol=0)

    # the Jacobian of the five parameters, one forward pass per column
    def jacobian(fn):
        return jax.jacfwd(lambda p: fn(x, *p))(jnp.asarray(args[1:]))

    j_before = jax.make_jaxpr(lambda: jacobian(model))().jaxpr
    j_after = jax.make_jaxpr(lambda: jacobian(rewritten))().jaxpr
    assert _array_divisions(j_after) < _array_divisions(j_before)
    np.testing.assert_allclose(jacobian(rewritten), jacobian(model), rtol=1e-14, atol=1e-15)

    x32 = x.astype(jnp.float32)
    after32 = jax.make_jaxpr(rewritten)(x32, *(jnp.float32(v) for v in args[1:])).jaxpr
    assert sorted(_divisions(after32)) == sorted(_divisions(before))  # float32: XLA's


@pytest.mark.parametrize(("da", "db"), [(True, True), (True, False), (False, True)])
def test_an_array_divisors_derivatives_are_those_of_a_quotient(da, db):
    rng = np.random.default_rng(11)
    a = _dividends(64, 5)
    b = rng.uniform(0.5, 3.0, a.size) * np.where(rng.random(a.size) < 0.5, -1.0, 1.0)
    ta = rng.standard_normal(a.size) if da else np.zeros(a.size)
    tb = rng.standard_normal(a.size) if db else np.zeros(a.size)

    def jvps(fn):
        return jax.jit(lambda u, v: jax.jvp(fn, (u, v), (ta, tb)))(a, b)

    v, t = (np.asarray(x) for x in jvps(fdv.div_by_array))
    v0, t0 = (np.asarray(x) for x in jvps(lambda u, v: u / v))
    np.testing.assert_array_equal(v, a / b)  # the value: XLA's division, correctly rounded
    np.testing.assert_array_equal(v0, a / b)
    # the quotient rule from NumPy, term by term: ȧ/b − ḃ·a/b²
    ref = ta / b - tb * a / b**2
    scale = np.abs(ta / b) + np.abs(tb * a / b**2)  # the terms' size bounds cancellation
    assert (np.abs(t - ref) <= 8e-16 * scale).all()
    assert (np.abs(t0 - ref) <= 8e-16 * scale).all()


def _gauss_np(x, a, mu, s, c):
    return a * np.exp(-((x - mu) ** 2) / (2.0 * s**2)) + c


@pytest.mark.parametrize("n", [300, 30_000])
def test_gaussian_fit_equals_scipy_and_the_native_division(n, monkeypatch):
    """A fit on a CPU goes through div_by_scalar (counted), agrees with SciPy, and gives
    the fit of the same model with XLA's own division to ~1e-10."""
    rng = np.random.default_rng(n)
    x = np.linspace(-5.0, 5.0, n)
    y = _gauss_np(x, 3.0, 0.4, 0.8, 0.2) + 0.05 * rng.standard_normal(n)
    p0 = [2.5, 0.2, 1.0, 0.0]

    def fresh():  # a new function each time: no compiled program is reused
        def model(x, a, mu, s, c):
            return a * jnp.exp(-((x - mu) ** 2) / (2.0 * s**2)) + c

        return model

    assert_fit_goes_through(monkeypatch, fdv, "div_by_scalar", fresh, _gauss_np, x, y, p0)
