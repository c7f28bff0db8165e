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

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options shared by all examples: ``--small`` and ``--out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer points (fast; for tests)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the figure")
    return parser.parse_args(argv)


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
    """Simulate the rate measurements, fit Michaelis–Menten, report and save a figure."""
    args = parse_args(argv)
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
