"""``curvax.core.materialize``: forward-mode linearisation that holds a model's slow
values (sin, cos, …) in memory instead of recomputing them for each Jacobian row.

References: the closed-form derivatives of the models, ``jax.linearize`` itself, and
SciPy's ``curve_fit``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import curvax
import curvax.core.fast_math as fm
import curvax.core.fast_trig as ft
import curvax.core.materialize as mz
from curvax.core.fast_math import replaced_names
from curvax.core.problem import value_and_jacobian

pytestmark = pytest.mark.usefixtures("float64_only")


X = np.linspace(0.0, 6.0, 257)


def _sine(x, p):
    return p[0] * jnp.sin(p[1] * x + p[2]) + p[3]


def _sine_jacobian(x, p):
    """Closed form: ∂/∂a, ∂/∂ω, ∂/∂φ, ∂/∂c of a·sin(ωx + φ) + c."""
    z = p[1] * x + p[2]
    return np.stack([np.sin(z), p[0] * x * np.cos(z), p[0] * np.cos(z), np.ones_like(x)], 1)


def _damped(x, p):
    return p[0] * jnp.exp(-x / p[1]) * jnp.sin(p[2] * x + p[3]) + p[4]


def _fourier(x, p):
    out = p[0]
    for k in range(1, 4):
        out = out + p[2 * k - 1] * jnp.cos(k * p[7] * x) + p[2 * k] * jnp.sin(k * p[7] * x)
    return out


def _exp(x, p):
    return p[0] * jnp.exp(-p[1] * x) + p[2]


P = {
    "sine": np.array([1.5, 2.0, 0.3, 0.1]),
    "damped": np.array([1.5, 3.0, 2.0, 0.3, 0.1]),
    "fourier": np.array([0.1, 1.0, 0.5, 0.3, 0.2, 0.1, 0.1, 1.3]),
}
MODELS = {"sine": _sine, "damped": _damped, "fourier": _fourier}


def _jaxpr(fn, *args):
    return jax.make_jaxpr(fn)(*args).jaxpr


def test_slow_primitives_are_found_where_they_are_nested():
    p = jnp.ones(4)
    x = jnp.asarray(X)

    @jax.jit
    def inner(z):
        return jnp.cos(z)

    @jax.custom_jvp
    def custom(z):
        return jnp.tan(z)

    custom.defjvp(lambda primals, tangents: (custom(primals[0]), tangents[0]))

    def in_cond(x, p):
        return jax.lax.cond(p[0] > 0, lambda: jnp.sin(x), lambda: x)

    def in_scan(x, p):
        return jax.lax.scan(lambda c, xi: (c + jax.scipy.special.erfinv(xi / 7), None), 0.0, x)[0]

    slow = mz.SLOW_TO_REPEAT
    assert mz.holds_primitive(_jaxpr(lambda x, p: p[0] * inner(x), x, p), slow)
    assert mz.holds_primitive(_jaxpr(lambda x, p: custom(p[0] * x), x, p), slow)
    assert mz.holds_primitive(_jaxpr(in_cond, x, p), slow)
    assert mz.holds_primitive(_jaxpr(in_scan, x, p), slow)
    assert not mz.holds_primitive(_jaxpr(_exp, x, p), slow)
    assert not mz.holds_primitive(_jaxpr(lambda x, p: jnp.arctan(p[0] * x), x, p), slow)


def _jacobian(model, p, materialize):
    def resid(q):
        return model(jnp.asarray(X), q)

    held = mz.SLOW_TO_REPEAT if materialize else frozenset()
    return jax.jit(lambda q: value_and_jacobian(resid, q, "fwd", materialize=held))(p)


def test_materialized_jacobian_is_the_closed_form_one():
    p = P["sine"]
    r, J = _jacobian(_sine, p, True)
    np.testing.assert_allclose(np.asarray(J), _sine_jacobian(X, p), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(
        np.asarray(r), p[0] * np.sin(p[1] * X + p[2]) + p[3], rtol=1e-13, atol=1e-14
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_materialized_linearization_equals_jax_linearize(name):
    r0, J0 = _jacobian(MODELS[name], P[name], False)
    r1, J1 = _jacobian(MODELS[name], P[name], True)
    scale = float(np.max(np.abs(J0)))
    np.testing.assert_allclose(np.asarray(r1), np.asarray(r0), rtol=0, atol=1e-14 * scale)
    np.testing.assert_allclose(np.asarray(J1), np.asarray(J0), rtol=0, atol=1e-14 * scale)


def test_nan_parameters_still_give_nan():
    """The predicate of the conditional is false for a NaN first parameter; both branches
    compute the same thing, so the NaNs the fit's checks count are still there."""
    p = P["sine"].copy()
    p[0] = np.nan
    r, J = _jacobian(_sine, p, True)
    assert np.isnan(np.asarray(r)).all()
    assert np.isnan(np.asarray(J)[:, 1:3]).all()


