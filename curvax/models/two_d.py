"""Two-dimensional Gaussian models; ``x`` has shape ``(2, N)`` (rows: x and y coordinates)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _guess as g
from .base import Model

__all__ = ["gaussian_2d", "gaussian_2d_elliptic", "gaussian_2d_rotated"]

_INF = np.inf


# -------------------------------------------------------------------- models
def _g2d_func(x: Any, amplitude: Any, x0: Any, y0: Any, sigma: Any, offset: Any) -> jax.Array:
    dx = x[0] - x0
    dy = x[1] - y0
    return amplitude * jnp.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma)) + offset


def _g2d_jac(x: Any, amplitude: Any, x0: Any, y0: Any, sigma: Any, offset: Any) -> jax.Array:
    dx = x[0] - x0
    dy = x[1] - y0
    s2 = sigma * sigma
    r2 = dx * dx + dy * dy
    e = jnp.exp(-r2 / (2.0 * s2))
    ae = amplitude * e / s2
    one = jnp.ones_like(e) + 0 * offset
    return jnp.stack([e, ae * dx, ae * dy, ae * r2 / sigma, one], axis=1)


def _g2d_ell_func(
    x: Any, amplitude: Any, x0: Any, y0: Any, sigma_x: Any, sigma_y: Any, offset: Any
) -> jax.Array:
    u = (x[0] - x0) / sigma_x
    v = (x[1] - y0) / sigma_y
    return amplitude * jnp.exp(-0.5 * (u * u + v * v)) + offset


def _g2d_rot_func(
    x: Any,
    amplitude: Any,
    x0: Any,
    y0: Any,
    sigma_x: Any,
    sigma_y: Any,
    theta: Any,
    offset: Any,
) -> jax.Array:
    dx = x[0] - x0
    dy = x[1] - y0
    c = jnp.cos(theta)
    s = jnp.sin(theta)
    u = (c * dx + s * dy) / sigma_x
    v = (-s * dx + c * dy) / sigma_y
    return amplitude * jnp.exp(-0.5 * (u * u + v * v)) + offset


# --------------------------------------------------------------------- guess
def _quadratic_log_fit(
    X: np.ndarray, Y: np.ndarray, z: np.ndarray, off: float, mode: str
) -> tuple[float, float, float, float, float] | None:
    """Centre and shape from a weighted fit of ``log(z - off)`` by a quadratic.

    Returns ``(x0, y0, sigma_x, sigma_y, theta)`` or ``None`` when the data do
    not look like a single peak.
    """
    w = z - off
    i = int(np.argmax(w))
    a0 = w[i]
    if not a0 > 0:
        return None
    need = {"sym": 6, "axis": 7, "rot": 9}[mode]
    for thr in (0.2, 0.1, 0.05):
        sel = w > thr * a0
        if sel.sum() >= need:
            break
    else:
        return None
    xc, yc = X[i], Y[i]
    s = max(float(np.std(X)), float(np.std(Y)), 1e-300)
    u = (X[sel] - xc) / s
    v = (Y[sel] - yc) / s
    ws = w[sel]
    one = np.ones_like(u)
    if mode == "sym":
        cols = [one, u, v, u * u + v * v]
    elif mode == "axis":
        cols = [one, u, v, u * u, v * v]
    else:
        cols = [one, u, v, u * u, u * v, v * v]
    basis = np.stack(cols, axis=1) * ws[:, None]
    coef = np.linalg.lstsq(basis, np.log(ws) * ws, rcond=None)[0]
    if mode == "sym":
        if not coef[3] < 0:
            return None
        u0, v0 = -coef[1] / (2 * coef[3]), -coef[2] / (2 * coef[3])
        sx = sy = np.sqrt(-1.0 / (2 * coef[3]))
        theta = 0.0
    elif mode == "axis":
        if not (coef[3] < 0 and coef[4] < 0):
            return None
        u0, v0 = -coef[1] / (2 * coef[3]), -coef[2] / (2 * coef[4])
        sx, sy = np.sqrt(-1.0 / (2 * coef[3])), np.sqrt(-1.0 / (2 * coef[4]))
        theta = 0.0
    else:
        m = np.array([[coef[3], coef[4] / 2], [coef[4] / 2, coef[5]]])
        if not np.all(np.linalg.eigvalsh(m) < 0):
            return None
        u0, v0 = np.linalg.solve(2 * m, -coef[1:3])
        vals, vecs = np.linalg.eigh(np.linalg.inv(-2 * m))
        sx, sy = np.sqrt(vals[1]), np.sqrt(vals[0])
        theta = float(np.arctan2(vecs[1, 1], vecs[0, 1]))
        theta = (theta + np.pi / 2) % np.pi - np.pi / 2
    x0, y0 = xc + s * u0, yc + s * v0
    sx, sy = s * sx, s * sy
    spx, spy = g.span(X), g.span(Y)
    big = 5.0 * max(spx, spy)
    ok = (
        X.min() - spx <= x0 <= X.max() + spx
        and Y.min() - spy <= y0 <= Y.max() + spy
        and 0 < sx < big
        and 0 < sy < big
    )
    return (float(x0), float(y0), float(sx), float(sy), float(theta)) if ok else None


def _moment_fallback(
    X: np.ndarray, Y: np.ndarray, z: np.ndarray, off: float
) -> tuple[float, float, float, float, float]:
    w = z - off
    i = int(np.argmax(w))
    above = int(np.sum(w > 0.5 * w[i])) if w[i] > 0 else 1
    cell = g.span(X) * g.span(Y) / max(X.size, 1)
    sigma = float(np.sqrt(max(above, 1) * cell / (2 * np.pi * np.log(2.0))))
    return float(X[i]), float(Y[i]), sigma, sigma, 0.0


def _gauss2d_shape(X, Y, x0, y0, sx, sy, theta):
    dx, dy = X - x0, Y - y0
    c, s = np.cos(theta), np.sin(theta)
    u = (c * dx + s * dy) / sx
    v = (-s * dx + c * dy) / sy
    return np.exp(-0.5 * (u * u + v * v))


def _gauss2d_guess(xy: np.ndarray, z: np.ndarray, mode: str) -> tuple[float, ...]:
    X, Y = xy[0], xy[1]
    if z.size == 0:
        return 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0
    low = np.sort(z)[: max(1, z.size // 5)]
    off = float(np.mean(low))
    shape = None
    for _ in range(2):
        est = _quadratic_log_fit(X, Y, z, off, mode)
        if est is None:
            est = _moment_fallback(X, Y, z, off)
        shape = est
        basis = np.stack([_gauss2d_shape(X, Y, *est), np.ones_like(z)], axis=1)
        amp, off = g.linear_coefs(basis, z)
        if not amp > 0:  # keep a positive peak; the offset from the low values
            amp = float(np.max(z) - off)
    x0, y0, sx, sy, theta = shape
    return float(amp), x0, y0, sx, sy, theta, float(off)


def _g2d_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a, x0, y0, sx, sy, _, off = _gauss2d_guess(x, y, "sym")
    return np.array([a, x0, y0, np.sqrt(sx * sy), off])


def _g2d_ell_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a, x0, y0, sx, sy, _, off = _gauss2d_guess(x, y, "axis")
    return np.array([a, x0, y0, sx, sy, off])


def _g2d_rot_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array(_gauss2d_guess(x, y, "rot"))


gaussian_2d = Model(
    name="gaussian_2d",
    param_names=("amplitude", "x0", "y0", "sigma", "offset"),
    func=_g2d_func,
    guess_fn=_g2d_guess,
    lower=(-_INF, -_INF, -_INF, 0.0, -_INF),
    jac=_g2d_jac,
    ndim_x=2,
    description="z = amplitude * exp(-((x - x0)**2 + (y - y0)**2) / (2 * sigma**2)) + offset",
    doc="""Symmetric 2-D Gaussian with offset (Gpufit's ``GAUSS_2D``, 5 parameters).

``z = amplitude * exp(-((x - x0)**2 + (y - y0)**2) / (2 * sigma**2)) + offset``
with ``sigma > 0``; ``x`` has shape ``(2, N)`` holding the x and y coordinates
of the ``N`` points (e.g. a flattened pixel grid).  Guess: offset from the
lowest values, then a weighted least-squares fit of ``log(z - offset)`` by a
paraboloid (centre and width), then amplitude and offset solved linearly.
""",
)

gaussian_2d_elliptic = Model(
    name="gaussian_2d_elliptic",
    param_names=("amplitude", "x0", "y0", "sigma_x", "sigma_y", "offset"),
    func=_g2d_ell_func,
    guess_fn=_g2d_ell_guess,
    lower=(-_INF, -_INF, -_INF, 0.0, 0.0, -_INF),
    ndim_x=2,
    description=(
        "z = amplitude * exp(-(x - x0)**2 / (2 sigma_x**2) - (y - y0)**2 / (2 sigma_y**2)) + offset"
    ),
    doc="""Axis-aligned elliptic 2-D Gaussian with offset (6 parameters).

``z = amplitude * exp(-(x - x0)**2 / (2 * sigma_x**2)
- (y - y0)**2 / (2 * sigma_y**2)) + offset`` with ``sigma_x, sigma_y > 0``;
``x`` has shape ``(2, N)``.  See :data:`gaussian_2d_rotated` for a free axis.
""",
)

gaussian_2d_rotated = Model(
    name="gaussian_2d_rotated",
    param_names=("amplitude", "x0", "y0", "sigma_x", "sigma_y", "theta", "offset"),
    func=_g2d_rot_func,
    guess_fn=_g2d_rot_guess,
    lower=(-_INF, -_INF, -_INF, 0.0, 0.0, -_INF, -_INF),
    ndim_x=2,
    description="elliptic 2-D Gaussian whose sigma_x axis makes angle theta with the x axis",
    doc="""Rotated elliptic 2-D Gaussian with offset (7 parameters).

``z = amplitude * exp(-u**2 / (2 * sigma_x**2) - v**2 / (2 * sigma_y**2)) + offset``
with ``u = cos(theta) * (x - x0) + sin(theta) * (y - y0)`` and
``v = -sin(theta) * (x - x0) + cos(theta) * (y - y0)``: ``sigma_x`` is the
width along the direction at angle ``theta`` (radians, counter-clockwise from
the x axis).  ``theta`` is defined modulo ``pi``, and ``(sigma_x, sigma_y,
theta)`` equals ``(sigma_y, sigma_x, theta + pi/2)``; it is undetermined for a
circular spot.  The guess returns ``sigma_x >= sigma_y`` and ``theta`` in
``[-pi/2, pi/2)``.
""",
)
