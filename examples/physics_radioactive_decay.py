"""Radioactive decay: half-life from counting data with Poisson uncertainties.

A detector counts the decays of a short-lived isotope in one-minute bins, on top of a
constant background.  Counts are Poisson distributed, so the uncertainty of a bin is
the square root of its *expected* count.  The observed count is a poor stand-in for the
expected one where counts are low (it weights downward fluctuations too much and biases
the fit), so we fit once with ``sigma = sqrt(observed + 1)`` and then refit with
``sigma = sqrt(fitted curve)`` until the weights settle.

Run:  python examples/physics_radioactive_decay.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Truth.  Expected counts in the one-minute bin centred at t (minutes):
#     mu(t) = A * exp(-t / tau) + B,   tau = T_half / ln 2
# with A = 800 counts/bin, T_half = 8.0 min, B = 12 counts/bin (background);
# the observed counts are Poisson(mu(t)).
TRUE_AMPLITUDE = 800.0
TRUE_HALF_LIFE = 8.0
TRUE_BACKGROUND = 12.0
SEED = 20240601


def simulate(n_bins: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres (minutes) and Poisson counts of ``n_bins`` one-minute bins."""
    t = np.arange(n_bins) + 0.5
    tau = TRUE_HALF_LIFE / np.log(2.0)
    mu = TRUE_AMPLITUDE * np.exp(-t / tau) + TRUE_BACKGROUND
    counts = rng.poisson(mu).astype(np.float64)
    return t, counts


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the counting experiment, fit it, print a report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    t, counts = simulate(40 if args.small else 90, rng)

    model = curvax.models.get_model("exp_decay")  # amplitude * exp(-t / tau) + offset
    sigma = np.sqrt(counts + 1.0)  # first pass: weights from the observed counts
    for _ in range(4):
        result = curvax.fit_curve(model, t, counts, sigma=sigma, absolute_sigma=True)
        new_sigma = np.sqrt(np.maximum(np.asarray(model(t, *result.popt)), 1e-3))
        settled = np.allclose(new_sigma, sigma, rtol=1e-4)
        sigma = new_sigma  # Pearson weights: sqrt of the expected counts
        if settled:
            break
    print(result.summary())

    p = result.params
    ln2 = np.log(2.0)
    est = {
        "amplitude": p["amplitude"].value,
        "half_life": p["tau"].value * ln2,
        "background": p["offset"].value,
    }
    err = {
        "amplitude": p["amplitude"].stderr,
        "half_life": p["tau"].stderr * ln2,
        "background": p["offset"].stderr,
    }
    truth = {
        "amplitude": TRUE_AMPLITUDE,
        "half_life": TRUE_HALF_LIFE,
        "background": TRUE_BACKGROUND,
    }
    print()
    report(truth, est, err)
    # With sigma = sqrt(expected counts), chi2/dof should be close to 1.
    print(f"chi2 / dof = {result.redchi:.3f}  (about 1 for Poisson counts)")

    labels = ("Radioactive decay", "time (min)", "counts per minute")
    figure = save_figure(result, args.out, "radioactive_decay.png", labels)
    return {
        "truth": truth,
        "estimate": est,
        "stderr": err,
        "redchi": float(result.redchi),
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
