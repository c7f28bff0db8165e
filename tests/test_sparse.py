"""Sparse Jacobians (``jac_sparsity``): column grouping gives the dense answer.

The test model is a sum of 20 Gaussian peaks (60 parameters) in which peak k is
*windowed*: it contributes only for x in its fixed window [c_k − 8, c_k + 8), so its
three parameters affect only the points in that window and every other entry of the
Jacobian is exactly zero.  The pattern is then a true statement about the model (a
plain Gaussian's tails are never exactly zero), and the grouped Jacobian must equal the
dense Jacobian of the same model.  Windows of neighbouring peaks overlap, those of
peaks two apart do not, so six groups suffice (3 parameters × 2 neighbours).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sps

import curvax
from curvax.core.problem import value_and_jacobian
from curvax.core.sparsity import greedy_colouring
from curvax.core.validation import check_jac_sparsity
from tests._sparse_models import CENTRES, HI, LO, K, peaks, window_pattern


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    x = np.linspace(0.0, 200.0, 1000)
    truth = np.stack(
        [rng.uniform(1, 3, K), CENTRES + rng.uniform(-1, 1, K), rng.uniform(0.8, 1.5, K)], 1
    ).ravel()
    with jax.enable_x64(True):
        y = np.asarray(peaks(jnp.asarray(x), jnp.asarray(truth)))
    y = y + 0.01 * rng.standard_normal(x.size)
    p0 = truth.copy()
    p0[0::3] *= 1.1
    p0[1::3] += 0.3
    p0[2::3] *= 0.9
    return x, y, p0, truth


def test_colouring_groups_are_structurally_orthogonal() -> None:
    rng = np.random.default_rng(0)
    P = rng.random((300, 40)) < 0.05
    P[0, :] = False
    colours = np.asarray(greedy_colouring(P))
    for g in range(colours.max() + 1):
        assert P[:, colours == g].sum(axis=1).max() <= 1  # no row shared within a group
    assert colours.max() + 1 >= P.sum(axis=1).max()  # lower bound: densest row
    # a tridiagonal pattern needs exactly three groups
    T = np.eye(30, dtype=bool) | np.eye(30, k=1, dtype=bool) | np.eye(30, k=-1, dtype=bool)
    assert max(greedy_colouring(T)) + 1 == 3


@pytest.mark.parametrize("mode", ["fwd", "2-point", "3-point"])
def test_grouped_jacobian_equals_dense(data, mode) -> None:
    x, _, p0, _ = data
    P = window_pattern(x)
    colours = greedy_colouring(P)
    assert max(colours) + 1 == 6
    with jax.enable_x64(True):
        xj, pj = jnp.asarray(x), jnp.asarray(p0)
        r_d, J_d = value_and_jacobian(lambda q: peaks(xj, q), pj, mode)
        r_s, J_s = value_and_jacobian(lambda q: peaks(xj, q), pj, mode, colours, jnp.asarray(P))
    J_d, J_s = np.asarray(J_d), np.asarray(J_s)
    np.testing.assert_array_equal(np.asarray(r_s), np.asarray(r_d))
    assert np.all(J_d[~P] == 0)  # the pattern is true for this model
    np.testing.assert_allclose(J_s, J_d, rtol=1e-14, atol=0)
    if mode == "fwd":  # and forward mode is the exact derivative: check one entry by hand
        k, i = 7, int(np.argmin(np.abs(x - p0[3 * 7 + 1])))
        a, mu, s = p0[3 * k : 3 * k + 3]
        e = np.exp(-0.5 * ((x[i] - mu) / s) ** 2)
        np.testing.assert_allclose(J_s[i, 3 * k + 1], a * e * (x[i] - mu) / s**2, rtol=1e-13)


def test_sparse_fit_equals_dense_fit(data) -> None:
    x, y, p0, truth = data
    dense = curvax.fit_curve(peaks, x, y, p0)
    assert dense.success
    slices = [
        slice(int(np.searchsorted(x, LO[k])), int(np.searchsorted(x, HI[k])))
        for k in range(K)
        for _ in range(3)
    ]
    for spec in (window_pattern(x), slices, "auto"):
        res = curvax.fit_curve(peaks, x, y, p0, jac_sparsity=spec)
        assert res.success and res.extra["jac_groups"] == 6
        np.testing.assert_allclose(res.x, dense.x, rtol=1e-10)
        np.testing.assert_allclose(res.pcov, dense.pcov, rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(res.cost, dense.cost, rtol=1e-12)
    # the fit itself is right: within 5 standard errors of the truth
    assert np.all(np.abs(dense.x - truth) < 5 * dense.perr)
    # through curve_fit and CurveFit too
    popt, _ = curvax.curve_fit(peaks, x, y, p0, jac_sparsity=slices)
    np.testing.assert_allclose(popt, dense.x, rtol=1e-10)
    cf = curvax.CurveFit(peaks, x, y, p0, method="lm", jac_sparsity="auto").fit()
    np.testing.assert_allclose(cf.x, dense.x, rtol=1e-10)


def test_pattern_forms_agree(data) -> None:
    """(N, p), (p, N), SciPy sparse and per-parameter slices describe the same pattern."""
    x = data[0]
    P = window_pattern(x)
    slices = [
        slice(int(np.searchsorted(x, LO[k])), int(np.searchsorted(x, HI[k])))
        for k in range(K)
        for _ in range(3)
    ]
    for spec in (
        P.T,
        P.astype(np.int8),
        sps.csr_matrix(P),
        sps.coo_matrix(P.T),
        slices,
        [range(s.start, s.stop) for s in slices],
    ):
        np.testing.assert_array_equal(check_jac_sparsity(spec, x.size, 3 * K), P)


@pytest.mark.slow
def test_sparse_fit_with_bounds_fixed_and_omitted_points(data) -> None:
    x, y, p0, _ = data
    y = y.copy()
    y[[3, 500]] = np.nan
    keep = np.isfinite(y)
    lb = np.full(60, -np.inf)
    lb[2::3] = 0.5  # widths bounded below: trf
    fixed = {"p4": p0[4]}  # mu_1 held fixed
    names = tuple(f"p{i}" for i in range(60))
    ref = curvax.fit_curve(
        peaks, x[keep], y[keep], p0, bounds=(lb, np.inf), fixed=fixed, param_names=names
    )
    P = window_pattern(x)
    P[:, 4] = False  # a fixed parameter may have an empty column
    res = curvax.fit_curve(
        peaks,
        x,
        y,
        p0,
        bounds=(lb, np.inf),
        fixed=fixed,
        param_names=names,
        nan_policy="omit",
        jac_sparsity=P,
    )
    assert ref.success and res.success and res.method == "trf"
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-10)
    assert res.x[4] == p0[4]


def broyden_tridiagonal(x):
    """Broyden's tridiagonal system r_i = (3 − 2x_i) x_i − x_{i−1} − 2 x_{i+1} + 1."""
    xp = jnp.concatenate([jnp.zeros(1), x[:-1]])
    xn = jnp.concatenate([x[1:], jnp.zeros(1)])
    return (3.0 - 2.0 * x) * x - xp - 2.0 * xn + 1.0


