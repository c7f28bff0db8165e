"""SciPy parity: curvax's ``popt`` and ``pcov`` agree with ``scipy.optimize``.

The SciPy reference is made honest and fully converged: it is given the *exact*
Jacobian (``jax.jacfwd`` of the same model in float64), tolerances of 1e-15 and a
generous evaluation budget, and ``x_scale='jac'`` for TRF (curvax's default).  Plain
least-squares cases use ``scipy.optimize.curve_fit`` (``leastsq`` for ``'lm'``,
``least_squares`` for ``'trf'``); robust-loss cases use ``scipy.optimize.least_squares``
and build the covariance exactly as ``scipy.optimize.curve_fit`` does (Moore–Penrose
inverse from the SVD of ``res.jac``, scaled by ``2·cost/(m − n)`` unless
``absolute_sigma``).  Every reference fit must report convergence.  Even so, SciPy
stops on its ``ftol`` test, which leaves its ``popt`` within about 1e-8 (relative) of
the exact optimum on these problems (checked against Gauss–Newton polishing of the
reference); that is 100 times inside the 1e-6 tolerance.

Grid (see ``LINEAR_CASES`` / ``ROBUST_CASES``): six models (exponential decay with
offset, Gaussian peak with offset, logistic, Michaelis–Menten, a two-predictor model
with ``xdata`` of shape (2, N), a sum of two exponentials) × two noise levels × no /
inactive / active bounds × sigma none / 1-D / 2-D × ``absolute_sigma`` × ``'lm'`` and
``'trf'``; every SciPy loss (plus curvax's ``tukey`` against SciPy given the same ρ as
a callable); ``least_squares`` (``x, cost, fun, jac, grad, active_mask``) and
``CurveFit``.

Compile-time economy: a compiled curvax program is keyed by (model, method, loss,
kind of sigma, data shape), so the cases share a small number of such combinations
(all 1-D models use the same N); noise, bounds and ``absolute_sigma`` do not
recompile.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

import curvax

N = 40
TOL = 1e-15
REF_NFEV = 20000

# popt: relative agreement to 1e-6 of each parameter (the true values are all well
# away from zero, so a relative test is meaningful for every component).
POPT_RTOL = 1e-6
# pcov: relative agreement to 1e-6, plus an absolute floor of 1e-9·max|pcov|.  Off-
# diagonal covariances can be close to zero through cancellation between entries of
# size max|pcov|; such an entry carries an absolute rounding error proportional to
# max|pcov| (times the conditioning of J), so a purely relative test on it would test
# noise.  The floor only matters for entries below 1e-3·max|pcov|: every larger entry
# is still held to rtol 1e-6.
PCOV_RTOL = 1e-6
PCOV_ATOL_REL = 1e-9


# --------------------------------------------------------------------------------------
# Models (module level, so compiled programs are shared between cases)
# --------------------------------------------------------------------------------------
def exp_decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def gaussian(x, a, mu, s, c):
    return a * jnp.exp(-((x - mu) ** 2) / (2.0 * s**2)) + c


def logistic(x, top, k, x0):
    return top / (1.0 + jnp.exp(-k * (x - x0)))


def michaelis_menten(x, vmax, km):
    return vmax * x / (km + x)


def two_predictor(x, a, b, c):
    return a * jnp.exp(-b * x[0]) + c * x[1]


def double_exp(x, a1, k1, a2, k2):
    return a1 * jnp.exp(-k1 * x) + a2 * jnp.exp(-k2 * x)


def _xgrid(lo: float, hi: float) -> np.ndarray:
    return np.linspace(lo, hi, N)


def _x2() -> np.ndarray:
    rng = np.random.default_rng(99)
    return np.stack([np.linspace(0.0, 3.0, N), rng.uniform(-1.0, 1.0, N)])


# name -> (model, x, true parameters, start, amplitude for the noise, bounds)
# Bounds: "loose" contain the solution strictly inside; "active" cut one parameter
# off at a value that excludes its unconstrained optimum, so that bound is active.
MODELS: dict[str, dict[str, Any]] = {
    "exp_decay": dict(
        f=exp_decay,
        x=_xgrid(0.0, 5.0),
        p=[2.5, 1.3, 0.5],
        p0=[1.0, 1.0, 0.0],
        amp=2.5,
        loose=([0.0, 0.0, -5.0], [10.0, 10.0, 5.0]),
        active=([0.0, 0.0, -5.0], [10.0, 1.2, 5.0]),
    ),
    "gaussian": dict(
        f=gaussian,
        x=_xgrid(0.0, 5.0),
        p=[3.0, 2.5, 0.6, 0.2],
        p0=[2.0, 2.2, 1.0, 0.5],
        amp=3.0,
        loose=([0.0, 0.0, 0.05, -1.0], [10.0, 5.0, 3.0, 1.0]),
        active=([0.0, 0.0, 0.05, 0.3], [10.0, 5.0, 3.0, 1.0]),
    ),
    "logistic": dict(
        f=logistic,
        x=_xgrid(0.0, 5.0),
        p=[4.0, 2.0, 2.5],
        p0=[3.0, 1.0, 2.0],
        amp=4.0,
        loose=([0.0, 0.1, 0.0], [10.0, 10.0, 5.0]),
        active=([0.0, 0.1, 0.0], [3.8, 10.0, 5.0]),
    ),
    "michaelis_menten": dict(
        f=michaelis_menten,
        x=_xgrid(0.1, 10.0),
        p=[2.0, 1.5],
        p0=[1.0, 2.0],
        amp=2.0,
        loose=([0.0, 0.0], [10.0, 10.0]),
        active=([0.0, 1.7], [10.0, 10.0]),
    ),
    "two_predictor": dict(
        f=two_predictor,
        x=_x2(),
        p=[1.5, 0.8, -0.7],
        p0=[1.0, 1.0, 0.0],
        amp=1.5,
        loose=([0.0, 0.0, -5.0], [5.0, 5.0, 5.0]),
        active=([0.0, 0.0, -0.6], [5.0, 5.0, 5.0]),
    ),
    "double_exp": dict(
        f=double_exp,
        x=_xgrid(0.0, 8.0),
        p=[3.0, 0.4, 2.0, 3.0],
        p0=[2.0, 0.2, 1.0, 2.0],
        amp=5.0,
        loose=([0.0, 0.0, 0.0, 0.0], [10.0, 2.0, 10.0, 10.0]),
        active=([0.0, 0.0, 0.0, 0.0], [10.0, 0.38, 10.0, 10.0]),
    ),
}

NOISE = {"low": 1e-3, "high": 5e-2}


# --------------------------------------------------------------------------------------
# The SciPy side: float64 NumPy callables and exact Jacobians from the same model
# --------------------------------------------------------------------------------------
@functools.cache
def _numpy_pair(f):
    """``(f_np(x, *p), jac_np(x, *p))``: float64 NumPy evaluations of ``f`` and ∂f/∂p."""

    def g(x, p):
        return f(x, *[p[i] for i in range(p.shape[0])])

    g_jit = jax.jit(g)
    j_jit = jax.jit(jax.jacfwd(g, argnums=1))

    def f_np(x, *p):
        with jax.enable_x64(True):
            return np.asarray(g_jit(jnp.asarray(x, jnp.float64), jnp.asarray(p, jnp.float64)))

    def jac_np(x, *p):
        with jax.enable_x64(True):
            return np.asarray(j_jit(jnp.asarray(x, jnp.float64), jnp.asarray(p, jnp.float64)))

    return f_np, jac_np


def scipy_curve_fit(f, x, y, p0, *, sigma, absolute_sigma, bounds, method):
    """Converged SciPy curve_fit with the exact Jacobian; asserts convergence."""
    f_np, jac_np = _numpy_pair(f)
    kw: dict[str, Any] = dict(ftol=TOL, xtol=TOL, gtol=TOL)
    if method == "lm":
        kw["maxfev"] = REF_NFEV
    else:
        kw.update(max_nfev=REF_NFEV, x_scale="jac")
    popt, pcov, _info, mesg, ier = so.curve_fit(
        f_np,
        x,
        y,
        p0=p0,
        sigma=sigma,
        absolute_sigma=absolute_sigma,
        bounds=bounds,
        method=method,
        jac=jac_np,
        full_output=True,
        **kw,
    )
    assert ier in (1, 2, 3, 4), mesg
    return popt, pcov


def scipy_pcov(res, absolute_sigma: bool) -> np.ndarray:
    """Covariance exactly as ``scipy.optimize.curve_fit`` builds it after least_squares."""
    _, s, vt = np.linalg.svd(res.jac, full_matrices=False)
    threshold = np.finfo(float).eps * max(res.jac.shape) * s[0]
    s = s[s > threshold]
    vt = vt[: s.size]
    pcov = (vt.T / s**2) @ vt
    if not absolute_sigma:
        m, n = res.jac.shape
        pcov = pcov * (2.0 * res.cost / (m - n))
    return pcov


def _weighting(sigma):
    """``v ↦ W v``: 1/σ for a 1-D sigma, L⁻¹ for a 2-D sigma (as SciPy's curve_fit)."""
    if sigma is None:
        return lambda v: v
    sigma = np.asarray(sigma)
    if sigma.ndim == 1:
        return lambda v: (v.T / sigma).T
    L = np.linalg.cholesky(sigma)
    return lambda v: np.linalg.solve(L, v)


def scipy_robust(f, x, y, p0, *, sigma, absolute_sigma, bounds, loss, f_scale):
    """Converged SciPy least_squares (TRF, exact Jacobian) for a robust loss."""
    f_np, jac_np = _numpy_pair(f)
    W = _weighting(sigma)
    res = so.least_squares(
        lambda p: W(f_np(x, *p) - y),
        p0,
        jac=lambda p: W(jac_np(x, *p)),
        bounds=bounds,
        method="trf",
        loss=loss,
        f_scale=f_scale,
        x_scale="jac",
        ftol=TOL,
        xtol=TOL,
        gtol=TOL,
        max_nfev=REF_NFEV,
    )
    assert res.status > 0, res.message
    return res.x, scipy_pcov(res, absolute_sigma)


def assert_popt_close(actual, desired):
    np.testing.assert_allclose(actual, desired, rtol=POPT_RTOL, atol=0)


def assert_pcov_close(actual, desired):
    assert np.all(np.isfinite(desired))
    scale = np.max(np.abs(desired))
    np.testing.assert_allclose(actual, desired, rtol=PCOV_RTOL, atol=PCOV_ATOL_REL * scale)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def make_data(model: str, noise: str, sigma_kind: str | None, seed: int, outliers: int = 0):
    """Seeded synthetic data; returns ``(x, y, sigma)``.

    1-D sigma: per-point standard deviations between 0.5 and 2 times the noise level;
    2-D sigma: an AR(1) covariance (correlation 0.5 between neighbours) with those
    standard deviations.  The noise is drawn with the stated (co)variance.
    """
    spec = MODELS[model]
    rng = np.random.default_rng(seed)
    x = spec["x"]
    f_np, _ = _numpy_pair(spec["f"])
    y0 = f_np(x, *spec["p"])
    level = NOISE[noise] * spec["amp"]
    if sigma_kind is None:
        sigma = None
        e = level * rng.standard_normal(N)
    else:
        sd = level * rng.uniform(0.5, 2.0, N)
        if sigma_kind == "1d":
            sigma = sd
            e = sd * rng.standard_normal(N)
        else:
            idx = np.arange(N)
            corr = 0.5 ** np.abs(idx[:, None] - idx[None, :])
            sigma = corr * np.outer(sd, sd)
            e = np.linalg.cholesky(sigma) @ rng.standard_normal(N)
    y = y0 + e
    if outliers:
        pos = rng.choice(N, size=outliers, replace=False)
        y[pos] += (
            spec["amp"]
            * rng.choice([-1.0, 1.0], size=outliers)
            * rng.uniform(0.3, 0.6, size=outliers)
        )
    return x, y, sigma


def bounds_of(model: str, kind: str | None):
    if kind is None:
        return (-np.inf, np.inf)
    return MODELS[model][kind]


# --------------------------------------------------------------------------------------
# Plain least squares: curve_fit vs scipy.optimize.curve_fit
# --------------------------------------------------------------------------------------
def _grid(model, method, sigma_kind, noises, bound_kinds, abs_sigmas):
    return [
        (model, method, sigma_kind, noise, bk, ab)
        for noise in noises
        for bk in bound_kinds
        for ab in abs_sigmas
    ]


BOTH = (False, True)
LINEAR_CASES = [
    *_grid("exp_decay", "lm", None, ("low", "high"), (None,), BOTH),
    *_grid("exp_decay", "trf", "1d", ("low", "high"), (None, "active"), BOTH),
    *_grid("gaussian", "trf", None, ("low", "high"), (None, "loose", "active"), (False,)),
    *_grid("gaussian", "lm", "1d", ("low", "high"), (None,), BOTH),
    *_grid("logistic", "trf", "2d", ("low",), (None, "active"), BOTH),
    *_grid("logistic", "lm", "2d", ("low", "high"), (None,), BOTH),
    *_grid("michaelis_menten", "trf", "1d", ("high",), ("loose", "active"), BOTH),
    *_grid("two_predictor", "lm", None, ("low", "high"), (None,), (False,)),
    *_grid("double_exp", "trf", None, ("low", "high"), (None, "loose"), (False,)),
]


def _case_id(case) -> str:
    model, method, sk, noise, bk, ab = case
    return f"{model}-{method}-sigma_{sk}-{noise}-bounds_{bk}-abs_{ab}"


@pytest.mark.parametrize("case", LINEAR_CASES, ids=[_case_id(c) for c in LINEAR_CASES])
def test_curve_fit_matches_scipy(case):
    model, method, sigma_kind, noise, bound_kind, absolute_sigma = case
    spec = MODELS[model]
    seed = LINEAR_CASES.index(case)
    x, y, sigma = make_data(model, noise, sigma_kind, seed)
    bounds = bounds_of(model, bound_kind)
    ref_popt, ref_pcov = scipy_curve_fit(
        spec["f"],
        x,
        y,
        spec["p0"],
        sigma=sigma,
        absolute_sigma=absolute_sigma,
        bounds=bounds,
        method=method,
    )
    popt, pcov = curvax.curve_fit(
        spec["f"],
        x,
        y,
        p0=spec["p0"],
        sigma=sigma,
        absolute_sigma=absolute_sigma,
        bounds=bounds,
        method=method,
    )
    assert popt.shape == ref_popt.shape
    assert pcov.shape == ref_pcov.shape
    assert_popt_close(popt, ref_popt)
    assert_pcov_close(pcov, ref_pcov)
    if bound_kind == "active":
        # the case is what it says: the solution sits on a bound
        lb, ub = (np.asarray(b, dtype=float) for b in bounds)
        on_bound = np.isclose(popt, lb, rtol=1e-8, atol=0) | np.isclose(popt, ub, rtol=1e-8)
        assert on_bound.sum() == 1


def test_linear_grid_covers_the_required_dimensions():
    assert len(LINEAR_CASES) >= 30
    assert {c[0] for c in LINEAR_CASES} == set(MODELS)
    assert {c[1] for c in LINEAR_CASES} == {"lm", "trf"}
    assert {c[2] for c in LINEAR_CASES} == {None, "1d", "2d"}
    assert {c[3] for c in LINEAR_CASES} == set(NOISE)
    assert {c[4] for c in LINEAR_CASES} == {None, "loose", "active"}
    assert {c[5] for c in LINEAR_CASES} == {False, True}


# --------------------------------------------------------------------------------------
# Robust losses: curve_fit(loss=...) vs scipy.optimize.least_squares + SciPy's pcov
# --------------------------------------------------------------------------------------
# (model, sigma kind, loss, f_scale, noise, bounds, absolute_sigma); every case has
# outliers.  With a 1-D sigma the residuals are in units of sigma, so f_scale is too.
ROBUST_CASES = [
    ("gaussian", None, "soft_l1", 0.1, "low", None, False),
    ("gaussian", None, "soft_l1", 0.5, "high", "loose", False),
    ("gaussian", None, "cauchy", 0.1, "low", None, False),
    ("gaussian", None, "cauchy", 0.5, "high", "active", False),
    ("exp_decay", "1d", "huber", 1.0, "low", None, False),
    ("exp_decay", "1d", "huber", 2.0, "high", None, True),
    ("exp_decay", "1d", "arctan", 1.0, "low", None, True),
    ("exp_decay", "1d", "arctan", 3.0, "high", "active", False),
]


def _robust_id(case) -> str:
    model, sk, loss, fs, noise, bk, ab = case
    return f"{model}-{loss}-fscale_{fs}-sigma_{sk}-{noise}-bounds_{bk}-abs_{ab}"


@pytest.mark.parametrize("case", ROBUST_CASES, ids=[_robust_id(c) for c in ROBUST_CASES])
def test_robust_curve_fit_matches_scipy(case):
    model, sigma_kind, loss, f_scale, noise, bound_kind, absolute_sigma = case
    spec = MODELS[model]
    x, y, sigma = make_data(model, noise, sigma_kind, 100 + ROBUST_CASES.index(case), outliers=4)
    bounds = bounds_of(model, bound_kind)
    ref_popt, ref_pcov = scipy_robust(
        spec["f"],
        x,
        y,
        spec["p0"],
        sigma=sigma,
        absolute_sigma=absolute_sigma,
        bounds=bounds,
        loss=loss,
        f_scale=f_scale,
    )
    popt, pcov = curvax.curve_fit(
        spec["f"],
        x,
        y,
        p0=spec["p0"],
        sigma=sigma,
        absolute_sigma=absolute_sigma,
        bounds=bounds,
        loss=loss,
        f_scale=f_scale,
    )
    assert_popt_close(popt, ref_popt)
    assert_pcov_close(pcov, ref_pcov)
    # the robust fit is not the plain one: the outliers really are down-weighted
    plain = scipy_curve_fit(
        spec["f"],
        x,
        y,
        spec["p0"],
        sigma=sigma,
        absolute_sigma=absolute_sigma,
        bounds=bounds,
        method="trf",
    )[0]
    assert np.max(np.abs(popt - plain) / np.abs(plain)) > 1e-4


def test_robust_grid_covers_every_scipy_loss():
    assert {c[2] for c in ROBUST_CASES} == {"soft_l1", "huber", "cauchy", "arctan"}


def test_reference_pcov_is_scipy_curve_fits_own():
    """``scipy_pcov`` (used for robust losses) reproduces scipy's curve_fit exactly."""
    spec = MODELS["gaussian"]
    x, y, _ = make_data("gaussian", "high", None, 7, outliers=4)
    f_np, jac_np = _numpy_pair(gaussian)
    kw = dict(ftol=TOL, xtol=TOL, gtol=TOL, max_nfev=REF_NFEV, x_scale="jac")
    popt, pcov = so.curve_fit(
        f_np, x, y, spec["p0"], method="trf", jac=jac_np, loss="cauchy", f_scale=0.3, **kw
    )
    res = so.least_squares(
        lambda p: f_np(x, *p) - y,
        spec["p0"],
        jac=lambda p: jac_np(x, *p),
        loss="cauchy",
        f_scale=0.3,
        **kw,
    )
    np.testing.assert_array_equal(res.x, popt)
    # rounding-level agreement, relative to the matrix (SciPy 1.18 differs from 1.17 by
    # 1e-18 in a 1e-8 entry next to 1e-2 diagonal ones)
    np.testing.assert_allclose(
        scipy_pcov(res, False), pcov, rtol=1e-13, atol=1e-13 * np.abs(pcov).max()
    )


def tukey_rho(z):
    """curvax's Tukey biweight (ρ, ρ', ρ'') in SciPy's callable-loss convention."""
    inside = z <= 1.0
    u = np.where(inside, 1.0 - z, 0.0)
    return np.stack([(1.0 - u**3) / 3.0, u**2, np.where(inside, -2.0 * u, 0.0)])


@pytest.mark.parametrize("noise, f_scale", [("low", 0.1), ("high", 0.6)])
def test_tukey_matches_scipy_with_the_same_callable_loss(noise, f_scale):
    """curvax's own ``tukey`` loss vs SciPy's TRF given the same ρ as a callable.

    Tukey's biweight redescends, so (as usual with it) the fit starts near the answer.
    """
    spec = MODELS["gaussian"]
    p0 = 1.05 * np.asarray(spec["p"])
    x, y, _ = make_data("gaussian", noise, None, 200 + int(10 * f_scale), outliers=4)

    def ref(xx, yy):
        return scipy_robust(
            gaussian,
            xx,
            yy,
            p0,
            sigma=None,
            absolute_sigma=False,
            bounds=(-np.inf, np.inf),
            loss=tukey_rho,
            f_scale=f_scale,
        )

    ref_popt, ref_pcov = ref(x, y)
    popt, pcov = curvax.curve_fit(gaussian, x, y, p0=p0, loss="tukey", f_scale=f_scale)
    assert_popt_close(popt, ref_popt)
    assert_pcov_close(pcov, ref_pcov)
    # the four outliers (0.9 to 1.8 off the curve) lie beyond f_scale, where the
    # biweight is flat: they have no influence, and dropping them changes nothing
    r = np.abs(np.asarray(gaussian(x, *popt)) - y)
    inl = r < f_scale
    assert (~inl).sum() == 4
    np.testing.assert_allclose(popt, ref(x[inl], y[inl])[0], rtol=1e-6)


# --------------------------------------------------------------------------------------
# least_squares: x, cost, fun, jac, grad, active_mask vs scipy.optimize.least_squares
# --------------------------------------------------------------------------------------
def gauss_residuals(p, x, y):
    return gaussian(x, p[0], p[1], p[2], p[3]) - y


def exp_residuals(p, x, y):
    return exp_decay(x, p[0], p[1], p[2]) - y


@functools.cache
def _numpy_residuals(fun):
    f_jit = jax.jit(fun)
    j_jit = jax.jit(jax.jacfwd(fun))

    def call(g, p, x, y):
        with jax.enable_x64(True):
            return np.asarray(g(jnp.asarray(p, jnp.float64), jnp.asarray(x), jnp.asarray(y)))

    return functools.partial(call, f_jit), functools.partial(call, j_jit)


LS_CASES = [
    # (residual function, model key, method, loss, f_scale, bounds kind, outliers)
    (gauss_residuals, "gaussian", "trf", "soft_l1", 0.1, "active", 4),
    (exp_residuals, "exp_decay", "lm", "linear", 1.0, None, 0),
]


@pytest.mark.parametrize("case", LS_CASES, ids=["trf-soft_l1-active_bound", "lm-linear"])
def test_least_squares_matches_scipy(case):
    fun, model, method, loss, f_scale, bound_kind, outliers = case
    spec = MODELS[model]
    x, y, _ = make_data(model, "high", None, 300 + LS_CASES.index(case), outliers=outliers)
    bounds = bounds_of(model, bound_kind)
    f_np, j_np = _numpy_residuals(fun)
    ref = so.least_squares(
        f_np,
        spec["p0"],
        jac=j_np,
        bounds=bounds,
        method=method,
        loss=loss,
        f_scale=f_scale,
        x_scale="jac",
        ftol=TOL,
        xtol=TOL,
        gtol=TOL,
        max_nfev=REF_NFEV,
        args=(x, y),
    )
    assert ref.status > 0, ref.message
    # the same arguments as SciPy, tolerances included, so that the gradient fields
    # can be compared tightly (curve_fit cases above use curvax's defaults)
    res = curvax.least_squares(
        fun,
        spec["p0"],
        bounds=bounds,
        method=method,
        loss=loss,
        f_scale=f_scale,
        ftol=TOL,
        xtol=TOL,
        gtol=TOL,
        args=(x, y),
    )
    assert res.success
    assert_popt_close(res.x, ref.x)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-10)
    # residuals f(x, p) − y: differences of values of the size of the data, so they are
    # compared with an absolute floor of 1e-6 of the data scale (what POPT_RTOL allows
    # the model values to move); small residuals carry no relative accuracy
    np.testing.assert_allclose(res.fun, ref.fun, rtol=1e-6, atol=1e-6 * np.abs(y).max())
    # Jacobian (loss-rescaled, as SciPy's field): compare at rtol 1e-6; entries that
    # vanish (e.g. the Gaussian tails) get an absolute floor relative to the largest
    assert res.jac.shape == ref.jac.shape
    np.testing.assert_allclose(res.jac, ref.jac, rtol=1e-6, atol=1e-9 * np.abs(ref.jac).max())
    # gradient Jᵀf: zero at a free optimum up to cancellation among terms of size
    # |J|·|f|, so components are compared to 1e-8 of that scale; a component held by
    # an active bound is genuinely non-zero and is held to rtol 1e-6
    scale = np.linalg.norm(ref.jac) * np.linalg.norm(ref.fun)
    np.testing.assert_allclose(res.grad, ref.grad, rtol=1e-6, atol=1e-8 * scale)
    np.testing.assert_array_equal(res.active_mask, ref.active_mask)
    if bound_kind == "active":
        i = int(np.nonzero(ref.active_mask)[0][0])
        assert abs(ref.grad[i]) > 1e-4 * scale
        np.testing.assert_allclose(res.grad[i], ref.grad[i], rtol=1e-6)