def _lowered(model, p, materialize):
    def resid(q):
        return model(jnp.asarray(X), q)

    held = mz.SLOW_TO_REPEAT if materialize else frozenset()
    fn = functools.partial(value_and_jacobian, mode="fwd", materialize=held)
    return jax.jit(lambda q: fn(resid, q)).lower(p).as_text()


def _has_conditional(text):
    return "stablehlo.case" in text or "stablehlo.if" in text


def test_the_conditional_is_used_only_for_slow_models_and_when_asked():
    assert _has_conditional(_lowered(_sine, P["sine"], True))
    assert not _has_conditional(_lowered(_sine, P["sine"], False))
    assert not _has_conditional(_lowered(_exp, np.array([2.5, 1.3, 0.5]), True))


def test_values_are_held_only_on_a_cpu_and_not_for_vectorised_replacements():
    assert mz.held_primitives("cpu", frozenset()) == mz.SLOW_TO_REPEAT
    with_trig = mz.held_primitives("cpu", replaced_names(frozenset({"trig"})))
    assert {"tan", "erf_inv"} <= with_trig and not {"sin", "cos"} & with_trig
    assert mz.held_primitives("gpu", frozenset()) == frozenset()


def _sine_np(x, a, w, ph, c):
    return a * np.sin(w * x + ph) + c


def _fourier_np(x, a0, a1, b1, a2, b2, a3, b3, w):
    return (a0 + a1 * np.cos(w * x) + b1 * np.sin(w * x) + a2 * np.cos(2 * w * x)
            + b2 * np.sin(2 * w * x) + a3 * np.cos(3 * w * x) + b3 * np.sin(3 * w * x))


@pytest.mark.parametrize("n", [500, 20_000])
@pytest.mark.parametrize("name", ["sine", "fourier"])
def test_trigonometric_fits_equal_scipy_and_the_plain_linearization(name, n, monkeypatch):
    """A CPU fit of a trigonometric model with XLA's sine and cosine (the vectorised ones
    switched off) goes through the materialised linearisation (seen), agrees with
    SciPy, and with the plain linearisation to ~1e-10."""
    monkeypatch.setattr(fm, "switched_off", lambda var: var == ft.ENV_VAR)
    seen = []
    original = mz.holds_primitive

    def spy(jaxpr, names):
        found = original(jaxpr, names)
        seen.append(found)
        return found

    monkeypatch.setattr(mz, "holds_primitive", spy)
    rng = np.random.default_rng(n)
    truth = P[name]
    ref_model = _sine_np if name == "sine" else _fourier_np
    x = np.linspace(0.0, 6.0 if name == "sine" else 10.0, n)
    y = ref_model(x, *truth) + 0.02 * rng.standard_normal(n)
    p0 = truth * 1.03 + 0.01

    def fresh():  # a new function each time: no compiled program is reused
        return lambda x, p: MODELS[name](x, p)

    popt, pcov = curvax.curve_fit(fresh(), x, y, p0=p0)
    if jax.default_backend() == "cpu":
        assert any(seen)
    ref, ref_cov = scipy_curve_fit(ref_model, x, y, p0=p0)
    np.testing.assert_allclose(popt, ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(pcov)), np.sqrt(np.diag(ref_cov)), rtol=1e-4)

    monkeypatch.setattr(mz, "SLOW_TO_REPEAT", frozenset())
    plain, plain_cov = curvax.curve_fit(fresh(), x, y, p0=p0)
    np.testing.assert_allclose(popt, plain, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pcov, plain_cov, rtol=1e-8, atol=1e-14)
