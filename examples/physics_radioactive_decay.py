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

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import curvax

# Truth.  Expected counts in the one-minute bin centred at t (minutes):
#     mu(t) = A * exp(-t / tau) + B,   tau = T_half / ln 2
# with A = 800 counts/bin, T_half = 8.0 min, B = 12 counts/bin (background);
# the observed counts are Poisson(mu(t)).
TRUE_AMPLITUDE = 800.0
TRUE_HALF_LIFE = 8.0
TRUE_BACKGROUND = 12.0
SEED = 20240601


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options shared by all examples: ``--small`` and ``--out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer points (fast; for tests)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the figure")
    return parser.parse_args(argv)


def simulate(n_bins: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres (minutes) and Poisson counts of ``n_bins`` one-minute bins."""
    t = np.arange(n_bins) + 0.5
    tau = TRUE_HALF_LIFE / np.log(2.0)
    mu = TRUE_AMPLITUDE * np.exp(-t / tau) + TRUE_BACKGROUND
    counts = rng.poisson(mu).astype(np.float64)
    return t, counts


def save_figure(
    result: curvax.FitResult, out: Path | None, name: str, labels: tuple[str, str, str]
) -> Path | None:
    """Save ``result.plot()`` with ``labels = (title, x label, y label)`` as ``out/name``.

    ``out`` defaults to a new temporary directory; without matplotlib nothing is drawn.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return None
    out = Path(tempfile.mkdtemp(prefix="curvax-example-")) if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    title, xlabel, ylabel = labels
    fig = result.plot(title=title)  # data, fit, 95% band and a residual panel
    fig.axes[0].set_ylabel(ylabel)
    fig.axes[-1].set_xlabel(xlabel)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure saved to {path}")
    return path


def report(truth: dict[str, float], est: dict[str, float], err: dict[str, float]) -> None:
    """Print estimate ± standard error next to the true value, and the z-score."""
    print(f"{'quantity':<22}{'true':>12}{'estimate':>14}{'std err':>12}{'z':>7}")
    for key, true in truth.items():
        z = (est[key] - true) / err[key]
        print(f"{key:<22}{true:>12.5g}{est[key]:>14.6g}{err[key]:>12.3g}{z:>7.2f}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the counting experiment, fit it, print a report and save a figure."""
    args = parse_args(argv)
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
