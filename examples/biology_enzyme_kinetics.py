"""Enzyme kinetics: Michaelis–Menten Vmax and Km by nonlinear least squares.

Initial rates of an enzyme reaction are measured in duplicate at eight substrate
concentrations.  The built-in ``michaelis_menten`` model ``v = Vmax S / (Km + S)`` is
fitted to the rates directly.  For contrast, the script also prints the textbook
Lineweaver–Burk estimate (a straight line through 1/v versus 1/S): taking reciprocals
magnifies the noise of the slowest rates, so that estimate is visibly worse and comes
without a trustworthy error.

Run:  python examples/biology_enzyme_kinetics.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Truth.  Initial rate (µM/s) at substrate concentration S (µM):
#     v = Vmax * S / (Km + S) + noise,   Vmax = 2.0 µM/s, Km = 15 µM,
# S = 2, 4, 8, 15, 30, 60, 120, 240 µM; Gaussian noise of sd 0.04 µM/s.
TRUE = {"vmax": 2.0, "km": 15.0}
SUBSTRATE = np.array([2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 240.0])
NOISE = 0.04
SEED = 12


def simulate(replicates: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Substrate concentrations (each ``replicates`` times) and measured rates."""
    s = np.repeat(SUBSTRATE, replicates)
    v = TRUE["vmax"] * s / (TRUE["km"] + s)
    return s, v + NOISE * rng.normal(size=s.size)


def lineweaver_burk(s: np.ndarray, v: np.ndarray) -> dict[str, float]:
    """Vmax and Km from a straight line 1/v = (Km/Vmax) (1/S) + 1/Vmax (for contrast)."""
    slope, intercept = np.polyfit(1.0 / s, 1.0 / v, 1)
    return {"vmax": 1.0 / intercept, "km": slope / intercept}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the rate measurements, fit Michaelis–Menten, report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    s, v = simulate(2 if args.small else 4, rng)

    model = curvax.models.get_model("michaelis_menten")  # vmax * S / (km + S)
    result = curvax.fit_curve(model, s, v)  # p0 from model.guess(s, v)
    print(result.summary())

    p = result.params
    est = {name: p[name].value for name in TRUE}
    err = {name: p[name].stderr for name in TRUE}
    print()
    report(TRUE, est, err)
    for name, (lo, hi) in result.conf_int(0.95).as_dict().items():
        print(f"95% interval of {name}: [{lo:.4g}, {hi:.4g}]")
    lb = lineweaver_burk(s, v)
    print(f"Lineweaver–Burk (for contrast): Vmax = {lb['vmax']:.4g}, Km = {lb['km']:.4g}")

    labels = ("Michaelis–Menten kinetics", "substrate (µM)", "initial rate (µM/s)")
    figure = save_figure(result, args.out, "enzyme_kinetics.png", labels)
    return {
        "truth": dict(TRUE),
        "estimate": est,
        "stderr": err,
        "lineweaver_burk": lb,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
