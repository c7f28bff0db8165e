"""Bad input gets a clear error, never a wrong answer.

Every bad input to ``curve_fit`` / ``fit_curve`` / ``CurveFit`` / ``least_squares``
raises an exception whose type is checked and whose message is matched against a
pattern naming the argument and the problem.  Then the positive counterparts: NaN
handling by ``nan_policy='omit'``, a model written with plain NumPy, a parameter held
fixed by ``lower == upper``, an unconverged fit, and a rank-deficient model.

Compile-time economy: the fits that reach the solver use one model and one data size
wherever possible, so they share compiled programs.
"""

from __future__ import annotations

import re
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

import curvax
from curvax import OptimizeWarning, PerformanceWarning

N = 20
TRUE = (2.0, 1.3, 0.5)
P0 = [1.0, 1.0, 0.0]
TOL = 1e-15


def decay(x, a, tau, c):
    return a * jnp.exp(-x / tau) + c


def decay_np(x, a, tau, c):
    return a * np.exp(-x / tau) + c


def decay_jac_np(x, a, tau, c):
    e = np.exp(-x / tau)
    return np.stack([e, a * x / tau**2 * e, np.ones_like(x)], axis=1)


def _data(n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 4.0, n)
    return x, decay_np(x, *TRUE) + 0.02 * rng.standard_normal(n)


X, Y = _data()


def scipy_ref(f, x, y, p0, jac, **kw):
    """Converged SciPy curve_fit with an exact Jacobian and tolerances of 1e-15."""
    method = kw.pop("method", "lm")
    budget = {"maxfev": 20000} if method == "lm" else {"max_nfev": 20000}
    popt, pcov, _, mesg, ier = so.curve_fit(
        f,
        x,
        y,
        p0,
        jac=jac,
        method=method,
        ftol=TOL,
        xtol=TOL,
        gtol=TOL,
        full_output=True,
        **budget,
        **kw,
    )
    assert ier in (1, 2, 3, 4), mesg
    return popt, pcov


def assert_pcov_close(actual, desired):
    # rtol 1e-6, with an absolute floor of 1e-9·max|pcov| for entries near zero by
    # cancellation (see tests/test_scipy_parity.py)
    np.testing.assert_allclose(actual, desired, rtol=1e-6, atol=1e-9 * np.max(np.abs(desired)))


def _with(arr, idx, value):
    out = np.array(arr, dtype=float)
    out[idx] = value
    return out


# --------------------------------------------------------------------------------------
# curve_fit: each bad argument, its exception and what the message must say
# --------------------------------------------------------------------------------------
def wrong_length(x, a, tau, c):
    return jnp.concatenate([a * jnp.exp(-x / tau) + c, jnp.zeros(1)])


def wrong_rank(x, a, tau, c):
    return jnp.stack([x, x]) * a + c / tau


def numpy_raising(x, a, tau, c):
    raise ValueError("domain error in user code")


def star_args(x, *p):
    return p[0] * x


def case(case_id, exc, pattern, **over):
    """One bad call: overrides of the default arguments, the exception, its message."""
    return pytest.param(over, exc, pattern, id=case_id)


NOT_PD = np.ones((N, N))  # rank one: positive semi-definite only
INDEFINITE = np.eye(N) - 0.9 * np.eye(N, k=1) - 0.9 * np.eye(N, k=-1)
INDEFINITE[0, 0] = -1.0

