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

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from curvax.core.problem import count_model_params, detect_param_style, signature_param_names
from curvax.core.validation import (
    as_ydata,
    by_name,
    check_feasible,
    check_free_parameters,
    check_seed,
    check_x0,
    first_bad,
    prepare_bounds,
    prepare_sigma,
    real_array,
)

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
    check_seed(seed)
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


def _free_only(
    fn: Callable[..., Any], style: str, full: np.ndarray, free: np.ndarray, columns: bool
) -> Callable[..., Any]:
    """``fn`` (the model, or with ``columns`` its Jacobian) of the free parameters only.

    The fixed parameters are held at their values in ``full``; the result takes the
    free ones in the same style as ``fn`` (``g(x, *q)`` or ``g(x, q)``).  The same
    arguments give the same function object, so that repeated multi-start fits with
    the same fixed values reuse the compiled batch program.
    """
    held = np.where(free, 0.0, full)  # only the fixed values matter
    key = (style, tuple(held.tolist()), tuple(free.tolist()), columns)
    try:
        return _free_only_cached(fn, *key)
    except TypeError:  # an unhashable callable
        return _build_free_only(fn, *key)


@functools.lru_cache(maxsize=32)
def _free_only_cached(
    fn: Callable[..., Any], style: str, full: tuple, free: tuple, columns: bool
) -> Callable[..., Any]:
    return _build_free_only(fn, style, full, free, columns)


def _build_free_only(
    fn: Callable[..., Any], style: str, full_t: tuple, free_t: tuple, columns: bool
) -> Callable[..., Any]:
    full = np.asarray(full_t, dtype=np.float64)
    idx = np.nonzero(np.asarray(free_t, dtype=bool))[0]

    def full_params(q: Any) -> Any:
        return jnp.asarray(full, dtype=jnp.result_type(q, float)).at[idx].set(q)

    if style == "array":

        def g_array(x: Any, q: Any) -> Any:
            out = fn(x, full_params(jnp.asarray(q)))
            return jnp.asarray(out)[:, idx] if columns else out

        return g_array

    def g_args(x: Any, *q: Any) -> Any:
        p = full_params(jnp.stack([jnp.asarray(v) for v in q]))
        out = fn(x, *[p[i] for i in range(full.size)])
        return jnp.asarray(out)[:, idx] if columns else out

    return g_args


