"""Fits of data that already lie on a device (``jax.Array`` inputs, core/device_data).

The checks, padding and mask of such data run on the device; on the CPU (where CI runs)
the answer must be the same bits as for the same values given as NumPy arrays, and bad
data must be refused with the same errors.  Also the platform defaults of the reduction
(core/engine.reduction_defaults) and the lazily copied residuals of a result.
"""

from __future__ import annotations

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core.device_data import data_stats, mask_device, pad_device
from curvax.core.engine import DEFAULT_BLOCK_SIZE, reduction_defaults


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def plane_peak(xy, a, x0, y0, s):
    return a * jnp.exp(-((xy[0] - x0) ** 2 + (xy[1] - y0) ** 2) / (2 * s * s))


def on_device(a: np.ndarray) -> jax.Array:
    with jax.enable_x64(True):
        return jax.device_put(a)


def decay_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 5.0, n)
    return x, 2.0 * np.exp(-1.3 * x) + 0.5 + 0.02 * rng.standard_normal(n)


@pytest.mark.parametrize("n", [37, 1000, 5000])  # below the bucket minimum, padded, padded
def test_device_arrays_give_the_numpy_answer_bit_for_bit(n: int) -> None:
    x, y = decay_data(n)
    p_np, c_np = curvax.curve_fit(decay, x, y, p0=[1.0, 1.0, 0.0])
    p_dev, c_dev = curvax.curve_fit(decay, on_device(x), on_device(y), p0=[1.0, 1.0, 0.0])
    np.testing.assert_array_equal(p_dev, p_np)
    np.testing.assert_array_equal(c_dev, c_np)
    # x on the host, y on the device: x is moved next to y
    p_mix, _ = curvax.curve_fit(decay, x, on_device(y), p0=[1.0, 1.0, 0.0])
    np.testing.assert_array_equal(p_mix, p_np)


def test_two_dimensional_x_and_bounds_on_device() -> None:
    g = np.arange(40.0)
    xx, yy = np.meshgrid(g, g)
    xy = np.stack([xx.ravel(), yy.ravel()])  # (2, N): points along the last axis
    rng = np.random.default_rng(3)
    z = np.asarray(plane_peak(xy, 5.0, 18.3, 21.7, 4.2)) + 0.05 * rng.standard_normal(xy.shape[1])
    kw = dict(p0=[4.0, 17.0, 20.0, 3.0], bounds=([0, 0, 0, 0.5], [10, 40, 40, 10]))
    r_np = curvax.fit_curve(plane_peak, xy, z, **kw)
    r_dev = curvax.fit_curve(plane_peak, on_device(xy), on_device(z), **kw)
    np.testing.assert_array_equal(r_dev.x, r_np.x)
    np.testing.assert_array_equal(r_dev.pcov, r_np.pcov)
    assert r_dev.metadata["data_fingerprint"] == r_np.metadata["data_fingerprint"]
    # the residuals come from the device on first access: y - f at the answer
    a, x0, y0, s = r_np.x
    resid = a * np.exp(-((xy[0] - x0) ** 2 + (xy[1] - y0) ** 2) / (2 * s * s)) - z  # NumPy
    np.testing.assert_allclose(r_dev.fun, resid, rtol=0, atol=1e-12)
    assert r_dev.n_points == z.size
    assert r_dev.chisqr == pytest.approx(float(np.sum(resid**2)), rel=1e-12)


def test_float32_device_data_are_fitted_in_float64() -> None:
    x, y = decay_data(2000)
    y32 = jnp.asarray(y.astype(np.float32))  # x64 off: a float32 device array
    p_dev, _ = curvax.curve_fit(decay, x, y32, p0=[1.0, 1.0, 0.0])
    p_ref, _ = curvax.curve_fit(decay, x, y.astype(np.float32).astype(np.float64),
                                p0=[1.0, 1.0, 0.0])
    assert p_dev.dtype == np.float64
    np.testing.assert_array_equal(p_dev, p_ref)


