"""Multi-start finds the global minimum where a single start does not."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.insight.multistart import multistart, sample_starts

# A long sinusoid: the cost as a function of frequency has many local minima.
X = np.linspace(0, 50, 1000)
TRUE = np.array([1.5, 3.1, 0.4])  # amplitude, angular frequency, phase
Y = TRUE[0] * np.sin(TRUE[1] * X + TRUE[2])
Y = Y + 0.1 * np.random.default_rng(4).normal(size=X.size)
BOUNDS = ([0.1, 0.1, -np.pi], [5.0, 5.0, np.pi])
P0 = [1.0, 1.0, 0.0]  # a poor frequency guess


def wave(x, a, w, phi):
    return a * jnp.sin(w * x + phi)


def test_single_start_fails_and_multistart_succeeds() -> None:
    single = curvax.fit_curve(wave, X, Y, p0=P0, bounds=BOUNDS)
    assert abs(single.x[1] - TRUE[1]) > 0.1  # trapped in a wrong basin
    ms = multistart(wave, X, Y, p0=P0, bounds=BOUNDS, n_starts=64, sampler="lhs")
    best = ms.best
    assert best.success and best.cost < 0.1 * single.cost
    np.testing.assert_allclose(best.x, TRUE, rtol=0.02)
    assert np.isclose(best.cost, np.min(ms.cost), rtol=1e-8)
    assert ms.starts.shape == (64, 3) and np.array_equal(ms.starts[0], P0)
    assert "cost" in ms.table()


@pytest.mark.parametrize("sampler", ["lhs", "random", "sobol"])
def test_starts_lie_within_bounds(sampler) -> None:
    lb, ub = np.array(BOUNDS[0]), np.array(BOUNDS[1])
    s = sample_starts(np.array(P0), lb, ub, 64, sampler, seed=1)
    assert np.all(s[1:] >= lb) and np.all(s[1:] <= ub)
    if sampler == "lhs":  # one point per stratum in every parameter
        u = (s[1:, 1] - lb[1]) / (ub[1] - lb[1])
        assert len(np.unique(np.floor(u * 64))) >= 60


def test_bad_sampler_arguments() -> None:
    with pytest.raises(ValueError, match="sampler"):
        sample_starts(np.ones(2), -np.ones(2), np.ones(2) * 3, 4, "grid")
    with pytest.raises(ValueError, match="n_starts"):
        sample_starts(np.ones(2), -np.ones(2), np.ones(2) * 3, 0)


def test_curve_fit_multistart_keyword() -> None:
    popt, pcov = curvax.curve_fit(wave, X, Y, p0=P0, bounds=BOUNDS, multistart=True,
                                  n_starts=64)
    np.testing.assert_allclose(popt, TRUE, rtol=0.02)
    assert np.all(np.isfinite(pcov))
