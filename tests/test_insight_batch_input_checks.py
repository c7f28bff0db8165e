"""Bad input to the insight functions and to curve_fit_batch gets a clear error.

Each error names the argument; where a fix keeps or adds a computation (the F-test of
equally weighted fits, a NumPy model in ``predict``, fixed parameters in
``multistart``, ``nan_policy='omit'`` in the bootstrap) the numbers are checked
against an independent reference.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.insight import (
    bootstrap,
    compare_models,
    confidence_intervals,
    f_test,
    multistart,
    predict,
)

X = np.linspace(0.0, 4.0, 40)
Y = 2.0 * np.exp(-1.3 * X) + 0.02 * np.random.default_rng(0).normal(size=X.size)
SIG = 0.02 * np.ones(X.size)


def decay(x, a, b):
    return a * jnp.exp(-b * x)


def decay_np(x, a, b):
    return a * np.exp(-b * np.asarray(x))


def decay_offset(x, a, b, c):
    return a * jnp.exp(-b * x) + c


@pytest.fixture(scope="module")
def fits() -> dict[str, curvax.FitResult]:
    return {
        "simple": curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0]),
        "complex": curvax.fit_curve(decay_offset, X, Y, p0=[1.0, 1.0, 0.0]),
        "complex_w": curvax.fit_curve(decay_offset, X, Y, p0=[1.0, 1.0, 0.0], sigma=SIG),
        "simple_w": curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0], sigma=0.02),
    }


# -- f_test / compare_models ------------------------------------------------------------


def test_f_test_refuses_fits_with_different_weights(fits) -> None:
    # before: F(1, 37) = -36.99, p = 1
    with pytest.raises(ValueError, match=r"result_complex: was fitted with other weights"):
        f_test(fits["simple"], fits["complex_w"])
    with pytest.raises(ValueError, match=r"results\['b'\]: was fitted with other weights"):
        compare_models({"a": fits["simple"], "b": fits["complex_w"]})


def test_f_test_refuses_different_weighting_recorded_in_metadata(fits) -> None:
    # results loaded from JSON carry no data: the recorded kind of sigma is compared
    load = curvax.FitResult.from_json
    simple, complex_w = load(fits["simple"].to_json()), load(fits["complex_w"].to_json())
    with pytest.raises(ValueError, match=r"result_complex: .*weights.*1-D against none"):
        f_test(simple, complex_w)


def test_f_test_of_loaded_results_compares_recorded_fingerprints(fits) -> None:
    """Loaded from JSON, results carry fingerprints of their data and of their sigma:
    other ydata, or the same kind of sigma with other values, are refused; the same
    data and weights give the F-test of the live results."""
    load = curvax.FitResult.from_json
    simple_w = load(fits["simple_w"].to_json())  # sigma = 0.02 (scalar)
    complex_w = load(fits["complex_w"].to_json())  # sigma = SIG, 0.02 per point (1-D)
    other_y = curvax.fit_curve(decay_offset, X, Y + 0.5, p0=[1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"result_complex: was fitted to other data"):
        f_test(load(fits["simple"].to_json()), load(other_y.to_json()))
    other_w = curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0], sigma=2.0 * SIG)
    with pytest.raises(ValueError, match=r"result_complex: .*other weights.*fingerprint"):
        f_test(load(other_w.to_json()), complex_w)
    same_w = curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0], sigma=SIG)
    live = f_test(same_w, fits["complex_w"])
    loaded = f_test(load(same_w.to_json()), complex_w)
    assert loaded.F == pytest.approx(live.F, rel=1e-12)
    assert simple_w.extra["metadata"]["weights_fingerprint"] is not None


def test_f_test_refuses_fits_to_different_ydata(fits) -> None:
    other = curvax.fit_curve(decay_offset, X, Y + 0.5, p0=[1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"result_complex: was fitted to other ydata"):
        f_test(fits["simple"], other)


def test_f_test_equal_weights_matches_closed_form(fits) -> None:
    st = pytest.importorskip("scipy.stats")
    n = X.size
    # unweighted, and weighted with the same sigma given as a scalar and as an array
    for s, c in (("simple", "complex"), ("simple_w", "complex_w")):
        r1, r2 = fits[s], fits[c]
        F = ((r1.cost - r2.cost) / (3 - 2)) / (r2.cost / (n - 3))
        t = f_test(r1, r2)
        assert (t.df1, t.df2) == (1, n - 3)
        assert t.F == pytest.approx(F, rel=1e-9)
        assert t.p_value == pytest.approx(st.f.sf(F, 1, n - 3), rel=1e-9)
    # no sigma is sigma = 1: the same weights
    ones = curvax.fit_curve(decay_offset, X, Y, p0=[1.0, 1.0, 0.0], sigma=np.ones(n))
    unweighted = f_test(fits["simple"], fits["complex"])
    assert f_test(fits["simple"], ones).F == pytest.approx(unweighted.F, rel=1e-9)


def test_f_test_refuses_a_complex_fit_worse_than_the_simple_one(fits) -> None:
    # a nested model cannot fit worse at its minimum: this one stopped after one step
    stopped = curvax.fit_curve(decay_offset, X, Y, p0=[0.1, 3.0, 1.0], max_nfev=1)
    assert stopped.cost > fits["simple"].cost
    with pytest.raises(ValueError, match=r"result_complex: its chi-square .* exceeds"):
        f_test(fits["simple"], stopped)


def test_f_test_and_compare_models_refuse_robust_loss_fits(fits) -> None:
    # a robust loss does not minimise chi-square: the F distribution does not apply
    robust = curvax.fit_curve(decay_offset, X, Y, p0=[1.0, 1.0, 0.0], loss="huber",
                              f_scale=0.02, method="trf")
    assert robust.success
    with pytest.raises(ValueError, match=r"^result_complex: was fitted with loss='huber'"):
        f_test(fits["simple"], robust)
    with pytest.raises(ValueError, match=r"^results\['r'\]: was fitted with loss='huber'"):
        compare_models({"s": fits["simple"], "r": robust})


def test_insight_functions_name_a_result_that_is_not_a_fit_result(fits) -> None:
    with pytest.raises(TypeError, match=r"result: expected a FitResult .*got tuple"):
        confidence_intervals((1.0, 2.0))
    with pytest.raises(TypeError, match=r"result_simple: expected a FitResult.*got int"):
        f_test(1, 2)
    with pytest.raises(TypeError, match=r"result_complex: expected a FitResult"):
        f_test(fits["simple"], 2)
    with pytest.raises(TypeError, match=r"results\['a'\]: expected a FitResult"):
        compare_models({"a": (1.0, 2.0)})
    with pytest.raises(TypeError, match=r"results: expected a dict"):
        compare_models([fits["simple"]])
    with pytest.raises(TypeError, match=r"result: expected a FitResult"):
        predict(np.array([1.0, 2.0]), decay, X)


# -- levels, seeds, sigma of the bootstrap -------------------------------------------------


@pytest.mark.parametrize("level", [95, 0, 1, float("nan"), -0.5, "0.9", True])
def test_level_checked_alike_by_bootstrap_and_confidence_intervals(fits, level) -> None:
    match = r"level: expected a probability in \(0, 1\)"
    with pytest.raises(ValueError, match=match):
        confidence_intervals(fits["simple"], level)
    with pytest.raises(ValueError, match=match):
        bootstrap(decay, X, Y, p0=[1.0, 1.0], n_boot=10, level=level)


def test_bootstrap_bad_sigma_seed_and_data() -> None:
    with pytest.raises(ValueError, match=r"sigma: has length 39 but y has length 40"):
        bootstrap(decay, X, Y, p0=[1.0, 1.0], n_boot=10, sigma=SIG[:-1])
    with pytest.raises(TypeError, match=r"seed: expected None, a non-negative integer"):
        bootstrap(decay, X, Y, p0=[1.0, 1.0], n_boot=10, seed="a")
    with pytest.raises(ValueError, match=r"seed: expected a non-negative integer"):
        bootstrap(decay, X, Y, p0=[1.0, 1.0], n_boot=10, seed=-1)
    with pytest.raises(ValueError, match=r"y: complex values are not supported"):
        bootstrap(decay, X, Y + 1j, p0=[1.0, 1.0], n_boot=10)
    with pytest.raises(ValueError, match=r"sigma: complex values are not supported"):
        bootstrap(decay, X, Y, p0=[1.0, 1.0], n_boot=10, sigma=SIG + 0j)


def test_bootstrap_omit_resamples_the_points_kept() -> None:
    y = Y.copy()
    y[3] = np.nan
    keep = ~np.isnan(y)
    got = bootstrap(decay, X, y, p0=[1.0, 1.0], n_boot=20, nan_policy="omit")
    ref = bootstrap(decay, X[keep], y[keep], p0=[1.0, 1.0], n_boot=20)
    np.testing.assert_allclose(got.samples, ref.samples, rtol=1e-10)


# -- predict ------------------------------------------------------------------------------


def test_predict_numpy_model_matches_the_jax_model(fits) -> None:
    xn = np.linspace(0.0, 5.0, 7)
    ref = predict(fits["simple"], decay, xn, band="prediction")
    got = predict(fits["simple"], decay_np, xn, band="prediction")  # before: tracer error
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-7)


def test_predict_bad_sigma_new_and_model(fits) -> None:
    r, xn = fits["simple"], np.linspace(0.0, 5.0, 5)
    with pytest.raises(ValueError, match=r"sigma_new: every uncertainty must be non-negative"):
        predict(r, decay, xn, band="prediction", sigma_new=-1)
    with pytest.raises(ValueError, match=r"sigma_new: has shape \(3,\) but the model gives"):
        predict(r, decay, xn, band="prediction", sigma_new=np.ones(3))
    with pytest.raises(ValueError, match=r"sigma_new: only a prediction band uses it"):
        predict(r, decay, xn, sigma_new=0.1)
    with pytest.raises(ValueError, match=r"model: takes 3 parameter\(s\) but the fit has 2"):
        predict(r, decay_offset, xn)


# -- multistart ---------------------------------------------------------------------------


def test_multistart_holds_fixed_parameters(fits) -> None:
    ref = curvax.fit_curve(decay, X, Y, p0=[1.0, 1.3], fixed={"b": 1.3})
    by_kw = multistart(decay, X, Y, p0=[1.0, 1.0], n_starts=4, fixed={"b": 1.3})
    by_bounds = multistart(
        decay, X, Y, p0=[1.0, 1.3], n_starts=4, bounds=([0.0, 1.3], [5.0, 1.3])
    )
    for ms in (by_kw, by_bounds):
        assert np.all(ms.starts[:, 1] == 1.3) and np.all(ms.popt[:, 1] == 1.3)
        assert ms.best.x[1] == 1.3
        np.testing.assert_allclose(ms.best.x, ref.x, rtol=1e-8)


def test_multistart_bad_input_named() -> None:
    with pytest.raises(ValueError, match=r"sigma: multistart takes a scalar or 1-D sigma"):
        multistart(decay, X, Y, p0=[1.0, 1.0], n_starts=4, sigma=np.eye(X.size))
    with pytest.raises(ValueError, match=r"sigma: has length 39"):
        multistart(decay, X, Y, p0=[1.0, 1.0], n_starts=4, sigma=SIG[:-1])
    with pytest.raises(TypeError, match=r"seed: expected None, a non-negative integer"):
        multistart(decay, X, Y, p0=[1.0, 1.0], n_starts=4, seed="a")
    with pytest.raises(TypeError, match=r"multistart: unexpected keyword argument\(s\) \['foo'\]"):
        multistart(decay, X, Y, p0=[1.0, 1.0], n_starts=4, foo=1)
    with pytest.raises(ValueError, match=r"p0: p0\[1\]=10 lies outside its bounds"):
        multistart(decay, X, Y, p0=[1.0, 10.0], n_starts=4, bounds=([0, 0], [5, 5]))
    with pytest.raises(TypeError, match=r"f: multistart needs a model JAX can trace"):
        multistart(decay_np, X, Y, p0=[1.0, 1.0], n_starts=4)
    y = np.where(X > 1.0, Y, np.nan)  # before: "multistart: no start converged"
    with pytest.raises(ValueError, match=r"ydata: contains NaN or Inf"):
        multistart(decay, X, y, p0=[1.0, 1.0], n_starts=4)


# -- curve_fit_batch ----------------------------------------------------------------------

YB = np.stack([Y, 1.5 * Y])


def test_batch_refuses_complex_data() -> None:
    with pytest.raises(ValueError, match=r"ydata: complex values are not supported"):
        curvax.curve_fit_batch(decay, X, YB + 1j, p0=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"sigma: complex values are not supported"):
        curvax.curve_fit_batch(decay, X, YB, p0=[1.0, 1.0], sigma=SIG + 1j)
    with pytest.raises(ValueError, match=r"ydata: expected real numbers"):
        curvax.curve_fit_batch(decay, X, YB.astype(str), p0=[1.0, 1.0])


def test_batch_reports_the_model_and_jac_errors() -> None:
    with pytest.raises(ValueError, match=r"f: the model raised ZeroDivisionError at p0"):
        curvax.curve_fit_batch(lambda x, a, b: a * x + 1 / 0, X, YB, p0=[1.0, 1.0])
    with pytest.raises(TypeError, match=r"f: curve_fit_batch needs a model JAX can trace"):
        curvax.curve_fit_batch(decay_np, X, YB, p0=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"jac: returned shape \(3,\); expected \(40, 2\)"):
        curvax.curve_fit_batch(decay, X, YB, p0=[1.0, 1.0], jac=lambda x, a, b: jnp.ones(3))
    with pytest.raises(ValueError, match=r"jac: returned shape \(2, 40\); expected \(40, 2\)"):
        curvax.curve_fit_batch(decay, X, YB, p0=[1.0, 1.0], jac=lambda x, a, b: jnp.ones((2, 40)))


def test_batch_stream_checks_its_chunks_when_called() -> None:
    with pytest.raises(TypeError, match=r"ydata_chunks: expected an iterable .* got int"):
        curvax.curve_fit_batch_stream(decay, X, 5, p0=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"ydata_chunks: .* of shape \(2, 40\)"):
        curvax.curve_fit_batch_stream(decay, X, YB, p0=[1.0, 1.0])
