"""Input validation shared by every front door.

Each check raises ``ValueError`` (``TypeError`` for wrong kinds of object) with a
message that names the argument and says what is wrong with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from curvax.core.loss import LOSS_NAMES, check_callable_loss

METHODS = ("trf", "lm")

_EPS = float(np.finfo(np.float64).eps)


def resolve_dtype(dtype: Any) -> np.dtype:
    """float64 (default) or float32."""
    if dtype is None:
        return np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"dtype: expected 'float64' or 'float32', got {dtype!r}") from err
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype: expected 'float64' or 'float32', got {dt.name}")
    return dt


def check_loss(loss: Any) -> None:
    if callable(loss):
        return
    if not isinstance(loss, str) or loss not in LOSS_NAMES:
        raise ValueError(f"loss: unknown loss {loss!r}; expected one of {LOSS_NAMES} or a callable")


def check_method(method: Any, bounded: bool) -> str:
    if method not in METHODS:
        raise ValueError(f"method: unknown method {method!r}; expected one of {METHODS}")
    if method == "lm" and bounded:
        raise ValueError(
            "method='lm' does not handle bounds; use method='trf' with bounds "
            "(or remove the bounds)"
        )
    return method


def prepare_bounds(bounds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn ``bounds`` into two float64 arrays of length ``n``.

    Accepts ``None``, a 2-tuple ``(lb, ub)`` of scalars or length-n sequences, or an
    object with ``lb`` and ``ub`` attributes (e.g. ``scipy.optimize.Bounds``).
    ``lb == ub`` is allowed (the parameter is then fixed); ``lb > ub`` is an error.
    """
    if bounds is None:
        lb_raw, ub_raw = -np.inf, np.inf
    elif type(bounds) is tuple and len(bounds) == 2:  # the common form, checked first
        lb_raw, ub_raw = bounds
    elif hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lb_raw, ub_raw = bounds.lb, bounds.ub
    else:
        try:
            lb_raw, ub_raw = bounds
        except (TypeError, ValueError) as err:
            raise ValueError(
                "bounds: expected a (lower, upper) pair or a Bounds object, "
                f"got {type(bounds).__name__}"
            ) from err
    out = []
    for label, raw in (("lower", lb_raw), ("upper", ub_raw)):
        try:
            arr = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"bounds: {label} bounds are not numeric: {raw!r}") from err
        if arr.ndim == 0:  # one value for all: checked as a Python float
            value = float(arr)
            if math.isnan(value):
                raise ValueError(f"bounds: {label} bounds contain NaN")
            out.append(np.full(n, value))
            continue
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(
                f"bounds: {label} bounds have shape {arr.shape}; expected a scalar or "
                f"length {n} (one per parameter)"
            )
        if np.isnan(arr).any():
            raise ValueError(f"bounds: {label} bounds contain NaN")
        out.append(arr)
    lb, ub = out
    if (lb > ub).any():
        i = int(np.nonzero(lb > ub)[0][0])
        raise ValueError(
            f"bounds: lower bound must not exceed upper bound, but lower[{i}]={lb[i]:g} > "
            f"upper[{i}]={ub[i]:g}"
        )
    return lb, ub


def check_free_parameters(lb: np.ndarray, ub: np.ndarray) -> None:
    """Refuse a fit in which every parameter is fixed (``lower == upper`` everywhere)."""
    if lb.size and (lb == ub).all():
        raise ValueError(
            "bounds/fixed: every parameter is fixed (lower == upper for all of them), so "
            "there is nothing to fit; free at least one parameter or evaluate the model"
        )


