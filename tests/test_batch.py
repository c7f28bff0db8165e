"""Batched fits (curvax.batch) against independent references: loops of single fits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import curvax
from curvax.batch import BatchResult, curve_fit_batch, curve_fit_batch_stream
from curvax.models import constant, gaussian, gaussian_2d, gaussian_2d_elliptic
from tests._batch_problems import X1, XY, peaks, spots

GAUSS1 = gaussian + constant
CH = 64  # one chunk shape for every test: each program compiles once


def assert_matches_loop(res: BatchResult, singles: list, rtol: float = 1e-6) -> None:
    """popt, perr and cost of each converged batch fit equal the single fit's."""
    compared = 0
    for b, s in enumerate(singles):
        if not (s.success and res.success[b]):
            continue
        compared += 1
        np.testing.assert_allclose(res.popt[b], s.x, rtol=rtol, atol=1e-9, err_msg=f"fit {b}")
        np.testing.assert_allclose(res.perr[b], s.perr, rtol=1e-5, err_msg=f"fit {b}")
        np.testing.assert_allclose(res.cost[b], s.cost, rtol=1e-8, err_msg=f"fit {b}")
    assert compared >= 0.95 * len(singles)


def _equality_2d(n: int, seed: int) -> None:
    _, y, p0 = spots(n, seed)
    res = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=CH)
    assert res.popt.shape == (n, 5) and res.pcov.shape == (n, 5, 5)
    singles = [curvax.fit_curve(gaussian_2d, XY, y[b], p0[b]) for b in range(n)]
    assert_matches_loop(res, singles)


def _equality_1d(n: int, seed: int) -> None:
    _, y, p0 = peaks(n, seed)
    res = curve_fit_batch(GAUSS1, X1, y, p0, chunk_size=CH)
    singles = [curvax.fit_curve(GAUSS1, X1, y[b], p0[b]) for b in range(n)]
    assert_matches_loop(res, singles)


def test_equals_single_fits_gaussian_2d() -> None:
    _equality_2d(150, 1)


def test_equals_single_fits_gaussian_1d() -> None:
    _equality_1d(100, 2)


@pytest.mark.slow
def test_equals_single_fits_1000_each() -> None:
    _equality_2d(1000, 11)
    _equality_1d(1000, 12)


def test_curve_fit_convention_and_scipy() -> None:
    """A few fits also agree with scipy.optimize.curve_fit (independent code)."""
    so = pytest.importorskip("scipy.optimize")
    _, y, p0 = peaks(8, 3)

    def f(x, a, c, s, o):
        return a * np.exp(-0.5 * ((x - c) / s) ** 2) + o

    res = curve_fit_batch(GAUSS1, X1, y, p0, chunk_size=CH)
    for b in range(8):
        popt, pcov = so.curve_fit(f, X1, y[b], p0[b], method="lm", xtol=1e-14, ftol=1e-14)
        np.testing.assert_allclose(res.popt[b], popt, rtol=1e-6)
        np.testing.assert_allclose(res.pcov[b], pcov, rtol=1e-4, atol=1e-8)


def test_poisoned_fits_fail_alone() -> None:
    _, y, p0 = spots(64, 4)
    clean = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=CH)
    y_bad, p0_bad = y.copy(), p0.copy()
    y_bad[3, 7] = np.nan  # NaN data
    y_bad[9, :] = np.inf
    p0_bad[5] = [100.0, 2.0, 2.0, 0.0, 10.0]  # sigma = 0: NaN model at the centre pixel
    p0_bad[6, 0] = np.nan  # non-finite start
    res = curve_fit_batch(gaussian_2d, XY, y_bad, p0_bad, chunk_size=CH)
    poisoned = [3, 5, 6, 9]
    assert list(np.nonzero(~res.success)[0]) == poisoned
    assert np.all(res.status[poisoned] == -1)
    assert np.all(np.isnan(res.popt[poisoned]))
    assert "p0 is not finite" in res.message[6]
    assert "non-finite data" in res.message[3]
    good = np.setdiff1d(np.arange(64), poisoned)
    np.testing.assert_allclose(res.popt[good], clean.popt[good], rtol=1e-12)
    np.testing.assert_array_equal(res.nfev[good], clean.nfev[good])


