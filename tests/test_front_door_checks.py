"""Bad input to curve_fit / fit_curve / least_squares: a clear error naming the
argument, never a raw JAX or NumPy error from deep inside, nor a value silently
dropped.  Cases found by a sweep of the public API (session 11)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import curvax

X = np.linspace(0.0, 4.0, 40)
Y = 2.0 * np.exp(-1.1 * X) + 0.01 * np.sin(9.0 * X)


def expo(x, a, b):
    return a * jnp.exp(-b * x)


def expo_jac(x, a, b):
    e = jnp.exp(-b * x)
    return jnp.stack([e, -a * x * e], axis=1)


def test_curve_fit_accepts_the_options_it_documents() -> None:
    """``devices=`` (docs/multi_device.md) and ``nan_policy`` with ``multistart=True``
    reach the fit (the first was refused as unknown, the second dropped)."""
    plain, _ = curvax.curve_fit(expo, X, Y, p0=[1.0, 1.0])
    on_one, _ = curvax.curve_fit(expo, X, Y, p0=[1.0, 1.0], devices=1)
    np.testing.assert_allclose(on_one, plain, rtol=1e-10)
    y = Y.copy()
    y[3] = np.nan
    keep = ~np.isnan(y)
    ref, _ = curvax.curve_fit(expo, X[keep], y[keep], p0=[1.0, 1.0])
    popt, _ = curvax.curve_fit(expo, X, y, p0=[1.0, 1.0], nan_policy="omit",
                               multistart=True, n_starts=4)
    np.testing.assert_allclose(popt, ref, rtol=1e-7)
    with pytest.raises(ValueError, match="ydata: contains NaN"):
        curvax.curve_fit(expo, X, y, p0=[1.0, 1.0], multistart=True, n_starts=4)


def test_a_model_guess_outside_the_bounds_starts_on_the_bound() -> None:
    """The model's own guess is moved into the bounds (it used to be blamed as p0)."""
    x = np.linspace(0.0, 5.0, 200)
    y = 3.0 * np.exp(-((x - 3.2) ** 2) / 0.5)  # guess puts the centre elsewhere
    popt, _ = curvax.curve_fit(curvax.models.gaussian, x, y, bounds={"center": (3.0, 4.0)})
    assert 3.0 <= popt[1] <= 4.0
    np.testing.assert_allclose(popt[1], 3.2, rtol=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"bounds": ([0, 0], [5, 1]), "fixed": {"b": 1.3}},
         r"fixed: b=1\.3 lies outside its bounds \[0, 1\]"),
        ({"bounds": {"b": (0, 1, 2)}}, r"bounds: 'b' needs a \(lower, upper\) pair"),
        ({"bounds": {"b": 5}}, r"bounds: 'b' needs a \(lower, upper\) pair, got 5"),
        ({"fixed": {"b": np.nan}}, "fixed: 'b' must be a finite number"),
        ({"fixed": {"b": "x"}}, "fixed: 'b' must be a finite number"),
        ({"param_names": ("a",)}, "param_names: has 1 names but the model has 2"),
        ({"jac": lambda x, a, b: jnp.stack([a, b])},
         r"jac: the callable Jacobian returned shape \(2,\) at p0; expected .* \(40, 2\)"),
        ({"jac": lambda x, a, b: jnp.exp(-b * x)[:, None]},
         r"jac: .*returned shape \(40, 1\)"),
        ({"jac": lambda x, a, b: np.stack([np.exp(-b * x), x], 1)},
         "jac: the callable Jacobian could not be traced by JAX"),
        ({"loss": lambda z: np.log1p(z)}, "loss: the callable loss could not be traced"),
        ({"loss": lambda z: jnp.log1p(z)[:2]}, "loss: a callable loss must return"),
    ],
)
def test_named_parameters_jacobians_and_losses_are_checked(kwargs, pattern) -> None:
    with pytest.raises(ValueError, match=pattern):
        curvax.fit_curve(expo, X, Y, p0=[1.0, 1.0], **kwargs)


def test_a_correct_callable_jacobian_and_fixed_value_still_fit() -> None:
    r = curvax.fit_curve(expo, X, Y, p0=[1.0, 1.0], jac=expo_jac)
    ref, _ = scipy_curve_fit(lambda x, a, b: a * np.exp(-b * x), X, Y, p0=[1.0, 1.0])
    np.testing.assert_allclose(r.x, ref, rtol=1e-6)
    fixed = curvax.fit_curve(expo, X, Y, p0=[1.0, 1.0], fixed={"b": 1.1},
                             bounds=([0, 0], [5, 2]))
    assert fixed.x[1] == 1.1


