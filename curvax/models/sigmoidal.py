"""Sigmoidal and saturating models: logistic, Hill (4PL), Michaelis–Menten, growth curves."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _guess as g
from .base import Model

__all__ = ["gompertz", "hill", "logistic_growth", "michaelis_menten", "sigmoid"]

_INF = np.inf
_LN10 = float(np.log(10.0))


def _sigmoid_grid(
    u: np.ndarray, y: np.ndarray, with_offset: bool, both_signs: bool = False
) -> tuple[float, float, np.ndarray]:
    """Best ``(center, width)`` of ``c0 [+ c1] * expit((u - center) / width)`` on a grid.

    Returns ``center, width, coef`` where ``coef`` holds the linear coefficients
    (scale, and offset when ``with_offset``).
    """
    us, ys = g.subsample(u, y)
    T = g.span(us)
    centers = np.linspace(us[0] - 0.25 * T, us[-1] + 0.25 * T, 41)
    widths = T * np.logspace(-2.5, 0.3, 29)
    if both_signs:
        widths = np.concatenate([-widths[::-1], widths])
    cc, ww = (a.ravel() for a in np.meshgrid(centers, widths, indexing="ij"))
    s = g.expit((us[None, :] - cc[:, None]) / ww[:, None])
    cols = [s, np.ones_like(us)] if with_offset else [s]
    coef, sse = g.lstsq_batch(cols, ys)
    b = int(np.argmin(sse))
    return float(cc[b]), float(ww[b]), coef[b]


# ------------------------------------------------------------------- sigmoid
def _sigmoid_func(x: Any, amplitude: Any, center: Any, width: Any, offset: Any) -> jax.Array:
    return amplitude * jax.nn.sigmoid((x - center) / width) + offset


def _sigmoid_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    c, w, (a, off) = _sigmoid_grid(x, y, with_offset=True)
    return np.array([a, c, w, off])


sigmoid = Model(
    name="sigmoid",
    param_names=("amplitude", "center", "width", "offset"),
    func=_sigmoid_func,
    guess_fn=_sigmoid_guess,
    lower=(-_INF, -_INF, 0.0, -_INF),
    description="y = amplitude / (1 + exp(-(x - center) / width)) + offset",
    doc="""Logistic sigmoid (Boltzmann) step.

``y = amplitude / (1 + exp(-(x - center) / width)) + offset`` with
``width > 0``: goes from ``offset`` (x -> -inf) to ``offset + amplitude``
(x -> +inf); a negative ``amplitude`` gives a falling step.  Guess: grid over
(center, width) with amplitude and offset solved linearly.
""",
)


# ---------------------------------------------------------------------- Hill
def _hill_func(x: Any, bottom: Any, top: Any, log_ec50: Any, hill: Any) -> jax.Array:
    z = hill * _LN10 * (jnp.log10(x) - log_ec50)
    return bottom + (top - bottom) * jax.nn.sigmoid(z)


def _hill_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pos = x > 0
    if pos.sum() < 4:
        return np.array([np.min(y), np.max(y), 0.0, 1.0])
    c, w, (a, off) = _sigmoid_grid(np.log10(x[pos]), y[pos], with_offset=True)
    return np.array([off, off + a, c, 1.0 / (w * _LN10)])


hill = Model(
    name="hill",
    param_names=("bottom", "top", "log_ec50", "hill"),
    func=_hill_func,
    guess_fn=_hill_guess,
    description="y = bottom + (top - bottom) / (1 + 10**(hill * (log_ec50 - log10(x))))",
    doc="""Four-parameter logistic (Hill) dose–response curve.

``y = bottom + (top - bottom) / (1 + 10**(hill * (log_ec50 - log10(x))))``

