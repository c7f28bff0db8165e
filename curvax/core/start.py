"""Starting points when the caller gives none.

Every front door (``curve_fit``, ``curve_fit_large``, ``fit_multistart``, the batch fit's
fallback) starts the same way: the model's own ``guess(x, y)`` when it has one, else
SciPy's default start inside the bounds, with as many parameters as the model's
signature (or the bounds) say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from curvax.core.problem import count_model_params
from curvax.core.validation import check_x0, prepare_bounds


def initial_feasible(lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """SciPy's default start, element by element (any shape).

    1 where a parameter is unbounded, the mid-point of two finite bounds, ``lb + 1`` or
    ``ub − 1`` inside a single finite bound.
    """
    p0 = np.ones_like(lb)
    both = np.isfinite(lb) & np.isfinite(ub)
    lo = np.isfinite(lb) & ~np.isfinite(ub)
    hi = ~np.isfinite(lb) & np.isfinite(ub)
    p0[both] = 0.5 * (lb[both] + ub[both])
    p0[lo] = lb[lo] + 1
    p0[hi] = ub[hi] - 1
    return p0


def n_params_from_bounds(bounds: Any) -> int | None:
    """The number of parameters a ``(lb, ub)`` pair or ``Bounds`` object spells out.

    None when the lower bound is a scalar (it fits any number) or there are no bounds.
    """
    if bounds is None:
        return None
    lb = getattr(bounds, "lb", None)
    if lb is None and isinstance(bounds, (tuple, list)) and len(bounds) == 2:
        lb = bounds[0]
    return int(np.size(lb)) if np.ndim(lb) == 1 else None


def default_start(f: Callable[..., Any], x: Any, y: Any, bounds: Any) -> np.ndarray:
    """``p0`` for a fit that was given none (float64, 1-D).

    The model's ``guess(x, y)`` when it has one, moved onto the nearest bound where it
    lies outside them; otherwise :func:`initial_feasible`
    inside ``bounds``, its length from the signature of ``f`` or, failing that, from
    the bounds.

    Raises
    ------
    ValueError
        If neither the signature nor the bounds give the number of parameters.
    """
    guess = getattr(f, "guess", None)
    if callable(guess):
        p0 = check_x0(guess(x, y), None)
        lb, ub = prepare_bounds(bounds, p0.size)
        return np.clip(p0, lb, ub)
    n = count_model_params(f)
    if n is None:
        n = n_params_from_bounds(bounds)
    if n is None or n < 1:
        raise ValueError(
            "p0: cannot infer the number of parameters from the signature of f or the "
            "bounds; pass p0"
        )
    return initial_feasible(*prepare_bounds(bounds, n))