@pytest.mark.parametrize(
    ("sigma", "pattern"),
    [
        (np.ones(39), "sigma: has length 39 but ydata has length 40"),
        (np.ones((40, 1)), r"sigma: a 2-D sigma .* must have shape \(40, 40\), got \(40, 1\)"),
        (np.ones((39, 39)), r"got \(39, 39\)"),
        ("abc", "sigma: not numeric"),
        (np.ones(40) + 1j, "sigma: complex values are not supported"),
    ],
)
def test_sigma_is_checked_before_points_are_omitted(sigma, pattern) -> None:
    y = Y.copy()
    y[2] = np.nan
    with pytest.raises(ValueError, match=pattern):
        curvax.fit_curve(expo, X, y, p0=[1.0, 1.0], sigma=sigma, nan_policy="omit")


def test_inf_with_a_nan_policy_and_an_overflowing_start_are_named() -> None:
    y = Y.copy()
    y[2], y[3] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"ydata: contains Inf \(1 value\(s\), first at "
                                         r"index \(3,\)\); nan_policy acts on NaN only"):
        curvax.fit_curve(expo, X, y, p0=[1.0, 1.0], nan_policy="omit")
    with pytest.raises(ValueError, match="every entry is finite but the sum of their squares"):
        curvax.fit_curve(expo, X, Y, p0=[1e300, 1.0])


def test_square_xdata_with_points_along_the_first_axis_fits_as_scipy() -> None:
    """40 points × 40 variables: the model picks columns of x, so it returns 40 values
    whatever the padding; it is fitted on the whole x, as SciPy does."""
    xs = np.random.default_rng(0).random((40, 40))
    ys = 2.0 * xs[:, 0] + 3.0 * xs[:, 1] + 0.01 * np.cos(np.arange(40.0))
    popt, pcov = curvax.curve_fit(lambda x, a, b: a * x[:, 0] + b * x[:, 1], xs, ys,
                                  p0=[1.0, 1.0])
    ref, ref_cov = scipy_curve_fit(lambda x, a, b: a * x[:, 0] + b * x[:, 1], xs, ys,
                                   p0=[1.0, 1.0])
    np.testing.assert_allclose(popt, ref, rtol=1e-8)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-5)


T = np.linspace(0.0, 4.0, 20)


@pytest.mark.parametrize(
    ("fun", "pattern"),
    [
        (lambda p: jnp.stack([p[0] * T, p[1] * T]), r"fun: must return at most a 1-D array"),
        (lambda p: (p[0] * T + 1j).astype(jnp.complex64), "fun: complex residuals"),
        (lambda p: jnp.round(p[0] * T).astype(jnp.int32), "fun: must return floating-point"),
        (lambda p: None, "fun: must return an array of residuals, got NoneType"),
    ],
)
def test_least_squares_checks_what_fun_returns(fun, pattern) -> None:
    with pytest.raises(ValueError, match=pattern):
        curvax.least_squares(fun, [1.0, 1.0])


def test_least_squares_checks_a_callable_jacobian() -> None:
    def fun(p):
        return p[0] * jnp.exp(-p[1] * T) - 2.0 * np.exp(-1.1 * T)

    with pytest.raises(ValueError, match=r"jac: returned shape \(3,\) at x0; expected"):
        curvax.least_squares(fun, [1.0, 1.0], jac=lambda p: jnp.ones(3))
    with pytest.raises(ValueError, match="jac: could not be evaluated by JAX"):
        curvax.least_squares(fun, [1.0, 1.0], jac=lambda p: np.ones((20, 2)) * np.asarray(p)[0])


def test_float32_results_stay_inside_float64_bounds() -> None:
    """A bound not representable in float32 (0.7) and active at the solution: the
    float32 answer used to be the float32 just below it; SciPy promises lb <= popt."""
    x = np.linspace(0.0, 5.0, 19)
    y = 4.9 * np.exp(-0.6 * x) - 0.23 + 0.0016 * np.random.default_rng(0).normal(size=19)
    for lb in (0.7, 0.7285714285714285, 0.7357142857142857):
        popt, _ = curvax.curve_fit(
            lambda x, a, b, c: a * jnp.exp(-b * x) + c, x, y, p0=[5.7, lb + 0.02, -0.24],
            bounds=([-2, lb, -np.inf], [19, 2.6, 1.25]), dtype="float32",
        )
        assert popt.dtype == np.float32
        assert lb <= float(popt[1]) <= lb * (1 + 1e-6)


def test_inside_bounds_moves_only_what_rounding_put_outside() -> None:
    from curvax.core.solve import inside_bounds

    lb, ub = np.array([0.7, -np.inf, 0.0]), np.array([1.0, 0.3, 2.0])
    x = np.array([0.7, 0.3, 1.0], dtype=np.float32)  # 0.7f < 0.7, 0.3f > 0.3
    out = inside_bounds(x, lb, ub)
    assert out[0] == np.nextafter(np.float32(0.7), np.float32(1)) and out[0] >= 0.7
    assert out[1] == np.nextafter(np.float32(0.3), np.float32(0)) and out[1] <= 0.3
    assert out[2] == x[2]
    fixed = inside_bounds(np.array([5.0, 0.7], dtype=np.float32), lb[:1], ub[:1],
                          np.array([False, True]))
    assert fixed[0] == 5.0 and fixed[1] >= 0.7