def test_diverging_fit_does_not_disturb_others() -> None:
    _, y, p0 = spots(32, 5)
    clean = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=CH)
    y2 = y.copy()
    y2[7] = 1e300 * np.sign(np.sin(np.arange(25)))  # absurd data: overflow on the way
    res = curve_fit_batch(gaussian_2d, XY, y2, p0, chunk_size=CH)
    good = np.arange(32) != 7
    np.testing.assert_allclose(res.popt[good], clean.popt[good], rtol=1e-12)


def test_nan_padding_and_mask_equal_truncated_fits() -> None:
    n = 40
    _, y, p0 = peaks(n, 6)
    rng = np.random.default_rng(7)
    lengths = rng.integers(44, 65, n)  # the peak stays inside the kept window
    keep = np.arange(64)[None, :] < lengths[:, None]
    y_nan = np.where(keep, y, np.nan)
    res_nan = curve_fit_batch(GAUSS1, X1, y_nan, p0, nan_policy="omit", chunk_size=CH)
    res_mask = curve_fit_batch(GAUSS1, X1, np.where(keep, y, 123.0), p0, mask=keep, chunk_size=CH)
    np.testing.assert_allclose(res_mask.popt, res_nan.popt, rtol=1e-12)
    assert np.array_equal(res_nan.n_points, lengths)
    singles = [
        curvax.fit_curve(GAUSS1, X1[: lengths[b]], y[b, : lengths[b]], p0[b]) for b in range(n)
    ]
    assert_matches_loop(res_nan, singles)
    with pytest.raises(ValueError, match="nan_policy='raise'"):
        curve_fit_batch(GAUSS1, X1, y_nan, p0, nan_policy="raise", chunk_size=CH)


def test_per_fit_bounds_and_per_fit_x() -> None:
    n = 24
    truth, y, p0 = peaks(n, 8)
    lb = np.tile([0.0, -3.0, 0.1, -5.0], (n, 1))
    ub = np.tile([20.0, 3.0, 5.0, 5.0], (n, 1))
    ub[::3, 0] = truth[::3, 0] * 0.8  # an active upper bound on the amplitude
    p0c = np.minimum(p0, ub * 0.99)
    x_per = X1[None, :] + np.linspace(0, 0.5, n)[:, None]  # per-fit x (B, N)
    res = curve_fit_batch(GAUSS1, x_per, y, p0c, bounds=(lb, ub), chunk_size=CH)
    assert res.method == "trf"
    singles = [
        curvax.fit_curve(GAUSS1, x_per[b], y[b], p0c[b], bounds=(lb[b], ub[b]), method="trf")
        for b in range(n)
    ]
    assert_matches_loop(res, singles)
    np.testing.assert_allclose(res.popt[::3, 0], ub[::3, 0], rtol=1e-6)


def test_automatic_guess_elliptic_and_symmetric() -> None:
    truth, y, _ = spots(50, 9)
    g = curve_fit_batch(gaussian_2d, XY, y, chunk_size=CH)  # no p0: vectorised moments
    assert g.success.all()
    np.testing.assert_allclose(g.popt[:, 1:3], truth[:, 1:3], atol=0.3)
    singles = [curvax.fit_curve(gaussian_2d, XY, y[b]) for b in range(10)]  # model.guess
    assert_matches_loop(BatchResult(**_head(g, 10)), singles)
    ell = curve_fit_batch(gaussian_2d_elliptic, XY, y, chunk_size=CH)
    assert ell.success.mean() > 0.95
    ok = ell.success
    np.testing.assert_allclose(ell.popt[ok, 3], ell.popt[ok, 4], rtol=0.5)  # round spots


