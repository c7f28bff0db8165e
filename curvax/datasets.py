"""Bundled reference data: the NIST StRD nonlinear regression problems.

The 27 problems of the NIST Statistical Reference Datasets (public-domain data of
the U.S. National Institute of Standards and Technology,
https://www.itl.nist.gov/div898/strd/nls/nls_main.shtml) are shipped in
``curvax/data/nist`` as JSON (see the README there for the fields).  Certified values
were computed by NIST in 128-bit arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jax.numpy as jnp
import numpy as np

NIST_NAMES = (
    "Bennett5",
    "BoxBOD",
    "Chwirut1",
    "Chwirut2",
    "DanWood",
    "ENSO",
    "Eckerle4",
    "Gauss1",
    "Gauss2",
    "Gauss3",
    "Hahn1",
    "Kirby2",
    "Lanczos1",
    "Lanczos2",
    "Lanczos3",
    "MGH09",
    "MGH10",
    "MGH17",
    "Misra1a",
    "Misra1b",
    "Misra1c",
    "Misra1d",
    "Nelson",
    "Rat42",
    "Rat43",
    "Roszman1",
    "Thurber",
)


_FORMULA_GLOBALS = {
    "exp": jnp.exp,
    "log": jnp.log,
    "cos": jnp.cos,
    "sin": jnp.sin,
    "arctan": jnp.arctan,
    "pi": np.pi,
}


@dataclass(frozen=True)
class NistProblem:
    """One NIST StRD problem: data, model, starting points and certified results."""

    name: str
    difficulty: str
    formula: str
    param_names: tuple[str, ...]
    x: np.ndarray  # (N,) or (2, N) for Nelson
    y: np.ndarray  # the response to fit (log(y) for Nelson)
    start1: np.ndarray
    start2: np.ndarray
    certified_values: np.ndarray
    certified_std_dev: np.ndarray
    certified_rss: float
    n_observations: int

    def model(self, x: Any, *b: Any) -> Any:
        """The problem's model evaluated with ``jax.numpy`` (parameters b1..bk)."""
        env = {name: b[i] for i, name in enumerate(self.param_names)}
        if self.x.ndim == 2:
            env["x1"], env["x2"] = x[0], x[1]
        else:
            env["x"] = x
        return eval(self.formula, _FORMULA_GLOBALS, env)


def load_nist(name: str) -> NistProblem:
    """Load a NIST StRD problem by name (case-sensitive, e.g. ``'Misra1a'``)."""
    if name not in NIST_NAMES:
        raise ValueError(f"name: unknown NIST problem {name!r}; known: {', '.join(NIST_NAMES)}")
    text = resources.files("curvax").joinpath("data", "nist", f"{name}.json").read_text()
    d = json.loads(text)
    if "x1" in d:
        x = np.array([d["x1"], d["x2"]], dtype=np.float64)
    else:
        x = np.array(d["x"], dtype=np.float64)
    y = np.array(d["y"], dtype=np.float64)
    if d.get("response", "y") == "log(y)":
        y = np.log(y)
    return NistProblem(
        name=d["name"],
        difficulty=d["difficulty"],
        formula=d["formula"],
        param_names=tuple(d["params"]),
        x=x,
        y=y,
        start1=np.array(d["start1"], dtype=np.float64),
        start2=np.array(d["start2"], dtype=np.float64),
        certified_values=np.array(d["certified_values"], dtype=np.float64),
        certified_std_dev=np.array(d["certified_std_dev"], dtype=np.float64),
        certified_rss=float(d["certified_rss"]),
        n_observations=int(d["n_observations"]),
    )


def lre(estimate: np.ndarray, certified: np.ndarray) -> np.ndarray:
    """Log relative error: the number of correct significant digits (capped at 15)."""
    estimate = np.asarray(estimate, dtype=np.float64)
    certified = np.asarray(certified, dtype=np.float64)
    with np.errstate(divide="ignore"):
        rel = np.abs(estimate - certified) / np.abs(certified)
        out = -np.log10(rel)
    return np.minimum(np.where(np.isfinite(out), out, 15.0), 15.0)