# --------------------------------------------------------------------------------------
# CurveFit
# --------------------------------------------------------------------------------------
def test_curvefit_class_matches_scipy_and_refits_new_data():
    spec = MODELS["gaussian"]
    x, y, _ = make_data("gaussian", "high", None, 400)
    _, y2, _ = make_data("gaussian", "low", None, 401)
    cf = curvax.CurveFit(gaussian, x, y, spec["p0"])
    for i, data in enumerate((None, y2)):
        res = cf.fit() if data is None else cf.fit(x, data)
        yy = y if data is None else data
        ref_popt, ref_pcov = scipy_curve_fit(
            gaussian,
            x,
            yy,
            spec["p0"],
            sigma=None,
            absolute_sigma=False,
            bounds=(-np.inf, np.inf),
            method="trf",
        )
        assert res.success, i
        assert_popt_close(res.popt, ref_popt)
        assert_pcov_close(res.pcov, ref_pcov)
        np.testing.assert_allclose(res.perr, np.sqrt(np.diag(ref_pcov)), rtol=1e-6)
        f_np, _ = _numpy_pair(gaussian)
        r = f_np(x, *ref_popt) - yy
        np.testing.assert_allclose(res.fun, r, rtol=1e-6, atol=1e-9 * np.abs(r).max())
        np.testing.assert_allclose(res.cost, 0.5 * np.sum(r**2), rtol=1e-10)
        assert cf.result is res


