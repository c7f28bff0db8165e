"""Parameter scaling: ``x_scale='bounds'`` (bound widths) and ``'jac'``.

References are independent of the scaling under test: NIST's certified values, the
fit of the same problem rewritten by hand in normalised parameters, and SciPy on the
problem rescaled by hand to parameters of order one.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

import curvax
from curvax.core.validation import check_x_scale
from curvax.datasets import NIST_NAMES, load_nist, lre


def test_bounds_scale_is_the_bound_width() -> None:
    lb = np.array([0.0, -np.inf, 1e-11, 2.0, -1e308])
    ub = np.array([1e8, 5.0, 1e-7, 2.0, 1e308])
    np.testing.assert_array_equal(
        check_x_scale("bounds", 5, lb, ub), [1e8, 0.0, 1e-7 - 1e-11, 0.0, 0.0]
    )  # one-sided, fixed (lb == ub) and overflowing widths are left to the solver (0)
    assert check_x_scale("bounds", 2, np.full(2, -np.inf), np.full(2, np.inf)) is None
    with pytest.raises(ValueError, match="x_scale: 'bounds' is not available"):
        check_x_scale("bounds", 2)
    with pytest.raises(ValueError, match="x_scale: expected 'jac', 'bounds'"):
        check_x_scale("bound", 2)
    with pytest.raises(ValueError, match="x_scale: 'bounds' is not available"):
        curvax.curve_fit_batch(
            lambda x, a: a * x, np.arange(3.0), np.ones((2, 3)), p0=[1.0], x_scale="bounds"
        )


# y = a·exp(−t/τ) + c in SI units: a ~ 1e6 counts, τ ~ 1e-9 s, t in seconds.
TRUTH = np.array([1.0e6, 1.0e-9, 50.0])
LB = np.array([0.0, 1e-11, -1e4])
UB = np.array([1e8, 1e-7, 1e4])
P0 = np.array([1e5, 1e-8, 100.0])  # 10x off in a and τ


def decay(t, a, tau, c):
    return a * jnp.exp(-t / tau) + c


@pytest.fixture(scope="module")
def decay_data():
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 5e-9, 200)
    y = TRUTH[0] * np.exp(-t / TRUTH[1]) + TRUTH[2] + 1e3 * rng.standard_normal(t.size)
    # Reference: SciPy on the problem rescaled by hand (a in 1e6, τ and t in ns).
    t_ns = t * 1e9

    def resid(u):
        return u[0] * 1e6 * np.exp(-t_ns / u[1]) + u[2] - y

    ref = so.least_squares(
        resid, P0 * [1e-6, 1e9, 1.0], method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15
    )
    assert ref.success
    return t, y, ref.x * [1e6, 1e-9, 1.0]


def test_badly_scaled_model_converges_without_rescaling(decay_data) -> None:
    t, y, ref = decay_data
    fits = {
        "jac": curvax.fit_curve(decay, t, y, P0),
        "bounds": curvax.fit_curve(decay, t, y, P0, bounds=(LB, UB), x_scale="bounds"),
        # only a and τ bounded: c's scale is completed from the Jacobian
        "bounds, partial": curvax.fit_curve(
            decay,
            t,
            y,
            P0,
            bounds=([*LB[:2], -np.inf], [*UB[:2], np.inf]),
            x_scale="bounds",
        ),
    }
    for label, res in fits.items():
        assert res.success, label
        # the same minimum as the hand-rescaled problem, to far below the uncertainty
        assert np.all(np.abs(res.x - ref) <= 1e-5 * res.perr), (label, res.x, ref)
        np.testing.assert_allclose(res.x[:2], ref[:2], rtol=1e-8, err_msg=label)
        assert np.all(np.abs(res.x - TRUTH) < 4 * res.perr), label  # and near the truth


def test_bounds_scaling_equals_the_normalised_problem(decay_data) -> None:
    """x_scale='bounds' in SI units reaches the minimum of the problem in u = (p − lb)/w.

    Not the identical iteration (the initial radius comes from ‖x0‖ and the xtol test is
    made in each problem's own units), but the same answer at a comparable cost.
    """
    t, y, _ = decay_data
    w = UB - LB
    res = curvax.fit_curve(decay, t, y, P0, bounds=(LB, UB), x_scale="bounds")

    def decay_u(t, u0, u1, u2):
        return decay(t, LB[0] + w[0] * u0, LB[1] + w[1] * u1, LB[2] + w[2] * u2)

    norm = curvax.fit_curve(decay_u, t, y, (P0 - LB) / w, bounds=(0.0, 1.0), x_scale=1.0)
    assert res.success and norm.success
    assert np.all(np.abs(res.x - (LB + w * norm.x)) <= 1e-5 * res.perr)
    assert res.nfev <= 2 * norm.nfev + 5


def _nist_bounds(prob) -> tuple[np.ndarray, np.ndarray]:
    """A box of ±10× the larger start in each parameter (not derived from the answer)."""
    B = 10.0 * np.maximum(np.abs(prob.start1), np.abs(prob.start2))
    assert np.all(np.abs(prob.certified_values) < B)  # the test's premise
    return -B, B


def _check_nist_bounds_scaling(name: str) -> None:
    prob = load_nist(name)
    bounds = _nist_bounds(prob)
    for start in (prob.start1, prob.start2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = curvax.fit_curve(
                prob.model, prob.x, prob.y, p0=start, bounds=bounds, x_scale="bounds"
            )
        assert res.success and res.method == "trf"
        assert lre(res.x, prob.certified_values).min() >= 6.0, (name, start, res.x)
        assert lre(res.perr, prob.certified_std_dev).min() >= 3.0, (name, start, res.perr)


@pytest.mark.parametrize("name", ["MGH09", "Eckerle4"])
def test_nist_bounds_scaling_certified(name: str) -> None:
    _check_nist_bounds_scaling(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", NIST_NAMES)
def test_nist_bounds_scaling_certified_all(name: str) -> None:
    _check_nist_bounds_scaling(name)


def test_bounds_scaling_chunked_equals_in_memory(decay_data) -> None:
    from curvax.scale import fit_chunked

    t, y, _ = decay_data
    mem = curvax.fit_curve(decay, t, y, P0, bounds=(LB, UB), x_scale="bounds")
    chunked = fit_chunked(decay, t, P0, y=y, bounds=(LB, UB), x_scale="bounds", chunk_size=64)
    assert chunked.success
    assert np.all(np.abs(chunked.x - mem.x) <= 1e-6 * mem.perr)