# case(id, exception, message pattern, **overrides of curve_fit(decay, X, Y, p0=P0))
CURVE_FIT_ERRORS = [
    # data shapes
    case(
        "x-shorter-than-y",
        ValueError,
        r"^xdata: shape \(19,\) has no axis of length 20 = len\(ydata\)",
        xdata=X[:-1],
    ),
    case(
        "y-shorter-than-x",
        ValueError,
        r"^xdata: shape \(20,\) has no axis of length 19 = len\(ydata\)",
        ydata=Y[:-1],
    ),
    case(
        "x-2d-wrong-length",
        ValueError,
        r"^xdata: shape \(2, 19\) has no axis of length 20",
        xdata=np.ones((2, N - 1)),
    ),
    case(
        "x-scalar",
        ValueError,
        r"^xdata: must be an array of length len\(ydata\), got a scalar",
        xdata=1.0,
    ),
    case(
        "y-2d",
        ValueError,
        r"^ydata: must be 1-D \(one curve\), got shape \(20, 2\)",
        ydata=np.ones((N, 2)),
    ),
    case(
        "y-scalar",
        ValueError,
        r"^ydata: must be a 1-D array of observations, got a scalar",
        ydata=1.0,
    ),
    case("y-not-numeric", ValueError, r"^ydata: not numeric", ydata=["a"] * N),
    case(
        "sigma-1d-length",
        ValueError,
        r"^sigma: has length 19 but ydata has length 20",
        sigma=np.ones(N - 1),
    ),
    case(
        "sigma-2d-shape",
        ValueError,
        r"^sigma: a 2-D sigma \(covariance of ydata\) must have shape \(20, 20\), got \(19, 19\)",
        sigma=np.eye(N - 1),
    ),
    case(
        "sigma-3d",
        ValueError,
        r"^sigma: must be a scalar, 1-D or 2-D array, got shape \(20, 20, 1\)",
        sigma=np.ones((N, N, 1)),
    ),
    # empty data, too little data
    case("empty", ValueError, r"^ydata: must not be empty", xdata=[], ydata=[]),
    case("empty-x", ValueError, r"^xdata: shape \(0,\) has no axis of length 20", xdata=[]),
    case(
        "fewer-points-than-parameters",
        ValueError,
        r"^xdata/ydata: 2 data points are fewer than the 3 parameters to fit",
        xdata=X[:2],
        ydata=Y[:2],
    ),
    # non-finite data
    case(
        "nan-in-y",
        ValueError,
        r"^ydata: contains NaN or Inf \(1 non-finite value\(s\), "
        r"first at index \((np\.int64\()?3\)?,\)\)",
        ydata=_with(Y, 3, np.nan),
    ),
    case(
        "inf-in-y",
        ValueError,
        r"^ydata: contains NaN or Inf \(1 non-finite",
        ydata=_with(Y, 5, -np.inf),
    ),
    case(
        "nan-in-x",
        ValueError,
        r"^xdata: contains NaN or Inf \(1 non-finite",
        xdata=_with(X, 2, np.nan),
    ),
    case(
        "inf-in-x",
        ValueError,
        r"^xdata: contains NaN or Inf \(1 non-finite",
        xdata=_with(X, 0, np.inf),
    ),
    case(
        "nan-in-y-check_finite",
        ValueError,
        r"^ydata: contains NaN or Inf",
        ydata=_with(Y, 3, np.nan),
        check_finite=True,
        nan_policy="omit",
    ),
    case(
        "nan-in-y-policy-raise",
        ValueError,
        r"^xdata/ydata: 1 point\(s\) contain NaN \(nan_policy='raise'\)",
        ydata=_with(Y, 3, np.nan),
        nan_policy="raise",
    ),
    case(
        "nan-in-x-policy-raise",
        ValueError,
        r"^xdata/ydata: 2 point\(s\) contain NaN \(nan_policy='raise'\)",
        xdata=_with(X, [1, 4], np.nan),
        nan_policy="raise",
    ),
    case(
        "nan-policy-propagate",
        ValueError,
        r"^nan_policy: 'propagate' is not supported",
        ydata=_with(Y, 3, np.nan),
        nan_policy="propagate",
    ),
    case(
        "nan-policy-unknown",
        ValueError,
        r"^nan_policy: expected one of \(None, 'raise', 'omit', 'propagate'\), got 'drop'",
        nan_policy="drop",
    ),
    case(
        "all-nan-omitted",
        ValueError,
        r"^xdata/ydata: no points left after omitting NaN",
        ydata=np.full(N, np.nan),
        nan_policy="omit",
    ),
    # p0
    case(
        "p0-too-short",
        ValueError,
        r"^p0: has 2 values but the model f takes 3 parameters",
        p0=[1.0, 1.0],
    ),
    case(
        "p0-too-long",
        ValueError,
        r"^p0: has 4 values but the model f takes 3 parameters",
        p0=[1.0, 1.0, 1.0, 1.0],
    ),
    case("p0-nan", ValueError, r"^p0: contains NaN or Inf", p0=[1.0, np.nan, 0.0]),
    case("p0-inf", ValueError, r"^p0: contains NaN or Inf", p0=[np.inf, 1.0, 0.0]),
    case(
        "p0-2d", ValueError, r"^p0: expected a 1-D vector, got shape \(3, 1\)", p0=np.ones((3, 1))
    ),
    case("p0-not-numeric", ValueError, r"^p0: not a numeric vector", p0=["a", "b", "c"]),
    case(
        "p0-not-inferable",
        ValueError,
        r"^p0: cannot infer the number of parameters from the signature of f or the "
        r"bounds; pass p0",
        f=star_args,
        p0=None,
    ),
    case(
        "p0-outside-bounds",
        ValueError,
        r"^p0: p0\[1\]=5 lies outside its bounds \[0, 2\]",
        p0=[1.0, 5.0, 0.0],
        bounds=([0, 0, 0], [2, 2, 2]),
    ),
    case(
        "p0-below-scalar-bound",
        ValueError,
        r"^p0: p0\[2\]=-1 lies outside its bounds \[0, inf\]",
        p0=[1.0, 1.0, -1.0],
        bounds=(0.0, np.inf),
    ),
    # bounds
    case(
        "lower-above-upper",
        ValueError,
        r"^bounds: lower bound must not exceed upper bound, but lower\[1\]=3 > upper\[1\]=2",
        p0=[1.0, 2.0, 0.0],
        bounds=([0, 3, -1], [2, 2, 1]),
    ),
    case(
        "lower-wrong-length",
        ValueError,
        r"^bounds: lower bounds have shape \(2,\); expected a scalar or length 3",
        bounds=([0, 0], [2, 2, 2]),
    ),
    case(
        "upper-wrong-length",
        ValueError,
        r"^bounds: upper bounds have shape \(4,\); expected a scalar or length 3",
        bounds=([0, 0, -1], [2, 2, 2, 2]),
    ),
    case(
        "bounds-not-a-pair",
        ValueError,
        r"^bounds: expected a \(lower, upper\) pair or a Bounds object",
        bounds=(0, 1, 2),
    ),
    case(
        "bounds-nan", ValueError, r"^bounds: lower bounds contain NaN", bounds=([0, np.nan, -1], 5)
    ),
    case(
        "bounds-not-numeric",
        ValueError,
        r"^bounds: upper bounds are not numeric",
        bounds=(0, "high"),
    ),
    # the model
    case("f-not-callable", TypeError, r"^f: expected a callable model, got float", f=3.0),
    case(
        "f-wrong-length",
        ValueError,
        r"^f: the model returned shape \(21,\) at p0 but ydata has shape \(20,\)",
        f=wrong_length,
    ),
    case(
        "f-wrong-rank",
        ValueError,
        r"^f: the model returned shape \(2, 20\) at p0 but ydata has shape \(20,\)",
        f=wrong_rank,
    ),
    case(
        "f-numpy-raises",
        ValueError,
        r"^f: the model raised ValueError at p0: domain error in user code",
        f=numpy_raising,
    ),
    # method, loss and solver settings
    case(
        "lm-with-bounds",
        ValueError,
        r"^method='lm' does not handle bounds; use method='trf'",
        bounds=(-10.0, 10.0),
        method="lm",
    ),
    case(
        "method-unknown",
        ValueError,
        r"^method: unknown method 'dogbox'; expected one of \('trf', 'lm'\)",
        method="dogbox",
    ),
    case(
        "loss-unknown",
        ValueError,
        r"^loss: unknown loss 'l2'; expected one of "
        r"\('linear', 'soft_l1', 'huber', 'cauchy', 'arctan', 'tukey'\) or a callable",
        loss="l2",
    ),
    case("loss-not-a-string", ValueError, r"^loss: unknown loss 3", loss=3),
    case(
        "f_scale-zero",
        ValueError,
        r"^f_scale: expected a positive finite number, got 0",
        f_scale=0.0,
    ),
    case(
        "f_scale-negative",
        ValueError,
        r"^f_scale: expected a positive finite number, got -1",
        f_scale=-1.0,
    ),
    case(
        "f_scale-nan",
        ValueError,
        r"^f_scale: expected a positive finite number, got nan",
        f_scale=np.nan,
    ),
    case(
        "f_scale-inf",
        ValueError,
        r"^f_scale: expected a positive finite number, got inf",
        f_scale=np.inf,
    ),
    case(
        "f_scale-string",
        ValueError,
        r"^f_scale: expected a positive number, got 'wide'",
        f_scale="wide",
    ),
    case(
        "ftol-negative",
        ValueError,
        r"^ftol: expected a non-negative finite number, got -1e-08",
        ftol=-1e-8,
    ),
    case(
        "xtol-negative",
        ValueError,
        r"^xtol: expected a non-negative finite number, got -1",
        xtol=-1.0,
    ),
    case(
        "gtol-negative",
        ValueError,
        r"^gtol: expected a non-negative finite number, got -0.001",
        gtol=-1e-3,
    ),
    case(
        "gtol-nan",
        ValueError,
        r"^gtol: expected a non-negative finite number, got nan",
        gtol=np.nan,
    ),
    case(
        "ftol-string",
        ValueError,
        r"^ftol: expected a non-negative number, got 'tight'",
        ftol="tight",
    ),
    case(
        "all-tolerances-zero",
        ValueError,
        r"^ftol, xtol, gtol: at least one tolerance must be above machine epsilon",
        ftol=0.0,
        xtol=0.0,
        gtol=0.0,
    ),
    case(
        "max_nfev-zero",
        ValueError,
        r"^max_nfev: expected a positive integer or None, got 0",
        max_nfev=0,
    ),
    case(
        "max_nfev-negative",
        ValueError,
        r"^max_nfev: expected a positive integer or None, got -5",
        max_nfev=-5,
    ),
    case(
        "max_nfev-float",
        ValueError,
        r"^max_nfev: expected a positive integer or None, got 1.5",
        max_nfev=1.5,
    ),
    case(
        "max_nfev-bool",
        ValueError,
        r"^max_nfev: expected a positive integer or None, got True",
        max_nfev=True,
    ),
    case(
        "maxfev-zero",
        ValueError,
        r"^max(_n)?fev: expected a positive integer or None, got 0",
        maxfev=0,
    ),
    case(
        "maxfev-and-max_nfev",
        TypeError,
        r"^curve_fit: give max_nfev or maxfev, not both",
        maxfev=10,
        max_nfev=10,
    ),
    case("x_scale-negative", ValueError, r"^x_scale: must be positive and finite", x_scale=-1.0),
    case(
        "x_scale-unknown",
        ValueError,
        r"^x_scale: expected 'jac', 'bounds', a positive number or array, got 'auto'",
        x_scale="auto",
    ),
    case(
        "x_scale-length",
        ValueError,
        r"^x_scale: has shape \(2,\); expected a scalar or length 3",
        x_scale=[1.0, 1.0],
    ),
    case(
        "jac-unknown",
        ValueError,
        r"^jac: expected a callable, 'auto', 'fwd', 'rev', '2-point', '3-point' or 'cs', "
        r"got '4-point'",
        jac="4-point",
    ),
    case(
        "dtype-unsupported",
        ValueError,
        r"^dtype: expected 'float64' or 'float32', got int32",
        dtype="int32",
    ),
    case(
        "param_style-unknown",
        ValueError,
        r"^param_style: expected 'auto', 'args' or 'array', got 'kw'",
        param_style="kw",
    ),
    case(
        "block_size-zero",
        ValueError,
        r"^block_size: expected a positive integer, got 0",
        block_size=0,
    ),
    # sigma values
    case(
        "sigma-zero",
        ValueError,
        r"^sigma: every uncertainty must be positive and finite",
        sigma=_with(np.ones(N), 4, 0.0),
    ),
    case(
        "sigma-negative",
        ValueError,
        r"^sigma: every uncertainty must be positive and finite",
        sigma=-np.ones(N),
    ),
    case(
        "sigma-nan",
        ValueError,
        r"^sigma: every uncertainty must be positive and finite",
        sigma=_with(np.ones(N), 0, np.nan),
    ),
    case(
        "sigma-scalar-zero",
        ValueError,
        r"^sigma: every uncertainty must be positive and finite",
        sigma=0.0,
    ),
    case(
        "sigma-2d-singular",
        ValueError,
        r"^sigma: the 2-D sigma must be a positive definite covariance matrix",
        sigma=NOT_PD,
    ),
    case(
        "sigma-2d-indefinite",
        ValueError,
        r"^sigma: the 2-D sigma must be a positive definite covariance matrix",
        sigma=INDEFINITE,
    ),
    case(
        "sigma-2d-nan",
        ValueError,
        r"^sigma: the covariance matrix contains NaN or Inf",
        sigma=_with(np.eye(N), (0, 1), np.nan),
    ),
    # keyword arguments
    case(
        "unknown-keyword",
        TypeError,
        r"^curve_fit: unexpected keyword argument\(s\) \['foo'\]",
        foo=1,
    ),
    case(
        "scipy-only-keyword",
        TypeError,
        r"^curve_fit: unexpected keyword argument\(s\) \['epsfcn'\]",
        epsfcn=1e-3,
    ),
]


