"""Core behaviour: compilation reuse, precision scope, reductions, losses, results."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core import loss as L
from curvax.core.engine import pack, unpack
from curvax.core.reduction import merge_factors, triangularize

TRACES = {"n": 0}


def counted_exp(x, a, b, c):
    TRACES["n"] += 1  # runs only while JAX traces the function
    return a * jnp.exp(-b * x) + c


def expdecay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def make_exp_data(n: int, seed: int = 0, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 5.0, n)
    y = 3.0 * np.exp(-1.3 * x) + 0.5 + noise * rng.normal(size=n)
    return x, y


def test_curvefit_refit_same_shape_does_not_retrace() -> None:
    x, y = make_exp_data(200)
    cf = curvax.CurveFit(counted_exp, x, y, [1.0, 1.0, 0.0])
    r1 = cf.fit()
    n_after_first = TRACES["n"]
    assert n_after_first > 0
    for seed in (1, 2, 3):
        _, y2 = make_exp_data(200, seed=seed)
        r2 = cf.fit(y=y2)
        assert r2.success
    assert TRACES["n"] == n_after_first, "a refit of same-shaped data retraced the model"
    assert not np.allclose(r1.x, r2.x)  # the new data really were fitted
    # a different shape compiles anew (and only then traces again)
    x3, y3 = make_exp_data(300)
    cf.fit(x=x3, y=y3)
    assert TRACES["n"] > n_after_first


def test_float64_default_does_not_change_global_precision() -> None:
    before = jax.config.jax_enable_x64
    x, y = make_exp_data(50)
    res = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0])
    assert res.dtype == np.float64 and res.x.dtype == np.float64
    assert jax.config.jax_enable_x64 == before
    assert jnp.ones(2).dtype == (jnp.float64 if before else jnp.float32)


def test_float32_on_request_close_to_float64() -> None:
    x, y = make_exp_data(400)
    r64 = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0])
    r32 = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], dtype="float32")
    assert r32.dtype == np.float32 and r32.x.dtype == np.float32
    np.testing.assert_allclose(r32.x, r64.x, rtol=2e-4)
    np.testing.assert_allclose(r32.perr, r64.perr, rtol=2e-2)


@pytest.mark.parametrize("method", ["lm", "trf"])
@pytest.mark.parametrize("block", [7, 64, 1000])
def test_blocked_reduction_equals_single_block(method: str, block: int) -> None:
    """Visiting the data in blocks (ragged last block included) changes nothing."""
    x, y = make_exp_data(1000, seed=4, noise=0.05)
    sigma = 0.05 * (1 + np.arange(1000) % 3)
    ref = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, method=method,
                           block_size=10_000)
    res = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], sigma=sigma, method=method,
                           block_size=block)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-10)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-8)


def test_factor_merge_equals_factor_of_stacked_rows() -> None:
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        a = jnp.asarray(rng.normal(size=(30, 4)))
        b = jnp.asarray(rng.normal(size=(17, 4)))
        whole = triangularize(jnp.concatenate([a, b]))
        merged = merge_factors(triangularize(a), triangularize(b))
        # R is unique up to the signs of its rows: compare RᵀR
        np.testing.assert_allclose(merged.T @ merged, whole.T @ whole, rtol=1e-12)
        np.testing.assert_allclose(whole.T @ whole, np.vstack([a, b]).T @ np.vstack([a, b]),
                                   rtol=1e-12)


@pytest.mark.parametrize("name", ["linear", "soft_l1", "huber", "cauchy", "arctan", "tukey"])
def test_loss_derivatives_match_autodiff(name: str) -> None:
    with jax.enable_x64(True):
        z = jnp.asarray([0.0, 0.3, 0.9, 1.5, 7.0])
        rho = L.get_loss(name)(z)

        def r0(t):
            return L.get_loss(name)(t[None])[0, 0]

        d1 = jax.vmap(jax.grad(r0))(z)
        d2 = jax.vmap(jax.grad(jax.grad(r0)))(z)
        np.testing.assert_allclose(rho[1], d1, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rho[2], d2, rtol=1e-12, atol=1e-15)
        # every loss is ~z near zero
        small = L.get_loss(name)(jnp.asarray([1e-8]))
        np.testing.assert_allclose(small[0], 1e-8, rtol=1e-6)


def test_loss_closed_forms() -> None:
    with jax.enable_x64(True):
        z = jnp.asarray([0.25, 4.0])
        np.testing.assert_allclose(L.get_loss("soft_l1")(z)[0], 2 * (np.sqrt(1 + z) - 1))
        np.testing.assert_allclose(L.get_loss("huber")(z)[0], [0.25, 2 * 2.0 - 1])
        np.testing.assert_allclose(L.get_loss("cauchy")(z)[0], np.log1p(z))
        np.testing.assert_allclose(L.get_loss("arctan")(z)[0], np.arctan(z))
        np.testing.assert_allclose(L.get_loss("tukey")(z)[0], [(1 - 0.75**3) / 3, 1 / 3])


def test_user_loss_callable_scalar_form_equals_builtin() -> None:
    x, y = make_exp_data(300, noise=0.02)
    y[::37] += 2.0  # outliers
    ref = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], loss="cauchy", f_scale=0.05)
    res = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], loss=jnp.log1p, f_scale=0.05)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-9)


def test_robust_loss_resists_outliers() -> None:
    x, y = make_exp_data(300, noise=0.01)
    y[::25] += 3.0
    plain = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0])
    robust = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], loss="soft_l1", f_scale=0.02)
    truth = np.array([3.0, 1.3, 0.5])
    assert np.max(np.abs(robust.x - truth) / truth) < 0.02
    assert np.max(np.abs(plain.x - truth) / truth) > 0.05


def test_result_fields_and_summary() -> None:
    x, y = make_exp_data(100)
    res = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], bounds=([0, 0, 0], [10, 10, 10]))
    assert res.param_names == ("a", "b", "c")
    assert res.success and res.status in (1, 2, 3, 4)
    assert res.popt is res.x and res.cov is res.pcov
    np.testing.assert_allclose(res.perr, np.sqrt(np.diag(res.pcov)))
    assert res.cost < res.initial_cost
    assert res.fun.shape == (100,)
    np.testing.assert_allclose(res.cost, 0.5 * np.sum(res.fun**2), rtol=1e-12)
    J = res.jac
    assert J.shape == (100, 3)
    np.testing.assert_allclose(res.grad, J.T @ res.fun, atol=1e-12)
    assert res.nfev >= res.nit and res.njev == res.nfev
    text = res.summary()
    for name in ("a", "b", "c", "converged", "reduced chi2"):
        assert name in text


def test_array_parameter_style_detected() -> None:
    x, y = make_exp_data(80)

    def f_arr(x, p):
        return p[0] * jnp.exp(-p[1] * x) + p[2]

    a = curvax.fit_curve(f_arr, x, y, p0=[1.0, 1.0, 0.0])
    b = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(a.x, b.x, rtol=1e-10)


def test_bounds_respected_and_active_mask() -> None:
    x, y = make_exp_data(100)
    res = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.8], bounds=([0, 0, 0.6], [10, 10, 1]))
    assert res.x[2] >= 0.6
    assert res.active_mask[2] == -1
    assert np.all(res.active_mask[:2] == 0)


def test_two_predictor_xdata_shape_k_by_n() -> None:
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 2, size=(2, 150))
    y = 1.5 * X[0] * np.exp(-0.7 * X[1]) + 0.01 * rng.normal(size=150)

    def f(X, a, b):
        return a * X[0] * jnp.exp(-b * X[1])

    for block in (4096, 16):
        popt, _ = curvax.curve_fit(f, X, y, p0=[1.0, 1.0], block_size=block)
        np.testing.assert_allclose(popt, [1.5, 0.7], rtol=2e-2)


def test_least_squares_rosenbrock_closed_form_minimum() -> None:
    def rosen(p):
        return jnp.array([10 * (p[1] - p[0] ** 2), 1 - p[0]])

    for method in ("trf", "lm"):
        res = curvax.least_squares(rosen, [-1.2, 1.0], method=method)
        assert res.success
        np.testing.assert_allclose(res.x, [1.0, 1.0], rtol=1e-10)
        assert res.cost < 1e-20
    # with a bound that excludes the unconstrained minimum
    res = curvax.least_squares(rosen, [-1.2, 0.5], bounds=([-np.inf, -np.inf], [np.inf, 0.5]))
    assert res.x[1] <= 0.5 and res.active_mask[1] == 1


def test_least_squares_args_and_user_jacobian() -> None:
    t = np.linspace(0, 1, 30)
    yv = 2.0 * t + 1.0

    def resid(p, t, yv, scale=1.0):
        return scale * (p[0] * t + p[1] - yv)

    def jac(p, t, yv, scale=1.0):
        return scale * jnp.stack([t, jnp.ones_like(t)], axis=1)

    r1 = curvax.least_squares(resid, [0.0, 0.0], args=(t, yv), kwargs={"scale": 2.0})
    r2 = curvax.least_squares(resid, [0.0, 0.0], jac=jac, args=(t, yv), kwargs={"scale": 2.0})
    np.testing.assert_allclose(r1.x, [2.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(r2.x, [2.0, 1.0], rtol=1e-12)


def test_covariance_of_parameters_of_very_different_magnitude() -> None:
    """Arrhenius: A ~ 1e16 beside Ea ~ 1e5 is badly scaled, not rank deficient."""
    from scipy.optimize import curve_fit as scipy_curve_fit

    R_GAS = 8.314462618
    T = np.linspace(300.0, 400.0, 40)
    rng = np.random.default_rng(0)
    k = 1e16 * np.exp(-1e5 / (R_GAS * T))
    y = k * (1 + 0.01 * rng.normal(size=T.size))

    def arr(T, A, Ea):
        return A * jnp.exp(-Ea / (R_GAS * T))

    res = curvax.fit_curve(arr, T, y, p0=[1e16, 1e5])
    assert np.all(np.isfinite(res.pcov))
    ref_p, ref_c = scipy_curve_fit(
        lambda T, A, Ea: A * np.exp(-Ea / (R_GAS * T)), T, y, p0=res.x,
        jac=lambda T, A, Ea: np.stack(
            [np.exp(-Ea / (R_GAS * T)), -A / (R_GAS * T) * np.exp(-Ea / (R_GAS * T))], axis=1
        ),
        ftol=1e-15, xtol=1e-15, gtol=1e-15,
    )
    np.testing.assert_allclose(res.x, ref_p, rtol=1e-7)
    np.testing.assert_allclose(res.pcov, ref_c, rtol=1e-5)


def test_user_jacobian_in_either_style() -> None:
    x, y = make_exp_data(120)

    def jac_args(x, a, b, c):
        e = jnp.exp(-b * x)
        return jnp.stack([e, -a * x * e, jnp.ones_like(x)], axis=1)

    def jac_array(x, p):
        return jac_args(x, *p)

    ref = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0])
    for jac in (jac_args, jac_array):
        res = curvax.fit_curve(expdecay, x, y, p0=[1.0, 1.0, 0.0], jac=jac)
        np.testing.assert_allclose(res.x, ref.x, rtol=1e-10)
        np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-8)


def test_pack_unpack_round_trip() -> None:
    """A pytree of several dtypes and shapes survives pack (traced) and unpack (host)."""
    tree = {
        "a": np.arange(3.0),
        "b": (np.float32(2.5), np.int32(7)),
        "c": np.ones((2, 2), np.int32),
        "d": np.float64(-0.0),
    }
    packings = []

    def packed(t):
        vectors, packing = pack(t)
        packings.append(packing)
        return vectors

    with jax.enable_x64(True):
        vectors = jax.jit(packed)(tree)
    assert [v.dtype for v in vectors] == [np.float64, np.float32, np.int32]  # one per dtype
    back = unpack([np.asarray(v) for v in vectors], packings[0])
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
        np.testing.assert_array_equal(got, np.asarray(want), strict=True)


def test_default_start_from_signature_guess_or_bounds() -> None:
    """Without p0 every front door starts alike: guess(x, y), else SciPy's default."""
    from curvax.core.start import default_start, initial_feasible

    lb, ub = np.array([-np.inf, 0.0, -np.inf, 2.0]), np.array([np.inf, 4.0, 3.0, np.inf])
    np.testing.assert_array_equal(initial_feasible(lb, ub), [1.0, 2.0, 2.0, 3.0])

    def line(x, a, b):
        return a * x + b

    np.testing.assert_array_equal(default_start(line, None, None, None), [1.0, 1.0])

    def star(x, *p):
        return p[0] * x + p[1]

    # the signature says nothing; a tuple of arrays or a Bounds object does
    np.testing.assert_array_equal(default_start(star, None, None, ([0, 0], [4, 10])), [2, 5])
    x = np.linspace(0, 1, 20)
    popt, _ = curvax.curve_fit(star, x, 3 * x + 1, bounds=([0, 0], [4, 10]))
    np.testing.assert_allclose(popt, [3.0, 1.0], rtol=1e-8)
    with pytest.raises(ValueError, match="p0"):
        default_start(star, None, None, (0.0, 1.0))