def _head(r: BatchResult, k: int) -> dict:
    return dict(
        popt=r.popt[:k],
        pcov=r.pcov[:k],
        status=r.status[:k],
        cost=r.cost[:k],
        initial_cost=r.initial_cost[:k],
        nfev=r.nfev[:k],
        nit=r.nit[:k],
        optimality=r.optimality[:k],
        n_points=r.n_points[:k],
        param_names=r.param_names,
        method=r.method,
        dtype=r.dtype,
    )


def test_vectorised_guess_1d_close_to_truth() -> None:
    truth, y, _ = peaks(30, 10)
    res = curve_fit_batch(GAUSS1, X1, y, chunk_size=CH)
    assert res.success.all()
    np.testing.assert_allclose(res.popt, truth, rtol=0.2, atol=0.15)
    assert res.param_names == ("amplitude", "center", "sigma", "offset")
    one = curve_fit_batch(gaussian, X1, y - truth[:, 3:], chunk_size=CH)  # no baseline
    np.testing.assert_allclose(one.popt[:, 1], truth[:, 1], atol=0.15)


def test_chunks_and_stream_equal_one_call() -> None:
    _, y, p0 = spots(70, 12)
    whole = curve_fit_batch(gaussian_2d, XY, y, p0[0], chunk_size=CH)
    chunked = curve_fit_batch(gaussian_2d, XY, y, p0[0], chunk_size=16)
    np.testing.assert_allclose(chunked.popt, whole.popt, rtol=1e-12)
    parts = list(
        curve_fit_batch_stream(
            gaussian_2d, XY, (y[i : i + 16] for i in range(0, 70, 16)), p0[0], chunk_size=16
        )
    )
    assert [len(p) for p in parts] == [16, 16, 16, 16, 6]
    np.testing.assert_allclose(np.concatenate([p.popt for p in parts]), whole.popt, rtol=1e-12)


def test_float32_option() -> None:
    _, y, p0 = spots(32, 13)
    r64 = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=CH)
    r32 = curve_fit_batch(
        gaussian_2d, XY, y, p0, dtype="float32", ftol=1e-6, xtol=1e-6, gtol=1e-6, chunk_size=CH
    )
    assert r32.popt.dtype == np.float32 and r32.success.all()
    np.testing.assert_allclose(r32.popt, r64.popt, rtol=1e-3, atol=1e-3)


def test_bad_input_names_argument() -> None:
    _, y, p0 = spots(4, 14)
    with pytest.raises(ValueError, match="ydata"):
        curve_fit_batch(gaussian_2d, XY, y[0], p0[0], chunk_size=CH)
    with pytest.raises(ValueError, match="xdata"):
        curve_fit_batch(gaussian_2d, XY[:, :20], y, p0, chunk_size=CH)
    with pytest.raises(ValueError, match="p0"):
        curve_fit_batch(gaussian_2d, XY, y, p0[:, :4], chunk_size=CH)
    with pytest.raises(ValueError, match="bounds"):
        curve_fit_batch(gaussian_2d, XY, y, p0, bounds=(np.zeros((3, 5)), 1.0))
    with pytest.raises(ValueError, match="mask"):
        curve_fit_batch(gaussian_2d, XY, y, p0, mask=np.ones((4, 25)))
    with pytest.raises(ValueError, match="method"):
        curve_fit_batch(gaussian_2d, XY, y, p0, bounds=(0, np.inf), method="lm", chunk_size=CH)
    with pytest.raises(ValueError, match="sigma"):
        curve_fit_batch(gaussian_2d, XY, y, p0, sigma=np.zeros(25), chunk_size=CH)


# --- the normal-equations Levenberg–Marquardt (linalg='cholesky', the lm default) --------


def test_solver_families_agree_with_single_fits() -> None:
    """'cholesky' (default for lm) and 'jacobi' both equal the single-fit solver's minima."""
    _, y, p0 = spots(48, 20)
    singles = [curvax.fit_curve(gaussian_2d, XY, y[b], p0[b]) for b in range(48)]
    for linalg in ("cholesky", "jacobi"):
        res = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=CH, linalg=linalg)
        assert res.success.all(), linalg
        assert_matches_loop(res, singles)
    with pytest.raises(ValueError, match="linalg"):
        curve_fit_batch(gaussian_2d, XY, y, p0, bounds=(0, np.inf), linalg="cholesky")