def _call_curve_fit(**over):
    args = dict(f=decay, xdata=X, ydata=Y, p0=P0)
    args.update(over)
    f = args.pop("f")
    return curvax.curve_fit(f, args.pop("xdata"), args.pop("ydata"), **args)


@pytest.mark.parametrize("over, exc, pattern", CURVE_FIT_ERRORS)
def test_curve_fit_rejects_bad_input(over, exc, pattern):
    with warnings.catch_warnings():
        # a NumPy-only model is announced with a PerformanceWarning before it fails
        warnings.simplefilter("ignore", PerformanceWarning)
        with pytest.raises(exc, match=pattern):
            _call_curve_fit(**over)


def test_scipy_also_refuses_propagate():
    # curvax follows SciPy here: nan_policy='propagate' is refused, not silently used
    with pytest.raises(ValueError, match="propagate"):
        so.curve_fit(decay_np, X, _with(Y, 3, np.nan), P0, nan_policy="propagate")


def test_model_returning_nan_at_p0():
    # tau = 0: 0/0 at x = 0 and a NaN Jacobian elsewhere
    with pytest.raises(
        ValueError,
        match=r"^p0: the residuals or their Jacobian are not finite at the initial point "
        r"\(\d+ non-finite entries, cost=nan\)",
    ):
        curvax.curve_fit(decay, X, Y, p0=[1.0, 0.0, 0.0])


