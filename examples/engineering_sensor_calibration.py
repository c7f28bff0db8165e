"""Sensor calibration: quadratic calibration curve, prediction band and inverse use.

A temperature sensor is calibrated against a reference thermometer: its output (mV)
is recorded at known temperatures and a quadratic ``polynomial`` model is fitted.
Using the calibration means running it backwards: a new reading is converted to a
temperature, and the 95% *prediction* band (which includes the scatter of a single new
reading, unlike the narrower confidence band of the curve itself) gives the 95%
interval of that temperature where the band's edges cross the reading.

Run:  python examples/engineering_sensor_calibration.py [--small] [--out DIR]
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _tools import parse_args, report  # shared helpers (examples/_tools.py)

import curvax

# Truth.  Sensor output (mV) at temperature T (°C):
#     u(T) = c0 + c1 * T + c2 * T**2 + noise
# with c0 = 0.12 mV, c1 = 0.0405 mV/°C, c2 = 2.0e-6 mV/°C²; Gaussian noise of sd
# 0.02 mV.  Calibration points every 25 °C (every 50 °C with --small) from 0 to 400 °C.
# The unknown sample is at T = 250 °C.
TRUE = {"c0": 0.12, "c1": 0.0405, "c2": 2.0e-6}
NOISE = 0.02
T_UNKNOWN = 250.0
SEED = 21


def sensor(temperature: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy sensor output (mV) at ``temperature`` (°C)."""
    t = np.asarray(temperature, dtype=np.float64)
    u = TRUE["c0"] + TRUE["c1"] * t + TRUE["c2"] * t**2
    return u + NOISE * rng.normal(size=t.shape)


def inverse_prediction(
    result: curvax.FitResult, reading: float, t_range: tuple[float, float]
) -> tuple[float, float, float]:
    """Temperature of ``reading`` and its 95% interval from the prediction band.

    The calibration curve is increasing, so the temperature is where the fitted curve
    equals the reading, and the interval runs from where the band's upper edge equals it
    to where the lower edge does.
    """
    grid = np.linspace(*t_range, 4001)
    curve, lower, upper = result.predict(grid, level=0.95, band="prediction")
    estimate = float(np.interp(reading, curve, grid))
    return estimate, float(np.interp(reading, upper, grid)), float(np.interp(reading, lower, grid))


def save_figure(result: curvax.FitResult, out: Path | None) -> Path | None:
    """``result.plot`` with the confidence and prediction bands in the residual panel."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return None
    out = Path(tempfile.mkdtemp(prefix="curvax-example-")) if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sensor_calibration.png"
    fig = result.plot(title="Sensor calibration (quadratic)")
    ax, ax_res = fig.axes[0], fig.axes[-1]
    # The bands are a few hundredths of a mV wide on a 17 mV curve: draw them around
    # zero in the residual panel, where they can be seen.
    grid = np.linspace(0.0, 400.0, 200)
    curve, p_low, p_high = result.predict(grid, level=0.95, band="prediction")
    _, c_low, c_high = result.predict(grid, level=0.95)
    ax_res.fill_between(
        grid,
        p_low - curve,
        p_high - curve,
        color="tab:orange",
        alpha=0.2,
        label="95% prediction band",
    )
    ax_res.fill_between(
        grid,
        c_low - curve,
        c_high - curve,
        color="tab:blue",
        alpha=0.3,
        label="95% confidence band",
    )
    entries: dict[str, Any] = {}  # label -> artist, both panels, each label once
    for a in (ax, ax_res):
        for handle, label in zip(*a.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    ax.legend(entries.values(), entries.keys(), frameon=False, loc="lower right")
    ax.set_ylabel("sensor output (mV)")
    ax_res.set_ylabel("residual (mV)")
    ax_res.set_xlabel("reference temperature (°C)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure saved to {path}")
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Calibrate, convert an unknown reading to a temperature, report and plot."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    temperature = np.arange(0.0, 400.0 + 1e-9, 50.0 if args.small else 25.0)
    output = sensor(temperature, rng)

    model = curvax.models.get_model("polynomial", degree=2)  # c0 + c1 x + c2 x^2
    result = curvax.fit_curve(model, temperature, output)
    print(result.summary())

    p = result.params
    est = {name: p[name].value for name in TRUE}
    err = {name: p[name].stderr for name in TRUE}
    print()
    report(TRUE, est, err)

    reading = float(sensor(np.array(T_UNKNOWN), rng))
    t_hat, t_low, t_high = inverse_prediction(result, reading, (0.0, 400.0))
    print(
        f"\nnew reading {reading:.4f} mV -> T = {t_hat:.2f} °C, "
        f"95% interval [{t_low:.2f}, {t_high:.2f}] °C (true {T_UNKNOWN:g} °C)"
    )

    figure = save_figure(result, args.out)
    return {
        "truth": dict(TRUE),
        "estimate": est,
        "stderr": err,
        "unknown": {"truth": T_UNKNOWN, "estimate": t_hat, "interval": (t_low, t_high)},
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
