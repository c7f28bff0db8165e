"""A result rebuilds its fit's data for ``fun``/``jac`` instead of pinning the padded
copies, and refuses to compute them from arrays the caller changed in place."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core.data_source import COPY_BYTES, DataSource, fingerprint


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def decay_np(x: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model values and Jacobian of :func:`decay`, in NumPy (the reference)."""
    a, b, _ = p
    e = np.exp(-b * x)
    return a * e + p[2], np.stack([e, -a * x * e, np.ones_like(x)], axis=1)


def test_fingerprint_moves_with_any_change_and_not_otherwise() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(5000)
    base = fingerprint(a)
    assert fingerprint(a.copy()) == base
    for i, j in ((5, 6), (5, 2000), (0, 4999), (1030, 4100)):  # same row, other rows
        b = a.copy()
        b[[i, j]] = b[[j, i]]
        assert fingerprint(b) != base, (i, j)
    b = a.copy()
    b[1234] *= 1 + 1e-12
    assert fingerprint(b) != base
    assert fingerprint(a[::-1]) != base
    assert fingerprint(np.sort(a)) != base
    # sign flips of a symmetric grid (the reversal of linspace(-1, 1)) are seen
    g = np.linspace(-1.0, 1.0, 4096)
    h = g.copy()
    h[[10, 4085]] = h[[4085, 10]]  # exchanges x and -x
    assert fingerprint(h) != fingerprint(g)


def test_fingerprint_of_a_strided_view_does_not_depend_on_where_its_copy_lies() -> None:
    """A non-contiguous array is copied before summing; the copies lie at different
    addresses, and the bits must not change with the alignment."""
    rng = np.random.default_rng(1)
    big = rng.standard_normal((3, 70_001))
    view = big[1, ::2]
    sums = set()
    for k in range(8):
        pad = np.empty(k)  # shifts where the next allocations land
        sums.add(fingerprint(view))
        del pad
    assert len(sums) == 1
    assert fingerprint(view) == fingerprint(np.ascontiguousarray(view))