def check_x0(x0: Any, n: int | None, name: str = "p0") -> np.ndarray:
    """A finite 1-D float64 parameter vector (of length ``n`` when given)."""
    try:
        arr = np.atleast_1d(np.asarray(x0, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: not a numeric vector: {x0!r}") from err
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D vector, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: must contain at least one parameter")
    if n is not None and arr.size != n:
        raise ValueError(f"{name}: has {arr.size} values but the model takes {n} parameters")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or Inf: {arr}")
    return arr


def check_feasible(x0: np.ndarray, lb: np.ndarray, ub: np.ndarray, name: str = "p0") -> None:
    outside = (x0 < lb) | (x0 > ub)
    if outside.any():
        i = int(np.nonzero(outside)[0][0])
        raise ValueError(
            f"{name}: {name}[{i}]={x0[i]:g} lies outside its bounds [{lb[i]:g}, {ub[i]:g}]"
        )


def check_tolerances(ftol: Any, xtol: Any, gtol: Any) -> tuple[float, float, float]:
    vals = []
    for name, v in (("ftol", ftol), ("xtol", xtol), ("gtol", gtol)):
        if v is None:
            v = 0.0
        try:
            v = float(v)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: expected a non-negative number, got {v!r}") from err
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}: expected a non-negative finite number, got {v!r}")
        vals.append(v)
    if max(vals) < _EPS:
        raise ValueError(
            "ftol, xtol, gtol: at least one tolerance must be above machine epsilon "
            f"({_EPS:.3g}), otherwise the fit cannot stop"
        )
    return vals[0], vals[1], vals[2]


def check_x_scale(
    x_scale: Any, n: int, lb: np.ndarray | None = None, ub: np.ndarray | None = None
) -> np.ndarray | None:
    """The characteristic scale ``s`` of each parameter, as the solvers take it.

    ``None`` for ``'jac'`` (every ``s_j = 1/‖J_j‖``, the Jacobian column norms, the
    largest seen so far); a positive finite array for numbers (a scalar applies to all
    parameters).

    ``'bounds'`` normalises by the box: ``s_j = ub_j − lb_j`` where both bounds are finite
    (and ``lb_j < ub_j``).  The trust region ``‖D⁻¹(p − p_k)‖ ≤ Δ`` with ``D = diag(s)``
    is then the same set as a unit-scale region in the normalised parameters
    ``u_j = (p_j − lb_j)/(ub_j − lb_j) ∈ [0, 1]``, so a problem whose parameters span
    many orders of magnitude is stepped as one whose parameters are all of order one.
    It is not the identical iteration: the initial radius (from ``‖x0‖``, as in SciPy)
    and the ``xtol`` test (``‖Δp‖ ≤ xtol·‖p‖``) are not invariant to the shift by
    ``lb``, nor is the Coleman–Li bound scaling (distances to the bounds enter under a
    square root).  The scale stays fixed during the fit (``'jac'``
    updates it).

    A parameter without two finite bounds has no width: it is marked ``s_j = 0`` in the
    returned array, and the solver completes it from the Jacobian at the starting point,
    ``s_j = κ/‖J_j(p₀)‖`` with ``κ`` the geometric mean of ``s_k‖J_k(p₀)‖`` over the
    bounded parameters (:func:`curvax.core.trust_region.given_scale`): a unit scaled
    step of it changes the residuals as much as crossing a typical box does.  With no
    parameter bounded on both sides the result is ``None`` (``'jac'``).  ``lb``/``ub``
    are required for ``'bounds'``.
    """
    if isinstance(x_scale, str):
        if x_scale == "jac":
            return None
        if x_scale == "bounds":
            if lb is None or ub is None:
                raise ValueError(
                    "x_scale: 'bounds' is not available in this function; use 'jac' or "
                    "give the scales as numbers"
                )
            with np.errstate(over="ignore", invalid="ignore"):
                width = np.asarray(ub, dtype=np.float64) - np.asarray(lb, dtype=np.float64)
            ok = np.isfinite(width) & (width > 0)
            return np.where(ok, width, 0.0) if ok.any() else None
        raise ValueError(
            f"x_scale: expected 'jac', 'bounds', a positive number or array, got {x_scale!r}"
        )
    try:
        arr = np.asarray(x_scale, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"x_scale: not numeric: {x_scale!r}") from err
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"x_scale: has shape {arr.shape}; expected a scalar or length {n}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"x_scale: must be positive and finite, got {arr}")
    return arr


def check_jac_sparsity(
    spec: Any, n_rows: int, n_params: int, free: np.ndarray | None = None
) -> np.ndarray:
    """The (n_rows, n_params) boolean Jacobian sparsity pattern described by ``spec``.

    ``spec`` is one of

    * an array (bool, or numbers: non-zero means True) of shape (m, n) — row i, column
      j True where ``∂r_i/∂p_j`` may be non-zero — or its transpose (n, m) when
      m ≠ n; a SciPy sparse matrix is accepted in either orientation;
    * a compact per-parameter form: a sequence of n ``slice`` or ``range`` objects, the
      j-th giving the rows (points, in data order) that parameter j can affect.

    Every free parameter (``free``; all by default) needs at least one True entry: a
    parameter on which no residual depends cannot be fitted.
    """
    name = "jac_sparsity"
    if isinstance(spec, (list, tuple)) and spec and all(
        isinstance(e, (slice, range)) for e in spec
    ):
        if len(spec) != n_params:
            raise ValueError(
                f"{name}: the per-parameter form has {len(spec)} entries but there are "
                f"{n_params} parameters"
            )
        P = np.zeros((n_rows, n_params), dtype=bool)
        for j, e in enumerate(spec):
            sl = e if isinstance(e, slice) else slice(e.start, e.stop, e.step)
            P[sl, j] = True
        arr = P
    else:
        if hasattr(spec, "toarray") and callable(spec.toarray):
            spec = spec.toarray()
        try:
            arr = np.asarray(spec)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: not an array: {type(spec).__name__}") from err
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise ValueError(
                f"{name}: expected a boolean (or 0/1 numeric) array, got dtype {arr.dtype}"
            )
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: expected a 2-D pattern of shape ({n_rows}, {n_params}) (points × "
                f"parameters) or ({n_params}, {n_rows}), got shape {arr.shape}"
            )
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or Inf")
        if arr.shape == (n_rows, n_params):
            pass
        elif arr.shape == (n_params, n_rows):
            arr = arr.T
        else:
            raise ValueError(
                f"{name}: has shape {arr.shape}; expected ({n_rows}, {n_params}) (points × "
                f"parameters) or ({n_params}, {n_rows})"
            )
        arr = arr != 0
    need = np.ones(n_params, dtype=bool) if free is None else np.asarray(free, dtype=bool)
    empty = np.nonzero(need & ~arr.any(axis=0))[0]
    if empty.size:
        raise ValueError(
            f"{name}: parameter {int(empty[0])} has no True entry (no residual depends on "
            "it), so it cannot be fitted; correct the pattern or hold the parameter fixed"
        )
    return np.ascontiguousarray(arr)


def check_max_nfev(max_nfev: Any, default: int) -> int:
    if max_nfev is None:
        return default
    if isinstance(max_nfev, bool) or not isinstance(max_nfev, (int, np.integer)):
        raise ValueError(f"max_nfev: expected a positive integer or None, got {max_nfev!r}")
    if max_nfev < 1:
        raise ValueError(f"max_nfev: expected a positive integer or None, got {max_nfev}")
    return int(max_nfev)


def check_f_scale(f_scale: Any) -> float:
    try:
        v = float(f_scale)
    except (TypeError, ValueError) as err:
        raise ValueError(f"f_scale: expected a positive number, got {f_scale!r}") from err
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"f_scale: expected a positive finite number, got {f_scale!r}")
    return v