# --------------------------------------------------------------------------------------
# Other front-door forms: scalar sigma, a Bounds object, p0 from the bounds, full_output
# (all reuse programs compiled above)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("absolute_sigma", BOTH)
def test_scalar_sigma_matches_scipy(absolute_sigma):
    spec = MODELS["exp_decay"]
    x, y, _ = make_data("exp_decay", "low", None, 500)
    popt, pcov = curvax.curve_fit(
        exp_decay, x, y, p0=spec["p0"], sigma=0.01, absolute_sigma=absolute_sigma, method="trf"
    )
    ref_popt, ref_pcov = scipy_curve_fit(
        exp_decay,
        x,
        y,
        spec["p0"],
        sigma=np.full(N, 0.01),
        absolute_sigma=absolute_sigma,
        bounds=(-np.inf, np.inf),
        method="trf",
    )
    assert_popt_close(popt, ref_popt)
    assert_pcov_close(pcov, ref_pcov)


def test_bounds_object_and_p0_from_bounds_match_scipy():
    spec = MODELS["michaelis_menten"]
    x, y, sigma = make_data("michaelis_menten", "high", "1d", 501)
    lb, ub = spec["loose"]
    # no p0: the middle of the bounds, as SciPy (whose reference gets it explicitly,
    # since SciPy cannot count the parameters of the *p wrapper)
    popt, pcov = curvax.curve_fit(michaelis_menten, x, y, sigma=sigma, bounds=so.Bounds(lb, ub))
    ref_popt, ref_pcov = scipy_curve_fit(
        michaelis_menten,
        x,
        y,
        0.5 * (np.asarray(lb) + np.asarray(ub)),
        sigma=sigma,
        absolute_sigma=False,
        bounds=(lb, ub),
        method="trf",
    )
    assert_popt_close(popt, ref_popt)
    assert_pcov_close(pcov, ref_pcov)


