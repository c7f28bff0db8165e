"""System identification: first-order-plus-dead-time model of a heater step response.

The heater of a small thermal chamber is switched from 0 to 500 W at t = 0 and the
chamber temperature is logged.  A first-order-plus-dead-time (FOPDT) model, the
workhorse of process control tuning, is written as a plain JAX function with named
parameters.  Smith's two-point method (times at which the response reaches 28.3% and
63.2% of its final change) supplies the starting point, passed as a dict; bounds keep
the time constant and the dead time non-negative.

Run:  python examples/engineering_step_response.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Input step: heater power 0 -> STEP = 500 W at t = 0.
STEP = 500.0
# Truth.  Temperature (°C) at time t (s), 0-600 s:
#     y(t) = y0 + gain * STEP * (1 - exp(-(t - delay) / tau))   for t > delay,  y0 before
# with gain = 0.080 K/W (a 40 K rise), tau = 120 s, delay = 15 s, y0 = 22.0 °C;
# Gaussian sensor noise of sd 0.3 K.
TRUE = {"gain": 0.080, "tau": 120.0, "delay": 15.0, "y0": 22.0}
NOISE = 0.3
SEED = 17


def fopdt(
    t: jax.Array, gain: jax.Array, tau: jax.Array, delay: jax.Array, y0: jax.Array
) -> jax.Array:
    """Step response of a first-order system with dead time (pure JAX)."""
    elapsed = jnp.maximum(t - delay, 0.0)  # zero before the dead time has passed
    return y0 + gain * STEP * (1.0 - jnp.exp(-elapsed / tau))


def simulate(dt: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Times (s, every ``dt`` seconds) and logged temperatures (°C)."""
    t = np.arange(0.0, 600.0 + 1e-9, dt)
    elapsed = np.maximum(t - TRUE["delay"], 0.0)
    y = TRUE["y0"] + TRUE["gain"] * STEP * (1.0 - np.exp(-elapsed / TRUE["tau"]))
    return t, y + NOISE * rng.normal(size=t.size)


def two_point_estimate(t: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Smith's method: tau = 1.5 (t63 - t28), delay = t63 - tau, from the raw data."""
    y_start, y_end = float(np.mean(y[:3])), float(np.mean(y[-10:]))
    fraction = (y - y_start) / (y_end - y_start)
    t28 = float(t[np.argmax(fraction >= 0.283)])  # first crossing of 28.3%
    t63 = float(t[np.argmax(fraction >= 0.632)])  # first crossing of 63.2%
    tau = 1.5 * (t63 - t28)
    return {
        "gain": (y_end - y_start) / STEP,
        "tau": tau,
        "delay": max(t63 - tau, 0.0),
        "y0": y_start,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the step test, identify the FOPDT model, report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    t, y = simulate(5.0 if args.small else 2.0, rng)

    start = two_point_estimate(t, y)
    print("two-point estimates:", ", ".join(f"{k} = {v:.4g}" for k, v in start.items()))
    result = curvax.fit_curve(
        fopdt, t, y, p0=start, bounds={"tau": (0.0, np.inf), "delay": (0.0, np.inf)}
    )
    print(result.summary())

    p = result.params
    est = {name: p[name].value for name in TRUE}
    err = {name: p[name].stderr for name in TRUE}
    print()
    report(TRUE, est, err)

    labels = ("Heater step response (FOPDT)", "time (s)", "temperature (°C)")
    figure = save_figure(result, args.out, "step_response.png", labels)
    return {
        "truth": dict(TRUE),
        "estimate": est,
        "stderr": err,
        "two_point": start,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