def check_solver_options(
    dtype: Any, loss: Any, f_scale: Any, ftol: Any, xtol: Any, gtol: Any
) -> tuple[np.dtype, float, tuple[float, float, float]]:
    """The options every front door shares: ``(dtype, f_scale, (ftol, xtol, gtol))``."""
    dt = resolve_dtype(dtype)
    check_loss(loss)
    if callable(loss):
        check_callable_loss(loss, dt)
    return dt, check_f_scale(f_scale), check_tolerances(ftol, xtol, gtol)


def default_method(method: str | None, bounded: bool, loss: Any) -> str:
    """``method`` or, when None, SciPy's choice: 'lm' unbounded with the linear loss, else
    'trf'."""
    if method is not None:
        return method
    return "trf" if (bounded or not (isinstance(loss, str) and loss == "linear")) else "lm"


SIGMA_MIN = 1.0 / float(np.finfo(np.float64).max)  # smallest sigma whose 1/sigma is finite
MAGNITUDE_LIMIT = 2.0**480  # about 1e144: squares of residuals stay inside float64


def largest_magnitude(a: np.ndarray) -> float:
    """``max |a|`` without an array-sized temporary (NaN if ``a`` holds a NaN)."""
    if a.size == 0:
        return 0.0
    return max(abs(float(a.max())), abs(float(a.min())))


