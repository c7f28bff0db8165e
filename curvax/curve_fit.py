"""``curve_fit``: a drop-in replacement for ``scipy.optimize.curve_fit``.

Fits ``ydata ≈ f(xdata, *params)`` by minimising

    C(p) = ½ Σ_i ρ(r_i²),     r = W (f(xdata, p) − ydata),

where ``W = diag(1/σ)`` for a 1-D ``sigma``, ``W = L⁻¹`` with ``Σ = L Lᵀ`` for a 2-D
``sigma`` (the covariance of ``ydata``), and ``W = I`` without ``sigma``; ρ is the
robust loss (ordinary least squares by default).  The returned covariance is the
Gauss–Newton one of :mod:`curvax.core.covariance`.

:func:`fit_curve` does the work and returns a :class:`~curvax.core.result.FitResult`;
:func:`curve_fit` wraps it with SciPy's return convention.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from curvax.compilation_cache import persistent_cache_enabled
from curvax.core.data_source import DataSource, not_kept
from curvax.core.device_data import data_stats, is_device_data, mask_device, pad_device
from curvax.core.engine import Kernel, gram_style, platform, reduction_defaults
from curvax.core.host_buffers import aligned_empty, pooled_empty
from curvax.core.least_squares import DEFAULT_TOL, default_max_nfev, jac_mode
from curvax.core.memo import BoundedCache, canonical_function, hashable
from curvax.core.mixed_precision import (
    FLOAT32_TOL,
    MixedPrecisionConfig,
    UpgradeTrigger,
)
from curvax.core.mixed_precision import resolve as resolve_mixed_precision
from curvax.core.monitor import Monitor
from curvax.core.pointwise import is_pointwise
from curvax.core.problem import (
    adapt_model,
    count_model_params,
    detect_param_style,
    signature_param_names,
    traced_output_shape,
)
from curvax.core.result import FitResult
from curvax.core.separate_rows import rows_block_size
from curvax.core.sharding import (
    agree_on_counts,
    broadcast_from_first,
    is_multi_process,
    local_device_count,
    mesh_size,
    place,
    resolve_mesh,
    round_up,
)
from curvax.core.solve import precision, solve, to_device
from curvax.core.sparsity import check_mode as check_sparse_mode
from curvax.core.sparsity import greedy_colouring, n_groups, pointwise_pattern
from curvax.core.start import default_start
from curvax.core.threaded import MIN_POINTS, default_workers
from curvax.core.validation import (
    apply_fixed,
    as_ydata,
    by_name,
    check_feasible,
    check_free_parameters,
    check_jac_sparsity,
    check_magnitude,
    check_magnitude_value,
    check_max_nfev,
    check_method,
    check_solver_options,
    check_x0,
    check_x_scale,
    default_method,
    first_bad,
    prepare_bounds,
    prepare_sigma,
    refuse_complex,
    sigma_array,
)
from curvax.warnings import OptimizeWarning, PerformanceWarning

NAN_POLICIES = (None, "raise", "omit", "propagate")

_SOLVER_KWARGS = {
    "ftol",
    "xtol",
    "gtol",
    "x_scale",
    "loss",
    "f_scale",
    "max_nfev",
    "maxfev",
    "callbacks",
    "timeout",
    "fixed",
    "param_names",
    "bucket",
    "mixed_precision",
    "multistart",
    "n_starts",
    "sampler",
    "dtype",
    "param_style",
    "block_size",
    "workers",
    "verbose",
    "jac_sparsity",
    "devices",
}


def _as_xdata(xdata: Any, n: int) -> tuple[Any, int | None]:
    """Numeric xdata and the axis along which its points lie (None: opaque object)."""
    if isinstance(xdata, (list, tuple)) or getattr(xdata, "dtype", None) is not None:
        refuse_complex(xdata, "xdata")  # float64 conversion would keep the real part
    try:
        x = np.asarray(xdata, dtype=np.float64)
    except (TypeError, ValueError):
        return xdata, None
    return x, _points_axis(x.shape, n)


def _points_axis(shape: tuple[int, ...], n: int) -> int:
    """The axis of an xdata of ``shape`` along which its ``n`` points lie (-1 or 0)."""
    if len(shape) == 0:
        raise ValueError("xdata: must be an array of length len(ydata), got a scalar")
    if shape[-1] == n:
        return -1
    if shape[0] == n:
        return 0
    raise ValueError(
        f"xdata: shape {shape} has no axis of length {n} = len(ydata); xdata and ydata "
        "must describe the same points"
    )




def _numeric(a: Any) -> bool:
    """True if ``a`` is a real numeric array (or converts to one)."""
    if isinstance(a, (np.ndarray, jax.Array)):
        return a.dtype.kind in "biuf"
    try:
        return np.asarray(a).dtype.kind in "biuf"
    except (TypeError, ValueError):
        return False


def _device_data(
    xdata: Any, ydata: jax.Array, check_finite: bool, nan_policy: str | None
) -> tuple[jax.Array, jax.Array, int]:
    """``(y, x, x axis)`` of data whose ``ydata`` is a ``jax.Array``, checked on its device.

    The checks are those of the host path — shape, finite values (``check_finite``),
    NaN (``nan_policy='raise'``), magnitude — from one pass over the data on the
    device (:func:`curvax.core.device_data.data_stats`); the data are copied to the host
    only to name the first bad value in an error message.  A NumPy ``xdata`` is moved to
    ``ydata``'s device.
    """
    refuse_complex(ydata, "ydata")
    refuse_complex(xdata, "xdata")
    if ydata.dtype.kind not in "biuf":
        raise ValueError(f"ydata: dtype {ydata.dtype} is not supported (real numbers only)")
    if ydata.ndim != 1:
        as_ydata(np.asarray(ydata))  # raises the host path's error for this shape
    if ydata.size == 0:
        raise ValueError("ydata: must not be empty")
    n = ydata.shape[0]
    with jax.enable_x64(True):
        y = ydata if ydata.dtype.kind == "f" else ydata.astype(np.float64)
        if isinstance(xdata, jax.Array):
            x = xdata if xdata.dtype.kind == "f" else xdata.astype(np.float64)
        else:
            x = jax.device_put(np.asarray(xdata, dtype=np.float64), next(iter(ydata.devices())))
    axis = _points_axis(x.shape, n)
    stats = data_stats(x, y, axis % x.ndim)
    if check_finite and stats.nonfinite_y:
        raise ValueError(f"ydata: contains NaN or Inf ({first_bad(np.asarray(y))})")
    if check_finite and stats.nonfinite_x:
        raise ValueError(f"xdata: contains NaN or Inf ({first_bad(np.asarray(x))})")
    if nan_policy == "raise" and stats.nan_points:
        raise ValueError(
            f"xdata/ydata: {stats.nan_points} point(s) contain NaN (nan_policy='raise')"
        )
    check_magnitude_value(stats.max_abs_y)
    return y, x, axis


_PROBE_CACHE: BoundedCache[tuple[bool, tuple]] = BoundedCache(256)


def probe_model(
    model: Callable[..., Any],
    style: str,
    x: Any,
    p0: np.ndarray,
    dt: np.dtype,
    x_shape: tuple[int, ...] | None = None,
) -> tuple[bool, tuple]:
    """Whether JAX can trace ``model`` and the shape it returns at ``p0``.

    Tracing is abstract (``jax.eval_shape``; nothing is computed); ``x_shape``, when
    given, is the (bucket-padded) shape the compiled fit will see, so that tracing
    happens only at the few bucket shapes (JAX caches a trace per shape).  Results are
    memoised per (model, style, x shape, number of parameters, dtype) in a small
    bounded cache, so repeated fits of the same model pay nothing here.  A model that
    cannot be traced is evaluated once with NumPy to check that it works at all.
    """
    key = None
    if isinstance(x, (np.ndarray, jax.Array)):
        x_shape = x.shape if x_shape is None else tuple(x_shape)
        key = hashable((model, style, x_shape, p0.size, dt))
    cached = _PROBE_CACHE.get(key)
    if cached is not None:
        return cached
    g = adapt_model(model, style)
    with jax.enable_x64(dt == np.float64):
        x_probe = jax.ShapeDtypeStruct(x_shape, dt) if x_shape is not None else x
        traced = traced_output_shape(g, x_probe, p0.astype(dt))
        traceable = traced is not None
        if traced is not None:
            shape = traced
        else:
            try:
                out = g(x, p0)
            except Exception as err:
                raise ValueError(f"f: the model raised {type(err).__name__} at p0: {err}") from err
            kind = np.asarray(out).dtype.kind if out is not None else "O"
            if kind not in "biuf":
                what = "complex" if kind == "c" else type(out).__name__
                raise ValueError(
                    f"f: the model must return real numbers (an array of float values), "
                    f"got {what} at p0"
                )
            shape = np.shape(out)
    return _PROBE_CACHE.put(key, (traceable, shape))


def probe_jacobian(
    jac: Callable[..., Any],
    style: str,
    x_shape: tuple[int, ...],
    p0: np.ndarray,
    dt: np.dtype,
    n_points: int,
) -> None:
    """Check a callable ``jac`` by tracing it at ``p0`` on the fit's (padded) x shape:
    it must be traceable by JAX and return one row per point and one column per
    parameter.

    Raises
    ------
    ValueError
        Naming ``jac``, if it cannot be traced or returns another shape.
    """
    g = adapt_model(jac, style)
    try:
        with jax.enable_x64(dt == np.float64):
            out = jax.eval_shape(
                g, jax.ShapeDtypeStruct(x_shape, dt), jax.ShapeDtypeStruct(p0.shape, dt)
            )
    except Exception as err:
        raise ValueError(
            f"jac: the callable Jacobian could not be traced by JAX at p0 "
            f"({type(err).__name__}); write it with jax.numpy, or pass jac=None"
        ) from err
    rows = x_shape[-1] if len(x_shape) == 1 else None
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) != 2 or shape[1] != p0.size or (rows is not None and shape[0] != rows):
        got = shape if rows is None or len(shape) != 2 else (n_points, *shape[1:])
        raise ValueError(
            f"jac: the callable Jacobian returned shape {got} at p0; expected "
            f"(len(ydata), len(p0)) = ({n_points}, {p0.size})"
        )


BUCKET_MIN = 32


def bucket_size(n: int) -> int:
    """Padded size for ``n`` points: the next power of two up to 2¹⁷, then the next
    multiple of a quarter octave (≤ 25 % padding).  Sizes below ``BUCKET_MIN`` are kept.

    Data sets of differing length then share compiled programs: e.g. any lengths
    between 10³ and 10⁵ fall in 8 buckets.
    """
    if n < BUCKET_MIN:
        return n
    if n <= 2**17:
        return 1 << (n - 1).bit_length()
    step = 1 << ((n.bit_length() - 1) - 2)
    return -(-n // step) * step


def pad_points(a: Any, size: int, axis: int) -> Any:
    """Pad ``a`` along ``axis`` to ``size`` by repeating its last point.

    The padded copy is C-contiguous and 64-byte aligned, as the compiled fit takes its
    arguments (:func:`curvax.core.host_buffers.aligned`), so it is not copied again; its
    memory is reused from fit to fit (:mod:`curvax.core.host_buffers`).  A
    ``jax.Array`` is padded on its device (:func:`curvax.core.device_data.pad_device`).
    """
    n = a.shape[axis]
    if size == n:
        return a
    if isinstance(a, jax.Array):
        return pad_device(a, size, axis % a.ndim)
    axis = axis % a.ndim
    shape = list(a.shape)
    shape[axis] = size
    out = pooled_empty(tuple(shape), a.dtype)
    lead = (slice(None),) * axis
    out[(*lead, slice(0, n))] = a
    out[(*lead, slice(n, size))] = a[(*lead, slice(n - 1, n))]
    return out


def _filled_mask(mask: np.ndarray, n: int) -> np.ndarray:
    mask[:n] = True
    mask[n:] = False
    mask.flags.writeable = False
    return mask


@functools.lru_cache(maxsize=16)
def _point_mask(n: int, size: int) -> np.ndarray:
    return _filled_mask(aligned_empty((size,), np.dtype(bool)), n)


def point_mask(n: int, size: int) -> np.ndarray:
    """``size`` flags, True for the first ``n`` (the real points), aligned as
    :func:`pad_points`; read-only.

    Masks of up to 2¹⁶ points are kept (the last 16: at most 1 MB), since fits of
    the same size bucket repeat them; larger ones are written into pooled memory
    (:mod:`curvax.core.host_buffers`).
    """
    if size <= 1 << 16:
        return _point_mask(n, size)
    return _filled_mask(pooled_empty((size,), np.dtype(bool)), n)


def _fit_mixed_precision(
    mp: MixedPrecisionConfig,
    kernel: Kernel,
    data: dict,
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    max_nfev: int,
    callbacks: Any,
    timeout: float | None,
    solve_args: dict,
) -> FitResult:
    """float32 phase watched by :class:`UpgradeTrigger`, then float64 from there."""
    trigger = UpgradeTrigger(mp)
    mon32 = Monitor([*(callbacks or ()), trigger], timeout)
    k32 = dataclasses.replace(kernel, monitored=True)
    big = float(np.finfo(np.float32).max) / 16
    in_range = all(
        np.all(np.abs(v) < big)
        for v in data.values()
        if isinstance(v, np.ndarray) and v.dtype.kind == "f"
    )
    try:
        if not in_range:
            raise ValueError("data outside the float32 range")
        r32: FitResult | None = solve(
            k32,
            data,
            x0,
            lb,
            ub,
            max_nfev=max_nfev,
            dtype=np.dtype(np.float32),
            monitor=mon32,
            **solve_args,
        )
    except ValueError:  # not finite at p0 in float32 (overflow): go straight to float64
        r32 = None
        trigger.reason = "non-finite values"
    if r32 is not None:
        user_stop = r32.status == -2 and trigger.reason is None
        tolerances_ok = min(solve_args["ftol"], solve_args["xtol"], solve_args["gtol"]) >= (
            FLOAT32_TOL
        )
        if user_stop or r32.status == -3 or (r32.success and tolerances_ok):
            r32.extra["precision_upgraded"] = False
            return r32
        if trigger.reason is None:
            trigger.reason = "float32 cannot meet the requested tolerances"
    free_x = x0 if r32 is None else np.asarray(r32.x, dtype=np.float64)
    if kernel.fixed is not None and r32 is not None:
        free_x = free_x[~np.asarray(kernel.fixed)]
    if not np.all(np.isfinite(free_x)):
        free_x = x0
    used = 0 if r32 is None else r32.nfev
    mon64 = Monitor(callbacks or (), timeout) if kernel.monitored else None
    res = solve(
        kernel,
        data,
        np.clip(free_x, lb, ub),
        lb,
        ub,
        max_nfev=max(max_nfev - used, 2),
        dtype=np.dtype(np.float64),
        monitor=mon64,
        **solve_args,
    )
    res.nfev += used
    res.njev += used
    res.extra["precision_upgraded"] = True
    res.extra["upgrade_reason"] = trigger.reason
    res.extra["float32_nfev"] = used
    return res


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[str, str, str]:
    """Versions of curvax, JAX and NumPy (fixed for the life of the process)."""
    import curvax

    return curvax.__version__, jax.__version__, np.__version__


def _fingerprint(*arrays: Any) -> str:
    """BLAKE2b hash of the shapes and of at most 4096 evenly spaced values of each array
    (scalars count as arrays; other objects are skipped)."""
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        if isinstance(arr, (int, float, np.generic)):
            arr = np.asarray(arr, dtype=np.float64)
        if isinstance(arr, (np.ndarray, jax.Array)):
            h.update(str(arr.shape).encode())
            flat = arr.reshape(-1)
            step = max(1, flat.size // 4096)
            h.update(np.ascontiguousarray(np.asarray(flat[::step]), dtype=np.float64))
    return h.hexdigest()


def fit_metadata(
    x: Any,
    y: np.ndarray,
    dt: np.dtype,
    weights: Any = None,
    *,
    fingerprints: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Reproducibility record: versions, device, dtype, options, data size and fingerprints.

    ``data_fingerprint`` hashes x and y, ``weights_fingerprint`` the ``sigma`` given
    (``weights``; None without one): shapes and at most 4096 evenly spaced values each
    (cheap at any size; they identify a data set, they do not prove two large data sets
    identical).  :func:`curvax.insight.f_test` uses them to tell fits of other data or
    weights apart when the results were loaded from JSON.  With ``fingerprints=False``
    (a fit with ``keep_data=False``) both are None.
    """
    dev = jax.devices()[0]
    curvax_version, jax_version, numpy_version = _library_versions()
    return {
        "curvax_version": curvax_version,
        "jax_version": jax_version,
        "numpy_version": numpy_version,
        "device": f"{dev.platform}:{dev.device_kind}",
        "dtype": dt.name,
        "n_points": int(y.size),
        "data_fingerprint": _fingerprint(x, y) if fingerprints else None,
        "weights_fingerprint": (
            None if weights is None or not fingerprints else _fingerprint(weights)
        ),
        "options": options,
    }