``x`` is the concentration (``x > 0``, *not* its logarithm), ``log_ec50`` is
``log10(EC50)`` in the units of ``x`` and ``hill`` the Hill slope.  With
``hill > 0`` the curve goes from ``bottom`` (low dose) to ``top`` (high dose),
whichever is larger; the guess always returns ``hill > 0`` (the parameter
sets ``(b, t, c, h)`` and ``(t, b, c, -h)`` describe the same curve).
Guess: logistic grid in ``log10(x)``.
""",
)


# ---------------------------------------------------------- Michaelis–Menten
def _mm_func(x: Any, vmax: Any, km: Any) -> jax.Array:
    return vmax * x / (km + x)


def _mm_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pos = x > 0
    if pos.sum() < 2:
        return np.array([np.max(y) if y.size else 1.0, 1.0])
    xs, ys = g.subsample(x[pos], y[pos])
    log_km = np.linspace(np.log(xs[0] / 30.0), np.log(xs[-1] * 30.0), 121)
    km = np.exp(log_km)
    _, sse = g.lstsq_batch([xs[None, :] / (km[:, None] + xs[None, :])], ys)
    k = float(np.exp(g.parabolic_min(log_km, sse)))
    vmax = g.linear_coefs((xs / (k + xs))[:, None], ys)[0]
    return np.array([vmax, k])


michaelis_menten = Model(
    name="michaelis_menten",
    param_names=("vmax", "km"),
    func=_mm_func,
    guess_fn=_mm_guess,
    lower=(-_INF, 0.0),
    description="v = vmax * x / (km + x)",
    doc="""Michaelis–Menten kinetics, ``v = vmax * x / (km + x)``.

``x`` is the substrate concentration (``x >= 0``), ``vmax`` the limiting rate
and ``km > 0`` the concentration at half of ``vmax``.  Guess: grid over
``log(km)`` with ``vmax`` solved linearly (no Lineweaver–Burk).
""",
)


# ------------------------------------------------------------------ Gompertz
def _gompertz_func(x: Any, asymptote: Any, displacement: Any, rate: Any) -> jax.Array:
    return asymptote * jnp.exp(-displacement * jnp.exp(-rate * x))


def _gompertz_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xs, ys = g.subsample(x, y)
    T = g.span(xs)
    # y = a * exp(-exp(-rate * (x - t_infl))), displacement = exp(rate * t_infl)
    t_infl = np.linspace(xs[0] - 0.5 * T, xs[-1] + 0.25 * T, 41)
    rates = np.logspace(-0.3, 2.5, 29) / T
    tt, rr = (a.ravel() for a in np.meshgrid(t_infl, rates, indexing="ij"))
    coef, sse = g.lstsq_batch([np.exp(-np.exp(-rr[:, None] * (xs[None, :] - tt[:, None])))], ys)
    b = int(np.argmin(sse))
    return np.array([coef[b, 0], np.exp(min(rr[b] * tt[b], 700.0)), rr[b]])


gompertz = Model(
    name="gompertz",
    param_names=("asymptote", "displacement", "rate"),
    func=_gompertz_func,
    guess_fn=_gompertz_guess,
    lower=(-_INF, 0.0, 0.0),
    description="y = asymptote * exp(-displacement * exp(-rate * x))",
    doc="""Gompertz growth curve.

``y = asymptote * exp(-displacement * exp(-rate * x))`` with
``displacement > 0`` and ``rate > 0``: the value at ``x = 0`` is
``asymptote * exp(-displacement)``, the inflection is at
``x = log(displacement) / rate``.  Guess: grid over (inflection, rate) with
``asymptote`` solved linearly.
""",
)


# ---------------------------------------------------------- logistic growth
def _logistic_growth_func(x: Any, capacity: Any, n0: Any, rate: Any) -> jax.Array:
    return capacity * n0 / (n0 + (capacity - n0) * jnp.exp(-rate * x))


def _logistic_growth_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    c, w, coef = _sigmoid_grid(x, y, with_offset=False, both_signs=True)
    k = float(coef[0])
    r = 1.0 / w
    # capacity * expit(r * (x - c)) equals the model with n0 = capacity * expit(-r * c)
    n0 = k * float(g.expit(np.array(-r * c)))
    if k < 0:  # the model needs capacity > 0; fall back to the data scale
        k = float(np.max(np.abs(y))) if y.size else 1.0
        n0 = 0.5 * k
    return np.array([k, max(n0, 1e-12 * k), r])


logistic_growth = Model(
    name="logistic_growth",
    param_names=("capacity", "n0", "rate"),
    func=_logistic_growth_func,
    guess_fn=_logistic_growth_guess,
    lower=(0.0, 0.0, -_INF),
    description="N = capacity * n0 / (n0 + (capacity - n0) * exp(-rate * x))",
    doc="""Verhulst logistic growth.

``N(x) = capacity * n0 / (n0 + (capacity - n0) * exp(-rate * x))``, the solution
of ``dN/dx = rate * N * (1 - N / capacity)`` with ``N(0) = n0``; ``capacity > 0``
is the carrying capacity and ``n0 > 0``.  Guess: logistic grid over
(midpoint, 1 / rate) with the capacity solved linearly.
""",
)
