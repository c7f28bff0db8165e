"""Dose–response: four-parameter logistic (Hill) fit, EC50 and its 95% interval.

A compound is tested in triplicate at ten concentrations (three-fold dilutions) and the
response is read as percent activity.  The built-in ``hill`` model is parametrised by
``log_ec50 = log10(EC50)`` - the natural scale for a concentration that is known to
within a factor, whose likelihood is close to symmetric in the logarithm.  The 95%
interval for EC50 is therefore the interval of ``log_ec50`` mapped back with ``10**``
(asymmetric around EC50, as it should be).  The figure draws the curve and its
confidence band on a logarithmic dose axis.

Run:  python examples/biology_dose_response.py [--small] [--out DIR]
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _tools import parse_args, report  # shared helpers (examples/_tools.py)

import curvax

# Truth.  Response (%) at concentration x (µM):
#     y = bottom + (top - bottom) / (1 + 10**(hill * (log10(EC50) - log10(x)))) + noise
# with bottom = 5 %, top = 100 %, EC50 = 0.30 µM, hill = 1.2; doses 30 µM / 3**k for
# k = 0..9; Gaussian noise of sd 4 %.
TRUE = {"bottom": 5.0, "top": 100.0, "log_ec50": float(np.log10(0.30)), "hill": 1.2}
NOISE = 4.0
SEED = 2


def simulate(replicates: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Concentrations (µM, each repeated ``replicates`` times) and responses (%)."""
    doses = 30.0 / 3.0 ** np.arange(10)
    x = np.repeat(doses, replicates)
    b, t, c, h = (TRUE[k] for k in ("bottom", "top", "log_ec50", "hill"))
    y = b + (t - b) / (1.0 + 10.0 ** (h * (c - np.log10(x))))
    return x, y + NOISE * rng.normal(size=x.size)


def save_figure(
    result: curvax.FitResult, x: np.ndarray, y: np.ndarray, out: Path | None
) -> Path | None:
    """Data, fitted curve and 95% confidence band on a log dose axis, as ``out/*.png``."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return None
    out = Path(tempfile.mkdtemp(prefix="curvax-example-")) if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dose_response.png"
    grid = np.geomspace(x.min() / 2, x.max() * 2, 200)
    curve, lower, upper = result.predict(grid, level=0.95)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.fill_between(grid, lower, upper, color="tab:blue", alpha=0.25, label="95% confidence")
    ax.plot(grid, curve, color="tab:blue", label="4PL fit")
    ax.plot(x, y, "o", ms=4, color="0.3", label="data")
    ec50 = 10.0 ** result.params["log_ec50"].value
    ax.axvline(ec50, color="tab:red", ls="--", lw=1, label=f"EC50 = {ec50:.3g} µM")
    ax.set_xscale("log")
    ax.set_xlabel("concentration (µM)")
    ax.set_ylabel("response (%)")
    ax.set_title("Dose–response (4-parameter logistic)")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure saved to {path}")
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the assay, fit the Hill curve, report EC50 with its interval, plot."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    x, y = simulate(2 if args.small else 3, rng)

    model = curvax.models.get_model("hill")  # bottom, top, log_ec50, hill
    result = curvax.fit_curve(model, x, y)  # p0 from model.guess(x, y)
    print(result.summary())

    p = result.params
    est = {name: p[name].value for name in TRUE}
    err = {name: p[name].stderr for name in TRUE}
    lo, hi = result.conf_int(0.95)["log_ec50"]
    ec50 = 10.0 ** est["log_ec50"]
    ec50_interval = (10.0**lo, 10.0**hi)
    est["ec50"] = ec50
    err["ec50"] = np.log(10.0) * ec50 * err["log_ec50"]  # delta method, for the z-score
    truth = {**TRUE, "ec50": 10.0 ** TRUE["log_ec50"]}
    print()
    report(truth, est, err)
    print(
        f"EC50 = {ec50:.4g} µM, 95% interval [{ec50_interval[0]:.4g}, {ec50_interval[1]:.4g}] "
        f"µM (true {truth['ec50']:.4g} µM)"
    )

    figure = save_figure(result, x, y, args.out)
    return {
        "truth": truth,
        "estimate": est,
        "stderr": err,
        "ec50_interval": ec50_interval,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
