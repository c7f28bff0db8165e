"""Reaction kinetics: first-order rate constants at five temperatures, then Arrhenius.

A reactant A decays by a first-order reaction, [A](t) = [A]0 * exp(-k t).  The decay
is followed spectroscopically at five temperatures; each run gives one rate constant
``k = 1 / tau`` from the built-in ``exp_decay`` model with its offset held at zero
(``fixed={'offset': 0.0}``).  The rate constants, weighted by their standard errors,
are then fitted with the built-in ``arrhenius`` model ``k = A * exp(-Ea / (R T))`` -
directly, not by a straight line through ln k versus 1/T, so each point keeps its own
error.

Run:  python examples/chemistry_arrhenius_kinetics.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax
from curvax.models import GAS_CONSTANT

# Truth.  k(T) = A * exp(-Ea / (R T)) with A = 1.0e11 1/s and Ea = 75.0 kJ/mol,
# R = 8.31446... J/(mol K); temperatures 290-330 K (k from 3e-3 to 0.13 1/s).
# Each run: [A](t) = C0 * exp(-k t) + noise, C0 = 1.00 mM, sampled from 0 to three
# lifetimes (3 / k), Gaussian noise of sd 0.005 mM.
TRUE_A, TRUE_EA = 1.0e11, 75.0e3
TEMPERATURES = np.array([290.0, 300.0, 310.0, 320.0, 330.0])
C0, NOISE = 1.00, 0.005
SEED = 5


def true_rate(temperature: np.ndarray) -> np.ndarray:
    """Arrhenius rate constant (1/s) at ``temperature`` (K)."""
    return TRUE_A * np.exp(-TRUE_EA / (GAS_CONSTANT * temperature))


def simulate_run(
    temperature: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and concentrations (mM) of one kinetic run at ``temperature``."""
    k = float(true_rate(np.array(temperature)))
    t = np.linspace(0.0, 3.0 / k, n)
    return t, C0 * np.exp(-k * t) + NOISE * rng.normal(size=n)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit every kinetic run, then the Arrhenius law; report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    n = 25 if args.small else 80

    # Step 1: one rate constant per temperature (same model and size: compiled once).
    decay = curvax.models.get_model("exp_decay")  # amplitude * exp(-t / tau) + offset
    rates, rate_errors = [], []
    print(f"{'T (K)':>7}{'k (1/s)':>13}{'std err':>11}{'true k':>13}")
    for temperature in TEMPERATURES:
        t, conc = simulate_run(temperature, n, rng)
        run = curvax.fit_curve(decay, t, conc, fixed={"offset": 0.0})
        tau, tau_err = run.params["tau"].value, run.params["tau"].stderr
        rates.append(1.0 / tau)
        rate_errors.append(tau_err / tau**2)  # d(1/tau) = dtau / tau^2
        k_true = float(true_rate(np.array(temperature)))
        print(f"{temperature:>7.1f}{rates[-1]:>13.5g}{rate_errors[-1]:>11.2g}{k_true:>13.5g}")

    # Step 2: Arrhenius fit of k(T), each k weighted by its own standard error.
    arrhenius = curvax.models.get_model("arrhenius")  # A * exp(-Ea / (R T))
    result = curvax.fit_curve(
        arrhenius,
        TEMPERATURES,
        np.array(rates),
        sigma=np.array(rate_errors),
        absolute_sigma=True,
    )
    print(result.summary())

    p = result.params
    truth = {"A": TRUE_A, "Ea_kJ_per_mol": TRUE_EA / 1e3}
    est = {"A": p["A"].value, "Ea_kJ_per_mol": p["Ea"].value / 1e3}
    err = {"A": p["A"].stderr, "Ea_kJ_per_mol": p["Ea"].stderr / 1e3}
    print()
    report(truth, est, err)
    print("A and Ea are almost perfectly correlated over a 40 K range: quote them together.")

    labels = ("Arrhenius plot of first-order rate constants", "temperature (K)", "k (1/s)")
    figure = save_figure(result, args.out, "arrhenius_kinetics.png", labels)
    return {
        "truth": truth,
        "estimate": est,
        "stderr": err,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