@pytest.mark.parametrize("method", ["lm", "trf"])
def test_no_trial_is_evaluated_only_to_confirm_convergence(method: str) -> None:
    """Once the Gauss–Newton model cannot lower the cost by ftol any more
    (½‖Q₁ᵀr‖² ≤ ftol·C at an accepted point), the loop stops there: the last trial of
    the loop is an accepted step, not a rejected rounding-level one."""
    from curvax.callbacks import Callback

    class Record(Callback):
        def __init__(self) -> None:
            self.states = []

        def on_iteration(self, state, iteration: int) -> bool:
            self.states.append(state)
            return False

    x = np.linspace(0, 4, 20_000)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.random.default_rng(0).standard_normal(x.size)
    rec = Record()
    res = curvax.fit_curve(expdecay, x, y, p0=[2.0, 1.0, 0.4], method=method, callbacks=[rec])
    assert res.status == 2 and rec.states[-1].accepted
    # and the stop is at the minimum the polish refines: the closed-form gradient of the
    # cost, relative to the column and residual norms, is at rounding level
    e = np.exp(-res.x[1] * x)
    r = res.x[0] * e + res.x[2] - y
    J = np.stack([e, -res.x[0] * x * e, np.ones_like(x)], axis=1)
    assert np.max(np.abs(J.T @ r) / np.linalg.norm(J, axis=0) / np.linalg.norm(r)) < 1e-10


