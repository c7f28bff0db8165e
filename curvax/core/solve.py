"""Run one fit end to end: precision scope, compiled solve, covariance, result.

This is the single place where a :class:`~curvax.core.engine.Kernel` and its data
become a :class:`~curvax.core.result.FitResult`; ``least_squares``, ``curve_fit`` and
``CurveFit`` all come through here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core import trust_region as tr
from curvax.core.covariance import covariance_from_factor
from curvax.core.data_source import DataSource
from curvax.core.engine import (
    COMPILE_CACHE,
    Kernel,
    jacobian_at,
    parted_gram,
    residuals_at,
    run_args,
    run_kernel,
    with_reduce_token,
)
from curvax.core.host_buffers import aligned
from curvax.core.monitor import Monitor
from curvax.core.refusal import judge_refusal
from curvax.core.result import FitResult
from curvax.core.sharding import fetch_replicated, local_rows
from curvax.core.threaded import active as threads_active
from curvax.core.threaded import zero_token


def precision(dtype: np.dtype) -> contextlib.AbstractContextManager:
    """Scope in which JAX computes in ``dtype``.

    float64 is switched on with ``jax.enable_x64(True)`` for the duration of the fit
    only (a thread-local, scoped setting): the precision of the user's other JAX code
    does not change.  For float32 the scope changes nothing.
    """
    return jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()


def _convert(a: Any, dtype: np.dtype) -> Any:
    """One leaf of :func:`to_device`."""
    if isinstance(a, np.ndarray):
        if a.dtype != dtype and a.dtype.kind == "f":
            a = a.astype(dtype)
        return aligned(a)
    if isinstance(a, (float, np.floating)):
        return dtype.type(a)  # one value: where it lies cannot matter
    if isinstance(a, jax.Array) and np.issubdtype(a.dtype, np.floating):
        return a if a.dtype == dtype else a.astype(dtype)
    return a


def to_device(tree: Any, dtype: np.dtype) -> Any:
    """Floating arrays of ``tree`` cast to ``dtype``; other leaves unchanged.

    NumPy arrays stay NumPy arrays (``jax.jit`` moves them to the device in its fast C++
    dispatch path, which is much cheaper than one ``jnp.asarray`` per leaf), made
    64-byte aligned (:func:`aligned`) so that results do not depend on where they lie.
    Floating scalars become NumPy scalars of ``dtype``.  Dicts, lists and tuples are
    walked directly (the common case, and cheap); any other pytree goes through
    ``jax.tree.map``.
    """
    dtype = np.dtype(dtype)
    kind = type(tree)
    if kind is dict:
        return {k: to_device(v, dtype) for k, v in tree.items()}
    if kind is list or kind is tuple:
        return kind(to_device(v, dtype) for v in tree)
    if tree is None or isinstance(tree, (np.ndarray, np.generic, int, float, jax.Array)):
        return _convert(tree, dtype)
    return jax.tree.map(lambda a: _convert(a, dtype), tree)


JACOBIAN_LIMIT = 2.0**480  # as curvax.core.validation.MAGNITUDE_LIMIT: squares stay finite


def check_jacobian_range(
    R: np.ndarray, dtype: np.dtype, x0_name: str = "p0", loss: Any = "linear"
) -> None:
    """Refuse a fit whose weighted Jacobian left the range where its squares are finite.

    The solver's column norms, gradient test and Gram products square the entries of
    ``J̃`` (as seen in its factor ``R``); beyond ~10^144 (float64) they overflow and
    a fit can stop at its start claiming convergence.  This happens when parameters
    and residuals have wildly different scales (e.g. ``b ~ 1e-152`` with ``x ~ 1e152``),
    or, with a robust loss, when every residual lies so far beyond ``f_scale`` that the
    loss is flat there (its rescaling ``√ρ'`` of ``J̃`` underflows).  Called on the end
    point of a fit that took no step or started out of range, where the inputs are to
    blame; a fit that moved there from a start in range gets status
    :data:`~curvax.core.trust_region.OUT_OF_RANGE_STATUS` instead
    (:func:`jacobian_out_of_range`).
    """
    if not jacobian_out_of_range(R, dtype):
        return
    limit = JACOBIAN_LIMIT if dtype == np.float64 else 2.0**60
    # a column's scale, NaN entries ignored (zero: insensitive, which is allowed)
    cols = [0.0 if math.isnan(c) else c for c in np.fmax.reduce(np.abs(R), axis=0).tolist()]
    big = max(cols)
    tiny = [c for c in cols if 0.0 < c < 1.0 / limit]
    what = f"reaches ~{big:.1e}" if big > limit else f"has a column of size ~{tiny[0]:.1e}"
    if not (isinstance(loss, str) and loss == "linear") and big <= limit:
        raise ValueError(
            f"{x0_name}/f_scale: with the robust loss {loss!r} the loss-weighted Jacobian "
            f"{what}: every residual at the end point lies so far beyond f_scale that "
            "the loss is flat there and cannot guide the fit; start closer to the data "
            "or increase f_scale"
        )
    raise ValueError(
        f"{x0_name}/xdata/sigma: the weighted Jacobian of the model {what}, outside "
        f"[{1 / limit:.0e}, {limit:.0e}] where {np.dtype(dtype).name} can hold its "
        "squares; rescale xdata, sigma or the parameters (fit p·s instead of p) so "
        "that the model's sensitivities to the parameters are of moderate size"
    )


def jacobian_out_of_range(R: np.ndarray, dtype: np.dtype) -> bool:
    """True when a column of the factor ``R`` of the weighted Jacobian exceeds
    :data:`JACOBIAN_LIMIT` (``2⁶⁰`` in float32) or is nonzero below its inverse
    (float64 only): the range of :func:`check_jacobian_range`."""
    if not R.size:
        return False
    wide = dtype == np.float64
    limit = JACOBIAN_LIMIT if wide else 2.0**60
    smallest = 1.0 / limit if wide else 0.0
    # a list, not array operations: this runs after every fit, on a p×p factor
    for c in np.fmax.reduce(np.abs(R), axis=0).tolist():
        if c > limit or 0.0 < c < smallest:  # NaN compares False: ignored
            return True
    return False


def host_model_error(err: BaseException, name: str = "f") -> ValueError | None:
    """The clear error for an exception raised by a host (NumPy) model during a fit.

    A model JAX cannot trace runs on the host through a callback; what it raises
    reaches the caller wrapped in an XLA runtime error whose last line is the original
    exception.  Returns None for any other error.
    """
    if not isinstance(err, jax.errors.JaxRuntimeError) or "callback" not in str(err).lower():
        return None
    last = str(err).strip().splitlines()[-1].strip()
    return ValueError(f"{name}: the model raised an exception while the fit evaluated it ({last})")


def strictly_feasible(x0: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Move ``x0`` at least ``1e-10·max(1,|bound|)`` inside each finite bound."""
    x = x0.copy()
    lo = np.isfinite(lb) & (x - lb <= 1e-10 * np.maximum(1.0, np.abs(lb)))
    hi = np.isfinite(ub) & (ub - x <= 1e-10 * np.maximum(1.0, np.abs(ub)))
    x[lo] = lb[lo] + 1e-10 * np.maximum(1.0, np.abs(lb[lo]))
    x[hi] = ub[hi] - 1e-10 * np.maximum(1.0, np.abs(ub[hi]))
    tight = (x < lb) | (x > ub)
    x[tight] = 0.5 * (lb[tight] + ub[tight])
    return x


def inside_bounds(
    x: np.ndarray, lb: np.ndarray, ub: np.ndarray, free: np.ndarray | None = None
) -> np.ndarray:
    """``x`` (in the fit's precision) moved by one step of that precision where rounding
    put a free parameter outside its float64 bounds (a bound not representable in
    float32 rounds to the outside half the time), so that ``lb ≤ x ≤ ub`` holds as in
    SciPy.  ``free`` marks the entries ``lb``/``ub`` refer to (default: all)."""
    xf = x if free is None else x[free]
    up = xf.astype(np.float64) < lb
    down = xf.astype(np.float64) > ub
    if not (up.any() or down.any()):
        return x
    xf = np.where(up, np.nextafter(xf, np.asarray(np.inf, xf.dtype)), xf)
    xf = np.where(down, np.nextafter(xf, np.asarray(-np.inf, xf.dtype)), xf)
    if free is None:
        return xf.astype(x.dtype)
    out = x.copy()
    out[free] = xf
    return out


@jax.jit
def _sum_of_squares(r: jax.Array) -> jax.Array:
    """``Σ r_i²`` of residuals that may lie on several processes (a replicated scalar)."""
    return jnp.sum(r * r)


def _judge_refusal(
    kernel: Kernel,
    data: Any,
    sol: Any,
    lb: np.ndarray,
    ub: np.ndarray,
    n_residuals: int,
    dtype: np.dtype,
) -> int:
    """The status of a fit the solver refused as far from a minimum (-4), probed
    (:func:`curvax.core.refusal.judge_refusal`): the probe points are evaluated one by
    one, up to the first lower one.  Runs after the compiled fit, so the fit pays nothing
    for it.  In a fit over several processes each cost is a sum over all of them; the
    processes hold the same solver output, so all take the same branches.
    """

    def costs_at(points: np.ndarray) -> Iterator[float]:
        with precision(dtype):
            for q in points:
                r = residuals_at(kernel, data, q)
                if r.is_fully_addressable:
                    r = np.asarray(r, dtype=np.float64)
                    yield 0.5 * float(np.dot(r, r))
                else:  # rows on several processes: every process runs the same sums
                    yield 0.5 * float(fetch_replicated(_sum_of_squares(r)))

    return judge_refusal(sol, lb, ub, n_residuals, dtype, kernel.loss, costs_at)


def speculative_kernel(kernel: Kernel, n_points: int) -> Kernel | None:
    """``kernel`` compiled without the QR fallback of its blocked reduction, or None
    where that does not apply.

    A blocked reduction accumulates the Gram matrix of ``[J̃ | r̃]`` and falls back to
    block QR when the Cholesky factor is not finite or too ill-conditioned
    (:func:`curvax.core.problem.pointwise_reducer`).  The fallback is half of the
    reduction's code and a fit program holds three copies of it, yet most fits never
    take it.  So :func:`solve` first runs the program without it; a reduction that
    would have fallen back stops that program at once
    (:data:`~curvax.core.trust_region.GRAM_REJECTED_STATUS`), and the fit is run again,
    from the start, by the program with the fallback.  Either way the result is the
    full program's: a fit whose reductions all passed took the same branch in every one
    of them.  A program once rejected is not tried again (``Program.notes``).  A fit
    that was redone says so: ``result.extra["discarded_nfev"]`` counts the evaluations
    of the discarded attempt (the model was evaluated that much more than ``nfev``).

    Applies to point-by-point fits on one device without a per-iteration monitor
    (callbacks would see the first iterations twice) whose ``n_points`` (padded) span
    more than one block (one block is reduced by QR directly) or whose reduction is the
    fused accelerator form (every block through the Gram matrix).  The chunked fits'
    per-chunk programs use it too, and redo only a rejected chunk
    (:class:`curvax.scale.host_reduce.HostReducer`).
    """
    if (
        kernel.kind != "pointwise"
        or kernel.mesh is not None
        or kernel.monitored
        or not kernel.gram_fallback
        or (kernel.gram != "fused" and n_points <= kernel.block_size)
    ):
        return None
    return replace(kernel, gram_fallback=False)


def _attempts(kernel: Kernel, data: dict) -> tuple[Kernel, ...]:
    """The kernels :func:`solve` tries in turn (:func:`speculative_kernel`)."""
    n_points = np.shape(data["y"])[0] if "y" in data else 0  # no "y": residual functions
    fast = speculative_kernel(kernel, n_points)
    if fast is None or COMPILE_CACHE.get(fast).notes.get("gram_rejected"):
        return (kernel,)
    return (fast, kernel)


def solve(
    kernel: Kernel,
    data: dict,
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    *,
    x_scale: np.ndarray | None,
    f_scale: float,
    ftol: float,
    xtol: float,
    gtol: float,
    max_nfev: int,
    dtype: np.dtype,
    absolute_sigma: bool = False,
    param_names: tuple[str, ...] | None = None,
    loss_name: str = "linear",
    fixed_values: np.ndarray | None = None,
    monitor: Monitor | None = None,
    n_points: int | None = None,
    x0_name: str = "p0",
    n_local_points: int | None = None,
    while_running: Callable[[], dict[str, Any]] | None = None,
    source: DataSource | None = None,
) -> FitResult:
    """Fit and return a :class:`FitResult` with covariance.

    ``x0``, ``lb``, ``ub``, ``x_scale`` refer to the *free* parameters; when
    ``kernel.fixed`` marks fixed ones, ``fixed_values`` is the full parameter vector
    holding their values, and the result is reported for all parameters (fixed ones
    with zero variance).  ``monitor`` (required when ``kernel.monitored``) runs the
    callbacks and the time limit.  ``n_points`` is the number of real points when the
    data were padded to a size bucket (padding rows are masked out and come last).
    In a multi-process fit (:mod:`curvax.core.sharding`) ``n_points`` counts the points
    of all processes and ``n_local_points`` this process's, whose residuals are the
    ones returned in ``fun``.

    ``while_running``, when given, is called once the compiled program has been
    dispatched and before its results are awaited, so that host work which does not
    depend on the result (e.g. the metadata of :func:`curvax.curve_fit.fit_metadata`)
    overlaps the fit instead of following it; the entries of the dict it returns are
    added to ``result.extra``.

    ``source`` is where the result finds the data again when ``fun`` or ``jac`` is
    first read (:mod:`curvax.core.data_source`): a function that rebuilds ``data`` from
    the caller's arrays, so that the result does not pin the padded copies the fit ran
    on; its fingerprints are taken just before the fit starts.  Without it the result keeps
    ``data`` itself.

    Raises
    ------
    ValueError
        If the residuals or Jacobian are not finite at the starting point.
    """
    n_free = x0.size
    if kernel.method == "trf":
        x0 = strictly_feasible(x0, lb, ub)
    xs = np.ones(n_free) if x_scale is None else x_scale
    with precision(dtype):
        args = run_args(
            x0, lb, ub, xs,
            f_scale=f_scale, ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev,
            token=monitor.token if monitor is not None else 0, dtype=dtype,
        )
        real = dtype.type
        data_d = to_device(data, dtype)
        if source is not None:  # before the fit: overlapping it competes for the cores
            source.seal()
        extra = None
        # the program without QR fallback first, where one applies; the full one if
        # that stopped on a rejected reduction (speculative_kernel)
        for attempt in _attempts(kernel, data_d):
            kernel, parted = parted_gram(attempt, data_d, real(f_scale), n_free, dtype)
            with (
                monitor if monitor is not None else contextlib.nullcontext(),
                threads_active(parted)
                if parted is not None
                else contextlib.nullcontext(zero_token()) as reduce_token,
            ):
                try:
                    out = run_kernel(
                        kernel,
                        data_d,
                        args if parted is None else with_reduce_token(args, reduce_token),
                    )
                    if extra is None:
                        extra = {} if while_running is None else while_running()
                    if kernel.mesh is None:  # residuals computed when asked for
                        sol, n_res = out.solver()
                    else:
                        sol, n_res = out.solver(fetch_replicated)
                        residuals = local_rows(out.residuals)
                except jax.errors.JaxRuntimeError as err:
                    clear = host_model_error(err, "fun" if x0_name == "x0" else "f")
                    if clear is None:
                        raise
                    raise clear from err
                if parted is not None and parted.error is not None:
                    raise parted.error
            if int(sol.status) != tr.GRAM_REJECTED_STATUS:
                break
            COMPILE_CACHE.get(attempt).notes["gram_rejected"] = True
            extra = {**extra, "discarded_nfev": int(sol.nfev)}
        chisqr = None
        if out.residuals is not None and not out.residuals.is_fully_addressable:
            # multi-process: sum over all
            chisqr = float(fetch_replicated(_sum_of_squares(out.residuals)))

    status = int(sol.status)
    if status == -1:
        nbad = int(sol.reduction.n_nonfinite)
        what = (
            f"{nbad} non-finite entries" if nbad else
            "every entry is finite but the sum of their squares overflows"
        )
        raise ValueError(
            f"{x0_name}: the residuals or their Jacobian are not finite at the initial "
            f"point ({what}, cost={float(sol.initial_cost)!r}); check the model, the "
            f"data and {x0_name}"
        )

    if status == tr.FAR_FROM_MINIMUM_STATUS:
        status = _judge_refusal(kernel, data_d, sol, lb, ub, int(n_res), dtype)

    if kernel.mesh is None:
        n_rows = int(n_res) if n_points is None else min(n_points, int(n_res))
        m = n_rows
    elif n_local_points is not None:
        n_rows = min(n_local_points, residuals.shape[0])
        m = int(n_points if n_points is not None else n_local_points)
    else:
        n_rows = residuals.shape[0] if n_points is None else min(n_points, residuals.shape[0])
        m = n_rows
    x_dev = np.asarray(sol.x)
    if source is None:
        source = DataSource(lambda: data, {})
    if kernel.mesh is None:

        def fun() -> np.ndarray:
            with precision(dtype):
                r = residuals_at(kernel, to_device(source(), dtype), x_dev)
            return np.asarray(r)[:n_rows]

    else:
        fun = residuals[:n_rows] if isinstance(residuals, np.ndarray) else (
            lambda: np.asarray(residuals)[:n_rows]
        )
    R = np.asarray(sol.reduction.R, dtype=np.float64)
    out_of_range = jacobian_out_of_range(R, dtype)
    if out_of_range and (
        int(sol.nit) == 0 or jacobian_out_of_range(np.asarray(sol.initial_scale)[None], dtype)
    ):
        check_jacobian_range(R, dtype, x0_name, kernel.loss)  # the start is to blame
    # an exact fit (cost zero to rounding) reached from a start in range is a minimum
    # however its Jacobian looks: a vanishing amplitude takes its rate's column there
    eps = float(np.finfo(dtype).eps)
    out_of_range = out_of_range and float(sol.reduction.cost) > eps**2 * float(sol.initial_cost)
    cost = float(sol.reduction.cost)
    pcov_free, _ = covariance_from_factor(R, m, cost, absolute_sigma)
    if out_of_range:  # the iteration went there: a failed fit, not bad input
        status = tr.OUT_OF_RANGE_STATUS
        pcov_free = np.full_like(pcov_free, np.inf)
    x_free = np.asarray(sol.x, dtype=np.float64)
    grad_free = np.asarray(sol.reduction.grad, dtype=np.float64)
    active_free = np.asarray(sol.active_mask)

    if kernel.fixed is not None:
        assert fixed_values is not None
        free = ~np.asarray(kernel.fixed)
        n = free.size
        x = np.array(fixed_values, dtype=np.float64)
        x[free] = x_free
        pcov = np.zeros((n, n))
        pcov[np.ix_(free, free)] = pcov_free
        if not np.all(np.isfinite(pcov_free)):
            pcov[:] = np.inf
        grad = np.zeros(n)
        grad[free] = grad_free
        active = np.zeros(n, dtype=int)
        active[free] = active_free
    else:
        x, pcov, grad, active = x_free, pcov_free, grad_free, active_free

    f_scale_v = f_scale

    def jac_fn() -> np.ndarray:
        with precision(dtype):
            J = local_rows(
                jacobian_at(
                    kernel,
                    to_device(source(), dtype),
                    np.asarray(x_dev),
                    np.asarray(f_scale_v, dtype=dtype),
                )
            )[:n_rows]
        if kernel.fixed is None:
            return J
        full = np.zeros((J.shape[0], len(kernel.fixed)), dtype=J.dtype)
        full[:, ~np.asarray(kernel.fixed)] = J
        return full

    x_out = inside_bounds(x.astype(dtype), lb, ub, None if kernel.fixed is None else free)
    result = FitResult(
        x=x_out,
        pcov=pcov,
        status=status,
        cost=cost,
        initial_cost=float(sol.initial_cost),
        fun=fun,
        grad=grad,
        nfev=int(sol.nfev),
        njev=int(sol.njev),
        nit=int(sol.nit),
        optimality=float(sol.optimality),
        active_mask=active,
        dtype=dtype,
        method=kernel.method,
        loss=loss_name,
        param_names=param_names,
        jac_fn=jac_fn,
        n_points=m,
        absolute_sigma=absolute_sigma,
    )
    if chisqr is not None:
        result.extra["chisqr"] = chisqr
    if monitor is not None:
        monitor.complete(result)
    result.extra.update(extra)
    return result
