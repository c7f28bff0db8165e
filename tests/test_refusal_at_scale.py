"""A refused convergence claim (-4) is probed the same way at every scale.

The in-memory fit probes a -4 before reporting it (curvax.core.refusal.judge_refusal);
the chunked fit did not, so the same data reported "converged" in memory and "far from
a minimum" in chunks.  References: the closed form of the minimum (c = mean(y) where a = 0),
SciPy's verdict, and sums of squares computed with NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import curvax
from curvax.core.engine import Kernel
from curvax.scale.chunked import fit_chunked
from curvax.scale.host_reduce import HostReducer
from curvax.scale.sources import as_source
from tests._refusal_worker import data as _want_negative_square  # a² < 0 wanted
from tests._refusal_worker import model as _squared_amplitude


def _four_pl(x, bottom, hill, ec50, top):
    return bottom + (top - bottom) / (1.0 + (x / ec50) ** hill)


@pytest.mark.parametrize("method", ["lm", "trf"])
def test_chunked_fit_probes_a_refusal_as_in_memory(method):
    from scipy.optimize import least_squares as scipy_lsq

    x, y = _want_negative_square()
    one = curvax.fit_curve(_squared_amplitude, x, y, p0=[1.0, 0.0], method=method)
    chunked = fit_chunked(_squared_amplitude, x, [1.0, 0.0], y=y, chunk_size=8, method=method)
    ref = scipy_lsq(lambda p: p[0] ** 2 * np.exp(-x) + p[1] - y, [1.0, 0.0], method=method)
    assert ref.success and one.success
    assert chunked.success, chunked.status
    assert chunked.status == one.status
    assert abs(chunked.x[0]) < 1e-5
    np.testing.assert_allclose(chunked.x[1], y.mean(), rtol=1e-9)  # the closed form
    assert chunked.cost <= ref.cost * (1 + 1e-9)


def test_chunked_genuine_refusal_stays():
    """A far 4PL start stops 3800x above the cost of a good start: -4 in memory, and
    in chunks too (a lower probe point exists)."""
    rng = np.random.default_rng(1)
    x = np.logspace(-2, 2, 40)
    y = _four_pl(x, 0.1, 1.2, 1.5, 2.0) + 0.02 * rng.standard_normal(40)
    p0 = [0.0, -1.0, 0.01, 3.0]
    one = curvax.fit_curve(_four_pl, x, y, p0=p0, x_scale=1.0)
    chunked = fit_chunked(_four_pl, x, p0, y=y, chunk_size=8, x_scale=1.0)
    assert one.status == -4
    assert chunked.status == -4
    good = curvax.fit_curve(_four_pl, x, y, p0=[1.0, 1.0, 1.0, 1.0])
    assert chunked.cost > 1000 * good.cost


def test_costs_at_is_half_the_weighted_sum_of_squares():
    """One pass gives ½ Σ ((f(x_i; q) − y_i)/σ_i)² at every point, NaN rows omitted,
    the last chunk ragged (padded), and the reducer's books unchanged."""
    rng = np.random.default_rng(2)
    n = 45
    x = np.linspace(0.0, 4.0, n)
    y = 2.0 * np.exp(-0.7 * x) + 0.3 + 0.01 * rng.standard_normal(n)
    s = 0.01 + 0.02 * rng.uniform(size=n)
    y[[3, 30]] = np.nan
    k = Kernel("pointwise", _squared_amplitude, "args", "fwd", "linear", "lm", True, 4096)
    red = HostReducer(k, as_source(x, y, s), 2, np.float64, 1.0, 16, nan_policy="omit")
    red.reduce(np.array([1.0, 0.0]))  # the first pass sets the books
    passes = red.n_passes
    points = np.array([[1.0, 0.0], [1.3, 0.4], [-0.2, 2.0], [0.0, 0.0]])
    got = red.costs_at(points)
    keep = np.isfinite(y)
    want = [
        0.5 * np.sum(((a**2 * np.exp(-x[keep]) + c - y[keep]) / s[keep]) ** 2)
        for a, c in points
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert red.n_passes == passes and red.n_used == n - 2


def test_dask_fit_probes_a_refusal_as_in_memory():
    """Dask blocks are reduced on workers; the probe pass reads them through the same
    source on the client."""
    da = pytest.importorskip("dask.array")
    x, y = _want_negative_square()
    one = curvax.fit_curve(_squared_amplitude, x, y, p0=[1.0, 0.0])
    res = fit_chunked(
        _squared_amplitude, da.from_array(x, chunks=10), [1.0, 0.0], y=da.from_array(y, chunks=10)
    )
    assert res.extra["backend"] == "dask"
    assert res.status == one.status and res.success
    np.testing.assert_allclose(res.x[1], y.mean(), rtol=1e-9)


def test_chunked_fit_over_devices_probes_a_refusal():
    """Chunks split over the four simulated devices (tests/conftest.py): the probe pass
    runs the same per-chunk program on them."""
    x, y = _want_negative_square()
    res = fit_chunked(_squared_amplitude, x, [1.0, 0.0], y=y, chunk_size=16, devices=4)
    assert res.success, res.status
    np.testing.assert_allclose(res.x[1], y.mean(), rtol=1e-9)
