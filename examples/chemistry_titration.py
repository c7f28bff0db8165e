"""Acid–base titration: pKa and concentration of a weak acid from a pH curve.

25.00 mL of acetic acid of unknown concentration is titrated with 0.1000 M NaOH while
a glass electrode reads the pH.  The exact titration curve has no closed form: at each
added volume the pH is the root of the charge balance

    [H+] + [Na+] = [OH-] + [A-],   [A-] = C_HA * Ka / (Ka + [H+]),   [OH-] = Kw / [H+]

(concentrations diluted by the added volume).  The model below finds that root by
bisection in JAX and finishes with one Newton step, which makes its derivatives with
respect to pKa and the concentration exact (implicit-function theorem) - so curvax can
fit it like any closed-form curve.  The classical graphical estimates (equivalence
point at the steepest rise, pKa = pH at half-equivalence) give the starting point.

Run:  python examples/chemistry_titration.py [--small] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _tools import parse_args, report, save_figure  # shared helpers (examples/_tools.py)

import curvax

# Known: V0 = 25.00 mL of acid, titrant C_B = 0.1000 mol/L NaOH, Kw = 1e-14 (25 °C).
V0, C_BASE, KW = 25.0, 0.1000, 1.0e-14
# Truth.  pKa = 4.76 (acetic acid), C_HA = 0.0800 mol/L, so the equivalence volume is
# V_eq = C_HA * V0 / C_B = 20.0 mL.  pH(V) solves the charge balance above for
# V = 0.5 ... 35 mL; the electrode adds Gaussian noise of sd 0.02 pH units.
TRUE_PKA, TRUE_CONC = 4.76, 0.0800
NOISE = 0.02
SEED = 3


def charge_balance(ph: jax.Array, v: jax.Array, pka: jax.Array, conc: jax.Array) -> jax.Array:
    """Positive charge minus negative charge (mol/L) at ``ph``; decreasing in ``ph``."""
    h = 10.0 ** (-ph)
    ka = 10.0 ** (-pka)
    sodium = C_BASE * v / (V0 + v)
    acid_total = conc * V0 / (V0 + v)
    return h + sodium - KW / h - acid_total * ka / (ka + h)


# jax.jit: compiled once per input shape, so predictions and plots reuse the compiled
# bisection loop instead of tracing it again at every call.
@jax.jit
def titration_ph(v: jax.Array, pka: jax.Array, conc: jax.Array) -> jax.Array:
    """pH after adding ``v`` mL of base: root of :func:`charge_balance` (pure JAX)."""
    v = jnp.asarray(v)
    p_const, c_const = jax.lax.stop_gradient(pka), jax.lax.stop_gradient(conc)

    def bisect(_: int, bracket: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        root_above = charge_balance(mid, v, p_const, c_const) > 0
        return jnp.where(root_above, mid, lo), jnp.where(root_above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 60, bisect, (jnp.full_like(v, -2.0), jnp.full_like(v, 16.0)))
    ph = 0.5 * (lo + hi)
    # One Newton step from the converged root: same value, exact derivatives.
    g, dg = jax.jvp(lambda q: charge_balance(q, v, pka, conc), (ph,), (jnp.ones_like(ph),))
    return ph - g / dg


def classical_estimate(v: np.ndarray, ph: np.ndarray) -> dict[str, float]:
    """Graphical estimates: V_eq at the steepest rise, pKa = pH at V_eq / 2."""
    slope = np.diff(ph) / np.diff(v)
    i = int(np.argmax(slope))
    v_eq = 0.5 * (v[i] + v[i + 1])
    pka = float(np.interp(0.5 * v_eq, v, ph))
    return {"pka": pka, "conc": C_BASE * v_eq / V0}


def simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` added volumes (mL) and the measured pH."""
    v = np.linspace(0.5, 35.0, n)
    with jax.enable_x64(True):
        ph = np.asarray(titration_ph(jnp.asarray(v), TRUE_PKA, TRUE_CONC))
    return v, ph + NOISE * rng.normal(size=n)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Simulate the titration, fit pKa and concentration, report and save a figure."""
    args = parse_args(argv, __doc__)
    rng = np.random.default_rng(SEED)
    v, ph = simulate(30 if args.small else 70, rng)

    start = classical_estimate(v, ph)
    print(f"graphical estimates: pKa = {start['pka']:.3f}, C_HA = {start['conc']:.4f} M")
    result = curvax.fit_curve(
        titration_ph, v, ph, p0=start, bounds={"pka": (0.0, 14.0), "conc": (0.0, 1.0)}
    )
    print(result.summary())

    p = result.params
    est = {"pka": p["pka"].value, "conc": p["conc"].value}
    err = {"pka": p["pka"].stderr, "conc": p["conc"].stderr}
    est["v_eq"] = est["conc"] * V0 / C_BASE  # equivalence volume (mL)
    err["v_eq"] = err["conc"] * V0 / C_BASE
    truth = {"pka": TRUE_PKA, "conc": TRUE_CONC, "v_eq": TRUE_CONC * V0 / C_BASE}
    print()
    report(truth, est, err)

    labels = ("Titration of acetic acid with 0.1 M NaOH", "NaOH added (mL)", "pH")
    figure = save_figure(result, args.out, "titration.png", labels)
    return {
        "truth": truth,
        "estimate": est,
        "stderr": err,
        "success": bool(result.success),
        "figure": figure,
    }


if __name__ == "__main__":
    main()