def test_gauss_newton_gain_is_the_decrease_of_the_gauss_newton_step() -> None:
    """½‖Q₁ᵀr‖² equals C(x) − C(x + s) for the full Gauss–Newton step of a linear model."""
    from curvax.core.reduction import Reduction
    from curvax.core.trust_region import gauss_newton_gain_below

    rng = np.random.default_rng(3)
    A = rng.normal(size=(50, 3))
    b = rng.normal(size=50)
    x = rng.normal(size=3)
    r = A @ x - b
    with jax.enable_x64(True):
        T = np.asarray(triangularize(jnp.asarray(np.column_stack([A, r]))))
    step = np.linalg.lstsq(A, -r, rcond=None)[0]
    decrease = 0.5 * r @ r - 0.5 * np.sum((A @ (x + step) - b) ** 2)
    gain = 0.5 * np.sum(T[:-1, -1] ** 2)
    np.testing.assert_allclose(gain, decrease, rtol=1e-12)
    cost = 0.5 * r @ r
    with jax.enable_x64(True):
        red = Reduction(jnp.asarray(cost), jnp.asarray(T), jnp.zeros((), jnp.int32))
        assert bool(gauss_newton_gain_below(red, jnp.asarray(1.01 * gain / cost)))
        assert not bool(gauss_newton_gain_below(red, jnp.asarray(0.99 * gain / cost)))
