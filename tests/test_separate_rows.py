"""``curvax.core.separate_rows``: forward-mode Jacobian rows without structural zeros.

References are independent of the code under test: JAX's batched tangent
``vmap(push)(I)``, derivatives written out by hand in NumPy, and SciPy's ``curve_fit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
import curvax.core.problem as problem
import curvax.core.separate_rows as sr
from curvax.core.problem import value_and_jacobian
from tests._fast_math_fits import assert_fit_goes_through

pytestmark = pytest.mark.usefixtures("float64_only")


X = np.linspace(0.0, 10.0, 257)


def peaks3(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):
    def peak(a, m, s):
        return a * jnp.exp(-((x - m) ** 2) / (2 * s * s))

    return peak(a1, m1, s1) + peak(a2, m2, s2) + peak(a3, m3, s3) + c


def peaks3_np(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):
    def peak(a, m, s):
        return a * np.exp(-((x - m) ** 2) / (2 * s * s))

    return peak(a1, m1, s1) + peak(a2, m2, s2) + peak(a3, m3, s3) + c


TRUTH = np.array([2.0, 2.0, 0.5, 1.5, 5.0, 0.7, 1.0, 7.5, 0.4, 0.1])


def _nested(x, a, b, c, d):
    """Nested jit, a select, a subtraction from zero, a division, an unused parameter."""
    inner = jax.jit(lambda t, u: jnp.where(t > 5.0, u * t, -u / (1.0 + t)))
    return inner(x, a) - b * jnp.sin(x) + 0.0 * c + jnp.exp(-d * x) / (2.0 + d)


def _rows_both_ways(model, p, x=X):
    x = jnp.asarray(x)

    def resid(q):
        return model(x, *q)

    p = jnp.asarray(p, jnp.float64)
    _, Jt_batched = jax.jit(lambda q: value_and_jacobian(resid, q, "fwd", transposed=True))(p)
    _, Jt_rows = jax.jit(
        lambda q: value_and_jacobian(resid, q, "fwd", transposed=True, rows="separate")
    )(p)
    return np.asarray(Jt_batched), np.asarray(Jt_rows)


@pytest.mark.parametrize(
    "model, p",
    [(peaks3, TRUTH), (_nested, np.array([0.7, -1.3, 2.0, 0.4]))],
    ids=["three-peaks", "nested-select-div"],
)
def test_rows_equal_the_batched_tangent(model, p):
    batched, rows = _rows_both_ways(model, p)
    assert rows.shape == batched.shape == (p.size, X.size)
    scale = np.max(np.abs(batched), axis=1, keepdims=True)
    tol = 4 * np.finfo(float).eps * scale  # a few roundings of the row's largest term
    assert np.all(np.abs(rows - batched) <= tol), np.max(np.abs(rows - batched) / (tol + 1e-300))


def test_three_peak_rows_against_hand_written_derivatives():
    _, rows = _rows_both_ways(peaks3, TRUTH)
    ref = []
    for k in range(3):
        a, m, s = TRUTH[3 * k : 3 * k + 3]
        g = np.exp(-((X - m) ** 2) / (2 * s * s))
        ref += [g, a * g * (X - m) / s**2, a * g * (X - m) ** 2 / s**3]
    ref.append(np.ones_like(X))
    np.testing.assert_allclose(rows, np.array(ref), rtol=1e-13, atol=1e-15)


def test_a_parameter_the_model_ignores_has_an_exactly_zero_row():
    _, rows = _rows_both_ways(_nested, np.array([0.7, -1.3, 2.0, 0.4]))
    assert np.all(rows[2] == 0.0)


def test_a_term_that_overflows_leaves_the_other_rows_finite():
    """Where exp(b·x) overflows, the batched tangent forms 0·∞ = NaN in the row of ``c``;
    the separate rows keep its partial derivative, x."""

    def model(x, a, b, c):
        return a * jnp.exp(b * x) + c * x

    p = np.array([1.0, 80.0, 2.0])  # exp(80·x) overflows for x > 8.87
    batched, rows = _rows_both_ways(model, p)
    over = X > 9.0
    assert np.isnan(batched[2][over]).all()  # what the batched tangent gives there
    np.testing.assert_array_equal(rows[2], X)
    assert not np.isfinite(rows[0][over]).any()  # a's own partial derivative overflows


def test_mode_and_block_size_rules(monkeypatch):
    monkeypatch.setattr(sr, "_SETTING", None)
    assert sr.rows_mode("cpu") == "auto"
    assert sr.rows_mode("gpu") == "batched"
    assert not sr.uses_separate_rows("auto", sr.MIN_PARAMETERS - 1)
    assert sr.uses_separate_rows("auto", sr.MIN_PARAMETERS)
    assert not sr.uses_separate_rows("batched", 50)
    assert sr.uses_separate_rows("separate", 2)
    assert sr.rows_block_size(4096, "cpu", 10) == sr.BLOCK_SIZE
    assert sr.rows_block_size(4096, "cpu", 8) == 4096
    assert sr.rows_block_size(4096, "gpu", 10) == 4096
    assert sr.rows_block_size(1024, "cpu", 10) == 1024
    monkeypatch.setattr(sr, "_SETTING", "0")
    assert sr.rows_mode("cpu") == "batched"
    monkeypatch.setattr(sr, "_SETTING", "1")
    assert sr.rows_mode("gpu") == "separate"
    assert sr.rows_block_size(4096, "cpu", 3) == sr.BLOCK_SIZE
    assert sr.rows_block_size(2**22, "gpu", 10) == 2**22


@pytest.mark.parametrize("raw, expected", [("", None), ("auto", None), ("0", "0"), (" 1 ", "1")])
def test_environment_setting(monkeypatch, raw, expected):
    monkeypatch.setenv(sr.ENV_VAR, raw)
    assert sr._setting() == expected


def test_a_bad_environment_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv(sr.ENV_VAR, "yes")
    with pytest.raises(ValueError, match="CURVAX_SEPARATE_ROWS"):
        sr._setting()


def _fresh_peaks3():
    """A new function object per call: no compiled program is shared between fits."""

    def model(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):
        return peaks3(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c)

    return model


def _fresh_three_logistic():
    """Three dose-response steps and an offset: ``x ** h`` goes through fast_pow's
    conditional on a CPU, so the linearisation holds a ``cond``."""

    def model(x, a1, h1, e1, a2, h2, e2, a3, h3, e3, c):
        def step(a, h, e):
            return a / (1.0 + (x / e) ** h)

        return step(a1, h1, e1) + step(a2, h2, e2) + step(a3, h3, e3) + c

    return model


def three_logistic_np(x, a1, h1, e1, a2, h2, e2, a3, h3, e3, c):
    def step(a, h, e):
        return a / (1.0 + (x / e) ** h)

    return step(a1, h1, e1) + step(a2, h2, e2) + step(a3, h3, e3) + c


CASES = {
    "three-peaks": (_fresh_peaks3, peaks3_np, TRUTH, np.linspace(0.0, 10.0, 5000), 0.03),
    "three-logistic-steps": (
        _fresh_three_logistic,
        three_logistic_np,
        np.array([1.0, 1.2, 0.1, 0.8, 1.5, 1.5, 0.5, 2.0, 20.0, 0.05]),
        np.logspace(-2, 2, 4000),
        0.01,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_ten_parameter_fit_goes_through_the_rows_and_agrees_with_scipy(monkeypatch, case):
    fresh, reference, truth, x, noise = CASES[case]
    rng = np.random.default_rng(3)
    y = reference(x, *truth) + noise * rng.standard_normal(x.size)
    p0 = truth * (1 + 0.05 * rng.uniform(-1, 1, truth.size))
    monkeypatch.setattr(sr, "_SETTING", None)  # the default: separate rows from 9 on
    assert_fit_goes_through(
        monkeypatch, problem, "jacobian_rows", fresh, reference, x, y, list(p0),
        switch_off=lambda: monkeypatch.setattr(sr, "_SETTING", "0"),
    )


def test_fixed_parameters_count_as_fewer_rows(monkeypatch):
    """Ten parameters with two held fixed are eight free ones: the batched tangent."""
    x = np.linspace(0.0, 10.0, 3000)
    y = peaks3_np(x, *TRUTH) + 0.02 * np.random.default_rng(5).standard_normal(x.size)
    calls = []
    original = sr.jacobian_rows
    monkeypatch.setattr(sr, "_SETTING", None)
    monkeypatch.setattr(
        "curvax.core.problem.jacobian_rows", lambda *a: calls.append(1) or original(*a)
    )
    res = curvax.fit_curve(_fresh_peaks3(), x, y, p0=TRUTH * 1.02, fixed={"s1": 0.5, "c": 0.1})
    assert res.success
    assert not calls
    np.testing.assert_allclose(res.x[[0, 1, 3, 4, 6, 7]], TRUTH[[0, 1, 3, 4, 6, 7]], rtol=0.05)
