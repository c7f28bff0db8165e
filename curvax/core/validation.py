"""Input validation shared by every front door.

Each check raises ``ValueError`` (``TypeError`` for wrong kinds of object) with a
message that names the argument and says what is wrong with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curvax.core.loss import LOSS_NAMES

METHODS = ("trf", "lm")


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
        if arr.ndim == 0:
            arr = np.full(n, float(arr))
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(
                f"bounds: {label} bounds have shape {arr.shape}; expected a scalar or "
                f"length {n} (one per parameter)"
            )
        if np.any(np.isnan(arr)):
            raise ValueError(f"bounds: {label} bounds contain NaN")
        out.append(arr)
    lb, ub = out
    bad = np.nonzero(lb > ub)[0]
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"bounds: lower bound must not exceed upper bound, but lower[{i}]={lb[i]:g} > "
            f"upper[{i}]={ub[i]:g}"
        )
    return lb, ub


def check_free_parameters(lb: np.ndarray, ub: np.ndarray) -> None:
    """Refuse a fit in which every parameter is fixed (``lower == upper`` everywhere)."""
    if lb.size and np.all(lb == ub):
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
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or Inf: {arr}")
    return arr


def check_feasible(x0: np.ndarray, lb: np.ndarray, ub: np.ndarray, name: str = "p0") -> None:
    out = np.nonzero((x0 < lb) | (x0 > ub))[0]
    if out.size:
        i = int(out[0])
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
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name}: expected a non-negative finite number, got {v!r}")
        vals.append(v)
    if max(vals) < np.finfo(np.float64).eps:
        raise ValueError(
            "ftol, xtol, gtol: at least one tolerance must be above machine epsilon "
            f"({np.finfo(np.float64).eps:.3g}), otherwise the fit cannot stop"
        )
    return vals[0], vals[1], vals[2]


def check_x_scale(x_scale: Any, n: int) -> np.ndarray | None:
    """``None`` for ``'jac'``; otherwise a positive finite array of length n."""
    if isinstance(x_scale, str):
        if x_scale == "jac":
            return None
        raise ValueError(f"x_scale: expected 'jac', a positive number or array, got {x_scale!r}")
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
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"f_scale: expected a positive finite number, got {f_scale!r}")
    return v


def check_solver_options(
    dtype: Any, loss: Any, f_scale: Any, ftol: Any, xtol: Any, gtol: Any
) -> tuple[np.dtype, float, tuple[float, float, float]]:
    """The options every front door shares: ``(dtype, f_scale, (ftol, xtol, gtol))``."""
    dt = resolve_dtype(dtype)
    check_loss(loss)
    return dt, check_f_scale(f_scale), check_tolerances(ftol, xtol, gtol)


def default_method(method: str | None, bounded: bool, loss: Any) -> str:
    """``method`` or, when None, SciPy's choice: 'lm' unbounded with the linear loss, else
    'trf'."""
    if method is not None:
        return method
    return "trf" if (bounded or not (isinstance(loss, str) and loss == "linear")) else "lm"