def test_fit_curve_and_curvefit_share_the_checks():
    with pytest.raises(ValueError, match=r"^sigma: has length 19 but ydata has length 20"):
        curvax.fit_curve(decay, X, Y, P0, sigma=np.ones(N - 1))
    with pytest.raises(ValueError, match=r"^p0: p0\[0\]=5 lies outside its bounds \[0, 2\]"):
        curvax.CurveFit(decay, X, Y, [5.0, 1.0, 0.0], bounds=(0.0, 2.0)).fit()
    with pytest.raises(ValueError, match=r"^loss: unknown loss 'L1'"):
        curvax.CurveFit(decay, X, Y, P0, loss="L1").fit()


# --------------------------------------------------------------------------------------
# least_squares
# --------------------------------------------------------------------------------------
def residuals(p, x, y):
    return decay(x, p[0], p[1], p[2]) - y


def numpy_residuals(p):
    return np.asarray(p) * 2.0


LS_ERRORS = [
    case(
        "x0-outside-bounds",
        ValueError,
        r"^x0: x0\[1\]=5 lies outside its bounds \[0, 2\]",
        x0=[1.0, 5.0, 0.0],
        bounds=(0.0, 2.0),
    ),
    case("x0-nan", ValueError, r"^x0: contains NaN or Inf", x0=[1.0, np.nan, 0.0]),
    case("x0-empty", ValueError, r"^x0: must contain at least one parameter", x0=[]),
    case(
        "x0-2d", ValueError, r"^x0: expected a 1-D vector, got shape \(3, 1\)", x0=np.ones((3, 1))
    ),
    case(
        "method-unknown",
        ValueError,
        r"^method: unknown method 'dogbox'; expected one of \('trf', 'lm'\)",
        method="dogbox",
    ),
    case(
        "lm-with-bounds",
        ValueError,
        r"^method='lm' does not handle bounds",
        method="lm",
        bounds=(0.0, 5.0),
    ),
    case(
        "lower-above-upper",
        ValueError,
        r"^bounds: lower bound must not exceed upper bound, but lower\[1\]=3 > upper\[1\]=2",
        bounds=([0, 3, -1], [2, 2, 1]),
    ),
    case(
        "bounds-wrong-length",
        ValueError,
        r"^bounds: lower bounds have shape \(2,\); expected a scalar or length 3",
        bounds=([0, 0], 5.0),
    ),
    case("loss-unknown", ValueError, r"^loss: unknown loss 'l1'", loss="l1"),
    case(
        "f_scale-negative",
        ValueError,
        r"^f_scale: expected a positive finite number, got -2",
        f_scale=-2.0,
    ),
    case("ftol-negative", ValueError, r"^ftol: expected a non-negative finite number", ftol=-1.0),
    case(
        "all-tolerances-none",
        ValueError,
        r"^ftol, xtol, gtol: at least one tolerance must be above machine epsilon",
        ftol=None,
        xtol=None,
        gtol=None,
    ),
    case(
        "max_nfev-zero",
        ValueError,
        r"^max_nfev: expected a positive integer or None, got 0",
        max_nfev=0,
    ),
    case("x_scale-zero", ValueError, r"^x_scale: must be positive and finite", x_scale=0.0),
    case("jac-unknown", ValueError, r"^jac: expected a callable", jac="exact"),
    case(
        "dtype-unsupported",
        ValueError,
        r"^dtype: expected 'float64' or 'float32', got float16",
        dtype="float16",
    ),
    case("fun-not-callable", TypeError, r"^fun: expected a callable, got int", fun=5),
    case(
        "fun-not-traceable",
        ValueError,
        r"^fun: could not be evaluated by JAX at x0 \(TracerArrayConversionError",
        fun=numpy_residuals,
        args=(),
    ),
]


