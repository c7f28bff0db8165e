"""curvax.insight: diagnostics, intervals, bands, bootstrap and model comparison.

Every check compares numbers with an independent reference: closed forms of linear
least squares (hat matrix, Cook's distance, R², OLS bands), SciPy's distributions,
or the frequentist meaning of an interval (coverage over simulated data sets).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.insight import (
    bootstrap,
    compare_models,
    confidence_intervals,
    diagnose_result,
    f_test,
    predict,
)
from curvax.insight import stats as S
from curvax.insight.diagnostics import information_criteria, runs_test

# -- models and data ----------------------------------------------------------------------


def expdecay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def quad(x, a, b, c):
    return a + b * x + c * x**2


def line(x, a, b):
    return a + b * x


def product_decay(x, a, b, k):  # a and b enter only through a·b: not identifiable
    return a * b * jnp.exp(-k * x)


TRUE_EXP = np.array([2.0, 1.3, 0.5])
X50 = np.linspace(0.0, 5.0, 50)
NOISE = 0.05


def exp_data(seed: int, x: np.ndarray = X50, noise: float = NOISE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return TRUE_EXP[0] * np.exp(-TRUE_EXP[1] * x) + TRUE_EXP[2] + noise * rng.normal(size=x.size)


def quad_data(seed: int = 0, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-2.0, 3.0, n))
    y = 1.0 - 0.5 * x + 0.3 * x**2 + 0.2 * rng.normal(size=n)
    y[2] += 2.0  # one outlying point to give Cook's distance something to find
    return x, y


# -- distributions vs SciPy ------------------------------------------------------------------


def test_t_and_f_distributions_match_scipy() -> None:
    st = pytest.importorskip("scipy.stats")
    qs = np.array([1e-10, 1e-4, 0.01, 0.025, 0.3, 0.5, 0.8, 0.975, 0.999, 1 - 1e-9])
    for df in (1, 2, 3, 4.5, 10, 47, 300, 1e4, 1e6):
        np.testing.assert_allclose(S.t_ppf(qs, df), st.t.ppf(qs, df), rtol=1e-10, atol=1e-300)
        ts = np.array([-40.0, -3.0, -1.0, -0.05, 0.0, 0.3, 2.0, 8.0])
        np.testing.assert_allclose(S.t_cdf(ts, df), st.t.cdf(ts, df), rtol=1e-10)
        np.testing.assert_allclose(S.t_sf(ts, df), st.t.sf(ts, df), rtol=1e-10)
        for d1 in (1, 2, 5, 30, 1e3):
            np.testing.assert_allclose(
                S.f_ppf(qs[1:-1], d1, df), st.f.ppf(qs[1:-1], d1, df), rtol=1e-9
            )
            fs = np.array([1e-4, 0.2, 1.0, 2.5, 30.0])
            np.testing.assert_allclose(S.f_sf(fs, d1, df), st.f.sf(fs, d1, df), rtol=1e-9)
            np.testing.assert_allclose(S.f_cdf(fs, d1, df), st.f.cdf(fs, d1, df), rtol=1e-9)
    np.testing.assert_allclose(S.norm_ppf(qs), st.norm.ppf(qs), rtol=1e-12)
    sp = pytest.importorskip("scipy.special")
    for a, b, x in [(0.5, 0.5, 0.1), (3.0, 200.0, 0.01), (1e3, 2e3, 0.33), (20.0, 0.5, 0.99)]:
        assert S.betainc(a, b, x) == pytest.approx(sp.betainc(a, b, x), rel=1e-11)
        assert S.betainc_inv(a, b, sp.betainc(a, b, x)) == pytest.approx(x, rel=1e-10)


def test_distribution_edge_cases() -> None:
    assert S.t_ppf(0.5, 7) == 0.0
    assert S.t_ppf(0.0, 7) == -math.inf and S.t_ppf(1.0, 7) == math.inf
    assert S.t_ppf(0.975, math.inf) == pytest.approx(1.959963984540054)
    assert math.isnan(S.t_ppf(1.5, 3)) and math.isnan(S.f_sf(1.0, -1, 3))
    assert S.f_sf(0.0, 2, 3) == 1.0 and S.f_cdf(math.inf, 2, 3) == 1.0


# -- diagnostics against closed forms (linear model) ----------------------------------------


def test_linear_model_influence_and_fit_statistics_closed_form() -> None:
    x, y = quad_data()
    res = curvax.fit_curve(quad, x, y, p0=[0.0, 0.0, 0.0])
    d = diagnose_result(res, x, y)
    X = np.stack([np.ones_like(x), x, x**2], axis=1)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    np.testing.assert_allclose(res.x, beta, rtol=1e-9)
    e = y - X @ beta
    m, p = X.shape
    H = X @ np.linalg.inv(X.T @ X) @ X.T
    h = np.diag(H)
    s2 = e @ e / (m - p)
    cooks = e**2 / (p * s2) * h / (1 - h) ** 2
    np.testing.assert_allclose(d.leverage, h, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(d.cooks_distance, cooks, rtol=1e-8)
    assert d.leverage.sum() == pytest.approx(p)
    r2 = 1 - (e @ e) / np.sum((y - y.mean()) ** 2)
    assert d.r_squared == pytest.approx(r2, rel=1e-10)
    assert d.adj_r_squared == pytest.approx(1 - (1 - r2) * (m - 1) / (m - p), rel=1e-10)
    assert d.chisqr == pytest.approx(e @ e, rel=1e-10)
    assert d.redchi == pytest.approx(s2, rel=1e-10)
    assert d.dof == m - p and d.n_params == p
    assert d.aic == pytest.approx(m * np.log(e @ e / m) + 2 * p, rel=1e-10)
    assert d.bic == pytest.approx(m * np.log(e @ e / m) + p * np.log(m), rel=1e-10)
    assert d.aicc == pytest.approx(d.aic + 2 * p * (p + 1) / (m - p - 1), rel=1e-10)
    # the planted outlier is the most influential point and is flagged
    assert int(np.argmax(d.cooks_distance)) == 2
    assert "influential_points" in d.codes and list(d.influential_points) == [2]
    # serial statistics by their definitions (residuals r = f − y, x already sorted)
    r = -e
    assert d.lag1_autocorrelation == pytest.approx(np.sum(r[1:] * r[:-1]) / np.sum(r * r))
    assert d.durbin_watson == pytest.approx(np.sum(np.diff(r) ** 2) / np.sum(r * r))
    # singular values of J = X (J of f − y w.r.t. the coefficients)
    np.testing.assert_allclose(d.singular_values, np.linalg.svd(X, compute_uv=False), rtol=1e-9)
    assert d.condition_number == pytest.approx(np.linalg.cond(X), rel=1e-8)
    txt = d.text()
    for word in ("Convergence", "Jacobian", "Residuals", "Influence", "AICc", "advice"):
        assert word in txt


def test_weighted_r_squared_uses_sigma() -> None:
    x, y = quad_data(seed=3)
    sigma = 0.1 + 0.05 * np.abs(x)
    res = curvax.fit_curve(quad, x, y, p0=[0.0, 0.0, 0.0], sigma=sigma)
    d = diagnose_result(res, x, y, sigma=sigma)
    w = 1.0 / sigma**2
    X = np.stack([np.ones_like(x), x, x**2], axis=1)
    beta = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * y))
    ybar = np.sum(w * y) / np.sum(w)
    r2 = 1 - np.sum(w * (y - X @ beta) ** 2) / np.sum(w * (y - ybar) ** 2)
    assert d.r_squared == pytest.approx(r2, rel=1e-9)


def test_runs_test_matches_hand_count() -> None:
    r = np.array([1, 1, -1, -1, -1, 1, -1, 1, 1, 1, -1, -1], dtype=float)
    runs, n1, n2, mu, z, p = runs_test(r)
    assert (runs, n1, n2) == (6, 6, 6)
    assert mu == pytest.approx(2 * 6 * 6 / 12 + 1)
    var = 2 * 36 * (72 - 12) / (144 * 11)
    assert z == pytest.approx((6 - 7) / math.sqrt(var))
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def test_information_criteria_known_sigma() -> None:
    aic, aicc, bic = information_criteria(55.0, 50, 3, absolute_sigma=True)
    assert aic == pytest.approx(61.0) and bic == pytest.approx(55 + 3 * math.log(50))
    assert aicc == pytest.approx(61.0 + 24 / 46)


# -- warnings ------------------------------------------------------------------------------


def test_well_posed_fit_has_no_warnings() -> None:
    y = exp_data(0)
    res = curvax.fit_curve(expdecay, X50, y, p0=[1.0, 1.0, 0.0])
    d = diagnose_result(res, X50, y)
    assert d.ok, d.text()
    assert d.success and d.gradient_cosine < 1e-8
    assert d.scaled_condition_number < 100 and d.degenerate_directions == []
    assert 0.99 < d.r_squared < 1.0
    assert "No warnings." in d.text()


def test_non_identifiable_model_names_the_degenerate_parameters() -> None:
    y = exp_data(1) - TRUE_EXP[2]
    res = curvax.fit_curve(product_decay, X50, y, p0=[1.0, 1.0, 1.0])
    d = diagnose_result(res, X50, y)
    assert "degenerate_parameters" in d.codes
    w = d.warnings[d.codes.index("degenerate_parameters")]
    assert "a" in w.message and "b" in w.message and "fix one of" in w.advice
    (dd,) = [v for v in d.degenerate_directions if not v.identifiable]
    assert set(dd.parameters) == {"a", "b"}
    # the direction is ±(1, −1, 0)/√2 in column-scaled units: δa/a = −δb/b keeps a·b
    np.testing.assert_allclose(np.abs(dd.scaled_vector), [2**-0.5, 2**-0.5, 0.0], atol=1e-6)
    assert dd.scaled_vector[0] * dd.scaled_vector[1] < 0
    assert dd.relative_singular_value < 1e-10


def test_poorly_determined_combination_is_flagged_but_identifiable() -> None:
    # a high-order polynomial on a narrow, offset x range: strongly collinear columns
    rng = np.random.default_rng(4)
    x = np.linspace(10.0, 11.0, 60)

    def cubic(x, a, b, c, d):
        return a + b * x + c * x**2 + d * x**3

    y = 1 + 0.1 * x + 0.01 * x**2 + 0.001 * x**3 + 1e-3 * rng.normal(size=x.size)
    res = curvax.fit_curve(cubic, x, y, p0=[0.0, 0.0, 0.0, 0.0])
    d = diagnose_result(res, x, y)
    assert "ill_conditioned" in d.codes and "strong_correlation" in d.codes
    assert "degenerate_parameters" not in d.codes
    assert d.scaled_condition_number > 1e4


def test_line_through_parabola_is_flagged_as_systematic_misfit() -> None:
    rng = np.random.default_rng(5)
    x = np.linspace(-1.0, 1.0, 50)
    y = x**2 + 0.05 * rng.normal(size=x.size)
    perm = rng.permutation(x.size)  # data order scrambled: the test sorts by x
    res = curvax.fit_curve(line, x[perm], y[perm], p0=[0.0, 0.0])
    d = diagnose_result(res, x[perm], y[perm])
    assert d.ordered_by_x
    assert "systematic_misfit" in d.codes
    assert d.runs <= 5 and d.runs_z < -5 and d.runs_p_value < 1e-6
    assert "autocorrelated_residuals" in d.codes and d.durbin_watson < 0.5
    w = d.warnings[d.codes.index("systematic_misfit")]
    assert "more flexible model" in w.advice


def test_parameter_at_bound_and_near_bound() -> None:
    y = exp_data(6)
    res = curvax.fit_curve(expdecay, X50, y, p0=[1.0, 1.0, 0.1], bounds=([0, 0, 0], [10, 10, 0.3]))
    assert res.active_mask[2] == 1
    d = diagnose_result(res, X50, y)
    assert ("c", "upper") in d.at_bounds and "at_bound" in d.codes
    # near (not at) a bound, read from result.extra['bounds'] when the fit records it
    res2 = curvax.fit_curve(expdecay, X50, y, p0=[1.0, 1.0, 0.0])
    res2.extra["bounds"] = ([0, 0, 0], [10, res2.x[1] + 5e-4, 1])  # tol 1e-3·(ub − lb)
    d2 = diagnose_result(res2, X50, y)
    assert [(n, s) for n, s, _ in d2.near_bounds] == [("k", "upper")]
    res2.extra["bounds"] = "unusable"  # anything unreadable is ignored
    assert diagnose_result(res2).near_bounds == []


def test_not_converged_and_known_sigma_chisqr() -> None:
    y = exp_data(7)
    res = curvax.fit_curve(expdecay, X50, y, p0=[1.0, 1.0, 0.0], max_nfev=2)
    d = diagnose_result(res)
    assert not d.success and d.codes[0] == "not_converged" and "max_nfev" in d.warnings[0].advice
    # sigma stated 3x too small with absolute_sigma: chi2 far above its dof
    res = curvax.fit_curve(
        expdecay, X50, y, p0=[1.0, 1.0, 0.0], sigma=np.full(50, NOISE / 3), absolute_sigma=True
    )
    d = diagnose_result(res)
    assert "chisqr_high" in d.codes and d.redchi == pytest.approx(res.redchi)
    assert d.aic == pytest.approx(d.chisqr + 6)


def test_fixed_parameter_is_not_counted() -> None:
    y = exp_data(8)
    res = curvax.fit_curve(
        expdecay, X50, y, p0=[1.0, 1.0, 0.5], bounds=([0, 0, 0.5], [10, 10, 0.5])
    )
    d = diagnose_result(res, X50, y)
    assert d.fixed == ("c",) and d.n_params == 2 and d.dof == 48
    ci = confidence_intervals(res)
    assert ci.dof == 48 and ci["c"] == (0.5, 0.5)
    assert "degenerate_parameters" not in d.codes and "insensitive_parameter" not in d.codes


def test_to_dict_is_plain() -> None:
    import json

    y = exp_data(9)
    d = diagnose_result(curvax.fit_curve(expdecay, X50, y, p0=[1.0, 1.0, 0.0]), X50, y)
    json.dumps(d.to_dict())


# -- intervals and bands -------------------------------------------------------------------


def test_confidence_intervals_use_student_t() -> None:
    st = pytest.importorskip("scipy.stats")
    y = exp_data(10)
    res = curvax.fit_curve(expdecay, X50, y, p0=[1.0, 1.0, 0.0])
    ci = confidence_intervals(res, 0.9)
    q = st.t.ppf(0.95, 47)
    np.testing.assert_allclose(ci.lower, res.x - q * res.perr, rtol=1e-12)
    np.testing.assert_allclose(ci.upper, res.x + q * res.perr, rtol=1e-12)
    assert ci.distribution == "t" and ci.dof == 47 and len(ci) == 3
    assert ci.as_array().shape == (3, 2) and set(ci.as_dict()) == {"a", "k", "c"}
    res_abs = curvax.fit_curve(
        expdecay, X50, y, p0=[1.0, 1.0, 0.0], sigma=np.full(50, NOISE), absolute_sigma=True
    )
    ci_abs = confidence_intervals(res_abs)
    assert ci_abs.distribution == "normal"
    assert ci_abs.quantile == pytest.approx(st.norm.ppf(0.975))
    with pytest.raises(ValueError, match="level"):
        confidence_intervals(res, 1.5)


def test_bands_of_a_linear_model_equal_the_ols_closed_form() -> None:
    st = pytest.importorskip("scipy.stats")
    x, y = quad_data(seed=11)
    res = curvax.fit_curve(quad, x, y, p0=[0.0, 0.0, 0.0])
    xn = np.linspace(-3.0, 4.0, 9)
    X = np.stack([np.ones_like(x), x, x**2], axis=1)
    Xn = np.stack([np.ones_like(xn), xn, xn**2], axis=1)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    m, p = X.shape
    s2 = np.sum((y - X @ beta) ** 2) / (m - p)
    G = Xn @ np.linalg.inv(X.T @ X) @ Xn.T
    q = st.t.ppf(0.975, m - p)
    yhat, lo, hi = predict(res, quad, xn)
    np.testing.assert_allclose(yhat, Xn @ beta, rtol=1e-9)
    np.testing.assert_allclose(hi - yhat, q * np.sqrt(s2 * np.diag(G)), rtol=1e-8)
    np.testing.assert_allclose(yhat - lo, q * np.sqrt(s2 * np.diag(G)), rtol=1e-8)
    *_, hi_p = predict(res, quad, xn, band="prediction")
    np.testing.assert_allclose(hi_p - yhat, q * np.sqrt(s2 * (1 + np.diag(G))), rtol=1e-8)

    def quad_arr(x, p):
        return p[0] + p[1] * x + p[2] * x**2

    y2, *_ = predict(res, quad_arr, xn, param_style="array")
    np.testing.assert_allclose(y2, yhat, rtol=1e-12)
    with pytest.raises(ValueError, match="band"):
        predict(res, quad, xn, band="both")


def test_prediction_band_needs_sigma_new_with_absolute_sigma() -> None:
    y = exp_data(12)
    res = curvax.fit_curve(
        expdecay, X50, y, p0=[1.0, 1.0, 0.0], sigma=np.full(50, NOISE), absolute_sigma=True
    )
    with pytest.raises(ValueError, match="sigma_new"):
        predict(res, expdecay, X50, band="prediction")
    yh, _, hi = predict(res, expdecay, np.array([1.0]), band="prediction", sigma_new=NOISE)
    *_, chi = predict(res, expdecay, np.array([1.0]))
    half_c = (chi - yh)[0] / 1.959963984540054
    assert (hi - yh)[0] == pytest.approx(1.959963984540054 * math.hypot(half_c, NOISE))


def _coverage_run(n_sets: int, seed0: int) -> dict[str, float]:
    truth = TRUE_EXP
    xn = np.linspace(0.0, 6.0, 13)
    f_true = truth[0] * np.exp(-truth[1] * xn) + truth[2]
    rng = np.random.default_rng(seed0 + 10**6)
    cover = np.zeros(3)
    band_cover = 0.0
    pred_cover = 0.0
    n_ok = 0
    for s in range(n_sets):
        y = exp_data(seed0 + s)
        res = curvax.fit_curve(expdecay, X50, y, p0=[1.0, 1.0, 0.0])
        if not res.success:
            continue
        n_ok += 1
        cover += confidence_intervals(res, 0.95).covers(truth)
        if s % 5 == 0:  # bands: fewer sets (each costs a model evaluation + jacfwd)
            _, lo, hi = predict(res, expdecay, xn)
            band_cover += np.mean((lo <= f_true) & (f_true <= hi))
            y_new = f_true + NOISE * rng.normal(size=xn.size)
            _, lo, hi = predict(res, expdecay, xn, band="prediction")
            pred_cover += np.mean((lo <= y_new) & (y_new <= hi))
    n_band = len(range(0, n_sets, 5))
    return {
        "n_ok": n_ok,
        **{f"cover_{n}": c / n_ok for n, c in zip("akc", cover)},
        "band": band_cover / n_band,
        "pred": pred_cover / n_band,
    }


def test_confidence_intervals_cover_the_truth_at_the_nominal_rate() -> None:
    out = _coverage_run(1000, seed0=1000)
    assert out["n_ok"] >= 995
    for n in "akc":
        assert abs(out[f"cover_{n}"] - 0.95) < 0.03, out
    # 200 sets × 13 points: the bands hold about 95% of the truth / of new data
    assert abs(out["band"] - 0.95) < 0.03, out
    assert abs(out["pred"] - 0.95) < 0.03, out


@pytest.mark.slow
def test_confidence_interval_coverage_large() -> None:
    out = _coverage_run(5000, seed0=50_000)
    for n in "akc":
        assert abs(out[f"cover_{n}"] - 0.95) < 0.012, out
    assert abs(out["band"] - 0.95) < 0.015, out
    assert abs(out["pred"] - 0.95) < 0.015, out


# -- bootstrap ---------------------------------------------------------------------------


def test_residual_bootstrap_agrees_with_covariance() -> None:
    y = exp_data(13)
    b = bootstrap(expdecay, X50, y, [1.0, 1.0, 0.0], n_boot=400, seed=1, use_batch=False)
    res = b.fit
    assert b.engine == "loop" and b.n_failed == 0 and b.samples.shape == (400, 3)
    np.testing.assert_allclose(b.stderr, res.perr, rtol=0.15)
    assert np.all(np.abs(b.bias) < 0.3 * res.perr)
    assert np.all((b.lower < res.x) & (res.x < b.upper))
    np.testing.assert_allclose(b.cov.diagonal(), b.stderr**2, rtol=1e-12)
    assert "bootstrap (residual" in b.text()
    # reproducible with a seed (the first replicates draw the same resamples)
    b2 = bootstrap(expdecay, X50, y, [1.0, 1.0, 0.0], n_boot=20, seed=1, use_batch=False)
    np.testing.assert_allclose(b2.samples, b.samples[:20], rtol=1e-12)


def test_pairs_bootstrap_agrees_with_covariance() -> None:
    # homoscedastic errors, evenly spread x: resampling pairs estimates the same
    # standard errors as the covariance.  (For exponential decay, whose amplitude rests
    # on the few points near x = 0, the random-design bootstrap is legitimately wider.)
    rng = np.random.default_rng(1)
    x = np.linspace(0.0, 4.0, 100)
    y = 1.0 + 0.5 * x + 0.3 * rng.normal(size=x.size)
    b = bootstrap(line, x, y, [0.0, 0.0], n_boot=400, kind="pairs", seed=2, use_batch=False)
    assert b.kind == "pairs" and b.n_failed == 0
    np.testing.assert_allclose(b.stderr, b.fit.perr, rtol=0.15)


def _check_batched_equals_loop(kinds: tuple[str, ...]) -> None:
    batch = pytest.importorskip("curvax.batch")
    if not hasattr(batch, "curve_fit_batch"):
        pytest.skip("curvax.batch.curve_fit_batch not available")
    y = exp_data(15)
    for kind in kinds:
        b1 = bootstrap(expdecay, X50, y, [1.0, 1.0, 0.0], n_boot=16, kind=kind, seed=3)
        b2 = bootstrap(
            expdecay, X50, y, [1.0, 1.0, 0.0], n_boot=16, kind=kind, seed=3, use_batch=False
        )
        assert b1.engine == "batch" and b2.engine == "loop"
        np.testing.assert_allclose(b1.samples, b2.samples, rtol=1e-6, atol=1e-9)


def test_bootstrap_batched_equals_loop() -> None:
    # all replicates as one batched program give the replicate-by-replicate answers
    _check_batched_equals_loop(("residual",))


@pytest.mark.slow
def test_bootstrap_batched_pairs_equals_loop() -> None:
    _check_batched_equals_loop(("pairs",))


def test_bootstrap_bad_input() -> None:
    y = exp_data(16)
    with pytest.raises(ValueError, match="kind"):
        bootstrap(expdecay, X50, y, [1.0, 1.0, 0.0], kind="wild")
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap(expdecay, X50, y, [1.0, 1.0, 0.0], n_boot=1)
    with pytest.raises(ValueError, match="sigma"):
        bootstrap(expdecay, X50, y, [1.0, 1.0, 0.0], sigma=np.eye(50))


# -- model comparison ----------------------------------------------------------------------


def test_compare_models_and_f_test() -> None:
    st = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(17)
    x = np.linspace(0.0, 5.0, 60)
    y = 1.0 + 0.5 * x + 0.04 * x**2 + 0.05 * rng.normal(size=x.size)
    fits = {
        "line": curvax.fit_curve(line, x, y, p0=[0.0, 0.0]),
        "quad": curvax.fit_curve(quad, x, y, p0=[0.0, 0.0, 0.0]),
    }
    table = compare_models(fits, nested=True)
    assert table.best == "quad" and table.names == ["quad", "line"]
    rss = {k: float(np.sum(v.fun**2)) for k, v in fits.items()}
    m = 60
    aic = {k: m * np.log(rss[k] / m) + 2 * kk for k, kk in (("line", 2), ("quad", 3))}
    assert table["line"]["aic"] == pytest.approx(aic["line"])
    d = aic["line"] - aic["quad"]
    assert table["quad"]["aic_weights"] == pytest.approx(1 / (1 + np.exp(-d / 2)))
    assert table.aicc_weights.sum() == pytest.approx(1.0)
    (t,) = table.f_tests
    F = (rss["line"] - rss["quad"]) / (rss["quad"] / (m - 3))
    assert (t.simple, t.complex, t.df1, t.df2) == ("line", "quad", 1, 57)
    assert t.F == pytest.approx(F) and t.p_value == pytest.approx(st.f.sf(F, 1, 57), rel=1e-9)
    assert t.significant() and "F-test line vs quad" in table.text()
    # nothing to gain: a true line, the quadratic term is not significant on average
    y0 = 1.0 + 0.5 * x + 0.05 * rng.normal(size=x.size)
    t0 = f_test(
        curvax.fit_curve(line, x, y0, p0=[0, 0]), curvax.fit_curve(quad, x, y0, p0=[0, 0, 0])
    )
    assert 0.0 < t0.p_value <= 1.0
    with pytest.raises(ValueError, match="more fitted parameters"):
        f_test(fits["quad"], fits["line"])
    short = curvax.fit_curve(line, x[:30], y[:30], p0=[0, 0])
    with pytest.raises(ValueError, match="different numbers of points"):
        compare_models({"a": short, "b": fits["quad"]})


def test_f_test_false_positive_rate() -> None:
    # the F-test of nested linear models holds its level: ~5% rejections under H0
    rng = np.random.default_rng(18)
    x = np.linspace(0.0, 1.0, 25)
    X1 = np.stack([np.ones_like(x), x], 1)
    rejections = 0
    n = 400
    for _ in range(n):
        y = 1 + x + rng.normal(size=x.size)
        r1 = y - X1 @ np.linalg.lstsq(X1, y, rcond=None)[0]
        X2 = np.stack([np.ones_like(x), x, x**2], 1)
        r2 = y - X2 @ np.linalg.lstsq(X2, y, rcond=None)[0]
        F = (r1 @ r1 - r2 @ r2) / (r2 @ r2 / 22)
        rejections += S.f_sf(F, 1, 22) < 0.05
    assert abs(rejections / n - 0.05) < 0.035
