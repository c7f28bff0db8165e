"""The probe of a refused convergence claim (status -4), shared by every fit.

The solvers stop with status ``-4`` (:data:`~curvax.core.trust_region.FAR_FROM_MINIMUM_STATUS`)
when a convergence test passed (the *claimed* status, 1–4) but the linear model says a
full Gauss–Newton step would remove most of the cost
(:func:`~curvax.core.trust_region.refuse_far_convergence`).  That prediction is wrong
where the model is not linear in a parameter whose Jacobian column vanishes at the
optimum (``a²·g(x)`` at ``a = 0``, a minimum SciPy reports as one).  So before a -4 is
reported, the cost is evaluated at the :func:`refusal_probe_points` around the solution:

    claimed status   if  C(q) ≥ (1 − PROBE_TIE)·C(x)  for every probe point q,
    -4               otherwise,

with ``C = ½ Σ r_i²`` (linear loss only: a robust loss's cost is not that sum, and its
refusal stands).  The in-memory fit (:mod:`curvax.core.solve`) evaluates the points one
by one and stops at the first lower one; the chunked fit (:mod:`curvax.scale.chunked`)
evaluates all of them in one pass over its chunks; batches of fits
(:mod:`curvax.batch.fit`) judge many fits at once.  All use the same points and rule, so
a fit reports the same status at every scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core import trust_region as tr


def refusal_probe_points(
    x: np.ndarray, R: np.ndarray, qtf: np.ndarray, n_residuals: int, dtype: np.dtype
) -> np.ndarray:
    """The points at which a -4 is probed: (K·D, P) for one fit at ``x`` (P,) with
    factor ``R`` (P, P) and ``Qᵀr`` (P,), or (F, K·D, P) for a batch.

    D = P + 2 directions: the minimum-norm Gauss–Newton step on the column-scaled factor
    (singular values below ``eps·m·σ_max`` ignored, as the solvers do), the same step
    unscaled, and each one-parameter Newton step ``−g_j/A_jj e_j`` (``g = RᵀQᵀr``,
    ``A = RᵀR``); along each, the K :func:`~curvax.core.trust_region.probe_points`.
    The column-scaled step alone can be useless where columns are nearly parallel (all
    points at one x, say), hence the other directions.  Non-finite directions become
    zero (their points are ``x`` itself).
    """
    eps = float(np.finfo(dtype).eps)
    cn = np.sqrt(np.sum(R * R, axis=-2))
    cn = np.where(cn > 0, cn, 1.0)
    rcond = eps * max(n_residuals, 1)
    scaled = -np.einsum("...ij,...j->...i", np.linalg.pinv(R / cn[..., None, :], rcond), qtf)
    unscaled = -np.einsum("...ij,...j->...i", np.linalg.pinv(R, rcond), qtf)
    g = np.einsum("...ji,...j->...i", R, qtf)
    diag = np.sum(R * R, axis=-2)
    newton = np.where(diag > 0, -g / np.where(diag > 0, diag, 1.0), 0.0)
    coordinate = newton[..., :, None] * np.eye(x.shape[-1])  # (..., P, P): row j is e_j
    dirs = np.concatenate([(scaled / cn)[..., None, :], unscaled[..., None, :], coordinate], -2)
    dirs = np.where(np.isfinite(dirs), dirs, 0.0)  # (..., D, P)
    xs = np.broadcast_to(x[..., None, :], dirs.shape)
    with jax.enable_x64(True):
        pts = np.asarray(tr.probe_points(jnp.asarray(xs), jnp.asarray(dirs)))  # (K, ..., D, P)
    pts = np.moveaxis(pts, 0, -2)  # (..., D, K, P)
    return pts.reshape(*pts.shape[:-3], -1, pts.shape[-1])


def judge_refusal(
    sol: Any,
    lb: np.ndarray,
    ub: np.ndarray,
    n_residuals: int,
    dtype: np.dtype,
    loss: Any,
    costs_at: Callable[[np.ndarray], Iterable[float]],
) -> int:
    """The status to report for a fit the solver refused as far from a minimum (-4).

    Parameters
    ----------
    sol : SolverOutput
        Host copy of the solver's output (``claimed_status``, ``x``, ``reduction``).
    lb, ub : ndarray
        Bounds of the free parameters: probe points are clipped into them.
    n_residuals : int
        Number of residuals (the rank threshold of :func:`refusal_probe_points`).
    dtype : numpy dtype
        Precision of the fit; the probe points are cast to it.
    loss : str or callable
        The fit's loss: only ``'linear'`` is probed.
    costs_at : callable
        ``costs_at(points)`` for points (K·D, P): the costs ``½ Σ r_i²`` at them, as an
        array or lazily (an iterator is read only up to the first lower cost).  An
        overflowing or NaN cost counts as not lower.

    Returns
    -------
    int
        ``sol.claimed_status`` when no probe point is lower than the cost by more than
        :data:`~curvax.core.trust_region.PROBE_TIE`, else
        :data:`~curvax.core.trust_region.FAR_FROM_MINIMUM_STATUS`.
    """
    claimed = int(sol.claimed_status)
    if not (1 <= claimed <= 4) or not (isinstance(loss, str) and loss == "linear"):
        return tr.FAR_FROM_MINIMUM_STATUS
    red = sol.reduction
    cost = float(red.cost)
    R = np.asarray(red.R, dtype=np.float64)
    qtf = np.asarray(red.qtf, dtype=np.float64)
    x = np.asarray(sol.x, dtype=np.float64)
    points = np.clip(refusal_probe_points(x, R, qtf, n_residuals, dtype), lb, ub).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for c in costs_at(points):
            if float(c) < (1.0 - tr.PROBE_TIE) * cost:  # False for NaN
                return tr.FAR_FROM_MINIMUM_STATUS
    return claimed
