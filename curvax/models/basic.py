"""Baselines, polynomials, exponentials, power law, Arrhenius and damped sine."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _guess as g
from .base import Model

__all__ = [
    "GAS_CONSTANT",
    "arrhenius",
    "constant",
    "damped_sine",
    "exp_decay",
    "exp_decay_2",
    "exp_growth",
    "linear",
    "polynomial",
    "power_law",
]

#: Molar gas constant R in J/(mol K) (exact since the 2019 SI: N_A * k_B).
GAS_CONSTANT = 8.31446261815324

_INF = np.inf


# ----------------------------------------------------------------- constant
def _constant_func(x: Any, offset: Any) -> jax.Array:
    return jnp.zeros_like(x) + offset


def _constant_jac(x: Any, offset: Any) -> jax.Array:
    return jnp.ones_like(x)[:, None] + 0 * offset


def _constant_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([np.mean(y)])


constant = Model(
    name="constant",
    param_names=("offset",),
    func=_constant_func,
    guess_fn=_constant_guess,
    jac=_constant_jac,
    description="y = offset",
    role="baseline",
    doc="""Constant baseline, ``y = offset``. Add it to a peak model for a flat baseline.""",
)


# ------------------------------------------------------------------- linear
def _linear_func(x: Any, slope: Any, intercept: Any) -> jax.Array:
    return slope * x + intercept


def _linear_jac(x: Any, slope: Any, intercept: Any) -> jax.Array:
    one = jnp.ones_like(x) + 0 * (slope + intercept)
    return jnp.stack([x * one, one], axis=1)


def _linear_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.size < 2 or np.ptp(x) == 0:
        return np.array([0.0, np.mean(y) if y.size else 0.0])
    return np.polyfit(x, y, 1)


linear = Model(
    name="linear",
    param_names=("slope", "intercept"),
    func=_linear_func,
    guess_fn=_linear_guess,
    jac=_linear_jac,
    description="y = slope * x + intercept",
    role="baseline",
    doc="""Straight line, ``y = slope * x + intercept``; the guess is the least-squares line.""",
)


# --------------------------------------------------------------- polynomial
def polynomial(degree: int = 2) -> Model:
    """Polynomial of degree ``n``.

    ``y = c0 + c1 * x + c2 * x**2 + ... + cn * x**n`` (evaluated by Horner's rule).

    Parameters
    ----------
    degree : int
        Degree ``n >= 0``; the model has ``n + 1`` parameters ``c0 .. cn``.

    Returns
    -------
    Model
        Model named ``"polynomial(n)"`` with an analytic Jacobian (the
        Vandermonde matrix) and the exact least-squares solution as its guess.
    """
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or degree < 0:
        raise ValueError(f"polynomial degree must be a non-negative integer, got {degree!r}")
    degree = int(degree)
    names = tuple(f"c{k}" for k in range(degree + 1))

    def func(x: Any, *c: Any) -> jax.Array:
        out = jnp.zeros_like(x) + c[degree]
        for k in range(degree - 1, -1, -1):
            out = out * x + c[k]
        return out

    def jac(x: Any, *c: Any) -> jax.Array:
        one = jnp.ones_like(x) + 0 * sum(c)
        cols = [one]
        for _ in range(degree):
            cols.append(cols[-1] * x)
        return jnp.stack(cols, axis=1)

    def guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if np.unique(x).size <= degree:
            p = np.zeros(degree + 1)
            p[0] = np.mean(y) if y.size else 0.0
            return p
        return np.polynomial.polynomial.polyfit(x, y, degree)

    return Model(
        name=f"polynomial({degree})",
        param_names=names,
        func=func,
        guess_fn=guess,
        jac=jac,
        description="y = " + " + ".join(f"c{k}*x^{k}" for k in range(degree + 1)),
        role="baseline",
    )


# --------------------------------------------------------- exponential decay
def _exp_decay_func(x: Any, amplitude: Any, tau: Any, offset: Any) -> jax.Array:
    return amplitude * jnp.exp(-x / tau) + offset


def _exp_decay_jac(x: Any, amplitude: Any, tau: Any, offset: Any) -> jax.Array:
    e = jnp.exp(-x / tau)
    return jnp.stack([e, amplitude * e * x / (tau * tau), jnp.ones_like(e) + 0 * offset], axis=1)


def _tau_grid(x: np.ndarray, n: int) -> np.ndarray:
    return g.span(x) * np.logspace(-2.5, 1.5, n)


def _exp_decay_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xs, ys = g.subsample(x, y)
    x0 = xs[0]
    t = xs - x0
    log_tau = np.log(_tau_grid(xs, 121))
    e = np.exp(-t[None, :] / np.exp(log_tau)[:, None])
    _, sse = g.lstsq_batch([e, np.ones_like(t)], ys)
    tau = float(np.exp(g.parabolic_min(log_tau, sse)))
    amp, off = g.linear_coefs(np.stack([np.exp(-t / tau), np.ones_like(t)], axis=1), ys)
    return np.array([amp * np.exp(x0 / tau), tau, off])


exp_decay = Model(
    name="exp_decay",
    param_names=("amplitude", "tau", "offset"),
    func=_exp_decay_func,
    guess_fn=_exp_decay_guess,
    lower=(-_INF, 0.0, -_INF),
    jac=_exp_decay_jac,
    description="y = amplitude * exp(-x / tau) + offset",
    doc="""Single exponential decay with offset.

``y = amplitude * exp(-x / tau) + offset`` with time constant ``tau > 0``
(the rate is ``1 / tau``); ``amplitude`` is the value above ``offset`` at
``x = 0``.  A negative amplitude gives a rise to a plateau.  Guess: grid over
``log(tau)`` with amplitude and offset solved linearly (variable projection).
""",
)


def _exp_decay_2_func(
    x: Any, amplitude_1: Any, tau_1: Any, amplitude_2: Any, tau_2: Any, offset: Any
) -> jax.Array:
    return amplitude_1 * jnp.exp(-x / tau_1) + amplitude_2 * jnp.exp(-x / tau_2) + offset


def _exp_decay_2_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xs, ys = g.subsample(x, y)
    x0 = xs[0]
    t = xs - x0
    taus = _tau_grid(xs, 41)
    e = np.exp(-t[None, :] / taus[:, None])
    i, j = np.triu_indices(taus.size, k=3)  # tau_2 / tau_1 >= 2 on this grid
    coef, sse = g.lstsq_batch([e[i], e[j], np.ones_like(t)], ys)
    b = int(np.argmin(sse))
    t1, t2 = taus[i[b]], taus[j[b]]
    a1, a2, off = coef[b]
    return np.array([a1 * np.exp(x0 / t1), t1, a2 * np.exp(x0 / t2), t2, off])


exp_decay_2 = Model(
    name="exp_decay_2",
    param_names=("amplitude_1", "tau_1", "amplitude_2", "tau_2", "offset"),
    func=_exp_decay_2_func,
    guess_fn=_exp_decay_2_guess,
    lower=(-_INF, 0.0, -_INF, 0.0, -_INF),
    description="y = amplitude_1 * exp(-x / tau_1) + amplitude_2 * exp(-x / tau_2) + offset",
    doc="""Bi-exponential decay with offset.

``y = amplitude_1 * exp(-x / tau_1) + amplitude_2 * exp(-x / tau_2) + offset``
with ``tau_1, tau_2 > 0``.  The guess returns ``tau_1 < tau_2`` (fast component
first); the fit itself does not enforce an order.  Guess: grid over pairs of
time constants (ratio >= 2) with the three linear parameters solved exactly.
""",
)


# -------------------------------------------------------- exponential growth
def _exp_growth_func(x: Any, amplitude: Any, rate: Any) -> jax.Array:
    return amplitude * jnp.exp(rate * x)


def _exp_growth_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xs, ys = g.subsample(x, y)
    x0 = xs[0]
    t = xs - x0
    mag = np.logspace(-1.5, 1.5, 61) / g.span(xs)
    rates = np.concatenate([-mag[::-1], [0.0], mag])
    _, sse = g.lstsq_batch([np.exp(rates[:, None] * t[None, :])], ys)
    b = int(np.argmin(sse))
    rate = rates[b]
    if 0 < b < rates.size - 1 and np.sign(rates[b - 1]) == np.sign(rates[b + 1]) != 0:
        logs = np.log(np.abs(rates[b - 1 : b + 2]))
        rate = np.sign(rate) * np.exp(g.parabolic_min(logs, sse[b - 1 : b + 2]))
    amp = g.linear_coefs(np.exp(rate * t)[:, None], ys)[0]
    return np.array([amp * np.exp(-rate * x0), rate])


exp_growth = Model(
    name="exp_growth",
    param_names=("amplitude", "rate"),
    func=_exp_growth_func,
    guess_fn=_exp_growth_guess,
    description="y = amplitude * exp(rate * x)",
    doc="""Exponential growth, ``y = amplitude * exp(rate * x)``.

``amplitude`` is the value at ``x = 0``; ``rate`` is unbounded (negative
values describe a decay to zero).  Add :data:`constant` for a baseline.
Guess: grid over ``rate`` (both signs) with ``amplitude`` solved linearly.
""",
)


# ----------------------------------------------------------------- power law
def _power_law_func(x: Any, amplitude: Any, exponent: Any) -> jax.Array:
    return amplitude * jnp.power(x, exponent)


def _power_law_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pos = x > 0
    if pos.sum() < 2:
        return np.array([np.mean(y) if y.size else 1.0, 1.0])
    xs, ys = g.subsample(x[pos], y[pos])
    lx = np.log(xs)
    m = float(np.mean(lx))
    expo = np.linspace(-8.0, 8.0, 321)
    _, sse = g.lstsq_batch([np.exp(expo[:, None] * (lx - m)[None, :])], ys)
    b = g.parabolic_min(expo, sse)
    amp = g.linear_coefs(np.exp(b * (lx - m))[:, None], ys)[0]
    return np.array([amp * np.exp(-b * m), b])


power_law = Model(
    name="power_law",
    param_names=("amplitude", "exponent"),
    func=_power_law_func,
    guess_fn=_power_law_guess,
    description="y = amplitude * x ** exponent  (x > 0)",
    doc="""Power law, ``y = amplitude * x ** exponent``, defined for ``x > 0``.

Guess: grid over ``exponent`` in [-8, 8] with ``amplitude`` solved linearly
(works with noisy or non-positive ``y``, unlike a log-log fit).
""",
)


# ----------------------------------------------------------------- Arrhenius
def _arrhenius_func(x: Any, A: Any, Ea: Any) -> jax.Array:
    return A * jnp.exp(-Ea / (GAS_CONSTANT * x))


def _arrhenius_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pos = x > 0
    if pos.sum() < 2:
        return np.array([np.mean(y) if y.size else 1.0, 1e4])
    xs, ys = g.subsample(x[pos], y[pos])
    inv = 1.0 / (GAS_CONSTANT * xs)
    m = float(np.mean(inv))
    mag = np.logspace(1.0, 7.0, 181)
    eas = np.concatenate([-mag[::-1], [0.0], mag])
    _, sse = g.lstsq_batch([np.exp(-eas[:, None] * (inv - m)[None, :])], ys)
    b = int(np.argmin(sse))
    ea = eas[b]
    if 0 < b < eas.size - 1 and np.sign(eas[b - 1]) == np.sign(eas[b + 1]) != 0:
        logs = np.log(np.abs(eas[b - 1 : b + 2]))
        ea = np.sign(ea) * np.exp(g.parabolic_min(logs, sse[b - 1 : b + 2]))
    c = g.linear_coefs(np.exp(-ea * (inv - m))[:, None], ys)[0]
    return np.array([c * np.exp(ea * m), ea])


arrhenius = Model(
    name="arrhenius",
    param_names=("A", "Ea"),
    func=_arrhenius_func,
    guess_fn=_arrhenius_guess,
    description="k = A * exp(-Ea / (R * T)),  R = 8.31446261815324 J/(mol K)",
    doc="""Arrhenius law, ``k = A * exp(-Ea / (R * T))``.

``x`` is the absolute temperature ``T`` in kelvin, ``Ea`` the activation
energy in J/mol and ``R = 8.31446261815324`` J/(mol K) (:data:`GAS_CONSTANT`);
``A`` has the units of ``k``.  ``A`` and ``Ea`` are strongly correlated over a
narrow temperature range, so expect large but correct standard errors.
Guess: grid over ``Ea`` with ``A`` solved linearly.
""",
)


# --------------------------------------------------------------- damped sine
def _damped_sine_func(
    x: Any, amplitude: Any, decay: Any, frequency: Any, phase: Any, offset: Any
) -> jax.Array:
    return amplitude * jnp.exp(-decay * x) * jnp.sin(2 * jnp.pi * frequency * x + phase) + offset


def _damped_sine_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xs, ys = g.subsample(x, y)
    n = xs.size
    x0 = xs[0]
    t = xs - x0
    T = g.span(xs)
    if n < 5:
        return np.array([np.ptp(ys) / 2, 0.0, 1.0 / T, 0.0, np.mean(ys)])
    r = ys - np.mean(ys)
    # periodogram (least-squares projections onto sin/cos) over a fine frequency grid
    fmax = 0.5 * (n - 1) / T
    freqs = np.arange(0.3 / T, fmax, 0.1 / T)
    arg = 2 * np.pi * freqs[:, None] * t[None, :]
    s, c = np.sin(arg), np.cos(arg)
    power = (s @ r) ** 2 / np.sum(s * s, axis=1) + (c @ r) ** 2 / np.sum(c * c, axis=1)
    is_max = np.r_[True, power[1:-1] > np.maximum(power[:-2], power[2:]), True]
    cand = np.nonzero(is_max)[0]
    cand = cand[np.argsort(power[cand])[::-1][:3]]
    # refine frequency jointly with the decay, solving amplitude/phase/offset linearly
    f_grid = (freqs[cand][:, None] + np.linspace(-0.15, 0.15, 7)[None, :] / T).ravel()
    f_grid = f_grid[f_grid > 0]
    d_grid = np.linspace(-1.0, 8.0, 19) / T
    ff, dd = (a.ravel() for a in np.meshgrid(f_grid, d_grid, indexing="ij"))
    env = np.exp(-dd[:, None] * t[None, :])
    ph = 2 * np.pi * ff[:, None] * t[None, :]
    coef, sse = g.lstsq_batch([env * np.sin(ph), env * np.cos(ph), np.ones_like(t)], ys)
    b = int(np.argmin(sse))
    a_s, a_c, off = coef[b]
    f, d = ff[b], dd[b]
    amp = np.hypot(a_s, a_c)
    phase = np.arctan2(a_c, a_s) - 2 * np.pi * f * x0
    phase = (phase + np.pi) % (2 * np.pi) - np.pi
    return np.array([amp * np.exp(d * x0), d, f, phase, off])


damped_sine = Model(
    name="damped_sine",
    param_names=("amplitude", "decay", "frequency", "phase", "offset"),
    func=_damped_sine_func,
    guess_fn=_damped_sine_guess,
    lower=(-_INF, -_INF, 0.0, -_INF, -_INF),
    description="y = amplitude * exp(-decay * x) * sin(2*pi*frequency*x + phase) + offset",
    doc="""Exponentially damped sine with offset.

``y = amplitude * exp(-decay * x) * sin(2 * pi * frequency * x + phase) + offset``
with ``frequency >= 0`` in cycles per unit of ``x`` and ``phase`` in radians
(unbounded; equivalent modulo ``2*pi``).  Guess: least-squares periodogram for
the frequency, then a (frequency, decay) grid with amplitude, phase and offset
solved linearly; the phase is returned in ``[-pi, pi)``.
""",
)