def fit_curve(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    check_finite: bool | None = None,
    bounds: Any = (-np.inf, np.inf),
    method: str | None = None,
    jac: Any = None,
    *,
    nan_policy: str | None = None,
    ftol: float = DEFAULT_TOL,
    xtol: float = DEFAULT_TOL,
    gtol: float = DEFAULT_TOL,
    x_scale: Any = "jac",
    loss: str | Callable[..., Any] = "linear",
    f_scale: float = 1.0,
    max_nfev: int | None = None,
    dtype: Any = None,
    param_style: str = "auto",
    block_size: int | None = None,
    workers: int | None = None,
    param_names: tuple[str, ...] | None = None,
    fixed: Mapping[str, float] | None = None,
    bucket: bool = True,
    mixed_precision: bool | MixedPrecisionConfig | None = None,
    callbacks: Any = None,
    timeout: float | None = None,
    devices: Any = None,
    jac_sparsity: Any = None,
    keep_data: bool = True,
) -> FitResult:
    """Fit ``f`` to data and return a :class:`FitResult` (see :func:`curve_fit`).

    Parameters can be given by name: ``p0`` and ``bounds`` may be dicts keyed by the
    model's parameter names (``bounds={'rate': (0, np.inf)}``), and
    ``fixed={'offset': 0.0}`` holds parameters at a value without rewriting the model.

    ``mixed_precision`` (True/False or a config; default: the setting of
    :func:`curvax.configure_mixed_precision`) starts the fit in float32 and continues in
    float64 when float32 runs out (:mod:`curvax.core.mixed_precision`).

    With ``bucket=True`` (default) the points are padded to a size bucket
    (:func:`bucket_size`) with masked, zero-weight copies of the last point, so that
    data sets of differing length reuse compiled programs; the answer is unchanged.

    ``devices`` spreads the points over several devices (``'all'``, a count, a list of
    devices or a one-axis mesh; :mod:`curvax.core.sharding`): each device reduces its
    share and only (p+1)×(p+1) factors are exchanged, so the answer equals the
    single-device fit up to rounding.  The points are padded with masked copies to a
    multiple of the number of devices.

    Unlike :func:`curve_fit`, a fit that does not converge is returned (check
    ``result.success``), not raised.  ``callbacks`` (see :mod:`curvax.callbacks`) are
    called every iteration; ``timeout`` (seconds) stops the fit cleanly with status
    -3 and the best point so far.

    ``block_size`` is the number of points reduced together (default: 4096 on a CPU,
    where a block's Jacobian stays in cache; 2²² on a GPU or TPU, where each block is
    reduced in one fused pass over the data; :func:`curvax.core.engine.reduction_defaults`).

    ``workers`` is the number of CPU threads that share the reduction of the data
    (default: the cores this process may use, for data of at least 2²⁰ points on a CPU;
    otherwise 1; :mod:`curvax.core.threaded`).  The answer does not depend on it beyond
    rounding (the parts' Gram matrices are added in a fixed order).  With the persistent
    compilation cache on (:func:`curvax.enable_persistent_cache`) the default is 1: the
    threaded program calls back to the host, and JAX does not store such programs, so
    every new process would compile it again (~0.9 s at 10⁶ points, against ~10 ms
    saved per fit); pass ``workers`` to choose threads anyway.

    A model whose value at a point depends on the other points (``x - mean(x)``, a
    cumulative sum, ``len(x)``, a closed-over array of the data's length) is recognised
    on first use (:mod:`curvax.core.pointwise`) and fitted as SciPy does: on all the
    points at once, unpadded, in one block and on one thread.  It cannot be combined
    with ``devices``, ``workers > 1`` or ``jac_sparsity='auto'``, which split the points.

    ``keep_data=False`` makes a result that cannot compute ``fun`` or ``jac`` (reading
    them raises ``ValueError``) and so need not guard the data for later: the input
    arrays are neither fingerprinted nor copied when the fit starts (one pass over x
    and y: ~0.9 ms at 10⁶ points, ~8 ms at 10⁷), and its metadata carries no data
    fingerprints (``None``; ~90 µs of hashing at 10⁴–10⁵ points).  :func:`curve_fit`
    fits this way unless ``full_output`` or ``callbacks`` can hand the result out.

    ``jac_sparsity`` declares which ``∂f(x_i)/∂p_j`` may be non-zero — an (N, n) or
    (n, N) boolean array, n ``slice`` objects (the points each parameter affects), or
    ``'auto'`` (detected from the model) — so that the Jacobian is evaluated with one
    pass per group of structurally orthogonal columns (:mod:`curvax.core.sparsity`).
    """
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    monitor = Monitor(callbacks or (), timeout) if (callbacks or timeout is not None) else None
    if not callable(f):
        raise TypeError(f"f: expected a callable model, got {type(f).__name__}")
    f, jac = canonical_function(f), canonical_function(jac)
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy: expected one of {NAN_POLICIES}, got {nan_policy!r}")
    if nan_policy == "propagate":
        raise ValueError(
            "nan_policy: 'propagate' is not supported by curve_fit (as in SciPy): a fit "
            "through NaN data has no meaningful answer; use 'omit' or 'raise'"
        )
    if check_finite is None:
        check_finite = nan_policy is None
    dt, fs, (ftol_, xtol_, gtol_) = check_solver_options(dtype, loss, f_scale, ftol, xtol, gtol)
    if block_size is not None and (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or block_size < 1
    ):
        raise ValueError(f"block_size: expected a positive integer, got {block_size!r}")
    if not isinstance(keep_data, (bool, np.bool_)):
        raise TypeError(f"keep_data: expected True or False, got {keep_data!r}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1
    ):
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    mesh = resolve_mesh(devices)
    platform_block, gram = reduction_defaults(mesh)
    block_given = block_size is not None
    if block_size is None:
        block_size = platform_block

    on_device = (
        is_device_data(ydata)
        and sigma is None
        and nan_policy != "omit"
        and p0 is not None
        and mesh is None
        and jac_sparsity is None
        and _numeric(xdata)
    )
    if on_device:  # checked and padded where the data lie (curvax.core.device_data)
        y, x, x_axis = _device_data(xdata, ydata, bool(check_finite), nan_policy)
    else:
        y = as_ydata(ydata)
        x, x_axis = _as_xdata(xdata, y.size)
    n_pts = y.size
    numeric_x = x_axis is not None

    y_magnitude = None  # max |y|, when the finite check has found it on the way
    if check_finite and not on_device:
        # max and min are NaN/Inf-propagating: both finite means every value is (one
        # pass each, no temporary, and the magnitude check below reuses them)
        hi, lo = (float(y.max()), float(y.min())) if y.size else (0.0, 0.0)
        if not (math.isfinite(hi) and math.isfinite(lo)):
            raise ValueError(f"ydata: contains NaN or Inf ({first_bad(y)})")
        y_magnitude = max(abs(hi), abs(lo))
        if numeric_x and not np.isfinite(x).all():
            raise ValueError(f"xdata: contains NaN or Inf ({first_bad(x)})")
    if nan_policy in ("raise", "omit") and not check_finite and not on_device:
        for name, a in (("ydata", y), ("xdata", x if numeric_x else None)):
            inf = None if a is None else np.isinf(a)
            if inf is not None and inf.any():  # NaN are handled below
                first = tuple(int(i) for i in np.argwhere(inf)[0])
                raise ValueError(
                    f"{name}: contains Inf ({int(inf.sum())} value(s), first at index "
                    f"{first}); nan_policy acts on NaN only, as in SciPy"
                )
    n_omitted = 0
    n_given, kept = n_pts, None  # rows of a jac_sparsity pattern that stay in the fit
    if nan_policy in ("raise", "omit") and not on_device:
        bad = np.isnan(y)
        if numeric_x:
            xb = np.isnan(np.moveaxis(x, x_axis, -1))
            bad = bad | xb.reshape(-1, n_pts).any(axis=0)
        if bad.any() and nan_policy == "raise":
            raise ValueError(
                f"xdata/ydata: {int(bad.sum())} point(s) contain NaN (nan_policy='raise')"
            )
        if bad.any():
            keep = ~bad
            kept = np.nonzero(keep)[0]
            n_omitted = int(bad.sum())
            y = y[keep]
            if numeric_x:
                x = np.take(x, np.nonzero(keep)[0], axis=x_axis)
            if sigma is not None:
                s = sigma_array(sigma, y.size + n_omitted)
                sigma = s[keep] if s.ndim == 1 else (s[np.ix_(keep, keep)] if s.ndim == 2 else s)
            n_pts = y.size
            if n_pts == 0:
                raise ValueError("xdata/ydata: no points left after omitting NaN")

    w, L = prepare_sigma(sigma, n_pts)
    if not on_device:
        check_magnitude(y, w, L, y_magnitude if n_omitted == 0 else None)
    if mesh is not None and L is not None:
        raise ValueError(
            "devices: a 2-D sigma (covariance of the data) couples all points, so the fit "
            "cannot be split over devices; pass a 1-D sigma or devices=None"
        )
    if mesh is not None and not numeric_x:
        raise ValueError(
            "devices: xdata must be a numeric array to be split over devices (the model "
            "receives a non-array xdata whole); pass devices=None"
        )

    names = getattr(f, "param_names", None)
    names = tuple(names) if names is not None else None
    n_sig = count_model_params(f)
    if param_names is not None:
        names = tuple(param_names)
    sig_names = signature_param_names(f) if names is None else None
    named = names if names is not None else sig_names
    if isinstance(p0, Mapping):
        p0 = [v for _, v in by_name(p0, named, "p0", require_all=True)]
    if isinstance(bounds, Mapping):
        pairs = dict(by_name(bounds, named, "bounds", require_all=False))
        for k, pair in pairs.items():
            if not (isinstance(pair, Sequence | np.ndarray) and len(pair) == 2):
                raise ValueError(
                    f"bounds: {k!r} needs a (lower, upper) pair, got {pair!r}"
                )
        bounds = (
            [pairs.get(k, (-np.inf, np.inf))[0] for k in named],
            [pairs.get(k, (-np.inf, np.inf))[1] for k in named],
        )
    fixed_named = dict(by_name(fixed, named, "fixed", require_all=False)) if fixed else {}
    if p0 is None:
        p0a = default_start(f, np.asarray(xdata) if not numeric_x else x, y, bounds)
    else:
        p0a = check_x0(p0, None)
    multi = is_multi_process(mesh)
    n_max = n_global = n_pts
    if multi:  # each process holds its own points; all must start from the same p0
        n_max, n_global = agree_on_counts(n_pts)
        p0a = broadcast_from_first(p0a)
    n = p0a.size
    style = detect_param_style(f, n, param_style)
    if style == "args" and n_sig is not None and n_sig != n:
        raise ValueError(f"p0: has {n} values but the model f takes {n_sig} parameters")
    if names is None and style == "args":
        names = sig_names if sig_names is not None and len(sig_names) == n else None
    if n_global < n:
        raise ValueError(
            f"xdata/ydata: {n_global} data points are fewer than the {n} parameters to fit"
        )

    if param_names is not None and len(names) != n:
        raise ValueError(
            f"param_names: has {len(names)} names but the model has {n} parameters"
        )
    lb, ub = prepare_bounds(bounds, n)
    apply_fixed(fixed_named, named, p0a, lb, ub)
    check_feasible(p0a, lb, ub)
    check_free_parameters(lb, ub)
    bounded = bool(np.isfinite(lb).any() or np.isfinite(ub).any())
    method = default_method(method, bounded, loss)
    check_method(  # bounds on a free parameter (lb == ub only holds one fixed)
        method,
        bounded
        and bool((lb < ub).any())
        and bool((np.isfinite(lb[lb < ub]) | np.isfinite(ub[lb < ub])).any()),
    )
    xs = check_x_scale(x_scale, n, lb, ub)
    nfev = check_max_nfev(max_nfev, default_max_nfev(n))

    # Model and Jacobian strategy.
    pointwise = not numeric_x or is_pointwise(f, style, x, x_axis, p0a, dt)
    if not pointwise:  # fitted as SciPy does: the model sees all the points at once
        if mesh is not None:
            raise ValueError(
                "devices: the model f is not point-by-point (its value at a point depends "
                "on the other points, or it returns a fixed-length array), so the points "
                "cannot be split over devices; pass devices=None"
            )
        if isinstance(jac_sparsity, str):
            raise ValueError(
                "jac_sparsity: 'auto' detects the pattern point by point, but the model f "
                "is not point-by-point (its value at a point depends on the other points)"
            )
        block_size = max(block_size, n_pts)
    if numeric_x:
        model = f
        x_arg: Any = x
    else:
        obj = xdata

        def model(_x: Any, *p: Any) -> Any:
            return f(obj, *p) if style == "args" else f(obj, p[0])

        if style == "array":
            model = lambda _x, p: f(obj, p)  # noqa: E731
        x_arg = np.zeros(n_pts)
        block_size = max(block_size, n_pts)
    size = bucket_size(n_max) if (bucket and L is None and numeric_x and pointwise) else n_max
    size = round_up(size, local_device_count(mesh) if multi else mesh_size(mesh))
    use_bucket = size != n_pts
    n_probe = size
    probe_shape = None
    if isinstance(x_arg, (np.ndarray, jax.Array)):
        probe_shape = list(x_arg.shape)
        probe_shape[x_axis if (x_axis == 0 and x_arg.ndim > 1) else -1] = n_probe
    traceable, shape = probe_model(model, style, x_arg, p0a, dt, probe_shape)
    if not traceable:
        n_probe = n_pts  # a NumPy model was evaluated on the real points
    if shape not in ((n_probe,), (), (1,)):
        raise ValueError(
            f"f: the model returned shape {shape} at p0 but ydata has shape ({n_pts},)"
        )
    if traceable:
        jmode = jac_mode(jac, n, min(block_size, n_pts))
        if callable(jac) and probe_shape is not None:
            probe_jacobian(
                jac, detect_param_style(jac, n, "auto"), tuple(probe_shape), p0a, dt, n_pts
            )
    else:
        warnings.warn(
            "f: the model cannot be traced by JAX (it uses NumPy or Python control flow "
            "on values); curvax fits it through a slower host path with finite "
            "differences. Write it with jax.numpy (import jax.numpy as jnp) for the "
            "compiled fast path.",
            PerformanceWarning,
            stacklevel=3,
        )
        jmode = "host"

    fixed = lb == ub
    any_fixed = bool(fixed.any())
    if not block_given and pointwise and jmode == "fwd" and jac_sparsity is None:
        block_size = rows_block_size(block_size, platform(mesh), int((~fixed).sum()))
    sparsity, colours = None, None
    if jac_sparsity is not None:
        if L is not None:
            raise ValueError(
                "jac_sparsity: not available with a 2-D sigma (the whitened residuals "
                "L⁻¹(f − y) couple all points, so their Jacobian is dense)"
            )
        jmode = check_sparse_mode(jmode, jac)
        ax = 0 if (x_axis == 0 and x.ndim > 1) else -1
        detect = isinstance(jac_sparsity, str)  # 'auto': detected on the points kept
        with jax.enable_x64(dt == np.float64):
            pattern = pointwise_pattern(
                jac_sparsity, model, style, x_arg, ax,
                n_pts if detect else n_given, p0a, lb, ub, int(block_size),
            )
        if kept is not None and not detect:
            pattern = pattern[kept]
        sparsity = check_jac_sparsity(pattern, n_pts, n, ~fixed)[:, ~fixed]
        colours = greedy_colouring(sparsity)
    gram = gram_style(gram, size, dt, mesh, eligible=pointwise and L is None)
    can_thread = (
        gram in ("dot", "kernel")
        and mesh is None
        and L is None
        and sparsity is None
        and pointwise
    )
    if workers is None:  # threads add a host callback: never in the persistent cache
        threads = can_thread and size >= MIN_POINTS and not persistent_cache_enabled()
        workers = default_workers() if threads else 1
    elif workers > 1 and not can_thread:
        raise ValueError(
            "workers: threads share the reduction of independent points on a CPU; not "
            "available on an accelerator, with devices=, a 2-D sigma, jac_sparsity or a "
            "model that is not point-by-point (pass workers=None or 1)"
        )
    kernel = Kernel(
        kind="cov" if L is not None else "pointwise",
        fn=model,
        param_style=style,
        jac=jmode,
        loss=loss,
        method=method,
        jac_scale=xs is None,
        block_size=int(block_size),
        gram=gram,
        workers=int(workers),
        fixed=tuple(fixed.tolist()) if any_fixed else None,
        monitored=monitor is not None,
        x_axis=0 if (x_axis == 0 and x.ndim > 1) else -1,
        jac_style=detect_param_style(jac, n, "auto") if callable(jac) else None,
        mesh=mesh,
        jac_colours=colours,
    )
    def build_data(xdata: Any, ydata: Any) -> dict[str, Any]:
        """The data the compiled fit takes: the points, padded to the bucket size."""
        data: dict[str, Any] = {"x": xdata, "y": ydata}
        if sparsity is not None:
            data["sparsity"] = sparsity
        if L is not None:
            data["L"] = L
        elif w is not None:
            data["w"] = w
        if use_bucket:
            axis = x_axis if x.ndim > 1 else -1
            data["x"] = pad_points(xdata, size, axis)
            data["y"] = pad_points(ydata, size, 0)
            if w is not None:
                data["w"] = pad_points(w, size, 0)
            data["mask"] = (
                mask_device(n_pts, size, ydata) if on_device else point_mask(n_pts, size)
            )
            if mesh is None:  # the real points come first: the padding blocks are skipped
                data["n_real"] = np.int32(n_pts)
            if sparsity is not None:
                data["sparsity"] = pad_points(sparsity, size, 0)
        if any_fixed:
            data["p_full"] = p0a
        return data

    data = build_data(x_arg, y)
    source = None  # a result rebuilds the padded data when it needs them (data_source)
    if mesh is not None:
        with precision(dt):
            data = place(to_device(data, dt), mesh, kernel.x_axis)
    else:
        source = (
            DataSource(build_data, {"xdata": x_arg, "ydata": y})
            if keep_data
            else not_kept(
                "fun/jac: this fit was made with keep_data=False (as curve_fit does "
                "without full_output), so its result cannot compute them; fit with "
                "fit_curve(..., keep_data=True), the default"
            )
        )
    free = ~fixed if any_fixed else slice(None)  # nothing fixed: views, not copies
    solve_args = dict(
        x_scale=None if xs is None else xs[free],
        f_scale=fs,
        ftol=ftol_,
        xtol=xtol_,
        gtol=gtol_,
        absolute_sigma=absolute_sigma,
        param_names=param_names or names,
        loss_name=loss if isinstance(loss, str) else "custom",
        fixed_values=p0a if any_fixed else None,
        n_points=n_global,
        n_local_points=n_pts if multi else None,
        source=source,
    )

    def describe() -> dict[str, Any]:
        """The entries of ``result.extra`` that do not depend on the outcome of the fit."""
        return {
            "n_omitted": n_omitted,
            "fixed_mask": fixed.tolist(),
            "metadata": fit_metadata(
                x_arg,
                y,
                dt,
                sigma,
                fingerprints=keep_data,
                method=method,
                loss=loss if isinstance(loss, str) else "custom",
                ftol=ftol_,
                xtol=xtol_,
                gtol=gtol_,
                x_scale=x_scale if isinstance(x_scale, str) else xs.tolist(),
                f_scale=fs,
                max_nfev=nfev,
                absolute_sigma=absolute_sigma,
                jac=str(jmode),
                sigma="none" if sigma is None else ("covariance" if L is not None else "1-D"),
                bounds=[lb.tolist(), ub.tolist()],
                n_omitted=n_omitted,
                devices=mesh_size(mesh),
            ),
        }

    mp = resolve_mixed_precision(mixed_precision)
    if mp.enable and dt == np.float64:
        res = _fit_mixed_precision(
            mp,
            kernel,
            data,
            p0a[free],
            lb[free],
            ub[free],
            nfev,
            callbacks,
            timeout,
            solve_args,
        )
        res.extra.update(describe())
    else:
        res = solve(
            kernel,
            data,
            p0a[free],
            lb[free],
            ub[free],
            max_nfev=nfev,
            dtype=dt,
            monitor=monitor,
            # computed while the compiled fit runs
            while_running=lambda: {"precision_upgraded": False, **describe()},
            **solve_args,
        )
    res._context = (f, style, (xdata, y, sigma))  # for predict/plot; not serialised
    if colours is not None:
        res.extra["jac_groups"] = n_groups(colours)
    return res