def test_cholesky_path_with_sigma_and_fixed_x_scale() -> None:
    _, y, p0 = peaks(24, 21)
    sig = np.random.default_rng(22).uniform(0.1, 0.4, y.shape)
    xs = [5.0, 1.0, 1.0, 1.0]
    res = curve_fit_batch(GAUSS1, X1, y, p0, sigma=sig, x_scale=xs, chunk_size=CH)
    singles = [
        curvax.fit_curve(GAUSS1, X1, y[b], p0[b], sigma=sig[b], x_scale=xs) for b in range(24)
    ]
    assert_matches_loop(res, singles)
    # absolute_sigma: the covariance is not rescaled by the reduced chi-square
    ab = curve_fit_batch(GAUSS1, X1, y, p0, sigma=sig, absolute_sigma=True, chunk_size=CH)
    chi2 = 2 * res.cost / (64 - 4)
    np.testing.assert_allclose(res.pcov, ab.pcov * chi2[:, None, None], rtol=1e-7)


def quad(x, a, b, c):
    return a + b * x + c * x**2


def test_ill_conditioned_covariance_equals_single_fits() -> None:
    """x in [1000, 1001]: JᵀJ is useless (κ² ≫ 1/ε); the batch must still match curve_fit."""
    rng = np.random.default_rng(23)
    x = np.linspace(1000.0, 1001.0, 30)
    truth = np.array([1.0, -2e-3, 1e-6])
    y = quad(x, *truth)[None, :] + 1e-3 * rng.normal(size=(8, 30))
    p0 = np.array([0.5, -1e-3, 2e-6])
    res = curve_fit_batch(quad, x, y, p0, chunk_size=8)
    for b in range(8):
        s = curvax.fit_curve(quad, x, y[b], p0)
        np.testing.assert_allclose(res.cost[b], s.cost, rtol=1e-6)
        np.testing.assert_allclose(res.perr[b], s.perr, rtol=1e-4)


def scaled_pair(x, a, b):
    return (a * b) * x  # only the product a*b is determined


def test_rank_deficient_model_gives_inf_covariance_like_single_fits() -> None:
    rng = np.random.default_rng(24)
    x = np.linspace(0, 1, 20)
    y = 3.0 * x[None, :] + 0.01 * rng.normal(size=(6, 20))
    res = curve_fit_batch(scaled_pair, x, y, [1.0, 2.0], chunk_size=8)
    single = curvax.fit_curve(scaled_pair, x, y[0], [1.0, 2.0])
    assert np.all(np.isinf(single.pcov))
    assert np.all(np.isinf(res.pcov))
    np.testing.assert_allclose(res.popt[:, 0] * res.popt[:, 1], 3.0, rtol=0.02)


def test_many_calls_pipelined_equal_one_call() -> None:
    """A tiny memory budget forces one sub-chunk per call: five calls, two in flight."""
    _, y, p0 = spots(70, 25)
    whole = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=16, workers=1)
    split = curve_fit_batch(
        gaussian_2d, XY, y, p0, chunk_size=16, memory_budget=4096, workers=1
    )
    np.testing.assert_array_equal(split.popt, whole.popt)
    np.testing.assert_array_equal(split.pcov, whole.pcov)
    np.testing.assert_array_equal(split.nfev, whole.nfev)


