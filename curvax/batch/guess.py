"""Vectorised starting points for many fits of a built-in peak model.

For ``B`` data sets at once (``y`` of shape (B, N), a boolean ``mask`` of real points)
the estimates below are computed with whole-array NumPy operations, no loop over the
fits.  With ``w_i = max(y_i − b, 0)`` the height above the baseline ``b``:

* baseline ``b`` — the mean of the lowest fifth of the real values of each fit;
* amplitude — ``max y − b`` (for a model without baseline: the value of largest
  magnitude, signed, and ``b = 0``);
* centre — the first moment ``Σ w_i x_i / Σ w_i``;
* width — from the second moment, ``σ² = Σ w_i (x_i − x̄)² / Σ w_i`` (per axis for
  the elliptic 2-D Gaussian, averaged over the two axes for the symmetric one).

Models covered: :data:`curvax.models.gaussian`, ``gaussian + constant``,
:data:`curvax.models.gaussian_2d` and :data:`curvax.models.gaussian_2d_elliptic`.
Every other model with a ``guess(x, y)`` method is handled by calling that method
fit by fit (:func:`guess_loop`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _baseline(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the lowest fifth (at least one) of the real values of each row."""
    n_real = mask.sum(axis=1)
    k = np.maximum(1, n_real // 5)
    srt = np.sort(np.where(mask, y, np.inf), axis=1)
    cols = np.arange(y.shape[1])[None, :]
    take = cols < k[:, None]
    return np.sum(np.where(take, srt, 0.0), axis=1) / k


def _moments(coords: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean and variance of ``coords`` (B, N) under weights ``w`` (B, N)."""
    sw = w.sum(axis=1)
    ok = sw > 0
    sw_safe = np.where(ok, sw, 1.0)
    mean = np.sum(w * coords, axis=1) / sw_safe
    var = np.sum(w * (coords - mean[:, None]) ** 2, axis=1) / sw_safe
    return mean, var, ok


def _span(c: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hi = np.max(np.where(mask, c, -np.inf), axis=1)
    lo = np.min(np.where(mask, c, np.inf), axis=1)
    return np.where(np.isfinite(hi - lo) & (hi > lo), hi - lo, 1.0)


def _masked_mean(c: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = np.maximum(mask.sum(axis=1), 1)
    return np.sum(np.where(mask, c, 0.0), axis=1) / n


def _peak_1d(x: np.ndarray, y: np.ndarray, mask: np.ndarray, baseline: bool) -> np.ndarray:
    b = _baseline(y, mask) if baseline else np.zeros(y.shape[0])
    h = np.where(mask, y - b[:, None], 0.0)
    if baseline:
        amp = np.max(np.where(mask, h, -np.inf), axis=1)
    else:
        idx = np.argmax(np.abs(h), axis=1)
        amp = np.take_along_axis(h, idx[:, None], axis=1)[:, 0]
    sign = np.where(amp >= 0, 1.0, -1.0)
    w = np.where(mask, np.maximum(sign[:, None] * h, 0.0), 0.0)
    c, var, ok = _moments(x, w)
    span = _span(x, mask)
    c = np.where(ok, c, _masked_mean(x, mask))
    sigma = np.where(ok & (var > 0), np.sqrt(var), span / 4.0)
    amp = np.where(np.isfinite(amp) & (amp != 0), amp, 1.0)
    cols = [amp, c, sigma] + ([b] if baseline else [])
    return np.stack(cols, axis=1)


def _peak_2d(x: np.ndarray, y: np.ndarray, mask: np.ndarray, elliptic: bool) -> np.ndarray:
    X, Y = x[:, 0], x[:, 1]
    b = _baseline(y, mask)
    h = np.where(mask, y - b[:, None], 0.0)
    amp = np.max(np.where(mask, h, -np.inf), axis=1)
    w = np.maximum(h, 0.0)
    x0, vx, okx = _moments(X, w)
    y0, vy, _ = _moments(Y, w)
    x0 = np.where(okx, x0, _masked_mean(X, mask))
    y0 = np.where(okx, y0, _masked_mean(Y, mask))
    sx = np.where(okx & (vx > 0), np.sqrt(vx), _span(X, mask) / 4.0)
    sy = np.where(okx & (vy > 0), np.sqrt(vy), _span(Y, mask) / 4.0)
    amp = np.where(np.isfinite(amp) & (amp > 0), amp, 1.0)
    if elliptic:
        return np.stack([amp, x0, y0, sx, sy, b], axis=1)
    return np.stack([amp, x0, y0, np.sqrt(0.5 * (sx * sx + sy * sy)), b], axis=1)


def vectorised_guesser(f: Any) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None:
    """The vectorised guess for built-in model ``f``, or None if there is none.

    The returned function takes ``x`` of shape (B, N) (1-D models) or (B, 2, N)
    (2-D models), ``y`` and ``mask`` of shape (B, N), and returns (B, P).
    """
    try:
        from curvax import models
    except ImportError:  # pragma: no cover - the model library is optional here
        return None
    if f is getattr(models, "gaussian", None):
        return lambda x, y, m: _peak_1d(x, y, m, baseline=False)
    if f is getattr(models, "gaussian_2d", None):
        return lambda x, y, m: _peak_2d(x, y, m, elliptic=False)
    if f is getattr(models, "gaussian_2d_elliptic", None):
        return lambda x, y, m: _peak_2d(x, y, m, elliptic=True)
    parts = tuple(getattr(f, "parts", ()) or ())
    if (
        len(parts) == 2
        and parts[0] is getattr(models, "gaussian", None)
        and parts[1] is getattr(models, "constant", None)
    ):
        return lambda x, y, m: _peak_1d(x, y, m, baseline=True)
    return None


def guess_loop(
    guess: Callable[[np.ndarray, np.ndarray], Any], x: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Call ``guess(x_b, y_b)`` on the real points of each fit (the slow fallback)."""
    out = []
    for b in range(y.shape[0]):
        keep = mask[b]
        out.append(np.asarray(guess(x[b][..., keep], y[b][keep]), dtype=np.float64).reshape(-1))
    return np.stack(out)
