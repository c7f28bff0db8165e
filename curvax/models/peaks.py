"""Peak shapes (Gaussian, Lorentzian, pseudo-Voigt) and multi-peak sums.

The single-peak models have no baseline (they tend to zero away from the
peak); add :data:`~curvax.models.constant` or :data:`~curvax.models.linear`
for one, or use :func:`multi_peak`, which includes a constant baseline by
default.  ``amplitude`` is always the peak *height* (value at ``center``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _guess as g
from .base import Model, compose
from .basic import constant, linear

__all__ = ["gaussian", "lorentzian", "multi_peak", "pseudo_voigt"]

_INF = np.inf
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548...
_FOUR_LN2 = 4.0 * np.log(2.0)


def _height_from_shape(shape: np.ndarray, y: np.ndarray, fallback: float) -> float:
    den = float(np.dot(shape, shape))
    return float(np.dot(shape, y) / den) if den > 0 else fallback


# ------------------------------------------------------------------ Gaussian
def _gaussian_func(x: Any, amplitude: Any, center: Any, sigma: Any) -> jax.Array:
    d = (x - center) / sigma
    return amplitude * jnp.exp(-0.5 * d * d)


def _gaussian_jac(x: Any, amplitude: Any, center: Any, sigma: Any) -> jax.Array:
    d = (x - center) / sigma
    e = jnp.exp(-0.5 * d * d)
    ae = amplitude * e
    return jnp.stack([e, ae * d / sigma, ae * d * d / sigma], axis=1)


def _gaussian_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, c, fwhm = g.peak_estimate(x, y)
    s = fwhm / _FWHM_PER_SIGMA
    return np.array([_height_from_shape(np.exp(-0.5 * ((x - c) / s) ** 2), y, h), c, s])


gaussian = Model(
    name="gaussian",
    param_names=("amplitude", "center", "sigma"),
    func=_gaussian_func,
    guess_fn=_gaussian_guess,
    lower=(-_INF, -_INF, 0.0),
    jac=_gaussian_jac,
    description="y = amplitude * exp(-(x - center)**2 / (2 * sigma**2))",
    role="peak",
    doc="""Gaussian peak without baseline.

``y = amplitude * exp(-(x - center)**2 / (2 * sigma**2))`` with ``sigma > 0``
(FWHM = 2.3548 * sigma).  ``amplitude`` is the peak height (negative for a dip).
For a baseline use ``gaussian + constant`` (parameters ``amplitude, center,
sigma, offset``).  Guess: largest |y|, half-maximum crossings, linear height.
""",
)


# ---------------------------------------------------------------- Lorentzian
def _lorentzian_func(x: Any, amplitude: Any, center: Any, gamma: Any) -> jax.Array:
    u = (x - center) / gamma
    return amplitude / (1.0 + u * u)


def _lorentzian_jac(x: Any, amplitude: Any, center: Any, gamma: Any) -> jax.Array:
    u = (x - center) / gamma
    lor = 1.0 / (1.0 + u * u)
    k = 2.0 * amplitude * lor * lor * u / gamma
    return jnp.stack([lor, k, k * u], axis=1)


def _lorentzian_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, c, fwhm = g.peak_estimate(x, y)
    gam = fwhm / 2.0
    return np.array([_height_from_shape(1.0 / (1.0 + ((x - c) / gam) ** 2), y, h), c, gam])


lorentzian = Model(
    name="lorentzian",
    param_names=("amplitude", "center", "gamma"),
    func=_lorentzian_func,
    guess_fn=_lorentzian_guess,
    lower=(-_INF, -_INF, 0.0),
    jac=_lorentzian_jac,
    description="y = amplitude / (1 + ((x - center) / gamma)**2)",
    role="peak",
    doc="""Lorentzian (Cauchy) peak without baseline.

``y = amplitude / (1 + ((x - center) / gamma)**2)`` with half width at half
maximum ``gamma > 0`` (FWHM = 2 * gamma); ``amplitude`` is the peak height.
""",
)


# -------------------------------------------------------------- pseudo-Voigt
def _pseudo_voigt_func(x: Any, amplitude: Any, center: Any, fwhm: Any, eta: Any) -> jax.Array:
    u = (x - center) / fwhm
    u2 = u * u
    return amplitude * (eta / (1.0 + 4.0 * u2) + (1.0 - eta) * jnp.exp(-_FOUR_LN2 * u2))


def _pseudo_voigt_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, c, fwhm = g.peak_estimate(x, y)
    eta = 0.5
    u2 = ((x - c) / fwhm) ** 2
    shape = eta / (1.0 + 4.0 * u2) + (1.0 - eta) * np.exp(-_FOUR_LN2 * u2)
    return np.array([_height_from_shape(shape, y, h), c, fwhm, eta])


pseudo_voigt = Model(
    name="pseudo_voigt",
    param_names=("amplitude", "center", "fwhm", "eta"),
    func=_pseudo_voigt_func,
    guess_fn=_pseudo_voigt_guess,
    lower=(-_INF, -_INF, 0.0, 0.0),
    upper=(_INF, _INF, _INF, 1.0),
    description="y = amplitude * (eta * L(x) + (1 - eta) * G(x)), common FWHM",
    role="peak",
    doc="""Pseudo-Voigt peak without baseline.

``y = amplitude * (eta * L + (1 - eta) * G)`` with
``L = 1 / (1 + 4 * ((x - center) / fwhm)**2)`` and
``G = exp(-4 * ln(2) * ((x - center) / fwhm)**2)``: a Lorentzian and a
Gaussian of the same full width at half maximum ``fwhm > 0``, mixed with
``0 <= eta <= 1`` (``eta = 1``: Lorentzian).  ``amplitude`` is the peak height.
Guess: as for the Gaussian, with ``eta = 0.5``.
""",
)

_SHAPES = {"gaussian": gaussian, "lorentzian": lorentzian, "pseudo_voigt": pseudo_voigt}
_BASELINES = {"constant": constant, "linear": linear, None: None, "none": None}


def multi_peak(shape: str = "gaussian", n: int = 2, baseline: str | None = "constant") -> Model:
    """Sum of ``n`` peaks of one shape, plus an optional baseline.

    Parameters
    ----------
    shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Peak shape (see :data:`gaussian`, :data:`lorentzian`, :data:`pseudo_voigt`).
    n : int
        Number of peaks, ``n >= 1``.
    baseline : {"constant", "linear", None}
        Baseline added to the peaks: ``offset``, ``slope * x + intercept`` or none.

    Returns
    -------
    Model
        ``y = sum_k peak(x; amplitude_k, center_k, width_k) + baseline(x)``.
        Peak parameters carry the suffix ``_k`` (``amplitude_1, center_1,
        sigma_1, amplitude_2, ...``) when ``n > 1``; baseline parameters keep
        their names (``offset`` or ``slope, intercept``).  The guess estimates
        the baseline robustly, then takes the largest remaining peak, subtracts
        it, takes the next largest, and so on, then refines each peak from the
        data minus the others.
    """
    if shape not in _SHAPES:
        raise ValueError(f"unknown peak shape {shape!r}; known shapes: {', '.join(_SHAPES)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"number of peaks must be a positive integer, got {n!r}")
    if baseline not in _BASELINES:
        raise ValueError(f"baseline must be 'constant', 'linear' or None, got {baseline!r}")
    parts = [_SHAPES[shape]] * int(n)
    base = _BASELINES[baseline]
    if base is not None:
        parts.append(base)
    if len(parts) == 1:
        return parts[0]
    return compose(*parts, name=f"multi_peak({shape}, {int(n)})")