def broyden_np(x: np.ndarray) -> np.ndarray:
    xp = np.concatenate([[0.0], x[:-1]])
    xn = np.concatenate([x[1:], [0.0]])
    return (3.0 - 2.0 * x) * x - xp - 2.0 * xn + 1.0


def test_least_squares_sparse_matches_scipy() -> None:
    n = 30
    x0 = -np.ones(n)
    T = np.eye(n, dtype=bool) | np.eye(n, k=1, dtype=bool) | np.eye(n, k=-1, dtype=bool)
    ref = so.least_squares(broyden_np, x0, jac_sparsity=T, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert np.max(np.abs(ref.fun)) < 1e-12
    for spec in (T, sps.lil_matrix(T), "auto"):
        res = curvax.least_squares(broyden_tridiagonal, x0, jac_sparsity=spec)
        assert res.success
        np.testing.assert_allclose(res.x, ref.x, rtol=1e-10)
        assert np.max(np.abs(res.fun)) < 1e-12  # the system is solved
        # the grouped Jacobian is the exact one: (3 − 4x_i) on the diagonal, −1 / −2 off it
        J = np.diag(3.0 - 4.0 * res.x) - np.eye(n, k=-1) - 2.0 * np.eye(n, k=1)
        np.testing.assert_allclose(res.jac, J, rtol=1e-14, atol=0)


def test_auto_detects_the_window_pattern(data) -> None:
    from curvax.core.sparsity import pointwise_pattern

    x, _, p0, _ = data
    with jax.enable_x64(True):
        P = pointwise_pattern(
            "auto",
            peaks,
            "array",
            x,
            -1,
            x.size,
            p0,
            np.full(60, -np.inf),
            np.full(60, np.inf),
            256,
        )
    np.testing.assert_array_equal(P, window_pattern(x))


def test_bad_patterns_raise(data) -> None:
    x, y, p0, _ = data
    P = window_pattern(x)
    empty = P.copy()
    empty[:, 7] = False
    nan = P.astype(float)
    nan[0, 0] = np.nan
    cases = [
        (P[:-1], "shape"),
        (P[None], "2-D"),
        (P.astype(str), "dtype"),
        (empty, "parameter 7 has no True entry"),
        (nan, "NaN"),
        ("sparse", "expected an array, 'auto' or None"),
        ([slice(0, 10)] * 59, "60 parameters"),
    ]
    for spec, msg in cases:
        with pytest.raises(ValueError, match="jac_sparsity") as err:
            curvax.fit_curve(peaks, x, y, p0, jac_sparsity=spec)
        assert msg in str(err.value), (msg, str(err.value))

    def jac(x, p):
        return jax.jacfwd(lambda q: peaks(x, q))(p)

    for kwargs in (dict(jac=jac), dict(jac="rev"), dict(sigma=np.eye(x.size) * 0.01)):
        with pytest.raises(ValueError, match="jac_sparsity"):
            curvax.fit_curve(peaks, x, y, p0, jac_sparsity=P, **kwargs)
    with pytest.raises(ValueError, match="jac_sparsity: has shape"):
        curvax.least_squares(broyden_tridiagonal, np.zeros(5), jac_sparsity=np.eye(4))


def test_auto_detection_compiles_once_per_model(data) -> None:
    """A second fit of the same model with 'auto' compiles nothing: the detection
    program used to be a new jitted closure every fit (~0.35 s of compilation each)."""
    x, y, p0, _ = data
    rng = np.random.default_rng(9)
    compiled: list[str] = []

    def listen(event: str, duration: float, **kw: object) -> None:
        if event.endswith("backend_compile_duration"):
            compiled.append(str(kw.get("fun_name")))

    first = curvax.fit_curve(peaks, x, y, p0=p0, jac_sparsity="auto")
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        second = curvax.fit_curve(
            peaks, x, y + 0.01 * rng.standard_normal(x.size), p0=p0, jac_sparsity="auto"
        )
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert first.success and second.success
    assert compiled == [], compiled
    assert second.extra["jac_groups"] == first.extra["jac_groups"]


@pytest.fixture
def detections(monkeypatch) -> list[int]:
    """One entry per pattern detection from here on (the cache of detected patterns is
    emptied first)."""
    from curvax.core import sparsity

    calls: list[int] = []
    detect = sparsity.detect_pattern

    def counting(*args, **kwargs):
        calls.append(1)
        return detect(*args, **kwargs)

    monkeypatch.setattr(sparsity, "detect_pattern", counting)
    sparsity._DETECTED.clear()
    return calls


def test_auto_detection_is_reused_for_the_same_model_x_and_start(data, detections) -> None:
    """'auto' detects once per (model, x, p0, bounds): a refit with new y reuses the
    pattern (detection costs several times the fit); other x values, another start or
    another model detect anew, and every fit equals the one with the pattern given."""
    x, y, p0, _ = data
    calls = detections
    rng = np.random.default_rng(11)

    def fit(model, xs, ys, start, spec="auto"):
        return curvax.fit_curve(model, xs, ys, p0=start, jac_sparsity=spec)

    first = fit(peaks, x, y, p0)
    assert len(calls) == 1
    y2 = y + 0.01 * rng.standard_normal(x.size)
    second = fit(peaks, x, y2, p0)
    assert len(calls) == 1  # reused
    given = fit(peaks, x, y2, p0, spec=window_pattern(x))
    np.testing.assert_array_equal(second.x, given.x)
    assert second.extra["jac_groups"] == first.extra["jac_groups"] == given.extra["jac_groups"]

    x_shifted = x + 0.5  # same shape, other values: the windows cut elsewhere
    fit(peaks, x_shifted, y, p0)
    assert len(calls) == 2
    fit(peaks, x, y, p0 * 1.01)  # another start: other sample points
    assert len(calls) == 3

    def peaks_again(x, p):
        return peaks(x, p)

    fit(peaks_again, x, y, p0)  # another model function
    assert len(calls) == 4
    fit(peaks, x, y, p0)
    assert len(calls) == 4  # the first entry is still there


def test_least_squares_auto_detection_is_reused(detections) -> None:
    """least_squares with 'auto': one detection per (function, extra arguments, start,
    bounds); other argument values detect anew."""
    calls = detections

    def shifted(x, c):
        return broyden_tridiagonal(x) - c

    x0 = -np.ones(20)
    c = np.zeros(20)
    T = np.eye(20, dtype=bool) | np.eye(20, k=1, dtype=bool) | np.eye(20, k=-1, dtype=bool)
    for _ in range(2):
        res = curvax.least_squares(shifted, x0, jac_sparsity="auto", args=(c,))
        assert res.success and np.max(np.abs(res.fun)) < 1e-12
    assert len(calls) == 1
    res = curvax.least_squares(shifted, x0, jac_sparsity="auto", args=(c + 0.1,))
    assert len(calls) == 2
    given = curvax.least_squares(shifted, x0, jac_sparsity=T, args=(c + 0.1,))
    np.testing.assert_array_equal(res.x, given.x)