def _split_options(fit_kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments for the batched starts and for the final fit.

    Every option of :func:`curvax.fit_curve` goes to the final fit, and those that
    :func:`curvax.curve_fit_batch` shares with it (and its tuning options
    ``chunk_size``, ``memory_budget``, ``linalg``) to the starts; anything else is a
    ``TypeError``.
    """
    from curvax.curve_fit import fit_curve

    own = {"f", "xdata", "ydata", "p0", "sigma", "bounds"}
    fit_names = set(inspect.signature(fit_curve).parameters) - own
    batch_names = (fit_names & _BATCH_SHARED) | _BATCH_TUNING
    unknown = sorted(set(fit_kwargs) - fit_names - batch_names)
    if unknown:
        raise TypeError(f"multistart: unexpected keyword argument(s) {unknown}")
    batch_kw = {k: v for k, v in fit_kwargs.items() if k in batch_names}
    fit_kw = {k: v for k, v in fit_kwargs.items() if k in fit_names}
    return batch_kw, fit_kw


#: Options of :func:`curvax.fit_curve` that :func:`curvax.curve_fit_batch` also takes.
_BATCH_SHARED = frozenset(
    {
        "absolute_sigma",
        "method",
        "jac",
        "loss",
        "f_scale",
        "nan_policy",
        "ftol",
        "xtol",
        "gtol",
        "x_scale",
        "max_nfev",
        "dtype",
        "param_style",
        "devices",
        "workers",
    }
)
#: Options of :func:`curvax.curve_fit_batch` alone, for the batched starts.
_BATCH_TUNING = frozenset({"chunk_size", "memory_budget", "linalg"})


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
        As for :func:`curvax.fit_curve` (``p0`` defaults to the model's guess or ones;
        ``p0`` and ``bounds`` may be given by parameter name, and ``fixed=`` or
        ``lower == upper`` holds parameters fixed: the starts then vary only the free
        ones).  The starts run as one :func:`curvax.curve_fit_batch` program, so the
        model must be traceable by JAX, ``sigma`` a scalar or 1-D (not a covariance)
        and ``xdata`` must hold the points along its last axis; ``chunk_size``,
        ``memory_budget`` and ``linalg`` are passed to that program only, the options
        that only ``fit_curve`` has (``fixed``, ``check_finite``, ``callbacks``, ...)
        to the final fit only.  ``x_scale='bounds'`` applies to the final fit; the
        starts use ``'jac'``.
    n_starts : int
        Number of starting points (including ``p0``).
    sampler : {'lhs', 'sobol', 'random'}
        How starts are drawn (module docstring).
    spread : float
        Half-width of the sampling range, in units of ``max(|p0_i|, 1)``, for
        parameters without two finite bounds.
    seed : int, numpy.random.Generator or None
        Seed of the sampler.

    Returns
    -------
    MultiStartResult
        ``starts`` and ``popt`` hold every parameter (fixed ones at their value).

    Raises
    ------
    TypeError
        On an unknown keyword argument, a ``seed`` of the wrong kind, or a model JAX
        cannot trace.
    ValueError
        On invalid input, checked as :func:`curvax.fit_curve` checks it (non-finite
        ``ydata`` without ``nan_policy``, ``sigma`` of the wrong length, ``p0`` outside
        the bounds, ...), and on a 2-D ``sigma``.
    RuntimeError
        If no start converged.
    """
    from curvax.batch import curve_fit_batch
    from curvax.batch.fit import check_batch_model
    from curvax.core.start import default_start
    from curvax.curve_fit import fit_curve

    if not callable(f):
        raise TypeError(f"f: expected a callable model, got {type(f).__name__}")
    batch_kw, fit_kw = _split_options(fit_kwargs)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
    if isinstance(n_starts, bool) or not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise ValueError(f"n_starts: expected a positive integer, got {n_starts!r}")
    try:
        spread_ok = math.isfinite(float(spread)) and float(spread) > 0
    except (TypeError, ValueError):
        spread_ok = False
    if not spread_ok:
        raise ValueError(f"spread: expected a positive number, got {spread!r}")
    check_seed(seed)

    # The data, checked as fit_curve checks them (the batch would report them per start).
    y = as_ydata(real_array(ydata, "ydata"))
    n_pts = y.size
    x = xdata
    try:
        x = real_array(xdata, "xdata")
    except ValueError:
        if np.iscomplexobj(xdata):
            raise
    if isinstance(x, np.ndarray) and (x.ndim == 0 or x.shape[-1] != n_pts):
        raise ValueError(
            f"xdata: multistart needs the points along the last axis of xdata ((N,) or "
            f"(k, N) with N = len(ydata) = {n_pts}), got shape {x.shape}"
        )
    nan_policy = fit_kwargs.get("nan_policy")
    check_finite = fit_kwargs.get("check_finite")
    if check_finite is None:
        check_finite = nan_policy is None
    numeric_x = isinstance(x, np.ndarray)
    if check_finite:
        if not np.all(np.isfinite(y)):
            raise ValueError(f"ydata: contains NaN or Inf ({first_bad(y)})")
        if numeric_x and not np.all(np.isfinite(x)):
            raise ValueError(f"xdata: contains NaN or Inf ({first_bad(x)})")
    if nan_policy == "raise":
        bad = np.isnan(y)
        if numeric_x:
            bad = bad | np.isnan(x).reshape(-1, n_pts).any(axis=0)
        if bad.any():
            raise ValueError(
                f"xdata/ydata: {int(bad.sum())} point(s) contain NaN (nan_policy='raise')"
            )
    if sigma is not None:
        _, L = prepare_sigma(real_array(sigma, "sigma"), n_pts)
        if L is not None:
            raise ValueError(
                "sigma: multistart takes a scalar or 1-D sigma (its starts run as one "
                "batched program of independent points); with a covariance, fit from "
                "several p0 with curvax.fit_curve"
            )

    # Parameters: names, p0, bounds and fixed values, as fit_curve reads them.
    names = fit_kwargs.get("param_names") or getattr(f, "param_names", None)
    names = tuple(names) if names is not None else signature_param_names(f)
    if isinstance(p0, Mapping):
        p0 = [v for _, v in by_name(p0, names, "p0", require_all=True)]
    if isinstance(bounds, Mapping):
        pairs = dict(by_name(bounds, names, "bounds", require_all=False))
        bounds = (
            [pairs.get(k, (-np.inf, np.inf))[0] for k in names or ()],
            [pairs.get(k, (-np.inf, np.inf))[1] for k in names or ()],
        )
    fixed = fit_kw.pop("fixed", None)
    fixed_named = dict(by_name(fixed, names, "fixed", require_all=False)) if fixed else {}
    p0a = (
        default_start(f, x if numeric_x else np.asarray(xdata), y, bounds)
        if p0 is None
        else check_x0(p0, None)
    )
    n = p0a.size
    style = detect_param_style(f, n, fit_kwargs.get("param_style", "auto"))
    n_sig = count_model_params(f)
    if style == "args" and n_sig is not None and n_sig != n:
        raise ValueError(f"p0: has {n} values but the model f takes {n_sig} parameters")
    lb, ub = prepare_bounds(bounds, n)
    for i, name in enumerate(names or ()):
        if name in fixed_named:
            v = check_x0(fixed_named[name], 1, f"fixed[{name!r}]")[0]
            p0a[i] = lb[i] = ub[i] = v
    check_feasible(p0a, lb, ub)
    check_free_parameters(lb, ub)
    free = lb < ub

    # The starts: the free parameters only, as one batched program.
    model, jac = f, fit_kwargs.get("jac")
    if not free.all():
        model = _free_only(f, style, p0a, free, columns=False)
        if callable(jac):
            batch_kw["jac"] = _free_only(jac, style, p0a, free, columns=True)
        batch_kw["param_style"] = style
        xs = batch_kw.get("x_scale")
        if xs is not None and not isinstance(xs, str) and np.ndim(xs) == 1 and len(xs) == n:
            batch_kw["x_scale"] = np.asarray(xs)[free]  # the scales of the free parameters
    if isinstance(batch_kw.get("x_scale"), str) and batch_kw["x_scale"] == "bounds":
        batch_kw["x_scale"] = "jac"
    starts_free = sample_starts(p0a[free], lb[free], ub[free], n_starts, sampler, spread, seed)
    x_batch = x[None] if numeric_x and x.ndim == 2 else x  # (k, N) shared, whatever k
    x_probe = x if numeric_x else xdata
    check_batch_model(
        model, batch_kw.get("jac"), style, x_probe, starts_free[:1], n_pts, "multistart"
    )
    ys = np.broadcast_to(y, (n_starts, n_pts))
    batch = curve_fit_batch(
        model,
        x_batch,
        ys,
        p0=starts_free,
        sigma=sigma,
        bounds=(lb[free], ub[free]),
        **batch_kw,
    )
    starts = np.tile(p0a, (n_starts, 1))
    starts[:, free] = starts_free
    popt = np.tile(p0a, (n_starts, 1))
    popt[:, free] = np.asarray(batch.popt, dtype=np.float64)
    cost = np.where(batch.success, batch.cost, np.inf)
    if not np.any(np.isfinite(cost)):
        raise RuntimeError(f"multistart: no start converged (start 0: {batch.message[0]})")
    i = int(np.argmin(cost))
    best = fit_curve(f, xdata, ydata, p0=popt[i], sigma=sigma, bounds=(lb, ub), **fit_kw)
    best.extra["multistart"] = {"n_starts": n_starts, "sampler": sampler, "best_start": i}
    return MultiStartResult(best, starts, popt, cost, np.asarray(batch.success))