def test_threads_equal_one_thread_bit_for_bit(monkeypatch) -> None:
    """Calls on several threads (uneven shapes, poisoned fits) give the same bits as one;
    the lm (normal-equations) program is judged safe on threads, so they are used."""
    import curvax.batch.fit as batch_fit

    verdicts = []
    judge = batch_fit.safe_on_threads
    monkeypatch.setattr(
        batch_fit, "safe_on_threads", lambda *a: verdicts.append(judge(*a)) or verdicts[-1]
    )
    _, y, p0 = spots(300, 26)
    y[11, 3] = np.nan
    p0[40, 0] = np.inf
    one = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=16, workers=1)
    assert list(np.nonzero(one.status == -1)[0]) == [11, 40]
    for workers in (2, 3):
        many = curve_fit_batch(gaussian_2d, XY, y, p0, chunk_size=16, workers=workers)
        for name in ("popt", "pcov", "status", "nfev", "cost", "optimality"):
            np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)
        assert many.message == one.message
    assert verdicts and all(verdicts)


def test_workers_argument_checked() -> None:
    _, y, p0 = spots(4, 27)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers"):
            curve_fit_batch(gaussian_2d, XY, y, p0, workers=bad)


def test_non_finite_shared_x_fails_every_fit() -> None:
    """A NaN in the shared x (nan_policy=None) fails the fits, never runs them on a stand-in."""
    _, y, p0 = spots(6, 28)
    x = XY.copy()
    x[0, 7] = np.nan
    res = curve_fit_batch(gaussian_2d, x, y, p0, chunk_size=CH)
    assert np.all(res.status == -1) and np.all(np.isnan(res.popt))
    assert all("non-finite data" in m for m in res.message)
    omit = curve_fit_batch(gaussian_2d, x, y, p0, chunk_size=CH, nan_policy="omit")
    keep = np.arange(25) != 7
    sub = curve_fit_batch(gaussian_2d, XY[:, keep], y[:, keep], p0, chunk_size=CH)
    np.testing.assert_allclose(omit.popt, sub.popt, rtol=1e-10)


# --- through CurveFit ----------------------------------------------------------------------


def test_curvefit_fit_batch_equals_single_fits_and_curve_fit_batch() -> None:
    _, y, p0 = spots(40, 29)
    cf = curvax.CurveFit(gaussian_2d, XY, y, p0[0], method="lm", ftol=1e-10, xtol=1e-10)
    res = cf.fit_batch(p0=p0)
    assert cf.batch_result is res and res.popt.shape == (40, 5)
    direct = curve_fit_batch(gaussian_2d, XY, y, p0, method="lm", ftol=1e-10, xtol=1e-10)
    np.testing.assert_array_equal(res.popt, direct.popt)
    for b in (0, 17, 39):  # the same configuration, one row at a time
        one = curvax.CurveFit(gaussian_2d, XY, y[b], p0[b], method="lm", ftol=1e-10, xtol=1e-10)
        np.testing.assert_allclose(res.popt[b], one.fit().popt, rtol=1e-6)
    bounded = curvax.CurveFit(
        gaussian_2d, XY, y, p0, bounds=([0, 0, 0, 0.5, 0], [200, 4, 4, 2, 20])
    ).fit_batch(chunk_size=16)
    assert bounded.method == "trf" and np.all(bounded.success)
    np.testing.assert_allclose(bounded.popt, direct.popt, rtol=1e-6)


def test_curvefit_fit_batch_refuses_single_fit_options() -> None:
    _, y, p0 = spots(4, 30)
    with pytest.raises(ValueError, match="timeout"):
        curvax.CurveFit(gaussian_2d, XY, y, p0, timeout=5.0).fit_batch()
    with pytest.raises(ValueError, match="callbacks"):
        curvax.CurveFit(gaussian_2d, XY, y, p0, callbacks=lambda *a: None).fit_batch()


def test_programs_with_lapack_calls_are_judged_unsafe_on_threads() -> None:
    """The verdict the slow test below relies on, without running the programs: a
    program holding a LAPACK call (an SVD, a QR) is not run on several threads; one of
    element-wise code and a small matrix product, and sharding annotations, are."""
    import jax
    import jax.numpy as jnp

    from curvax.core.threaded import custom_call_free

    def text(fn, *args):
        return jax.jit(fn).lower(*args).as_text()

    a = np.eye(4) + 0.1
    assert not custom_call_free(text(lambda m: jnp.linalg.svd(m, compute_uv=False), a))
    assert not custom_call_free(text(lambda m: jnp.linalg.qr(m, mode="r"), a))
    assert custom_call_free(text(lambda m: jnp.exp(m) @ m.T + 1.0, a))
    sharded = 'stablehlo.custom_call @Sharding(%0) : (tensor<4xf32>) -> tensor<4xf32>'
    assert custom_call_free(sharded)


