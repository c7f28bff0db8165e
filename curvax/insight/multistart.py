"""Multi-start fitting: many starting points, one batched program, the best fit kept.

A local least-squares solver finds the minimum of the basin it starts in.  For models
with several basins (oscillations with an uncertain frequency, sums of peaks, rational
functions) :func:`multistart` draws ``n_starts`` starting points, fits from all of them
at once with :func:`curvax.curve_fit_batch` (the data replicated along the batch axis,
so it is one compiled, vmapped program), and returns the fit of lowest cost, refined
and reported as an ordinary :class:`~curvax.FitResult`, with the table of all starts.

Where starts are drawn: parameter i is sampled in ``[lb_i, ub_i]`` when both bounds are
finite, otherwise in ``p0_i ± spread · max(|p0_i|, 1)`` (clipped to the finite bound).
Samplers: ``'lhs'`` (Latin hypercube: each parameter's range cut in ``n_starts`` strata,
one point per stratum, strata paired at random), ``'random'`` (uniform), and
``'sobol'`` (scrambled Sobol' sequence; needs SciPy).  The first start is always ``p0``
itself when given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLERS = ("lhs", "sobol", "random")


@dataclass(frozen=True)
class MultiStartResult:
    """The best fit and the record of every start.

    Attributes
    ----------
    best : FitResult
        The lowest-cost converged fit, refined by a single fit from its optimum.
    starts : ndarray (S, P)
        The starting points.
    popt : ndarray (S, P)
        Where each start ended.
    cost : ndarray (S,)
        Final cost of each start (``inf`` for failed fits).
    success : ndarray of bool (S,)
    """

    best: Any
    starts: np.ndarray
    popt: np.ndarray
    cost: np.ndarray
    success: np.ndarray

    def table(self) -> str:
        """One line per start, best first."""
        order = np.argsort(self.cost)
        lines = ["start  cost          success  parameters"]
        for i in order:
            vals = ", ".join(f"{v:.6g}" for v in self.popt[i])
            lines.append(f"{i:5d}  {self.cost[i]:<12.6g}  {bool(self.success[i])!s:7}  {vals}")
        return "\n".join(lines)


def sample_starts(
    p0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    n_starts: int,
    sampler: str = "lhs",
    spread: float = 2.0,
    seed: int | None = 0,
) -> np.ndarray:
    """``n_starts`` starting points (see the module docstring); row 0 is ``p0``."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
    if not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise ValueError(f"n_starts: expected a positive integer, got {n_starts!r}")
    if not spread > 0:
        raise ValueError(f"spread: expected a positive number, got {spread!r}")
    p0 = np.asarray(p0, dtype=np.float64)
    half = spread * np.maximum(np.abs(p0), 1.0)
    lo = np.where(np.isfinite(lb), lb, p0 - half)
    hi = np.where(np.isfinite(ub), ub, p0 + half)
    both = np.isfinite(lb) & np.isfinite(ub)
    lo = np.where(both, lb, np.maximum(lo, np.where(np.isfinite(lb), lb, -np.inf)))
    hi = np.where(both, ub, np.minimum(hi, np.where(np.isfinite(ub), ub, np.inf)))
    rng = np.random.default_rng(seed)
    k, p = n_starts, p0.size
    if sampler == "random":
        u = rng.uniform(size=(k, p))
    elif sampler == "lhs":
        u = (np.argsort(rng.uniform(size=(k, p)), axis=0) + rng.uniform(size=(k, p))) / k
    else:
        try:
            from scipy.stats import qmc
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError("sampler='sobol' needs SciPy; use 'lhs' or 'random'") from err
        u = qmc.Sobol(d=p, scramble=True, seed=seed).random(k)
    starts = lo + u * (hi - lo)
    # keep strictly inside bounds (a start on a bound is legal but wastes the reflection)
    starts = np.clip(starts, np.nextafter(lb, ub), np.nextafter(ub, lb))
    starts[0] = p0
    return starts


def multistart(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any = None,
    *,
    n_starts: int = 16,
    sampler: str = "lhs",
    spread: float = 2.0,
    seed: int | None = 0,
    bounds: Any = (-np.inf, np.inf),
    sigma: Any = None,
    **fit_kwargs: Any,
) -> MultiStartResult:
    """Fit from ``n_starts`` starting points at once and keep the best.

    Parameters
    ----------
    f, xdata, ydata, p0, bounds, sigma, **fit_kwargs
        As for :func:`curvax.fit_curve` (``p0`` defaults to the model's guess or ones).
    n_starts : int
        Number of starting points (including ``p0``).
    sampler : {'lhs', 'sobol', 'random'}
        How starts are drawn (module docstring).
    spread : float
        Half-width of the sampling range, in units of ``max(|p0_i|, 1)``, for
        parameters without two finite bounds.
    seed : int or None
        Seed of the sampler.

    Returns
    -------
    MultiStartResult

    Raises
    ------
    RuntimeError
        If no start converged.
    """
    from curvax.batch import curve_fit_batch
    from curvax.core.start import default_start
    from curvax.core.validation import check_x0, prepare_bounds
    from curvax.curve_fit import fit_curve

    y = np.asarray(ydata, dtype=np.float64)
    p0a = default_start(f, np.asarray(xdata), y, bounds) if p0 is None else check_x0(p0, None)
    lb, ub = prepare_bounds(bounds, p0a.size)
    starts = sample_starts(p0a, lb, ub, n_starts, sampler, spread, seed)
    ys = np.broadcast_to(y, (n_starts, y.size))
    batch = curve_fit_batch(f, xdata, ys, p0=starts, sigma=sigma, bounds=(lb, ub), **fit_kwargs)
    cost = np.where(batch.success, batch.cost, np.inf)
    if not np.any(np.isfinite(cost)):
        raise RuntimeError("multistart: no start converged")
    i = int(np.argmin(cost))
    best = fit_curve(f, xdata, y, p0=batch.popt[i], sigma=sigma, bounds=(lb, ub), **fit_kwargs)
    best.extra["multistart"] = {"n_starts": n_starts, "sampler": sampler, "best_start": i}
    return MultiStartResult(best, starts, np.asarray(batch.popt), cost, np.asarray(batch.success))
