"""Stress–strain: Ramberg–Osgood law of an aluminium alloy from a tensile test.

In a tensile test the load cell gives the stress and an extensometer the strain.  The
Ramberg–Osgood law describes the smooth elastic-plastic transition of metals without a
sharp yield point:

    strain = stress / E + 0.002 * (stress / sigma_y) ** n

where E is Young's modulus, sigma_y the 0.2% proof stress and n the hardening exponent.
It gives strain as a function of stress, so stress is the independent variable here.
The starting point comes from the textbook procedure: E from a straight line through
the low-stress (elastic) points, sigma_y where the plastic strain reaches 0.2%.

Run:  python examples/engineering_stress_strain.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Truth.  Strain (dimensionless) at stress s (MPa), s = 5 ... 320 MPa:
#     strain = s / (1000 * E) + 0.002 * (s / sigma_y) ** n + noise
# with E = 69.0 GPa, sigma_y = 275 MPa, n = 20 (typical of 6061-T6 aluminium);
# Gaussian extensometer noise of sd 2e-5 (20 microstrain).
TRUE = {"E": 69.0, "sigma_y": 275.0, "n": 20.0}
NOISE = 2.0e-5
SEED = 6


def ramberg_osgood(stress: jax.Array, E: jax.Array, sigma_y: jax.Array, n: jax.Array) -> jax.Array:
    """Strain at ``stress`` (MPa) for modulus ``E`` (GPa), proof stress ``sigma_y`` (MPa)."""
    return stress / (1000.0 * E) + 0.002 * (stress / sigma_y) ** n


def simulate(step: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stresses (MPa, every ``step`` MPa) and measured strains."""
    s = np.arange(5.0, 320.0 + 1e-9, step)
    strain = s / (1000.0 * TRUE["E"]) + 0.002 * (s / TRUE["sigma_y"]) ** TRUE["n"]
    return s, strain + NOISE * rng.normal(size=s.size)


def offset_method(stress: np.ndarray, strain: np.ndarray) -> dict[str, float]:
    """E from the points below 120 MPa, sigma_y where the plastic strain reaches 0.2%."""
    elastic = stress < 120.0
    slope = np.polyfit(stress[elastic], strain[elastic], 1)[0]  # 1 / (1000 E)
    modulus = 1.0 / (1000.0 * slope)
    plastic = strain - stress * slope
    sigma_y = float(stress[np.argmax(plastic >= 0.002)])
    return {"E": modulus, "sigma_y": sigma_y, "n": 10.0}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the tensile test, fit Ramberg–Osgood, report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    stress, strain = simulate(10.0 if args.small else 5.0, rng)

    start = offset_method(stress, strain)
    print("offset-method estimates:", ", ".join(f"{k} = {v:.4g}" for k, v in start.items()))
    result = curvax.fit_curve(
        ramberg_osgood,
        stress,
        strain,
        p0=start,
        bounds={"E": (0.0, np.inf), "sigma_y": (0.0, np.inf), "n": (1.0, 100.0)},
    )
    print(result.summary())

    p = result.params
    est = {name: p[name].value for name in TRUE}
    err = {name: p[name].stderr for name in TRUE}
    print()
    report(TRUE, est, err)

    labels = ("Tensile test, Ramberg–Osgood fit", "stress (MPa)", "strain")
    figure = save_figure(result, args.out, "stress_strain.png", labels)
    return {
        "truth": dict(TRUE),
        "estimate": est,
        "stderr": err,
        "offset_method": start,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