@pytest.mark.slow  # 22-38 s in a child process (compiles four batch programs)
def test_threads_not_used_for_programs_with_lapack_calls() -> None:
    """Programs holding LAPACK calls run on one thread: two at once can deadlock.

    jaxlib's batched LAPACK kernels wait on XLA's intra-op thread pool; with calls on two
    threads each could hold a pool thread the other waits for (it hung on a 2-core CPU).
    Run in a child process (one CPU device, as by default) with a time limit, so that a
    regression fails, not hangs.
    """
    code = textwrap.dedent(
        """
        import sys, numpy as np
        sys.path.insert(0, {root!r})
        from tests._batch_problems import spots, XY
        import curvax.core.threaded as th
        from curvax.batch import curve_fit_batch
        from curvax.models import gaussian_2d
        _, y, p0 = spots(2000, 31)  # sub-chunks of 256: LAPACK splits them over threads
        kw = dict(method="trf", linalg="lapack")
        two = curve_fit_batch(gaussian_2d, XY, y, p0, workers=2, **kw)
        one = curve_fit_batch(gaussian_2d, XY, y, p0, workers=1, **kw)
        assert np.array_equal(one.popt, two.popt, equal_nan=True)
        # trf with the Jacobi SVD and Gram-Schmidt factors: no LAPACK call, threads
        jt = curve_fit_batch(gaussian_2d, XY, y, p0, method="trf", workers=2)
        j1 = curve_fit_batch(gaussian_2d, XY, y, p0, method="trf", workers=1)
        assert np.array_equal(jt.popt, j1.popt, equal_nan=True)
        print(sorted(th._SAFE.values()))
        """
    ).format(root=str(Path(__file__).parent.parent))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # LAPACK trf: one thread; Jacobi trf: threads
    assert out.stdout.split() == ["[False,", "True]"], out.stdout


def _line(x, a, b):
    return a + b * x


def test_lm_solves_columns_scaled_100_orders_apart():
    """Regression: the damping of a column was floored at ε times the largest one, so a
    column 10¹⁰⁰ smaller was damped as if it were 10⁸⁴ larger; the first step barely
    moved it and the xtol test claimed convergence at the start (status 3, p0
    returned).  Reference: the linear least-squares solution."""
    n = 24
    t = np.linspace(1.0, 2.0, n)
    y0 = 1.5 + 0.7 * t + 0.01 * np.random.default_rng(20261122).normal(size=n)
    ref = np.linalg.lstsq(np.column_stack([np.ones(n), t]), y0, rcond=None)[0] * [1e100, 1e50]
    for p0 in ([1.0, 1.0], [1e100, 1e50]):
        res = curve_fit_batch(_line, t * 1e50, np.tile(y0 * 1e100, (3, 1)), p0=p0)
        assert np.all(res.success), res.status
        np.testing.assert_allclose(res.popt, np.tile(ref, (3, 1)), rtol=1e-8)