def _call_least_squares(**over):
    args = dict(fun=residuals, x0=P0, args=(X, Y))
    args.update(over)
    return curvax.least_squares(args.pop("fun"), args.pop("x0"), **args)


@pytest.mark.parametrize("over, exc, pattern", LS_ERRORS)
def test_least_squares_rejects_bad_input(over, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _call_least_squares(**over)


def sqrt_residuals(p):
    return jnp.sqrt(p) - 1.0


def test_least_squares_nan_at_x0_names_x0():
    with pytest.raises(ValueError, match=r"not finite at the initial point") as info:
        curvax.least_squares(sqrt_residuals, [-1.0, 4.0])
    assert re.match(r"^x0: ", str(info.value)), str(info.value)


# --------------------------------------------------------------------------------------
# Positive checks
# --------------------------------------------------------------------------------------
def test_nan_policy_omit_equals_fitting_the_clean_subset():
    # 20 good points plus three spoiled ones: NaN in y twice, NaN in x once
    xg, yg = _data(seed=1)
    ins = [0, 7, 15]
    x = np.insert(xg, ins, [0.5, 1.0, np.nan])
    y = np.insert(yg, ins, [np.nan, np.nan, 1.0])
    popt, pcov, info, _, ier = curvax.curve_fit(
        decay, x, y, p0=P0, nan_policy="omit", full_output=True
    )
    assert info["n_omitted"] == 3
    assert ier in (1, 2, 3, 4)
    assert info["fvec"].shape == (N,)
    ref_popt, ref_pcov = curvax.curve_fit(decay, xg, yg, p0=P0)
    np.testing.assert_allclose(popt, ref_popt, rtol=1e-12)
    np.testing.assert_allclose(pcov, ref_pcov, rtol=1e-12)
    # and both are SciPy's answer on the clean points
    sp_popt, sp_pcov = scipy_ref(decay_np, xg, yg, P0, decay_jac_np)
    np.testing.assert_allclose(popt, sp_popt, rtol=1e-6)
    assert_pcov_close(pcov, sp_pcov)


def test_nan_policy_omit_drops_the_matching_sigma():
    xg, yg = _data(seed=2)
    sg = np.linspace(0.01, 0.05, N)
    x = np.insert(xg, [3, 9], [1.0, 2.0])
    y = np.insert(yg, [3, 9], [np.nan, np.nan])
    s = np.insert(sg, [3, 9], [1e-6, 1e6])  # would dominate / vanish if not dropped
    popt, pcov = curvax.curve_fit(decay, x, y, p0=P0, sigma=s, nan_policy="omit")
    ref_popt, ref_pcov = curvax.curve_fit(decay, xg, yg, p0=P0, sigma=sg)
    np.testing.assert_allclose(popt, ref_popt, rtol=1e-12)
    np.testing.assert_allclose(pcov, ref_pcov, rtol=1e-12)


# Regression: the NumPy-model host path once failed in float64 when XLA ran the
# pure_callback on a worker thread without the thread-local 64-bit mode (fixed by
# passing float64 values across as raw bits in core.problem.host_model).
def test_numpy_model_fits_through_the_slow_path_and_says_so():
    sp_popt, sp_pcov = scipy_ref(decay_np, X, Y, P0, decay_jac_np)
    for _ in range(3):  # the compiled host path is reused; every run must work
        with pytest.warns(PerformanceWarning, match=r"^f: the model cannot be traced by JAX"):
            popt, pcov = curvax.curve_fit(decay_np, X, Y, p0=P0)
        np.testing.assert_allclose(popt, sp_popt, rtol=1e-6)
        assert_pcov_close(pcov, sp_pcov)
    np.testing.assert_allclose(popt, TRUE, rtol=0.05)


def test_equal_bounds_fix_a_parameter():
    tau = 1.25
    lb, ub = [0.0, tau, -5.0], [10.0, tau, 5.0]
    popt, pcov = curvax.curve_fit(decay, X, Y, p0=[1.0, tau, 0.0], bounds=(lb, ub))
    assert popt[1] == tau
    assert np.all(pcov[1, :] == 0.0)
    assert np.all(pcov[:, 1] == 0.0)

    # the same as fitting the model with tau removed (SciPy, exact Jacobian)
    def reduced(x, a, c):
        return decay_np(x, a, tau, c)

    def reduced_jac(x, a, c):
        return decay_jac_np(x, a, tau, c)[:, [0, 2]]

    sp_popt, sp_pcov = scipy_ref(
        reduced, X, Y, [1.0, 0.0], reduced_jac, method="trf", bounds=([0, -5], [10, 5])
    )
    np.testing.assert_allclose(popt[[0, 2]], sp_popt, rtol=1e-6)
    assert_pcov_close(pcov[np.ix_([0, 2], [0, 2])], sp_pcov)


def test_unconverged_fit_raises_runtime_error():
    with pytest.raises(RuntimeError, match=r"^Optimal parameters not found: "):
        curvax.curve_fit(decay, X, Y, p0=P0, max_nfev=2)
    res = curvax.fit_curve(decay, X, Y, P0, max_nfev=2)
    assert not res.success
    assert res.status == 0
    assert res.nfev <= 2


def product_model(x, a, b, tau):
    return a * b * jnp.exp(-x / tau)


def test_rank_deficient_model_gives_inf_pcov_and_warns():
    rng = np.random.default_rng(3)
    y = 2.0 * np.exp(-X / 1.3) + 0.01 * rng.standard_normal(N)
    with pytest.warns(
        OptimizeWarning, match=r"^Covariance of the parameters could not be estimated"
    ):
        popt, pcov = curvax.curve_fit(product_model, X, y, p0=[1.0, 1.0, 1.0])
    assert pcov.shape == (3, 3)
    assert np.all(np.isinf(pcov))
    # what the data determine (a·b and tau) is still fitted right
    sp_popt, _ = scipy_ref(
        lambda x, ab, tau: ab * np.exp(-x / tau),
        X,
        y,
        [1.0, 1.0],
        lambda x, ab, tau: decay_jac_np(x, ab, tau, 0.0)[:, :2],
    )
    np.testing.assert_allclose([popt[0] * popt[1], popt[2]], sp_popt, rtol=1e-6)


# --- adversarial magnitudes and kinds (found by the adversarial sweep) -------------------


@pytest.mark.parametrize("scale", [1e-300, 1e-310, 1e-160, 1e160, 1e300])
def test_data_beyond_float64_square_range_is_refused(scale):
    x = np.linspace(0, 1, 50)

    def line(x, a, b):
        return a * x + b

    with pytest.raises(ValueError, match=r"ydata/sigma: the weighted data have magnitude"):
        curvax.curve_fit(line, x, scale * (2 * x + 1), p0=[scale, scale])


@pytest.mark.parametrize("scale", [1e-140, 1e140])
def test_extreme_but_representable_magnitudes_fit_correctly(scale):
    x = np.linspace(0, 1, 50)
    y = 2 * x + 1 + 0.01 * np.random.default_rng(0).normal(size=50)

    def line(x, a, b):
        return a * x + b

    ref, _ = curvax.curve_fit(line, x, y, p0=[1.0, 1.0])
    popt, _ = curvax.curve_fit(line, x, scale * y, p0=[scale, scale])
    np.testing.assert_allclose(popt / scale, ref, rtol=1e-8)


def test_complex_ydata_is_refused():
    x = np.linspace(0, 1, 20)
    with pytest.raises(ValueError, match="ydata: complex values are not supported"):
        curvax.curve_fit(lambda x, a, b: a * x + b, x, x + 1j, p0=[1.0, 1.0])


@pytest.mark.parametrize("wrap", [np.asarray, jnp.asarray, list])
def test_complex_xdata_is_refused(wrap):
    """Complex xdata used to be cut to its real part (NumPy, a list of Python complex
    numbers, or a device array next to device ydata), with only a ComplexWarning."""
    x = np.linspace(0, 1, 20)
    y = jnp.asarray(x) if wrap is jnp.asarray else x
    with pytest.raises(ValueError, match=r"^xdata: complex values are not supported"):
        curvax.curve_fit(lambda x, a, b: a * x + b, wrap(x + 1j), y, p0=[1.0, 1.0])


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_chunked_data_beyond_float64_square_range_is_refused(scale):
    """The chunked path refuses the same data as the in-memory one (found in review)."""
    from curvax.scale import fit_chunked

    x = np.linspace(0, 1, 5000)

    def line(x, a, b):
        return a * x + b

    y = scale * (2 * x + 1)  # checked over all chunks, like the in-memory fit
    with pytest.raises(ValueError, match=r"ydata/sigma: the weighted data have magnitude"):
        fit_chunked(line, x, y=y, p0=[1.0, 1.0], chunk_size=1000)


def test_chunked_small_values_in_one_chunk_are_fine():
    """Tiny values in one chunk are not refused when the data as a whole are in range."""
    from curvax.scale import fit_chunked

    x = np.linspace(0, 1, 5000)
    y = 2 * x + 1
    y[4000:] = 1e-300

    def line(x, a, b):
        return a * x + b

    ref = curvax.fit_curve(line, x, y, p0=[1.0, 1.0])
    res = fit_chunked(line, x, y=y, p0=[1.0, 1.0], chunk_size=1000)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)


def test_batch_numpy_model_and_wrong_shape_are_named():
    """curve_fit_batch once surfaced JAX's TracerBoolConversionError for a NumPy model."""
    x = np.linspace(0, 1, 20)
    y = np.tile(2 * x + 1, (5, 1))

    def numpy_model(x, a, b):
        if a > 0:  # Python control flow on a parameter value
            return a * np.asarray(x) + b
        return b + 0 * x

    with pytest.raises(TypeError, match="f: curve_fit_batch needs a model JAX can trace"):
        curvax.curve_fit_batch(numpy_model, x, y, p0=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"f: the model returned shape \(3,\) but each curve"):
        curvax.curve_fit_batch(lambda x, a, b: a * jnp.ones(3) + b, x, y, p0=[1.0, 1.0])
