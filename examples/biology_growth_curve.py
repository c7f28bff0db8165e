"""Bacterial growth curve: Gompertz fit, lag time and maximum growth rate; which law fits?

A batch culture is followed by optical density (OD600) every half hour.  The
Gompertz curve ``y = A * exp(-b * exp(-c t))`` is fitted with the built-in
``gompertz`` model; the biologically meaningful numbers are derived from it: the
maximum growth rate ``mu_max = A c / e`` (slope at the inflection point, OD/h) and the
lag time ``lambda = (ln b - 1) / c`` (where the tangent at the inflection crosses zero),
with standard errors propagated through the covariance matrix.  The logistic (Verhulst)
law is fitted too, and ``curvax.compare_models`` ranks the two by AICc.

Run:  python examples/biology_growth_curve.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Truth.  OD600 at time t (h), 0-24 h:
#     y(t) = A * exp(-b * exp(-c * t)) + noise
# with A = 1.20 (plateau OD), b = 4.0 (so OD(0) = 0.022), c = 0.25 1/h; Gaussian noise
# of sd 0.015 OD.  Hence mu_max = A c / e = 0.1104 OD/h and lag = (ln b - 1)/c = 1.545 h.
TRUE = {"asymptote": 1.20, "displacement": 4.0, "rate": 0.25}
NOISE = 0.015
SEED = 4


def simulate(step: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Times (h, every ``step`` hours up to 24 h) and optical densities."""
    t = np.arange(0.0, 24.0 + 1e-9, step)
    a, b, c = TRUE["asymptote"], TRUE["displacement"], TRUE["rate"]
    return t, a * np.exp(-b * np.exp(-c * t)) + NOISE * rng.normal(size=t.size)


def growth_numbers(a: float, b: float, c: float) -> tuple[dict[str, float], np.ndarray]:
    """``{'mu_max', 'lag_time'}`` of a Gompertz curve and their gradients in (a, b, c)."""
    values = {"mu_max": a * c / np.e, "lag_time": (np.log(b) - 1.0) / c}
    grads = np.array(
        [
            [c / np.e, 0.0, a / np.e],  # d mu_max / d(a, b, c)
            [0.0, 1.0 / (b * c), -(np.log(b) - 1.0) / c**2],  # d lag / d(a, b, c)
        ]
    )
    return values, grads


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the culture, fit Gompertz and logistic laws, compare, report, plot."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    t, od = simulate(1.0 if args.small else 0.5, rng)

    gompertz = curvax.models.get_model("gompertz")  # asymptote, displacement, rate
    result = curvax.fit_curve(gompertz, t, od)  # p0 from gompertz.guess(t, od)
    print(result.summary())

    p = result.params
    est = {name: p[name].value for name in TRUE}
    err = {name: p[name].stderr for name in TRUE}
    derived, grads = growth_numbers(est["asymptote"], est["displacement"], est["rate"])
    derived_cov = grads @ result.pcov @ grads.T
    for i, name in enumerate(derived):
        est[name] = derived[name]
        err[name] = float(np.sqrt(derived_cov[i, i]))
    truth = {**TRUE, **growth_numbers(*TRUE.values())[0]}
    print()
    report(truth, est, err)

    # Would the logistic law have done as well?  Same data, so AICc can tell.
    logistic = curvax.fit_curve(curvax.models.get_model("logistic_growth"), t, od)
    comparison = curvax.compare_models({"gompertz": result, "logistic": logistic})
    print()
    print(comparison)
    print(f"preferred growth law: {comparison.best}")

    labels = ("Bacterial growth (Gompertz)", "time (h)", "OD600")
    figure = save_figure(result, args.out, "growth_curve.png", labels)
    return {
        "truth": truth,
        "estimate": est,
        "stderr": err,
        "best_model": comparison.best,
        "success": bool(result.success and logistic.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