def test_full_output_matches_scipy():
    spec = MODELS["exp_decay"]
    x, y, _ = make_data("exp_decay", "high", None, 502)
    popt, pcov, info, mesg, ier = curvax.curve_fit(
        exp_decay, x, y, p0=spec["p0"], method="lm", full_output=True
    )
    f_np, jac_np = _numpy_pair(exp_decay)
    ref_popt, ref_pcov, ref_info, _, ref_ier = so.curve_fit(
        f_np,
        x,
        y,
        spec["p0"],
        jac=jac_np,
        method="lm",
        ftol=TOL,
        xtol=TOL,
        gtol=TOL,
        maxfev=REF_NFEV,
        full_output=True,
    )
    assert ier in (1, 2, 3, 4) and ref_ier in (1, 2, 3, 4)
    assert_popt_close(popt, ref_popt)
    assert_pcov_close(pcov, ref_pcov)
    assert isinstance(mesg, str) and mesg
    np.testing.assert_allclose(
        info["fvec"], ref_info["fvec"], rtol=1e-6, atol=1e-6 * np.abs(y).max()
    )
    assert info["nfev"] > 0


def two_predictor_rows(x, a, b, c):
    return a * jnp.exp(-b * x[:, 0]) + c * x[:, 1]


def test_xdata_with_points_along_the_first_axis_matches_scipy():
    spec = MODELS["two_predictor"]
    x, y, _ = make_data("two_predictor", "low", None, 503)
    xt = np.ascontiguousarray(x.T)  # (N, 2)
    popt, pcov = curvax.curve_fit(two_predictor_rows, xt, y, p0=spec["p0"], method="lm")
    ref_popt, ref_pcov = scipy_curve_fit(
        two_predictor_rows,
        xt,
        y,
        spec["p0"],
        sigma=None,
        absolute_sigma=False,
        bounds=(-np.inf, np.inf),
        method="lm",
    )
    assert_popt_close(popt, ref_popt)
    assert_pcov_close(pcov, ref_pcov)