def check_magnitude(
    y: np.ndarray,
    w: np.ndarray | None,
    L: np.ndarray | None,
    largest_y: float | None = None,
) -> None:
    """Refuse data whose weighted magnitude would under- or overflow the cost ½Σr².

    A cost that underflows to 0 reads as "converged at p0" (a wrong answer reported as
    a success) and one that overflows cannot be minimised; both happen in float64 once
    residuals pass ~10^±154.  Such data must be rescaled by the user.  ``largest_y``,
    when the caller already knows ``max |y|``, saves the pass over unweighted data.
    """
    with np.errstate(over="ignore"):  # an overflow here is itself out of range
        v = y if (w is None or L is not None) else w * y
        ref = largest_y if (largest_y is not None and v is y) else largest_magnitude(v)
        if L is not None:
            ref /= float(np.max(np.abs(np.diag(L))))
    check_magnitude_value(ref)


def check_magnitude_value(ref: float) -> None:
    """:func:`check_magnitude` given the largest weighted magnitude ``ref`` of the data."""
    if ref == 0.0 or math.isnan(ref):
        return
    if not (1.0 / MAGNITUDE_LIMIT <= ref <= MAGNITUDE_LIMIT):
        raise ValueError(
            f"ydata/sigma: the weighted data have magnitude ~{ref:.1e}, outside the range "
            f"[{1 / MAGNITUDE_LIMIT:.0e}, {MAGNITUDE_LIMIT:.0e}] where float64 can hold "
            "their squares; rescale ydata (and sigma) by a constant, fit, and scale the "
            "linear parameters back"
        )


COMPLEX_HINT = (
    "complex values are not supported; fit real and imaginary parts as two real data sets"
)


def refuse_complex(value: Any, name: str, error: type[Exception] = ValueError) -> None:
    """Refuse complex data, which casting to float64 would cut to its real part.

    Raises
    ------
    ValueError (or ``error``)
        If ``value`` has a complex dtype; the message starts with ``name``.
    """
    if value is not None and np.iscomplexobj(value):
        raise error(f"{name}: {COMPLEX_HINT}")


def real_array(a: Any, name: str) -> np.ndarray:
    """``a`` as a float64 array; refuses complex, text and other non-numeric input."""
    refuse_complex(a, name)
    kind = getattr(getattr(a, "dtype", None), "kind", None)
    if kind is None:
        try:
            kind = np.asarray(a).dtype.kind
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: not a numeric array ({err})") from err
    if kind not in "biuf" and kind != "O":
        raise ValueError(f"{name}: expected real numbers, got an array of dtype kind {kind!r}")
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: not a numeric array ({err})") from err
    return arr


def check_level(level: Any, name: str = "level") -> float:
    """A coverage probability strictly between 0 and 1, as a float.

    Shared by :func:`~curvax.insight.confidence_intervals`, :func:`~curvax.insight.predict`
    and :func:`~curvax.insight.bootstrap`: a real number (not a bool or a string)
    with ``0 < level < 1``; ``ValueError`` otherwise.
    """
    value = math.nan
    if not isinstance(level, (bool, np.bool_, str, bytes)):
        try:
            arr = np.asarray(level)
        except (TypeError, ValueError):
            arr = np.asarray(math.nan)
        if arr.ndim == 0 and arr.dtype.kind in "iuf":
            value = float(arr)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"{name}: expected a probability in (0, 1), got {level!r}")
    return value


def check_seed(seed: Any, name: str = "seed") -> None:
    """``None``, a non-negative integer or a ``numpy.random.Generator``."""
    if seed is None or isinstance(seed, np.random.Generator):
        return
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"{name}: expected None, a non-negative integer or a numpy.random.Generator, "
            f"got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {seed}")


def first_bad(a: np.ndarray) -> str:
    idx = np.argwhere(~np.isfinite(a))
    first = tuple(int(i) for i in idx[0])
    return f"{int((~np.isfinite(a)).sum())} non-finite value(s), first at index {first}"


