"""NumPy helpers shared by the models' initial-guess functions (private).

The grid guesses use *variable projection*: for every value of the nonlinear
parameters on a grid the linear parameters are solved in closed form by least
squares, and the grid point with the smallest residual sum of squares wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_GRID_POINTS = 1000


def sort_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``x`` and ``y`` sorted by ``x`` (1-D data)."""
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def subsample(x: np.ndarray, y: np.ndarray, max_n: int = MAX_GRID_POINTS):
    """Sort 1-D data by ``x`` and keep at most ``max_n`` evenly spaced points."""
    x, y = sort_xy(x, y)
    if x.size > max_n:
        idx = np.unique(np.linspace(0, x.size - 1, max_n).round().astype(int))
        x, y = x[idx], y[idx]
    return x, y


def span(x: np.ndarray) -> float:
    """Range of ``x``, or 1 when it is degenerate."""
    s = float(np.ptp(x)) if x.size else 0.0
    return s if s > 0 and np.isfinite(s) else 1.0


def lstsq_batch(columns: Sequence[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve many small linear least-squares problems sharing ``y``.

    Parameters
    ----------
    columns : sequence of ndarray
        The ``K`` columns of the design matrices: each of shape ``(G, N)`` (one
        column per grid point) or ``(N,)`` (shared by all grid points).
    y : ndarray, shape (N,)

    Returns
    -------
    coef : ndarray, shape (G, K)
    sse : ndarray, shape (G,)
        Residual sums of squares (``inf`` where a column was not finite).

    Notes
    -----
    Normal equations on unit-norm columns (plus a tiny ridge), built from
    row-wise dot products: cheap for the few columns used here, and free of
    BLAS threading overhead.
    """
    y = np.asarray(y, dtype=np.float64)
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    g_size = max((c.shape[0] for c in cols if c.ndim == 2), default=1)
    k = len(cols)
    finite = np.ones(g_size, dtype=bool)
    for i, c in enumerate(cols):
        if c.ndim == 2:
            ok = np.all(np.isfinite(c), axis=1)
            if not np.all(ok):
                finite &= ok
                cols[i] = np.where(ok[:, None], c, 0.0)
        elif not np.all(np.isfinite(c)):
            finite[:] = False
            cols[i] = np.where(np.isfinite(c), c, 0.0)

    def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.ndim == 2 and b.ndim == 2:
            return np.einsum("gn,gn->g", a, b)
        if a.ndim == 2:
            return np.einsum("gn,n->g", a, b)
        if b.ndim == 2:
            return np.einsum("gn,n->g", b, a)
        return np.full(g_size, float(a @ b))

    gram = np.empty((g_size, k, k))
    rhs = np.empty((g_size, k))
    for i in range(k):
        rhs[:, i] = dot(cols[i], y)
        for j in range(i + 1):
            gram[:, i, j] = gram[:, j, i] = dot(cols[i], cols[j])
    scale = np.sqrt(np.diagonal(gram, axis1=1, axis2=2)).copy()
    scale[~(scale > 0)] = 1.0
    gram = gram / (scale[:, :, None] * scale[:, None, :]) + 1e-10 * np.eye(k)
    rhs = rhs / scale
    c = np.linalg.solve(gram, rhs[..., None])[..., 0]
    # residual of the normal-equation solution: |y|^2 - c . (B^T y)
    sse = np.maximum(float(y @ y) - np.sum(c * rhs, axis=1), 0.0)
    sse = np.where(finite & np.isfinite(sse), sse, np.inf)
    return c / scale, sse


def parabolic_min(values: np.ndarray, sse: np.ndarray) -> float:
    """Refine the minimiser of ``sse`` over a 1-D uniform grid of ``values``."""
    i = int(np.argmin(sse))
    if 0 < i < len(values) - 1 and np.all(np.isfinite(sse[i - 1 : i + 2])):
        a, b, c = sse[i - 1], sse[i], sse[i + 1]
        denom = a - 2 * b + c
        if denom > 0:
            step = 0.5 * (a - c) / denom
            return float(values[i] + np.clip(step, -1, 1) * (values[i + 1] - values[i]))
    return float(values[i])


def expit(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function ``1 / (1 + exp(-z))``."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def linear_coefs(basis: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients for one design matrix ``basis`` of shape (N, K)."""
    coef, _ = lstsq_batch(list(np.asarray(basis, dtype=np.float64).T), y)
    return coef[0]


def smooth3(y: np.ndarray) -> np.ndarray:
    """Three-point moving average (ends kept), used only when there are many points."""
    if y.size < 15:
        return y.copy()
    out = y.copy()
    out[1:-1] = (y[:-2] + y[1:-1] + y[2:]) / 3.0
    return out


def peak_estimate(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Height, centre and full width at half maximum of the largest peak.

    The data are assumed to have a zero baseline; the peak is the point of
    largest ``|y|`` (after light smoothing), so negative peaks are found too.
    The FWHM comes from the half-maximum crossings (linearly interpolated);
    when only one crossing is inside the data the half width on that side is
    doubled, and when none is, the data range is used.

    Returns
    -------
    height, center, fwhm : float
    """
    x, y = sort_xy(x, y)
    n = x.size
    if n == 0:
        return 1.0, 0.0, 1.0
    ys = smooth3(y)
    i = int(np.argmax(np.abs(ys)))
    sign = 1.0 if ys[i] >= 0 else -1.0
    z = sign * ys
    h = z[i]
    if not h > 0:
        return 0.0, float(np.mean(x)), span(x) / 2
    half = 0.5 * h
    below = z <= half
    left_idx = np.nonzero(below[:i])[0]
    right_idx = np.nonzero(below[i + 1 :])[0]
    xl = xr = None
    if left_idx.size:
        j = int(left_idx[-1])
        xl = x[j] + (half - z[j]) * (x[j + 1] - x[j]) / (z[j + 1] - z[j])
    if right_idx.size:
        j = i + 1 + int(right_idx[0])
        xr = x[j - 1] + (z[j - 1] - half) * (x[j] - x[j - 1]) / (z[j - 1] - z[j])
    xc = float(x[i])
    if xl is not None and xr is not None:
        fwhm = xr - xl
        # centroid of the symmetric part of the region above half maximum
        d = min(xc - xl, xr - xc)
        sel = (x >= xc - d) & (x <= xc + d) & (z > half)
        if sel.sum() >= 3:
            xc = float(np.sum(x[sel] * (z[sel] - half)) / np.sum(z[sel] - half))
    elif xr is not None:
        fwhm = 2.0 * (xr - xc)
    elif xl is not None:
        fwhm = 2.0 * (xc - xl)
    else:
        fwhm = span(x)
    dx = np.diff(x)
    dx = dx[dx > 0]
    min_width = float(np.median(dx)) if dx.size else 1e-12
    fwhm = max(float(fwhm), min_width)
    return sign * float(h), xc, fwhm
