"""Trust Region Reflective (TRF) solver, compiled as one ``lax.while_loop``.

Minimises ``C(x) = ½ Σ ρ(r_i(x)²)`` subject to ``lb ≤ x ≤ ub`` (bounds may be
infinite).  The algorithm is the one of Branch, Coleman & Li (1999) as implemented in
SciPy's ``least_squares(method='trf')`` with the exact (SVD) subproblem solver, but:

* the data enter only through a :class:`~curvax.core.reduction.Reduction`
  (cost, triangular factor ``R``, ``Qᵀr``), so the same code serves in-memory,
  chunked, out-of-core and distributed fits;
* each evaluation at a trial point computes the full reduction (residuals *and*
  Jacobian, one fused pass): an accepted step then needs no second pass;
* the whole iteration is one compiled ``while_loop`` — no return to Python.

Per iteration, with ``v, dv`` the Coleman–Li scaling (:mod:`trust_region`),
``d = √v · scale`` and ``diag_h = g · dv · scale``, the scaled subproblem is

    min_s ‖R d s + Qᵀr‖² + sᵀ diag(diag_h) s,   ‖s‖ ≤ Δ,

solved through the SVD of ``[R·d; diag(√diag_h)]``; the step ``d·s`` is then made
feasible by :func:`~curvax.core.trust_region.select_step`.  One loop iteration is one
trial point (one function + Jacobian evaluation); a rejected trial shrinks Δ.
Status codes: see :data:`~curvax.core.trust_region.STATUS_MESSAGES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from curvax.core import trust_region as tr
from curvax.core.monitor import apply_code
from curvax.core.reduction import Reduction
from curvax.core.select import where

Array = jax.Array


class SolverOutput(NamedTuple):
    """What a solver returns (all JAX arrays)."""

    x: Array
    reduction: Reduction
    initial_cost: Array
    initial_scale: Array  # largest |entry| of each column of the start's factor R
    optimality: Array
    active_mask: Array
    nfev: Array
    njev: Array
    nit: Array
    status: Array
    claimed_status: Array  # the status before refuse_far_convergence judged it


class _State(NamedTuple):
    x: Array
    red: Reduction
    scale_inv: Array
    Delta: Array
    alpha: Array
    nfev: Array
    nit: Array
    status: Array


def trf(
    reduce_fn: Callable[[Array], Reduction],
    x0: Array,
    lb: Array,
    ub: Array,
    x_scale: Array | None,
    ftol: Array,
    xtol: Array,
    gtol: Array,
    max_nfev: Array,
    n_residuals: int,
    polish_steps: int = 20,
    svd: tr.SvdFn | None = None,
    hook: Callable[..., Array] | None = None,
) -> SolverOutput:
    """Run TRF from ``x0`` (assumed strictly inside the bounds).

    ``x_scale=None`` means ``'jac'`` (scale from Jacobian column norms, updated as the
    fit proceeds); zero entries of an ``x_scale`` array are completed from the Jacobian
    at ``x0`` (:func:`~curvax.core.trust_region.given_scale`).  ``n_residuals``
    (static) is used for the rank threshold of the subproblem.  If the residuals are
    not finite at ``x0`` the status is -1 and no iteration is made.  After
    convergence, up to ``polish_steps`` Gauss–Newton refinement steps are tried
    (:func:`~curvax.core.trust_region.gauss_newton_polish`).
    ``hook`` (see :mod:`curvax.core.monitor`) is called after every trial step and may
    stop the loop (status -2 or -3).
    ``svd`` optionally replaces the LAPACK thin SVD of the small subproblem matrices
    (e.g. a vectorised Jacobi SVD for many tiny fits, :mod:`curvax.core.small_linalg`).
    A rejected Gram reduction from ``reduce_fn`` (:func:`~curvax.core.reduction.gram_rejected`:
    one compiled without its QR fallback) stops the fit with the internal status
    :data:`~curvax.core.trust_region.GRAM_REJECTED_STATUS`.
    """
    dtype = x0.dtype
    red0 = reduce_fn(x0)
    finite0 = jnp.isfinite(red0.cost) & (red0.n_nonfinite == 0)
    if x_scale is None:
        scale, scale_inv = tr.jac_scale(red0.R)
    else:
        scale, scale_inv = tr.given_scale(red0.R, x_scale)

    def scaled_gnorm(x: Array, g: Array) -> Array:
        v, _ = tr.coleman_li_scaling(x, g, lb, ub)
        return jnp.max(jnp.abs(g * v))

    v0, dv0 = tr.coleman_li_scaling(x0, red0.grad, lb, ub)
    v0 = where(dv0 != 0, v0 * scale_inv, v0)
    Delta0 = tr.norm(x0 * scale_inv / jnp.sqrt(v0))
    Delta0 = where((Delta0 == 0) | ~jnp.isfinite(Delta0), 1.0, Delta0).astype(dtype)

    status0 = where(
        ~finite0,
        -1,
        where(scaled_gnorm(x0, red0.grad) < gtol, 1, where(max_nfev <= 1, 0, tr.RUNNING)),
    )
    status0 = tr.stop_if_rejected(status0, red0)
    state = _State(
        x0,
        red0,
        scale_inv,
        Delta0,
        jnp.zeros((), dtype),
        jnp.ones((), jnp.int32),
        jnp.zeros((), jnp.int32),
        status0.astype(jnp.int32),
    )

    def body(st: _State) -> _State:
        x, red = st.x, st.red
        g = red.grad
        v, dv = tr.coleman_li_scaling(x, g, lb, ub)
        g_norm = jnp.max(jnp.abs(g * v))
        sc = scale if x_scale is not None else 1.0 / st.scale_inv
        v = where(dv != 0, v * st.scale_inv, v)
        d = jnp.sqrt(v) * sc
        diag_h = g * dv * sc
        g_h = d * g
        Rh = red.R * d
        A = jnp.concatenate([Rh, jnp.diag(jnp.sqrt(diag_h))])
        b = jnp.concatenate([red.qtf, jnp.zeros_like(red.qtf)])
        sub = tr.subproblem_from_factor(A, b, svd)
        theta = jnp.maximum(0.995, 1.0 - g_norm)

        p_h, alpha = tr.solve_trust_region(sub, n_residuals, st.Delta, st.alpha)
        p = d * p_h
        step, step_h, predicted = tr.select_step(
            x, Rh, diag_h, g_h, p, p_h, d, st.Delta, lb, ub, theta
        )
        x_new = tr.make_strictly_feasible(x + step, lb, ub, rstep=0)
        red_new = reduce_fn(x_new)
        nfev = st.nfev + 1
        step_h_norm = tr.norm(step_h)
        finite = jnp.isfinite(red_new.cost) & (red_new.n_nonfinite == 0)

        actual = red.cost - red_new.cost
        Delta_new, ratio = tr.update_radius(
            st.Delta, actual, predicted, step_h_norm, step_h_norm > 0.95 * st.Delta
        )
        status = tr.termination_status(
            actual, red.cost, tr.norm(step), tr.norm(x), ratio, ftol, xtol
        )
        accept = finite & (actual > 0)
        # A step cut short by the trust region that the model predicted well is no sign
        # of convergence: the region grows and the fit goes on (see lm.py) — unless even
        # the unrestricted Gauss–Newton step could not lower the cost by ftol.
        red_next = jax.tree.map(lambda a, b: where(accept, a, b), red_new, red)
        model_converged = tr.gauss_newton_gain_below(red_next, ftol)
        region_bound = (
            (step_h_norm > 0.95 * st.Delta)
            & (ratio > 0.75)
            & ~model_converged
        )
        status = where(finite & ~region_bound, status, tr.RUNNING)
        # no further step could pass the ftol test: stop now (trust_region docstring)
        done = accept & (ratio > 0.25) & model_converged
        status = where((status == tr.RUNNING) & done, 2, status)
        stopped = status != tr.RUNNING
        # Radius and LM parameter: unchanged when the loop stops here (as in SciPy).
        Delta = where(finite, where(stopped, st.Delta, Delta_new), 0.25 * step_h_norm)
        alpha = where(finite & ~stopped, alpha * st.Delta / Delta_new, alpha)

        x_out = where(accept, x_new, x)
        red_out = red_next
        if x_scale is None:
            scale_inv_out = where(
                accept, tr.jac_scale(red_new.R, st.scale_inv)[1], st.scale_inv
            )
        else:
            scale_inv_out = st.scale_inv
        nit = st.nit + accept.astype(jnp.int32)

        g_norm_out = scaled_gnorm(x_out, red_out.grad)
        status = where(~stopped & accept & (g_norm_out < gtol), 1, status)
        status = where((status == tr.RUNNING) & (nfev >= max_nfev), 0, status)
        if hook is not None:
            code = hook(nit, nfev, red_out.cost, x_out, g_norm_out, tr.norm(step), Delta, accept)
            status = apply_code(status, code, tr.RUNNING)
        status = tr.stop_if_rejected(status, red_new)
        return _State(
            x_out, red_out, scale_inv_out, Delta, alpha, nfev, nit, status.astype(jnp.int32)
        )

    st = jax.lax.while_loop(lambda s: s.status == tr.RUNNING, body, state)
    converged = (st.status >= 1) & (st.status <= 4)
    x, red, n_pol, pol_rejected = tr.gauss_newton_polish(
        reduce_fn,
        st.x,
        st.red,
        lb,
        ub,
        n_residuals,
        where(converged, polish_steps, 0),
        svd,
    )
    g_norm = scaled_gnorm(x, red.grad)
    status = tr.refuse_far_convergence(
        st.status, x, red, tr.near_bounds(x, lb, ub), n_residuals, svd
    )
    status = where(pol_rejected, tr.GRAM_REJECTED_STATUS, status)
    return SolverOutput(
        x=x,
        reduction=red,
        initial_cost=red0.cost,
        initial_scale=jnp.max(jnp.abs(red0.R), axis=0),
        optimality=g_norm,
        active_mask=tr.active_constraints(x, lb, ub, xtol),
        nfev=st.nfev + n_pol,
        njev=st.nfev + n_pol,
        nit=st.nit,
        status=status,
        claimed_status=st.status,
    )
