"""``fit_curve(keep_data=False)`` and ``curve_fit``'s use of it.

A result that is not handed out needs no guard on the caller's arrays (no fingerprint,
no copy when the fit starts).  Checked by counting the fingerprints taken
(``curvax.core.data_source.fingerprint``), against the same fit with the default, and
by the residuals ``full_output`` still returns (NumPy reference).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core import data_source


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


N = 20_000  # x and y of 160 kB each: fingerprinted, not copied, by a sealed source


def data():
    rng = np.random.default_rng(3)
    x = np.linspace(0.0, 4.0, N)
    return x, 2.0 * np.exp(-1.1 * x) + 0.3 + 0.01 * rng.standard_normal(N)


@pytest.fixture
def fingerprints(monkeypatch):
    """The number of arrays fingerprinted so far (a one-element list)."""
    count = [0]
    real = data_source.fingerprint

    def counting(a):
        count[0] += 1
        return real(a)

    monkeypatch.setattr(data_source, "fingerprint", counting)
    return count


def test_curve_fit_without_full_output_takes_no_fingerprint(fingerprints):
    x, y = data()
    popt, _ = curvax.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0])
    assert fingerprints[0] == 0
    res = curvax.fit_curve(model, x, y, p0=[1.0, 1.0, 0.0])
    assert fingerprints[0] == 2  # x and y, by the default keep_data=True
    np.testing.assert_array_equal(popt, res.x)


def test_full_output_keeps_the_residuals(fingerprints):
    x, y = data()
    popt, _, info, _, _ = curvax.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], full_output=True)
    assert fingerprints[0] == 4  # x and y when the fit starts, again when fvec is read
    a, b, c = popt
    np.testing.assert_allclose(info["fvec"], a * np.exp(-b * x) + c - y, rtol=0, atol=1e-12)


def test_callbacks_keep_the_data(fingerprints):
    x, y = data()
    seen = []
    curvax.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], callbacks=[lambda *a, **k: seen.append(1)])
    assert seen  # the callback ran, so it could have kept the result
    assert fingerprints[0] == 2


def test_a_result_without_data_refuses_fun_and_jac():
    x, y = data()
    lean = curvax.fit_curve(model, x, y, p0=[1.0, 1.0, 0.0], keep_data=False)
    full = curvax.fit_curve(model, x, y, p0=[1.0, 1.0, 0.0])
    np.testing.assert_array_equal(lean.x, full.x)
    np.testing.assert_array_equal(lean.pcov, full.pcov)
    for attr in ("fun", "jac"):
        with pytest.raises(ValueError, match="keep_data=False"):
            getattr(lean, attr)
    assert lean.metadata["data_fingerprint"] is None
    assert isinstance(full.metadata["data_fingerprint"], str)
    assert {k: v for k, v in lean.metadata.items() if k != "data_fingerprint"} == {
        k: v for k, v in full.metadata.items() if k != "data_fingerprint"
    }


def test_keep_data_must_be_a_bool():
    x, y = data()
    with pytest.raises(TypeError, match="keep_data"):
        curvax.fit_curve(model, x, y, p0=[1.0, 1.0, 0.0], keep_data="no")


def test_multistart_starts_keep_no_data_unless_handed_out(fingerprints):
    """Every start of ``curve_fit(..., multistart=True)`` fits with keep_data=False
    unless ``full_output`` hands the best result out (then its fvec is NumPy's)."""
    x, y = data()
    popt, _ = curvax.curve_fit(model, x, y, p0=[1.0, 1.0, 0.0], multistart=True, n_starts=3)
    assert fingerprints[0] == 0
    best, _, info, _, _ = curvax.curve_fit(
        model, x, y, p0=[1.0, 1.0, 0.0], multistart=True, n_starts=3, full_output=True
    )
    assert fingerprints[0] > 0
    np.testing.assert_array_equal(popt, best)
    a, b, c = best
    np.testing.assert_allclose(info["fvec"], a * np.exp(-b * x) + c - y, rtol=0, atol=1e-12)