def test_bad_device_data_are_refused_by_name() -> None:
    x, y = decay_data(500)
    p0 = [1.0, 1.0, 0.0]
    y_nan = y.copy()
    y_nan[17] = np.nan
    with pytest.raises(ValueError, match=r"ydata: contains NaN or Inf .*first at index \(17,\)"):
        curvax.curve_fit(decay, x, on_device(y_nan), p0=p0)
    x_inf = x.copy()
    x_inf[3] = np.inf
    with pytest.raises(ValueError, match=r"xdata: contains NaN or Inf .*index \(3,\)"):
        curvax.curve_fit(decay, on_device(x_inf), on_device(y), p0=p0)
    with pytest.raises(ValueError, match=r"1 point\(s\) contain NaN \(nan_policy='raise'\)"):
        curvax.curve_fit(decay, x, on_device(y_nan), p0=p0, nan_policy="raise")
    with pytest.raises(ValueError, match="ydata: complex values"):
        curvax.curve_fit(decay, x, jnp.asarray(y.astype(np.complex64)), p0=p0)
    with pytest.raises(ValueError, match="ydata: must be 1-D"):
        curvax.curve_fit(decay, x, on_device(np.stack([y, y])), p0=p0)
    with pytest.raises(ValueError, match="xdata: shape"):
        curvax.curve_fit(decay, x[:-1], on_device(y), p0=p0)
    with pytest.raises(ValueError, match="ydata/sigma: the weighted data have magnitude"):
        curvax.curve_fit(decay, x, on_device(y * 1e200), p0=p0)


def test_nan_policy_omit_on_device_data_equals_numpy() -> None:
    x, y = decay_data(800)
    y[[5, 400]] = np.nan
    r_np = curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.0], nan_policy="omit")
    r_dev = curvax.fit_curve(decay, x, on_device(y), p0=[1.0, 1.0, 0.0], nan_policy="omit")
    np.testing.assert_array_equal(r_dev.x, r_np.x)
    assert r_dev.extra["n_omitted"] == r_np.extra["n_omitted"] == 2


def test_device_helpers_against_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 50))
    y = rng.standard_normal(50)
    x[1, 7], y[9], y[11] = np.nan, np.inf, np.nan
    s = data_stats(on_device(x), on_device(y), 1)
    assert s.nonfinite_y == 2 and s.nonfinite_x == 1 and s.nan_points == 2
    assert np.isnan(s.max_abs_y)
    y[[9, 11]] = [3.5, -7.25]
    assert data_stats(on_device(x), on_device(y), 1).max_abs_y == 7.25
    padded = np.asarray(pad_device(on_device(x), 64, 1))
    np.testing.assert_array_equal(padded[:, :50], x)
    np.testing.assert_array_equal(padded[:, 50:], np.repeat(x[:, -1:], 14, axis=1))
    np.testing.assert_array_equal(np.asarray(mask_device(50, 64)), np.arange(64) < 50)
    np.testing.assert_array_equal(np.asarray(mask_device(3, 8, on_device(y))), np.arange(8) < 3)


def test_a_second_device_fit_compiles_nothing() -> None:
    x, y = decay_data(3000, seed=1)
    xd = on_device(x)
    curvax.curve_fit(decay, xd, on_device(y), p0=[1.0, 1.0, 0.0])
    events: list[str] = []

    def listen(event: str, duration: float, **kw: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        _, y2 = decay_data(3000, seed=2)
        curvax.curve_fit(decay, xd, on_device(y2), p0=[1.0, 1.0, 0.0])
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert events == []


def test_platform_defaults_and_block_size_argument() -> None:
    assert reduction_defaults() == (DEFAULT_BLOCK_SIZE, "dot")  # CI runs on a CPU
    x, y = decay_data(300)
    p_default, _ = curvax.curve_fit(decay, x, y, p0=[1.0, 1.0, 0.0])
    p_explicit, _ = curvax.curve_fit(decay, x, y, p0=[1.0, 1.0, 0.0], block_size=4096)
    np.testing.assert_array_equal(p_default, p_explicit)
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match="block_size: expected a positive integer"):
            curvax.curve_fit(decay, x, y, p0=[1.0, 1.0, 0.0], block_size=bad)
    # the chunked fit takes the same default
    r_default = curvax.curve_fit_large(decay, x, y, p0=[1.0, 1.0, 0.0], chunk_size=128)
    r_explicit = curvax.curve_fit_large(decay, x, y, p0=[1.0, 1.0, 0.0], chunk_size=128,
                                        block_size=4096)
    np.testing.assert_array_equal(r_default[0], r_explicit[0])
    with pytest.raises(ValueError, match="block_size: expected a positive integer"):
        curvax.curve_fit_large(decay, x, y, p0=[1.0, 1.0, 0.0], block_size=True)