def test_far_convergence_refused_on_the_normal_equations():
    """lm_normal's -4 test against closed forms on a linear model r = Jp − y: far from
    the least-squares solution a Gauss–Newton step removes almost all of the cost and
    moves p a long way (refused); at the solution the gradient vanishes (kept); a zero
    column or a status other than 1-4 is left alone."""
    import jax
    import jax.numpy as jnp

    from curvax.core.lm_normal import refuse_far_convergence_normal

    rng = np.random.default_rng(5)
    J = np.column_stack([np.ones(30), np.linspace(0.0, 3.0, 30)])
    y = J @ [2.0, -1.0] + 0.01 * rng.normal(size=30)
    p_star = np.linalg.lstsq(J, y, rcond=None)[0]

    def status_at(p, status=2, J=J):
        r = J @ p - y
        with jax.enable_x64(True):
            out = refuse_far_convergence_normal(
                jnp.int32(status), jnp.asarray(p), jnp.asarray(J.T @ J), jnp.asarray(J.T @ r),
                jnp.asarray(0.5 * r @ r),
            )
        return int(out[0])

    far = p_star + np.array([50.0, 30.0])
    assert status_at(far) == -4
    assert status_at(p_star) == 2
    assert status_at(far, status=0) == 0
    J0 = J.copy()
    J0[:, 1] = 0.0  # a zero column: the system is singular, no verdict
    assert status_at(far, J=J0) == 2


# --- the final check of 'cholesky' claims, and x shared across as many rows as fits ------


def _boxbod(x, b1, b2):
    import jax.numpy as jnp

    return b1 * (1 - jnp.exp(-b2 * x))


def test_plateau_is_not_reported_as_a_minimum() -> None:
    """NIST BoxBOD: from start 1 the normal-equations LM runs b2 off to ~115, where
    exp(−b2 x) vanishes and the cost is flat (RSS 9771.5, SciPy's lm also stops there
    with success).  The Gauss–Newton share there is 49.5 %, just under the −4 threshold;
    the probe along the step finds the lower cost.  Every fit reported a success must
    have the certified RSS, and NIST's start 2 must succeed."""
    prob = curvax.datasets.load_nist("BoxBOD")
    starts = np.array([prob.start1, [10.0, 3.0], [1.0, 0.1], prob.start2, [300.0, 10.0]])
    y = np.tile(prob.y, (len(starts), 1))
    res = curve_fit_batch(_boxbod, prob.x, y, starts, linalg="cholesky", chunk_size=8)
    rss = 2 * res.cost
    assert not res.success[0] and res.status[0] == -4, res.status
    ok = res.success
    np.testing.assert_allclose(rss[ok], prob.certified_rss, rtol=1e-8)
    assert ok[3] and ok[4]
    np.testing.assert_allclose(res.popt[3], prob.certified_values, rtol=1e-6)
    # a fit that was refused really is far: its RSS is > 8x the certified minimum
    assert np.all(rss[~ok] > 8 * prob.certified_rss)


def test_probe_finds_lower_cost_only_off_a_minimum() -> None:
    """trust_region.lowest_cost_along on closed forms: C(p) = ½ (e^{-p} − 1)² + ½ has a
    plateau at large p; from p = 40 along the descent direction the probe finds a cost
    clearly lower, at the minimum (p = 0) and along an ascent direction none lower."""
    import jax
    import jax.numpy as jnp

    from curvax.core import trust_region as tr

    def cost_at(q):
        return 0.5 * (jnp.exp(-q[..., 0]) - 1.0) ** 2 + 0.5

    def lower(x, step):
        c = cost_at(x)
        return tr.lowest_cost_along(cost_at, x, step) < (1.0 - tr.PROBE_GAIN) * c

    def none_lower(x, step):
        c = cost_at(x)
        return tr.lowest_cost_along(cost_at, x, step) >= (1.0 - tr.PROBE_TIE) * c

    with jax.enable_x64(True):
        plateau, minimum = jnp.array([40.0]), jnp.array([0.0])
        down = jnp.array([-1e17])  # the Gauss–Newton step from the plateau (huge)
        assert bool(lower(plateau, down))
        assert not bool(lower(plateau, -down))
        assert bool(none_lower(minimum, jnp.array([1.0])))
        assert bool(none_lower(minimum, jnp.array([-1e9])))
        # batched: one row per fit
        xs, steps = jnp.stack([plateau, plateau]), jnp.stack([down, -down])
        assert lower(xs, steps).tolist() == [True, False]


def _nelson(x, b1, b2, b3):
    import jax.numpy as jnp

    return b1 - b2 * x[0] * jnp.exp(-b3 * x[1])


