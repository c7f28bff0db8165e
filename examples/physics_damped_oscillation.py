"""Damped oscillation: frequency, damping rate and quality factor of a ringing oscillator.

A mass on a spring is released and its displacement is recorded by a position sensor.
Light (viscous) damping makes the oscillation decay exponentially.  The built-in
``damped_sine`` model finds its own starting point from a periodogram, so no ``p0`` is
needed.  The quality factor ``Q = pi * f / decay`` is a function of two correlated
parameters; its standard error is propagated with the full covariance matrix.

Run:  python examples/physics_damped_oscillation.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Truth.  Displacement (mm) at time t (s):
#     y(t) = A * exp(-decay * t) * sin(2 * pi * f * t + phase) + offset + noise
# with A = 20 mm, decay = 0.15 1/s, f = 1.3 Hz, phase = 0.6 rad, offset = 1.0 mm and
# Gaussian sensor noise of standard deviation 0.5 mm.
TRUE = {"amplitude": 20.0, "decay": 0.15, "frequency": 1.3, "phase": 0.6, "offset": 1.0}
NOISE = 0.5
SEED = 4


def simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples over 0–15 s of the damped oscillation with sensor noise."""
    t = np.linspace(0.0, 15.0, n)
    a, d, f, ph, off = (TRUE[k] for k in ("amplitude", "decay", "frequency", "phase", "offset"))
    y = a * np.exp(-d * t) * np.sin(2 * np.pi * f * t + ph) + off
    return t, y + NOISE * rng.normal(size=n)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the ring-down, fit a damped sine, print a report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    t, y = simulate(150 if args.small else 600, rng)

    model = curvax.models.get_model("damped_sine")
    result = curvax.fit_curve(model, t, y)  # p0 from model.guess(t, y)
    print(result.summary())

    p = result.params
    est = {name: p[name].value for name in TRUE}
    err = {name: p[name].stderr for name in TRUE}

    # Q = pi * f / decay; first-order error propagation with the covariance matrix.
    names = list(result.param_names)
    i_f, i_d = names.index("frequency"), names.index("decay")
    f, d = est["frequency"], est["decay"]
    grad = np.zeros(len(names))
    grad[i_f] = np.pi / d
    grad[i_d] = -np.pi * f / d**2
    est["Q"] = np.pi * f / d
    err["Q"] = float(np.sqrt(grad @ result.pcov @ grad))
    truth = {**TRUE, "Q": np.pi * TRUE["frequency"] / TRUE["decay"]}
    print()
    report(truth, est, err)

    labels = ("Damped oscillation", "time (s)", "displacement (mm)")
    figure = save_figure(result, args.out, "damped_oscillation.png", labels)
    return {
        "truth": truth,
        "estimate": est,
        "stderr": err,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