def as_ydata(ydata: Any) -> np.ndarray:
    refuse_complex(ydata, "ydata")
    try:
        y = np.asarray(ydata, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"ydata: not numeric ({err})") from err
    if y.ndim != 1:
        if y.ndim == 0:
            raise ValueError("ydata: must be a 1-D array of observations, got a scalar")
        raise ValueError(
            f"ydata: must be 1-D (one curve), got shape {y.shape}; "
            "for many curves use curve_fit_batch"
        )
    if y.size == 0:
        raise ValueError("ydata: must not be empty")
    return y


def sigma_array(sigma: Any, n: int) -> np.ndarray:
    """``sigma`` as float64, checked to be a scalar, ``n`` values or an ``n × n`` matrix."""
    refuse_complex(sigma, "sigma")
    try:
        s = np.asarray(sigma, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sigma: not numeric ({err})") from err
    if s.ndim == 1 and s.shape[0] != n:
        raise ValueError(f"sigma: has length {s.shape[0]} but ydata has length {n}")
    if s.ndim == 2 and s.shape != (n, n):
        raise ValueError(
            f"sigma: a 2-D sigma (covariance of ydata) must have shape ({n}, {n}), "
            f"got {s.shape}"
        )
    if s.ndim > 2:
        raise ValueError(f"sigma: must be a scalar, 1-D or 2-D array, got shape {s.shape}")
    return s


def prepare_sigma(sigma: Any, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return ``(w, L)``: weights 1/σ for 1-D sigma, Cholesky factor for 2-D sigma."""
    if sigma is None:
        return None, None
    s = sigma_array(sigma, n)
    if s.ndim == 0:
        s = np.full(n, float(s))
    if s.ndim == 1:
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("sigma: every uncertainty must be positive and finite")
        if np.any(s < SIGMA_MIN):
            raise ValueError(
                f"sigma: uncertainties below {SIGMA_MIN:.1e} (subnormal numbers) have no "
                "finite float64 weight 1/sigma; rescale ydata and sigma"
            )
        return 1.0 / s, None
    if not np.all(np.isfinite(s)):  # 2-D (sigma_array allows no other shape)
        raise ValueError("sigma: the covariance matrix contains NaN or Inf")
    try:
        L = np.linalg.cholesky(s)
    except np.linalg.LinAlgError as err:
        raise ValueError(
            "sigma: the 2-D sigma must be a positive definite covariance matrix"
        ) from err
    return None, L


def by_name(
    mapping: Mapping[str, Any], names: Sequence[str] | None, arg: str, require_all: bool
) -> list[tuple[str, Any]]:
    """Items of a by-name argument in the model's parameter order, checked."""
    if names is None:
        raise ValueError(
            f"{arg}: giving it by parameter name needs the names — from the model's "
            "signature f(x, a, b, ...), a curvax model, or param_names=..."
        )
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValueError(f"{arg}: unknown parameter name(s) {unknown}; names are {list(names)}")
    missing = [k for k in names if k not in mapping]
    if require_all and missing:
        raise ValueError(f"{arg}: missing value(s) for parameter(s) {missing}")
    return [(k, mapping[k]) for k in names if k in mapping]


def apply_fixed(
    values: Mapping[str, Any],
    names: Sequence[str] | None,
    p0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
) -> None:
    """Hold the parameters in ``values`` (already checked by :func:`by_name`) at their
    values, in place: ``p0[i] = lb[i] = ub[i] = v``.

    Raises
    ------
    ValueError
        Naming ``fixed``, for a value that is not a finite number or lies outside the
        parameter's bounds.
    """
    for i, name in enumerate(names or ()):
        if name not in values:
            continue
        raw = values[name]
        try:
            v = float(raw)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            raise ValueError(f"fixed: {name!r} must be a finite number, got {raw!r}")
        if not lb[i] <= v <= ub[i]:
            raise ValueError(
                f"fixed: {name}={v:g} lies outside its bounds [{lb[i]:g}, {ub[i]:g}]"
            )
        p0[i] = lb[i] = ub[i] = v
