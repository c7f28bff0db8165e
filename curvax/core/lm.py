"""Levenberg–Marquardt solver (unbounded), compiled as one ``lax.while_loop``.

Minimises ``C(x) = ½ Σ ρ(r_i(x)²)`` without bounds, following Moré (1977), "The
Levenberg–Marquardt algorithm: implementation and theory" — the algorithm of
MINPACK's ``lmder``, which ``scipy.optimize.leastsq`` and ``curve_fit(method='lm')``
call — but driven by the data reduction (``R``, ``Qᵀr``) rather than a full Jacobian,
and with the subproblem solved by one SVD (:func:`~curvax.core.trust_region.solve_trust_region`).

Each iteration solves ``min ‖R s + Qᵀr‖  s.t. ‖D s‖ ≤ Δ`` where ``D`` holds the
Jacobian column norms (the largest seen so far; or ``1/x_scale`` when given), which
makes the method invariant to the scale of the parameters.  Δ starts at
``100·‖D x₀‖`` and is updated with Moré's rules from the ratio ρ of actual to
predicted relative reductions of ``‖r‖``; a step is accepted when ρ ≥ 10⁻⁴.

Termination (MINPACK's tests, reported with ``least_squares`` status codes):

* status 2 (``ftol``): both the actual and predicted relative reductions of the sum of
  squares are at most ``ftol`` — or, after a step accepted with ρ ≥ ¼, the largest
  reduction any further step could bring (that of the unrestricted Gauss–Newton step,
  ``½‖Qᵀr‖²``) is at most ``ftol``, so the next trial would only confirm it and is not
  made;
* status 3 (``xtol``): ``Δ ≤ xtol · ‖D x‖``;
* status 4: both of the above;
* status 1 (``gtol``): the largest cosine between the residual vector and a column of
  the Jacobian is at most ``gtol``;
* status 0: ``max_nfev`` evaluations were spent.

When a tolerance is below machine precision MINPACK reports "no further improvement
possible"; here that state is reported as the corresponding convergence status.
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
from curvax.core.trf import SolverOutput

Array = jax.Array

STEP_BOUND_FACTOR = 100.0


class _State(NamedTuple):
    x: Array
    red: Reduction
    diag: Array
    Delta: Array
    par: Array
    nfev: Array
    nit: Array
    status: Array


def _gtol_measure(red: Reduction, diag_cols: Array) -> Array:
    """max_j |J_jᵀ r| / (‖J_j‖ ‖r‖): the cosine test of MINPACK."""
    fnorm = jnp.sqrt(jnp.sum(red.qtf**2) + red.factor[-1, -1] ** 2)
    g = jnp.abs(red.grad)
    denom = diag_cols * fnorm
    return jnp.max(where(denom > 0, g / where(denom > 0, denom, 1.0), 0.0))


def lm(
    reduce_fn: Callable[[Array], Reduction],
    x0: Array,
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
    """Run Levenberg–Marquardt from ``x0``; ``x_scale=None`` means Jacobian scaling
    (zero entries of an ``x_scale`` array: see :func:`~curvax.core.trust_region.given_scale`).

    After convergence, up to ``polish_steps`` Gauss–Newton refinement steps are tried
    (:func:`~curvax.core.trust_region.gauss_newton_polish`).
    ``svd`` optionally replaces the LAPACK thin SVD of the small subproblem matrices
    (e.g. a vectorised Jacobi SVD for many tiny fits, :mod:`curvax.core.small_linalg`).
    A rejected Gram reduction from ``reduce_fn`` (:func:`~curvax.core.reduction.gram_rejected`:
    one compiled without its QR fallback) stops the fit with the internal status
    :data:`~curvax.core.trust_region.GRAM_REJECTED_STATUS`.
    """
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps
    red0 = reduce_fn(x0)
    finite0 = jnp.isfinite(red0.cost) & (red0.n_nonfinite == 0)
    colnorm0 = jnp.sqrt(jnp.sum(red0.R**2, axis=0))
    if x_scale is None:
        diag0 = where(colnorm0 == 0, 1.0, colnorm0)
    else:
        diag0 = tr.given_scale(red0.R, x_scale)[1]
    Delta0 = STEP_BOUND_FACTOR * tr.norm(diag0 * x0)
    Delta0 = where(Delta0 == 0, STEP_BOUND_FACTOR, Delta0)
    status0 = where(
        ~finite0,
        -1,
        where(
            _gtol_measure(red0, colnorm0) <= jnp.maximum(gtol, eps),
            1,
            where(max_nfev <= 1, 0, tr.RUNNING),
        ),
    )
    status0 = tr.stop_if_rejected(status0, red0)
    state = _State(
        x0,
        red0,
        diag0,
        Delta0.astype(dtype),
        jnp.zeros((), dtype),
        jnp.ones((), jnp.int32),
        jnp.zeros((), jnp.int32),
        status0.astype(jnp.int32),
    )

    def body(st: _State) -> _State:
        x, red, D = st.x, st.red, st.diag
        fnorm2 = 2.0 * red.cost
        fnorm = jnp.sqrt(fnorm2)
        sub = tr.subproblem_from_factor(red.R / D, red.qtf, svd)
        s_h, par = tr.solve_trust_region(sub, n_residuals, st.Delta, st.par)
        par_step = par
        step = s_h / D
        pnorm = tr.norm(s_h)
        Delta = where(st.nit == 0, jnp.minimum(st.Delta, pnorm), st.Delta)

        x_new = x + step
        red_new = reduce_fn(x_new)
        nfev = st.nfev + 1
        finite = jnp.isfinite(red_new.cost) & (red_new.n_nonfinite == 0)
        fnorm1 = jnp.sqrt(2.0 * red_new.cost)

        safe_f = where(fnorm > 0, fnorm, 1.0)
        actred = where(finite & (0.1 * fnorm1 < fnorm), 1.0 - (fnorm1 / safe_f) ** 2, -1.0)
        t1 = tr.norm(red.R @ step) / safe_f
        t2 = jnp.sqrt(par) * pnorm / safe_f
        prered = t1**2 + t2**2 / 0.5
        dirder = -(t1**2 + t2**2)
        ratio = where(prered != 0, actred / where(prered != 0, prered, 1.0), 0.0)

        # Moré's radius update.
        temp = where(
            actred >= 0,
            0.5,
            0.5 * dirder / where(dirder + 0.5 * actred != 0, dirder + 0.5 * actred, -1.0),
        )
        temp = where((0.1 * fnorm1 >= fnorm) | (temp < 0.1) | ~finite, 0.1, temp)
        shrink = ratio <= 0.25
        grow = ~shrink & ((par == 0) | (ratio >= 0.75))
        Delta = where(
            shrink, temp * jnp.minimum(Delta, pnorm / 0.1), where(grow, pnorm / 0.5, Delta)
        )
        par = where(shrink, par / temp, where(grow, 0.5 * par, par))

        accept = finite & (ratio >= 1e-4)
        x_out = where(accept, x_new, x)
        red_out = jax.tree.map(lambda a, b: where(accept, a, b), red_new, red)
        colnorm = jnp.sqrt(jnp.sum(red_out.R**2, axis=0))
        D_out = where(accept & (x_scale is None), jnp.maximum(D, colnorm), D)
        xnorm = tr.norm(D_out * x_out)

        # A step cut short by the trust region (par > 0) that the model predicted well
        # is no sign of convergence: the region grows and the fit goes on.  (MINPACK
        # stops there when the start is many orders of magnitude off.)  Unless even the
        # unrestricted Gauss–Newton step could not lower the cost by ftol (relative):
        # then the fit has converged whatever the region (tr.gauss_newton_gain_below).
        model_converged = tr.gauss_newton_gain_below(red_out, ftol)
        region_bound = (par_step > 0) & (ratio >= 0.75) & ~model_converged
        f_ok = (
            finite
            & (jnp.abs(actred) <= jnp.maximum(ftol, eps))
            & (prered <= jnp.maximum(ftol, eps))
            & (0.5 * ratio <= 1.0)
            & ~region_bound
        )
        x_ok = (Delta <= jnp.maximum(xtol, eps) * xnorm) & ~region_bound
        status = where(f_ok & x_ok, 4, where(f_ok, 2, where(x_ok, 3, tr.RUNNING)))
        # no further step could pass the ftol test: stop now (trust_region docstring)
        done = accept & (ratio >= 0.25) & model_converged
        status = where((status == tr.RUNNING) & done, 2, status)
        g_ok = accept & (_gtol_measure(red_out, colnorm) <= jnp.maximum(gtol, eps))
        status = where((status == tr.RUNNING) & g_ok, 1, status)
        status = where((status == tr.RUNNING) & (nfev >= max_nfev), 0, status)
        nit = st.nit + accept.astype(jnp.int32)
        if hook is not None:
            gnorm = jnp.max(jnp.abs(red_out.grad))
            code = hook(nit, nfev, red_out.cost, x_out, gnorm, tr.norm(step), Delta, accept)
            status = apply_code(status, code, tr.RUNNING)
        status = tr.stop_if_rejected(status, red_new)
        return _State(x_out, red_out, D_out, Delta, par, nfev, nit, status.astype(jnp.int32))

    st = jax.lax.while_loop(lambda s: s.status == tr.RUNNING, body, state)
    converged = (st.status >= 1) & (st.status <= 4)
    inf = jnp.full_like(x0, jnp.inf)
    x, red, n_pol, pol_rejected = tr.gauss_newton_polish(
        reduce_fn,
        st.x,
        st.red,
        -inf,
        inf,
        n_residuals,
        where(converged, polish_steps, 0),
        svd,
    )
    status = tr.refuse_far_convergence(st.status, x, red, None, n_residuals, svd)
    status = where(pol_rejected, tr.GRAM_REJECTED_STATUS, status)
    return SolverOutput(
        x=x,
        reduction=red,
        initial_cost=red0.cost,
        initial_scale=jnp.max(jnp.abs(red0.R), axis=0),
        optimality=jnp.max(jnp.abs(red.grad)),
        active_mask=jnp.zeros(x0.shape, jnp.int32),
        nfev=st.nfev + n_pol,
        njev=st.nfev + n_pol,
        nit=st.nit,
        status=status,
        claimed_status=st.status,
    )