def test_shared_x_with_as_many_coordinates_as_fits() -> None:
    """NIST Nelson: x is (2, N) and two fits are asked for — the same shape as per-fit
    1-D x.  The model indexes x[0], x[1], so only the shared reading gives one value per
    point; the fits must equal SciPy's on the shared x (they used to fit a constant)."""
    from scipy.optimize import curve_fit as scipy_fit

    prob = curvax.datasets.load_nist("Nelson")
    y = np.stack([prob.y, prob.y * 1.01])
    p0 = np.array(prob.start2)

    def nelson_np(x, b1, b2, b3):
        return b1 - b2 * x[0] * np.exp(-b3 * x[1])

    ref = [scipy_fit(nelson_np, prob.x, y[b], p0=p0, xtol=1e-14, ftol=1e-14)[0] for b in (0, 1)]
    res = curve_fit_batch(_nelson, prob.x, y, p0, chunk_size=8)
    assert res.success.all()
    np.testing.assert_allclose(res.popt, np.stack(ref), rtol=1e-6)
    explicit = curve_fit_batch(_nelson, prob.x, y, p0, chunk_size=8, x_per_fit=False)
    np.testing.assert_array_equal(explicit.popt, res.popt)
    # a 1-D model on a (2, N) x with two fits stays per fit (the documented default)
    x2 = np.stack([np.linspace(0, 1, 20), np.linspace(0, 2, 20)])
    y2 = 3.0 * x2 + 1.0
    line = curve_fit_batch(_line, x2, y2, [1.0, 1.0], chunk_size=8)
    np.testing.assert_allclose(line.popt, [[1.0, 3.0], [1.0, 3.0]], rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="x_per_fit"):
        curve_fit_batch(_line, x2, y2, [1.0, 1.0], x_per_fit="yes")
    with pytest.raises(ValueError, match="x_per_fit=True"):
        curve_fit_batch(_line, x2[0], y2, [1.0, 1.0], x_per_fit=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", curvax.datasets.NIST_NAMES)
def test_batch_cholesky_claims_are_certified(name: str) -> None:
    """All 27 NIST problems from both starts with the batch default solver: NIST's start 2
    must succeed, and every fit reported a success must have the certified RSS."""
    import warnings

    prob = curvax.datasets.load_nist(name)
    y = np.tile(prob.y, (2, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = curve_fit_batch(prob.model, prob.x, y, np.stack([prob.start1, prob.start2]))
    assert res.success[1], res.status
    rss = 2 * res.cost[res.success]
    # the exact-data problems (Lanczos1) have a certified RSS of ~1e-25: rounding level
    floor = 1e-20 * np.sum(prob.y**2)
    assert np.all(np.abs(rss - prob.certified_rss) <= 1e-8 * prob.certified_rss + floor), rss


def _squared_amplitude(x, a, c):
    import jax.numpy as jnp

    return a**2 * jnp.exp(-x) + c


@pytest.mark.parametrize("linalg", ["cholesky", "jacobi"])
def test_minimum_where_a_column_vanishes_is_not_refused_in_a_batch(linalg) -> None:
    """As for single fits (test_adversarial): data that want a² < 0 have their minimum at
    a = 0, where the a column vanishes and the linear model claims a huge gain.  Every
    batch solver said -4; probed along the steps, nothing is lower, so the claims stand,
    and c is the closed form mean(y)."""
    x = np.linspace(0.0, 4.0, 40)
    rng = np.random.default_rng(0)
    y = -0.5 * np.exp(-x) + 1.0 + 0.01 * rng.standard_normal((6, 40))
    method = "lm" if linalg == "cholesky" else "trf"
    res = curve_fit_batch(_squared_amplitude, x, y, [1.0, 0.0], linalg=linalg, method=method,
                          chunk_size=8)
    assert res.success.all(), res.status
    assert np.all(np.abs(res.popt[:, 0]) < 1e-5)
    np.testing.assert_allclose(res.popt[:, 1], y.mean(axis=1), rtol=1e-9)