def curve_fit(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    check_finite: bool | None = None,
    bounds: Any = (-np.inf, np.inf),
    method: str | None = None,
    jac: Any = None,
    *,
    full_output: bool = False,
    nan_policy: str | None = None,
    **kwargs: Any,
) -> tuple:
    """Use nonlinear least squares to fit a function ``f`` to data (SciPy-compatible).

    Parameters
    ----------
    f : callable
        The model, ``f(x, p1, p2, ...)`` (SciPy's form) or ``f(x, params)``, written
        with ``jax.numpy`` (a NumPy-only model also works, on a slower path).
    xdata : array_like
        The independent variable: shape (N,), (k, N), or any object ``f`` accepts.
    ydata : array_like (N,)
        The observations.
    p0 : array_like, optional
        Initial guess.  Without it: the model's ``guess(x, y)`` when it has one (the
        models of :mod:`curvax.models`), else ones (inside bounds, as SciPy).
    sigma : None, scalar, (N,) or (N, N)
        Uncertainty of ``ydata``: standard deviations (1-D) or the covariance (2-D).
    absolute_sigma : bool
        If True, ``sigma`` is absolute and ``pcov`` is not rescaled by the residual
        variance (see :mod:`curvax.core.covariance`).
    check_finite : bool, optional
        Raise on NaN/Inf in the data (default: True unless ``nan_policy`` is given).
    bounds : (lb, ub) or Bounds
        Parameter bounds; ``lb == ub`` holds a parameter fixed.
    method : {'lm', 'trf'}, optional
        Default: ``'lm'`` without bounds and with the linear loss, else ``'trf'``.
    jac : callable, str or None
        ``jac(x, p1, p2, ...) -> (N, n)`` Jacobian of the model, or ``'2-point'`` /
        ``'3-point'`` / ``'cs'`` finite differences; default: automatic
        differentiation (exact).
    full_output : bool
        Also return ``infodict, mesg, ier``.
    nan_policy : {None, 'raise', 'omit'}
        What to do with NaN in the data; ``'propagate'`` raises as in SciPy.
    **kwargs
        ``ftol, xtol, gtol`` (default 1e-12), ``x_scale`` (default ``'jac'``; ``'bounds'``
        scales by the bound widths, see :func:`curvax.core.validation.check_x_scale`),
        ``loss``, ``f_scale``, ``max_nfev`` (``maxfev``), ``dtype`` ('float64' default or
        'float32'), ``param_style`` ('auto', 'args', 'array'), ``block_size``,
        ``callbacks`` (see :mod:`curvax.callbacks`), ``timeout`` (seconds),
        ``multistart=True`` with ``n_starts`` and ``sampler`` ('lhs', 'sobol', 'random';
        see :mod:`curvax.insight.multistart`), ``jac_sparsity`` (see :func:`fit_curve`).

    Returns
    -------
    popt : ndarray
        Optimal parameters.
    pcov : ndarray
        Estimated covariance of popt (all ``inf`` with an ``OptimizeWarning`` when it
        cannot be estimated).
    infodict : dict
        (full_output) ``nfev``, ``fvec`` (residuals), ``nit``, ``n_omitted``, and
        ``result`` (the full :class:`FitResult`).
    mesg : str
        (full_output) The reason the solver stopped.
    ier : int
        (full_output) The solver status (1–4 on success).

    Raises
    ------
    ValueError
        On invalid input (the message names the argument).
    RuntimeError
        If the fit does not converge ("Optimal parameters not found: ...").
    """
    unknown = set(kwargs) - _SOLVER_KWARGS
    if unknown:
        raise TypeError(f"curve_fit: unexpected keyword argument(s) {sorted(unknown)}")
    if "maxfev" in kwargs:
        if kwargs.get("max_nfev") is not None:
            raise TypeError("curve_fit: give max_nfev or maxfev, not both")
        kwargs["max_nfev"] = kwargs.pop("maxfev")
    kwargs.pop("verbose", None)
    ms_options = {k: kwargs.pop(k) for k in ("n_starts", "sampler") if k in kwargs}
    # the result stays inside unless full_output or a callback hands it out: it need
    # not guard the data for a later fun/jac (fit_curve's keep_data; every start of a
    # multistart too)
    kwargs.setdefault("keep_data", bool(full_output) or kwargs.get("callbacks") is not None)
    if kwargs.pop("multistart", False):
        from curvax.insight.multistart import multistart

        best = multistart(
            f,
            xdata,
            ydata,
            p0,
            sigma=sigma,
            absolute_sigma=absolute_sigma,
            bounds=bounds,
            method=method,
            jac=jac,
            nan_policy=nan_policy,
            check_finite=check_finite,
            **ms_options,
            **kwargs,
        ).best
        return scipy_return(best, full_output, stacklevel=3)
    if ms_options:
        raise TypeError("curve_fit: n_starts and sampler need multistart=True")
    res = fit_curve(
        f,
        xdata,
        ydata,
        p0,
        sigma,
        absolute_sigma,
        check_finite,
        bounds,
        method,
        jac,
        nan_policy=nan_policy,
        **kwargs,
    )
    return scipy_return(res, full_output, stacklevel=3)


def scipy_return(res: FitResult, full_output: bool, stacklevel: int = 2) -> tuple:
    """SciPy's ``curve_fit`` convention for a :class:`FitResult`.

    Raises ``RuntimeError`` when the fit did not converge, warns (``OptimizeWarning``)
    when the covariance could not be estimated, and returns ``(popt, pcov)`` or, with
    ``full_output``, ``(popt, pcov, infodict, mesg, ier)``.
    """
    if not res.success:
        raise RuntimeError("Optimal parameters not found: " + res.message)
    if not np.isfinite(res.pcov).all():
        warnings.warn(
            "Covariance of the parameters could not be estimated",
            OptimizeWarning,
            stacklevel=stacklevel,
        )
    if full_output:
        info = {
            "nfev": res.nfev,
            "fvec": res.fun,
            "nit": res.nit,
            "n_omitted": res.extra.get("n_omitted", 0),
            "result": res,
        }
        return res.x, res.pcov, info, res.message, res.status
    return res.x, res.pcov
