"""Spectral peaks: three Gaussian lines, two of them overlapping, on a sloping baseline.

A photoluminescence spectrum has three emission lines on a linear background.  The
built-in ``multi_peak`` model sums ``n`` peaks of one shape and a baseline, and its
``guess`` finds the peaks one by one, so the fit needs no hand-made starting point.
The guess labels peaks in the order it found them (largest first), so the fitted
peaks are sorted by centre before they are compared with the truth.  The integrated
intensity of a line, ``area = amplitude * sigma * sqrt(2 pi)``, is derived with its
propagated standard error.

Run:  python examples/physics_spectral_peaks.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Truth.  Intensity (counts/s) at wavelength x (nm), 500–700 nm:
#     y(x) = sum_k A_k * exp(-(x - c_k)**2 / (2 * s_k**2)) + slope * x + intercept + noise
# line 1: A = 50, c = 560 nm, s = 8 nm
# line 2: A = 30, c = 585 nm, s = 10 nm   (overlaps line 1)
# line 3: A = 20, c = 640 nm, s = 6 nm
# baseline: slope = -0.02 counts/s/nm, intercept = 20 counts/s; noise sd 1.0 counts/s.
TRUE_PEAKS = [(50.0, 560.0, 8.0), (30.0, 585.0, 10.0), (20.0, 640.0, 6.0)]
TRUE_SLOPE, TRUE_INTERCEPT = -0.02, 20.0
NOISE = 1.0
SEED = 11


def simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` spectral samples between 500 and 700 nm with Gaussian noise."""
    x = np.linspace(500.0, 700.0, n)
    y = TRUE_SLOPE * x + TRUE_INTERCEPT
    for amp, centre, width in TRUE_PEAKS:
        y = y + amp * np.exp(-((x - centre) ** 2) / (2 * width**2))
    return x, y + NOISE * rng.normal(size=n)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the spectrum, fit three peaks and a baseline, report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    x, y = simulate(200 if args.small else 800, rng)

    # amplitude_k, center_k, sigma_k for k = 1, 2, 3, then slope and intercept
    model = curvax.models.get_model("multi_peak", shape="gaussian", n=3, baseline="linear")
    print("parameters:", ", ".join(model.param_names))
    result = curvax.fit_curve(model, x, y)  # p0 from model.guess(x, y)
    print(result.summary())

    p, cov, names = result.params, result.pcov, list(result.param_names)
    order = sorted(range(1, 4), key=lambda k: p[f"center_{k}"].value)  # fitted label by centre
    truth: dict[str, float] = {"slope": TRUE_SLOPE, "intercept": TRUE_INTERCEPT}
    est = {"slope": p["slope"].value, "intercept": p["intercept"].value}
    err = {"slope": p["slope"].stderr, "intercept": p["intercept"].stderr}
    root2pi = np.sqrt(2 * np.pi)
    for line, (k, (amp, centre, width)) in enumerate(zip(order, TRUE_PEAKS), start=1):
        for short, name, true in (
            ("A", "amplitude", amp),
            ("c", "center", centre),
            ("s", "sigma", width),
        ):
            est[f"{short}{line}"] = p[f"{name}_{k}"].value
            err[f"{short}{line}"] = p[f"{name}_{k}"].stderr
            truth[f"{short}{line}"] = true
        # area = A * s * sqrt(2 pi): gradient (s, A) * sqrt(2 pi) in (A, s)
        i_a, i_s = names.index(f"amplitude_{k}"), names.index(f"sigma_{k}")
        a_hat, s_hat = est[f"A{line}"], est[f"s{line}"]
        grad = np.array([s_hat, a_hat]) * root2pi
        sub = cov[np.ix_([i_a, i_s], [i_a, i_s])]
        est[f"area{line}"] = a_hat * s_hat * root2pi
        err[f"area{line}"] = float(np.sqrt(grad @ sub @ grad))
        truth[f"area{line}"] = amp * width * root2pi
    print()
    report(truth, est, err)

    labels = ("Photoluminescence spectrum", "wavelength (nm)", "intensity (counts/s)")
    figure = save_figure(result, args.out, "spectral_peaks.png", labels)
    return {
        "truth": truth,
        "estimate": est,
        "stderr": err,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