def test_small_inputs_are_copied_and_large_ones_are_checked() -> None:
    small = np.arange(10.0)
    large = np.arange(COPY_BYTES // 8 + 1, dtype=np.float64)
    src = DataSource(
        lambda xdata, ydata: {"x": xdata, "y": ydata}, {"xdata": small, "ydata": large}
    )
    src.seal()
    small[:] = -1.0  # the source has its own copy
    got = src()
    np.testing.assert_array_equal(got["x"], np.arange(10.0))
    assert got["y"] is large
    large[3] = 0.5
    with pytest.raises(RuntimeError, match="ydata: changed in place after the fit"):
        src()


def test_kept_results_do_not_hold_the_padded_copies(recorded_pool: list[list[int]]) -> None:
    """Results kept in a list: later fits still reuse the first fit's padded buffers
    (before, each kept result pinned 2.1 × its x and y), and every kept result's ``fun``
    and ``jac`` are those of its own data (NumPy reference)."""
    handed = recorded_pool
    n = 300_000  # padded to 327 680 points
    x = np.linspace(0.0, 5.0, n)
    rng = np.random.default_rng(3)
    kept, ys = [], []
    for _ in range(3):
        y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.01 * rng.standard_normal(n)
        handed.append([])
        kept.append(curvax.fit_curve(decay, x, y, p0=[1, 1, 0], workers=1))
        ys.append(y)
    assert len(handed[0]) >= 2
    for later in handed[1:]:
        assert set(later) <= set(handed[0]), (handed[0], later)
    for res, y in zip(kept, ys):
        model, jac = decay_np(x, np.asarray(res.x, dtype=np.float64))
        np.testing.assert_allclose(res.fun, model - y, rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.jac, jac, rtol=1e-12, atol=1e-12)


def test_changing_the_data_in_place_after_the_fit() -> None:
    """Large data changed in place: ``fun`` raises, naming the array.  Small data are
    copied by the result, so ``fun`` stays that of the data fitted."""
    rng = np.random.default_rng(4)
    for n, copied in ((COPY_BYTES // 8 + 100, False), (200, True)):
        x = np.linspace(0.0, 5.0, n)
        y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.01 * rng.standard_normal(n)
        y0 = y.copy()
        res = curvax.fit_curve(decay, x, y, p0=[1, 1, 0])
        y *= 2.0  # e.g. the buffer reused for the next measurement
        if copied:
            model, _ = decay_np(x, np.asarray(res.x, dtype=np.float64))
            np.testing.assert_allclose(res.fun, model - y0, rtol=0, atol=1e-12)
        else:
            with pytest.raises(RuntimeError, match="ydata: changed in place"):
                _ = res.fun
            y[:] = y0  # back as fitted: available again
            model, _ = decay_np(x, np.asarray(res.x, dtype=np.float64))
            np.testing.assert_allclose(res.fun, model - y0, rtol=0, atol=1e-12)
        if not copied:
            x[[0, -1]] = x[[-1, 0]]  # an exchange of two values
            with pytest.raises(RuntimeError, match="xdata: changed in place"):
                _ = res.jac
            x.sort()  # back in order, as fitted
            _, jac = decay_np(x, np.asarray(res.x, dtype=np.float64))
            np.testing.assert_allclose(res.jac, jac, rtol=1e-12, atol=1e-12)


N_PATH = 70_000  # padded to 2**17; over COPY_BYTES, so the caller's arrays are watched


@pytest.mark.parametrize("path", ["sigma", "fixed", "sparsity", "device", "mixed", "float32"])
def test_rebuilt_data_give_the_residuals_of_every_path(path: str) -> None:
    """``fun`` and ``jac`` of a kept result, read after another fit of the same size has
    reused the buffers, equal the NumPy residuals and Jacobian of its own data, for each
    way the fit's data are built (weights, fixed parameters, a sparsity pattern, data on
    the device, the float32 start of a mixed-precision fit, float32)."""
    rng = np.random.default_rng(5)
    x = np.linspace(0.0, 5.0, N_PATH)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.01 * rng.standard_normal(N_PATH)
    sigma = 0.5 + rng.random(N_PATH)
    kw: dict = {"p0": [1.0, 1.0, 0.0]}
    weight = np.ones(N_PATH)
    xin, yin = x, y
    if path == "sigma":
        kw["sigma"] = sigma
        weight = 1.0 / sigma
    elif path == "fixed":
        kw["fixed"] = {"c": 0.5}
    elif path == "sparsity":
        kw["jac_sparsity"] = np.ones((N_PATH, 3), dtype=bool)
    elif path == "device":
        with jax.enable_x64(True):
            xin, yin = jax.device_put(x), jax.device_put(y)
    elif path == "mixed":
        kw["mixed_precision"] = True
    elif path == "float32":
        kw["dtype"] = np.float32
    res = curvax.fit_curve(decay, xin, yin, **kw)
    other = curvax.fit_curve(decay, x, 0.5 * y, p0=[1.0, 1.0, 0.0])  # reuses buffers
    assert other.success
    p = np.asarray(res.x, dtype=np.float64)
    model, jac = decay_np(x, p)
    if path == "fixed":
        jac[:, 2] = 0.0  # a fixed parameter's column is reported as zero
    tol = 1e-5 if path == "float32" else 1e-11
    np.testing.assert_allclose(res.fun, (model - y) * weight, rtol=0, atol=tol)
    np.testing.assert_allclose(res.jac, jac * weight[:, None], rtol=tol, atol=tol)


def test_least_squares_watches_its_array_arguments() -> None:
    """least_squares keeps the caller's ``args``/``kwargs`` for ``fun``: large ones are
    checked (the error names the argument), and the residuals are those of the fit."""
    t = np.linspace(0.0, 5.0, 20_000)
    y = 2.0 * np.exp(-1.1 * t) + 0.01 * np.sin(7.0 * t)

    def resid(p, t, y, scale=1.0):
        return (p[0] * jnp.exp(-p[1] * t) - y) * scale

    res = curvax.least_squares(resid, [1.0, 1.0], args=(t,), kwargs={"y": y, "scale": 2.0})
    y0 = y.copy()
    y[5] += 1.0
    with pytest.raises(RuntimeError, match=r"kwargs\['y'\]: changed in place"):
        _ = res.fun
    y[:] = y0
    p = np.asarray(res.x)
    np.testing.assert_allclose(res.fun, 2.0 * (p[0] * np.exp(-p[1] * t) - y0), atol=1e-12)
