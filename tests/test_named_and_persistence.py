"""Named parameters, fixed parameters, and the exact JSON round trip of results."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax import FitResult


def decay(x, amp, rate, off):
    return amp * jnp.exp(-rate * x) + off


def decay2(x, amp, rate):
    return amp * jnp.exp(-rate * x) + 0.5


X = np.linspace(0, 5, 80)
Y = 3 * np.exp(-1.3 * X) + 0.5 + 0.01 * np.random.default_rng(1).normal(size=80)


def test_p0_and_bounds_by_name_equal_positional() -> None:
    a = curvax.fit_curve(decay, X, Y, p0={"rate": 1.0, "off": 0.0, "amp": 1.0},
                         bounds={"rate": (0.0, 10.0)})
    b = curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0, 0.0],
                         bounds=([-np.inf, 0.0, -np.inf], [np.inf, 10.0, np.inf]))
    np.testing.assert_array_equal(a.x, b.x)
    assert a.params["rate"].value == pytest.approx(b.x[1])
    assert list(a.params) == ["amp", "rate", "off"]


def test_fixed_by_name_equals_reduced_model() -> None:
    full = curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0, 0.0], fixed={"off": 0.5})
    reduced = curvax.fit_curve(decay2, X, Y, p0=[1.0, 1.0])
    np.testing.assert_allclose(full.x[:2], reduced.x, rtol=1e-10)
    np.testing.assert_allclose(full.pcov[:2, :2], reduced.pcov, rtol=1e-8)
    assert full.x[2] == 0.5 and np.all(full.pcov[2] == 0) and np.all(full.pcov[:, 2] == 0)
    assert full.params["off"].fixed and not full.params["amp"].fixed
    assert full.params["off"].stderr == 0.0


def test_named_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"p0: missing value\(s\) for parameter\(s\) \['off'\]"):
        curvax.fit_curve(decay, X, Y, p0={"amp": 1.0, "rate": 1.0})
    with pytest.raises(ValueError, match=r"fixed: unknown parameter name\(s\) \['offset'\]"):
        curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0, 0.0], fixed={"offset": 0.0})
    with pytest.raises(ValueError, match=r"bounds: unknown parameter name"):
        curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0, 0.0], bounds={"speed": (0, 1)})
    with pytest.raises(KeyError, match="no parameter named 'speed'"):
        curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0, 0.0]).params["speed"]


def test_json_round_trip_is_exact(tmp_path) -> None:
    res = curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0, 0.0], bounds=([0, 0, -1], [10, 10, 1]))
    path = tmp_path / "result.json"
    res.to_json(str(path))
    back = FitResult.from_json(str(path))
    for field in ("x", "pcov", "fun", "grad", "active_mask"):
        np.testing.assert_array_equal(getattr(back, field), getattr(res, field))
        assert getattr(back, field).dtype == getattr(res, field).dtype
    for field in ("cost", "initial_cost", "status", "nfev", "nit", "optimality", "param_names",
                  "method", "loss", "n_points"):
        assert getattr(back, field) == getattr(res, field)
    assert back.metadata == res.metadata
    assert back.to_json() == res.to_json()


def test_json_round_trip_with_inf_covariance() -> None:
    def prod(x, a, b):  # only a*b is identifiable
        return a * b * x

    res = curvax.fit_curve(prod, X, 2 * X, p0=[1.0, 1.0])
    assert np.all(np.isinf(res.pcov))
    back = FitResult.from_json(res.to_json())
    assert np.all(np.isinf(back.pcov))


def test_metadata_records_versions_options_and_fingerprint() -> None:
    a = curvax.fit_curve(decay, X, Y, p0=[1.0, 1.0, 0.0], loss="huber")
    b = curvax.fit_curve(decay, X, Y + 1e-3, p0=[1.0, 1.0, 0.0], loss="huber")
    md = a.metadata
    assert md["curvax_version"] == curvax.__version__
    assert md["dtype"] == "float64" and md["n_points"] == 80
    assert md["options"]["loss"] == "huber" and md["options"]["method"] == "trf"
    assert md["data_fingerprint"] != b.metadata["data_fingerprint"]
