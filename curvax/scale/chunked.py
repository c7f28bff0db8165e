"""Exact chunked and out-of-core fits: the in-memory solver over a host reduction.

The trust-region solvers :func:`~curvax.core.trf.trf` and :func:`~curvax.core.lm.lm`
need from the data only a function ``reduce_fn: p ↦ Reduction`` (cost ``½ Σ ρ``,
triangular factor ``T`` of ``[J̃ | r̃]``, non-finite count).  Here ``reduce_fn`` is

    reduce_fn(p) = pure_callback(HostReducer.reduce, p),

a pass over a :class:`~curvax.scale.sources.ChunkSource` computed chunk by chunk on
the host (:mod:`curvax.scale.host_reduce`), called from inside the solver's compiled
``lax.while_loop``.  The solver code is the one the in-memory fit runs, so the
chunked fit reaches the same parameters and the same covariance
``s² (RᵀR)⁻¹`` (:mod:`curvax.core.covariance`) up to rounding, at any chunk size and
in any order of the points; memory is O(chunk × p).

The small solver program runs on the CPU (its state is p-sized); the per-chunk
kernels run on the default device, so an accelerator never waits on itself.
Each trial point costs one pass over the data (values and Jacobian in one fused
pass), as in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.covariance import covariance_from_factor
from curvax.core.engine import Kernel, gram_style, reduction_defaults
from curvax.core.least_squares import DEFAULT_TOL, default_max_nfev, jac_mode
from curvax.core.lm import lm
from curvax.core.memo import canonical_function
from curvax.core.pointwise import is_pointwise
from curvax.core.problem import count_model_params, detect_param_style, signature_param_names
from curvax.core.reduction import Reduction
from curvax.core.refusal import judge_refusal
from curvax.core.result import FitResult
from curvax.core.sharding import resolve_mesh
from curvax.core.solve import host_model_error, strictly_feasible, to_device
from curvax.core.start import default_start
from curvax.core.trf import trf
from curvax.core.trust_region import FAR_FROM_MINIMUM_STATUS
from curvax.core.validation import (
    apply_fixed,
    by_name,
    check_f_scale,
    check_feasible,
    check_free_parameters,
    check_loss,
    check_max_nfev,
    check_method,
    check_solver_options,
    check_x0,
    check_x_scale,
    default_method,
    prepare_bounds,
    resolve_dtype,
)
from curvax.core.wire import TokenRegistry, from_host, from_wire, to_wire, wire_shape
from curvax.core.xla_options import cpu_compiler_options
from curvax.curve_fit import probe_model
from curvax.scale.dask_backend import DaskReducer, DaskSource
from curvax.scale.host_reduce import HostReducer
from curvax.scale.sources import Chunk, ChunkSource, ReadPolicy, as_source, with_retries
from curvax.warnings import PerformanceWarning

DEFAULT_CHUNK_SIZE = 65536


class LargeFitResult(FitResult):
    """:class:`~curvax.core.result.FitResult` of a chunked fit.

    The residual vector and Jacobian are not kept (they are N-sized): ``fun`` is
    empty and ``jac`` is None; ``chisqr`` (``Σ r_i²``) is computed during the fit.
    ``extra`` reports the books: ``n_points`` used, ``n_omitted`` (NaN/Inf rows),
    ``chunks_skipped`` (indices) and ``skip_reasons``, ``points_skipped`` (an upper
    bound when a sequential source stopped early), ``n_passes``, ``chunk_size``,
    ``oom_halvings``, ``redone_chunks`` (chunks whose reduction was redone with the QR
    fallback: :class:`~curvax.scale.host_reduce.HostReducer`), ``source_fingerprint``.
    """

    def __init__(self, *, chisqr: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._chisqr = float(chisqr)

    @property
    def chisqr(self) -> float:
        return self._chisqr

    def summary(self) -> str:
        text = super().summary()
        e = self.extra
        lines = [
            f"  chunked: {e.get('n_passes')} passes, chunk size {e.get('chunk_size')}, "
            f"{e.get('n_omitted', 0)} points omitted (NaN/Inf), "
            f"{len(e.get('chunks_skipped', []))} chunks skipped"
        ]
        for i, why in sorted(e.get("skip_reasons", {}).items()):
            lines.append(f"    chunk {i} skipped: {why}")
        return text + "\n" + "\n".join(lines)


# --- the compiled solver over a host reduction -------------------------------------

_REGISTRY = TokenRegistry()


def _dispatch(token: np.ndarray, q: np.ndarray) -> tuple:
    reducer = _REGISTRY.get(token)
    return reducer.callback(from_wire(q, reducer.dtype))


@lru_cache(maxsize=32)
def _solver_program(method: str, n_residuals: int, n_free: int, jac_scale: bool, dt: str):
    """Compiled solver whose ``reduce_fn`` calls back into the registered reducer."""
    dtype = np.dtype(dt)

    def run(token, x0, lb, ub, x_scale, ftol, xtol, gtol, max_nfev):
        # float64 crosses the callback as raw bits both ways (curvax.core.wire)
        shapes = (
            wire_shape((1,), dtype),
            wire_shape((n_free + 1, n_free + 1), dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
        )

        def reduce_fn(q: jax.Array) -> Reduction:
            c, f, b = jax.pure_callback(_dispatch, shapes, token, to_wire(q))
            return Reduction(from_host(c, dtype)[0], from_host(f, dtype), b)

        xs = None if jac_scale else x_scale
        if method == "lm":
            return lm(reduce_fn, x0, xs, ftol, xtol, gtol, max_nfev, n_residuals)
        return trf(reduce_fn, x0, lb, ub, xs, ftol, xtol, gtol, max_nfev, n_residuals)

    return jax.jit(run, compiler_options=cpu_compiler_options())


def run_solver(
    reducer: HostReducer,
    method: str,
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    x_scale: np.ndarray | None,
    ftol: float,
    xtol: float,
    gtol: float,
    max_nfev: int,
    n_residuals: int,
) -> Any:
    """Run ``trf``/``lm`` with ``reduce_fn`` = a pass of ``reducer``; host-side output.

    Errors raised inside the host reduction (bad chunk, unreadable chunk, inconsistent
    source) are re-raised here with their own type and message.
    """
    dt = reducer.dtype
    n = x0.size
    prog = _solver_program(method, int(n_residuals), n, x_scale is None, dt.name)
    xs = np.ones(n) if x_scale is None else x_scale
    with (
        _REGISTRY.registered(reducer) as token,
        jax.enable_x64(dt == np.float64),
        jax.default_device(jax.devices("cpu")[0]),
    ):
        args = to_device([np.asarray(a, dtype=np.float64) for a in (x0, lb, ub, xs)], dt)
        tols = to_device([float(t) for t in (ftol, xtol, gtol)], dt)
        try:
            out = prog(token, *args, *tols, np.asarray(max_nfev, dtype=np.int32))
            return jax.device_get(out)
        except Exception:
            if reducer.error is not None:
                clear = host_model_error(reducer.error)
                if clear is not None:
                    raise clear from reducer.error
                raise reducer.error from None
            raise


# --- the checks shared with StreamingOptimizer ----------------------------------------


@dataclass(frozen=True)
class FitSetup:
    """The checked set-up of a chunked or streaming fit (see :func:`check_fit_setup`)."""

    p0: np.ndarray  # full start (fixed values in place), float64
    style: str  # 'args' | 'array'
    names: tuple[str, ...] | None
    lb: np.ndarray
    ub: np.ndarray
    method: str  # resolved: 'trf' | 'lm'
    dtype: np.dtype
    f_scale: float


def _apply_fixed(
    fixed: Any,
    names: tuple[str, ...] | None,
    p0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
) -> None:
    """Hold the parameters named in ``fixed`` at their values (``lb = ub = p0 = v``)."""
    if not isinstance(fixed, Mapping):
        raise ValueError(
            f"fixed: expected a mapping {{parameter name: value}}, got {type(fixed).__name__}"
        )
    if not fixed:
        return
    apply_fixed(dict(by_name(fixed, names, "fixed", require_all=False)), names, p0, lb, ub)


def check_fit_setup(
    f: Any,
    p0: Any,
    *,
    bounds: Any,
    method: str | None,
    loss: Any,
    f_scale: Any,
    dtype: Any,
    param_style: str,
    fixed: Any = None,
    param_names: tuple[str, ...] | None = None,
    sample: Chunk | None = None,
    model_name: str = "f",
) -> FitSetup:
    """Check what a chunked or streaming fit is given, before any data are computed.

    The checks (:mod:`curvax.core.validation`) of :func:`fit_chunked` and of both modes
    of :class:`~curvax.scale.streaming.StreamingOptimizer`: the model is callable; dtype,
    loss, ``f_scale``; ``p0`` (finite, as many values as the model takes; the model's
    guess on ``sample`` when None); bounds, ``fixed``, a start inside the bounds, a free
    parameter left; the method (and ``'lm'`` without bounds).

    Parameters
    ----------
    f : callable
        The model.
    p0 : array_like or None
        The start.
    bounds, method, loss, f_scale, dtype, param_style, fixed, param_names
        As in :func:`fit_chunked`.
    sample : Chunk, optional
        The first points of the data (for ``p0=None``).
    model_name : str
        How the caller calls the model (named in messages).

    Returns
    -------
    FitSetup

    Raises
    ------
    TypeError
        ``f`` is not callable.
    ValueError
        Any other invalid argument (named in the message).
    """
    if not callable(f):
        raise TypeError(f"{model_name}: expected a callable model, got {type(f).__name__}")
    dt = resolve_dtype(dtype)
    check_loss(loss)
    fs = check_f_scale(f_scale)
    names = getattr(f, "param_names", None)
    names = tuple(names) if names is not None else None
    if param_names is not None:
        names = tuple(param_names)
    n_sig = count_model_params(f)
    if p0 is None:
        if sample is None:
            raise ValueError("p0: the starting parameters are required")
        p0a = default_start(f, sample.x, sample.y, bounds)
    else:
        p0a = check_x0(p0, None).copy()
    n = p0a.size
    style = detect_param_style(f, n, param_style)
    if style == "args" and n_sig is not None and n_sig != n:
        model = "the model" if model_name == "model" else f"the model {model_name}"
        raise ValueError(f"p0: has {n} values but {model} takes {n_sig} parameters")
    if names is None and style == "args":
        sn = signature_param_names(f)
        names = sn if sn is not None and len(sn) == n else None
    lb, ub = prepare_bounds(bounds, n)
    if fixed is not None:
        _apply_fixed(fixed, names, p0a, lb, ub)
    check_feasible(p0a, lb, ub)
    check_free_parameters(lb, ub)
    bounded = bool(np.any(np.isfinite(lb)) or np.any(np.isfinite(ub)))
    method = default_method(method, bounded, loss)
    free_b = lb < ub
    check_method(
        method,
        bool(
            np.any(free_b) and bounded and np.any(np.isfinite(lb[free_b]) | np.isfinite(ub[free_b]))
        ),
    )
    return FitSetup(p0a, style, names, lb, ub, method, dt, fs)


def check_model_output(
    f: Any,
    style: str,
    x: np.ndarray,
    p0: np.ndarray,
    dt: np.dtype,
    model_name: str = "f",
) -> bool:
    """Probe the model on the points ``x`` (one chunk); whether JAX can trace it.

    Raises
    ------
    ValueError
        The model fails at ``p0``, returns complex values, does not return one value
        per point, or is not point-by-point (:mod:`curvax.core.pointwise`).
    """
    n_pts = int(np.shape(x)[-1])
    if not np.all(np.isfinite(x)):
        x = np.where(np.isfinite(x), x, 0.0)
    try:
        traceable, shape = probe_model(f, style, x, p0, dt)
    except ValueError as err:
        msg = str(err)
        if model_name != "f" and msg.startswith("f: "):
            raise ValueError(f"{model_name}: {msg[3:]}") from err
        raise
    if shape not in ((n_pts,), (), (1,)):
        raise ValueError(
            f"{model_name}: the model returned shape {shape} for a chunk of {n_pts} points; "
            "it must return one value per point"
        )
    if n_pts >= 2 and not is_pointwise(f, style, x, -1, p0, dt):
        raise ValueError(
            f"{model_name}: the model is not point-by-point (its value at a point depends "
            "on the other points, e.g. through mean(x), a cumulative sum or len(x)), so it "
            "cannot be fitted chunk by chunk; fit the data in memory with fit_curve, which "
            "gives such a model all the points at once"
        )
    return traceable


# --- the front door ------------------------------------------------------------------


def _progress_hooks(
    show: bool, source: ChunkSource, chunk_size: int
) -> tuple[Callable | None, Callable[[], None]]:
    if not show:
        return None, lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError as err:  # pragma: no cover - optional dependency
        raise ImportError("show_progress=True needs tqdm: pip install 'curvax[progress]'") from err
    total = len(source.plan(chunk_size)) if source.random_access else None
    bar = tqdm(total=total, unit="chunk", desc="pass 1", leave=False)
    state = {"pass": 0}

    def on_chunk(pass_index: int, chunk_index: int, n: int) -> None:
        if pass_index != state["pass"]:
            state["pass"] = pass_index
            bar.reset(total=total)
            bar.set_description(f"pass {pass_index + 1}")
        bar.update(1)

    return on_chunk, bar.close


def fit_chunked(
    f: Callable[..., Any],
    source: Any,
    p0: Any = None,
    *,
    y: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    bounds: Any = (-np.inf, np.inf),
    method: str | None = None,
    jac: Any = None,
    loss: str | Callable[..., Any] = "linear",
    f_scale: float = 1.0,
    ftol: float = DEFAULT_TOL,
    xtol: float = DEFAULT_TOL,
    gtol: float = DEFAULT_TOL,
    x_scale: Any = "jac",
    max_nfev: int | None = None,
    dtype: Any = None,
    param_style: str = "auto",
    param_names: tuple[str, ...] | None = None,
    fixed: Mapping[str, float] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    block_size: int | None = None,
    nan_policy: str | None = None,
    on_chunk_error: str = "raise",
    max_retries: int = 3,
    retry_backoff: float = 0.05,
    prefetch: bool = True,
    show_progress: bool = False,
    on_pass: Callable[[int, np.ndarray, float], None] | None = None,
    devices: Any = None,
) -> LargeFitResult:
    """Fit ``f`` to data read chunk by chunk; the same answer as the in-memory fit.

    Minimises ``C(p) = ½ Σ_i ρ(r_i²)``, ``r_i = (f(x_i, p) − y_i)/σ_i``, over all points
    of ``source``, with the solver of :func:`curvax.fit_curve` (see module docstring).

    Parameters
    ----------
    f : callable
        Model ``f(x, a, b, ...)`` or ``f(x, params)`` (``jax.numpy``).
    source : ChunkSource, array_like or callable
        A source from :mod:`curvax.scale.sources`; x data (arrays or memmaps, with
        ``y=`` and optional ``sigma=``); or a callable returning a fresh iterator of
        ``(x, y[, sigma])`` chunks per pass.  Dask arrays (with ``y=``, ``sigma=``) or a
        :class:`~curvax.scale.dask_backend.DaskSource` are reduced on the Dask workers
        where their blocks live (:mod:`curvax.scale.dask_backend`).
    p0 : array_like, optional
        Start (default: the model's ``guess`` on the first chunk, else ones).
    sigma : array_like (n,), optional
        One uncertainty per point; a 2-D sigma (covariance) is refused, since it
        couples points of different chunks.
    fixed : mapping, optional
        ``{name: value}``: hold these parameters at these values (as in
        :func:`curvax.fit_curve`); a value must lie inside the parameter's bounds.
    chunk_size : int
        Points computed per kernel call (and read per chunk for sources that read by
        ranges).  Any value gives the same answer; it trades memory for overhead.
    block_size : int, optional
        Inner block of the per-chunk kernel (as in :func:`curvax.fit_curve`; default:
        the platform's, :func:`curvax.core.engine.reduction_defaults`).
    nan_policy : {None, 'raise', 'omit'}
        Rows with NaN/Inf: error (default) or left out and counted in
        ``extra['n_omitted']``.
    on_chunk_error : {'raise', 'skip'}
        A chunk unreadable after ``max_retries`` retries (back-off doubling from
        ``retry_backoff`` s) raises :class:`~curvax.scale.sources.ChunkReadError`, or is
        left out of the whole fit and reported in ``extra['chunks_skipped']``.
    prefetch : bool
        Read the next chunk in a background thread while computing the current one.
    devices : None, 'all', int, list of devices or Mesh
        Split each chunk's points over several devices (as in :func:`curvax.fit_curve`);
        only the per-device factors are combined, so the answer is unchanged.
    show_progress : bool
        A tqdm bar over the chunks of each pass.
    on_pass : callable, optional
        ``on_pass(n_passes, params, cost)`` after each pass (checkpoints, logging).
    Other parameters
        As in :func:`curvax.fit_curve` (``bounds``, ``method``, ``loss``, ``f_scale``,
        tolerances, ``x_scale``, ``max_nfev``, ``jac``, ``dtype``, ``absolute_sigma``).

    Returns
    -------
    LargeFitResult

    Raises
    ------
    ValueError
        Invalid input (named), NaN data under the default policy, mismatched chunk
        lengths, an empty source, or a source that changes between passes.
    ChunkReadError
        A chunk could not be read and ``on_chunk_error='raise'``.
    """
    if not callable(f):
        raise TypeError(f"f: expected a callable model, got {type(f).__name__}")
    f, jac = canonical_function(f), canonical_function(jac)  # chunk kernels are cached by f
    src = as_source(source, y, sigma)
    mesh = resolve_mesh(devices)
    dt, fs, (ftol_, xtol_, gtol_) = check_solver_options(dtype, loss, f_scale, ftol, xtol, gtol)
    for name, v in (("chunk_size", chunk_size), ("block_size", block_size)):
        if v is None and name == "block_size":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    platform_block, gram = reduction_defaults(mesh)
    if block_size is None:
        block_size = platform_block
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries: expected a non-negative integer, got {max_retries!r}")

    read_policy = ReadPolicy(max_retries=max_retries, retry_backoff=float(retry_backoff))
    sample = with_retries(lambda: src.sample(1024), read_policy)
    setup = check_fit_setup(
        f,
        p0,
        bounds=bounds,
        method=method,
        loss=loss,
        f_scale=f_scale,
        dtype=dt,
        param_style=param_style,
        fixed=fixed,
        param_names=param_names,
        sample=sample,
    )
    p0a, style, names, lb, ub, method = (
        setup.p0, setup.style, setup.names, setup.lb, setup.ub, setup.method
    )
    n = p0a.size
    xs = check_x_scale(x_scale, n, lb, ub)
    nfev = check_max_nfev(max_nfev, default_max_nfev(n))

    traceable = check_model_output(f, style, sample.x, p0a, dt)
    if traceable:
        jmode = jac_mode(jac, n, min(block_size, chunk_size))
    else:
        warnings.warn(
            "f: the model cannot be traced by JAX; curvax fits it through a slower host "
            "path with finite differences. Write it with jax.numpy for the compiled path.",
            PerformanceWarning,
            stacklevel=2,
        )
        jmode = "host"

    fixed = lb == ub
    gram = gram_style(gram, int(chunk_size), dt, mesh, eligible=traceable)
    kernel = Kernel(
        kind="pointwise",
        fn=f,
        param_style=style,
        jac=jmode,
        loss=loss,
        method=method,
        jac_scale=xs is None,
        block_size=int(min(block_size, chunk_size)),
        gram=gram,
        fixed=tuple(bool(v) for v in fixed) if fixed.any() else None,
        mesh=mesh,
    )
    free = ~fixed
    reducer_cls = HostReducer
    if isinstance(src, DaskSource):
        # Blocks are reduced where they live; Dask retries failed tasks itself.
        if on_chunk_error != "raise":
            raise ValueError(
                "on_chunk_error: only 'raise' applies to Dask data (Dask recomputes or "
                f"retries failed blocks itself), got {on_chunk_error!r}"
            )
        reducer_cls = DaskReducer
    on_chunk, close_bar = _progress_hooks(show_progress, src, int(chunk_size))
    reducer = reducer_cls(
        kernel,
        src,
        int(free.sum()),
        dt,
        fs,
        int(chunk_size),
        nan_policy=nan_policy,
        on_chunk_error=on_chunk_error,
        read_policy=read_policy,
        p_full=p0a if fixed.any() else None,
        prefetch=prefetch,
        on_chunk=on_chunk,
        on_pass=on_pass,
    )
    x0 = p0a[free]
    if method == "trf":
        x0 = strictly_feasible(x0, lb[free], ub[free])
    try:
        res = _finish_fit(
            reducer,
            method,
            x0,
            lb[free],
            ub[free],
            None if xs is None else xs[free],
            ftol_,
            xtol_,
            gtol_,
            nfev,
            absolute_sigma,
            names,
            loss,
            p0a,
            free,
            src,
        )
    finally:
        close_bar()
    if isinstance(reducer, DaskReducer):
        res.extra.update(reducer.books())
    return res


def _finish_fit(
    reducer: HostReducer,
    method: str,
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    xs: np.ndarray | None,
    ftol: float,
    xtol: float,
    gtol: float,
    nfev: int,
    absolute_sigma: bool,
    names: tuple[str, ...] | None,
    loss: Any,
    p_full: np.ndarray,
    free: np.ndarray,
    src: ChunkSource,
) -> LargeFitResult:
    """First pass (counts the points), solve, covariance, result."""
    cost0, _, bad0 = reducer.reduce(x0)  # fixes m; cached for the solver's first call
    if not np.isfinite(cost0) or bad0:
        raise ValueError(
            "p0: the residuals or their Jacobian are not finite at the initial point "
            f"({bad0} non-finite entries, cost={cost0!r}); check the model, the data and p0"
        )
    m = reducer.n_used
    if m < x0.size:
        raise ValueError(f"data: {m} usable points are fewer than the {x0.size} free parameters")
    sol = run_solver(reducer, method, x0, lb, ub, xs, ftol, xtol, gtol, nfev, m)
    status = int(sol.status)
    if status == FAR_FROM_MINIMUM_STATUS:  # probed as an in-memory fit is: one more pass
        status = judge_refusal(sol, lb, ub, m, reducer.dtype, loss, reducer.costs_at)
    R = np.asarray(sol.reduction.R, dtype=np.float64)
    cost = float(sol.reduction.cost)
    pcov_free, _ = covariance_from_factor(R, m, cost, absolute_sigma)
    x_free = np.asarray(sol.x, dtype=np.float64)
    n_all = free.size
    x = np.array(p_full, dtype=np.float64)
    x[free] = x_free
    pcov = np.zeros((n_all, n_all))
    pcov[np.ix_(free, free)] = pcov_free
    if not np.all(np.isfinite(pcov_free)):
        pcov[:] = np.inf
    grad = np.zeros(n_all)
    grad[free] = np.asarray(sol.reduction.grad, dtype=np.float64)
    active = np.zeros(n_all, dtype=int)
    active[free] = np.asarray(sol.active_mask)
    linear = isinstance(loss, str) and loss == "linear"
    chisqr = 2.0 * cost if linear else reducer.residual_sum_of_squares(x_free)
    ref = reducer.reference
    skipped_pts = 0
    if ref is not None and src.random_access:
        n_read = len(ref.chunk_points)
        plan_total = src.n_points if src.n_points is not None else 0
        skipped_pts = max(0, plan_total - sum(ref.chunk_points)) if n_read else 0
    extra = {
        "n_points": m,
        "n_omitted": reducer.n_omitted,
        "chunks_skipped": sorted(reducer.skipped),
        "skip_reasons": dict(reducer.skipped),
        "points_skipped": skipped_pts,
        "n_passes": reducer.n_passes,
        "chunk_size": reducer.chunk_size,
        "oom_halvings": reducer.oom_halvings,
        "redone_chunks": reducer.redone_chunks,
        "read_seconds": reducer.read_seconds,
        "source_fingerprint": src.fingerprint(),
    }
    return LargeFitResult(
        chisqr=chisqr,
        x=x.astype(reducer.dtype),
        pcov=pcov,
        status=status,
        cost=cost,
        initial_cost=float(sol.initial_cost),
        fun=np.empty(0),
        grad=grad,
        nfev=int(sol.nfev),
        njev=int(sol.njev),
        nit=int(sol.nit),
        optimality=float(sol.optimality),
        active_mask=active,
        dtype=reducer.dtype,
        method=method,
        loss=loss if isinstance(loss, str) else "custom",
        param_names=names,
        jac_fn=None,
        n_points=m,
        absolute_sigma=absolute_sigma,
        extra=extra,
    )
