"""``curvax.core.fast_trig``: vectorised float64 ``sin`` and ``cos`` for CPU fits.

References are independent of the code under test: NumPy's ``sin``/``cos`` (the C
library's, correctly rounded in practice), JAX's own ``lax.sin``/``lax.cos``, and
SciPy's ``curve_fit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax.core.fast_trig as ft
from curvax.core.fast_math import with_fast_math
from tests._fast_math_fits import assert_fit_goes_through, ulps

pytestmark = pytest.mark.usefixtures("float64_only")


def _arguments() -> np.ndarray:
    """Ordinary arguments: small, up to the bound, and the doubles nearest to multiples
    of π/2 (where the reduction cancels most)."""
    rng = np.random.default_rng(7)
    n = rng.integers(-(2**19) + 1, 2**19, 20_000)
    near = n * (np.pi / 2)
    near = np.concatenate([near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf)])
    return np.concatenate([
        np.linspace(-10.0, 10.0, 20_001),
        rng.uniform(-ft.BOUND, ft.BOUND, 20_000),
        rng.uniform(-1e-6, 1e-6, 2_000),
        np.logspace(-12, 0, 2_000),
        near,
        [ft.BOUND, -ft.BOUND, np.pi / 4, np.pi / 2, np.pi, 2.0**-27, 2.0**-28],
    ])


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_within_one_ulp_of_the_c_library(name):
    x = _arguments()
    fn = ft.fast_sin if name == "sin" else ft.fast_cos
    got = np.asarray(jax.jit(fn)(x))
    ref = getattr(np, name)(x)
    err = ulps(got, ref)
    assert err.max() <= 1.0, (x[np.argmax(err)], got[np.argmax(err)], err.max())
    assert np.mean(got == ref) > 0.9  # most values correctly rounded


def test_signed_zero_and_tiny_arguments():
    x = np.array([0.0, -0.0, 1e-300, -1e-300, 1e-9, -1e-9])
    s = np.asarray(jax.jit(ft.fast_sin)(x))
    c = np.asarray(jax.jit(ft.fast_cos)(x))
    np.testing.assert_array_equal(s, np.sin(x))
    np.testing.assert_array_equal(np.signbit(s), np.signbit(np.sin(x)))
    np.testing.assert_array_equal(c, np.ones_like(x))


@pytest.mark.parametrize("odd", [np.inf, -np.inf, np.nan, 1e7, -3e15])
def test_a_call_with_an_unusual_argument_is_xlas(odd):
    """Infinities, NaN and arguments above the bound send the whole call to lax.sin /
    lax.cos: every value then equals XLA's."""
    x = np.concatenate([np.linspace(-5.0, 5.0, 11), [odd]])
    for fast, lax_fn in ((ft.fast_sin, jax.lax.sin), (ft.fast_cos, jax.lax.cos)):
        np.testing.assert_array_equal(np.asarray(jax.jit(fast)(x)), np.asarray(jax.jit(lax_fn)(x)))


def test_derivatives_are_cos_and_minus_sin():
    x = np.concatenate([np.linspace(-30.0, 30.0, 601), [0.0, -0.0]])
    ds = np.asarray(jax.jit(jax.vmap(jax.grad(ft.fast_sin)))(x))
    dc = np.asarray(jax.jit(jax.vmap(jax.grad(ft.fast_cos)))(x))
    assert ulps(ds, np.cos(x)).max() <= 1.0
    assert ulps(dc, -np.sin(x))[x != 0].max() <= 1.0
    # jvp of a whole array, the form the fit's forward mode takes
    _, t = jax.jvp(ft.fast_sin, (jnp.asarray(x),), (jnp.full(x.shape, 2.0),))
    assert ulps(np.asarray(t), 2.0 * np.cos(x)).max() <= 1.0


def _names(jaxpr) -> set[str]:
    """Primitive names at the top level and inside nested jit (not inside cond)."""
    out = set()
    for eqn in jaxpr.eqns:
        out.add(eqn.primitive.name)
        inner = eqn.params.get("jaxpr")
        if inner is not None and eqn.primitive.name in ("pjit", "jit"):
            out |= _names(inner.jaxpr)
    return out


def test_the_rewrite_reaches_nested_jit_and_leaves_float32_alone():
    @jax.jit
    def inner(z):
        return jnp.cos(z)

    def model(x, a, w):
        return a * jnp.sin(w * x) + inner(w * x)

    kinds = frozenset({"trig"})
    x = jnp.linspace(0.0, 6.0, 9)
    assert {"sin", "cos"} <= _names(jax.make_jaxpr(model)(x, 1.5, 2.0).jaxpr)
    after = _names(jax.make_jaxpr(with_fast_math(model, kinds))(x, 1.5, 2.0).jaxpr)
    assert not {"sin", "cos"} & after
    np.testing.assert_allclose(
        with_fast_math(model, kinds)(x, 1.5, 2.0), model(x, 1.5, 2.0), rtol=1e-15, atol=1e-15
    )
    x32 = jnp.linspace(0.0, 6.0, 9, dtype=jnp.float32)
    after32 = jax.make_jaxpr(with_fast_math(jnp.sin, kinds))(x32).jaxpr
    assert "sin" in _names(after32)  # float32 is left to XLA


def _damped_np(x, a, tau, omega, phi, c):
    return a * np.exp(-x / tau) * np.sin(omega * x + phi) + c


@pytest.mark.parametrize("n", [500, 20_000])
def test_damped_oscillation_fit_equals_scipy_and_xlas_sine(n, monkeypatch):
    """A fit on a CPU goes through fast_sin (counted), agrees with SciPy, and gives the
    fit with XLA's sine to ~1e-10."""
    rng = np.random.default_rng(n)
    x = np.linspace(0.0, 10.0, n)
    y = _damped_np(x, 1.5, 3.0, 2.0, 0.3, 0.1) + 0.02 * rng.standard_normal(n)
    p0 = [1.4, 2.8, 2.02, 0.32, 0.12]

    def fresh():  # a new function each time: no compiled program is reused
        def model(x, a, tau, omega, phi, c):
            return a * jnp.exp(-x / tau) * jnp.sin(omega * x + phi) + c

        return model

    assert_fit_goes_through(monkeypatch, ft, "fast_sin", fresh, _damped_np, x, y, p0)
