"""Levenberg–Marquardt on the damped normal equations, for small problems in batches.

Minimises ``C(p) = ½ ‖r(p)‖²`` (no bounds, linear loss) for one small problem: a
handful of parameters and up to a few thousand residuals.  It is the solver behind
:func:`curvax.curve_fit_batch` with ``method='lm'`` (``linalg='cholesky'``), where it
runs ``vmap``-ed over thousands of fits at once; the approach is the one of Gpufit
(Przybylski et al., Sci. Rep. 7, 15722, 2017).

Each iteration, with ``A = JᵀJ`` and ``g = Jᵀr`` at the current point, solves

    (A + λ D) δ = −g

by an unrolled Cholesky factorisation (:func:`curvax.core.small_linalg.cholesky_solve`)
— a few dozen vector operations across the batch instead of one LAPACK call per fit.
``D`` is Marquardt's diagonal scaling: the largest ``A_jj`` seen so far (the squared
Jacobian column norms, as MINPACK's ``diag``), or ``1/x_scale²`` when ``x_scale`` is
given, which makes the iteration invariant to the units of the parameters.

The residuals and Jacobian of a trial point come from one fused forward pass.  With
``L(δ) = −gᵀδ − ½ δᵀAδ`` the predicted reduction and ``ρ = (C(p) − C(p+δ)) / L(δ)``,
the step is accepted when the trial is finite and ``ρ ≥ 10⁻⁴``; the damping follows
Nielsen's rule (Madsen, Nielsen & Tingleff, "Methods for non-linear least squares
problems", 2004): on acceptance ``λ ← λ·max(⅓, 1 − (2ρ − 1)³)``, ``ν ← 2``; on rejection
``λ ← λ·ν``, ``ν ← 2ν``.  ``λ`` starts at ``10⁻³`` (relative to ``D``).

Termination (MINPACK's tests, with the status codes of ``least_squares``):

* status 1 (``gtol``): ``max_j |g_j| / (‖J_j‖ ‖r‖) ≤ gtol`` (the cosine test);
* status 2 (``ftol``): a finite trial with ``|C(p) − C(p+δ)| ≤ ftol·C(p)``,
  ``L(δ) ≤ ftol·C(p)`` and ``ρ ≤ 2``;
* status 3 (``xtol``): ``‖D^½ δ‖ ≤ xtol (xtol + ‖D^½ p‖)``;
* status 4: both 2 and 3;
* status 0: ``max_nfev`` evaluations were spent;
* status -1: the residuals or Jacobian are not finite at the start;
* status -4: a convergence test passed far from a minimum
  (:func:`refuse_far_convergence_normal`, the test of the single-fit solvers).

Compared with :mod:`curvax.core.lm` (Moré's trust-region LM on the QR factor, the
single-fit solver) the iterates differ but the minimum is the same: the normal
equations square the condition number of ``J`` in the *step*, not in the answer,
because every step is checked against the true cost.

The factor ``R`` (``RᵀR = JᵀJ``) for the covariance, :func:`batched_covariance_factor`:
the Cholesky factor of ``A`` where it is accurate — its relative error is about
``ε κ²`` with ``κ`` the condition number of the column-scaled Jacobian, so only when
``κ ≤`` :data:`NORMAL_FACTOR_MAX_COND` (error ≲ 1e-10) — and otherwise modified
Gram–Schmidt on the final Jacobian (:func:`curvax.core.small_linalg.gram_schmidt_r`),
as accurate as a Householder QR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from curvax.core import trust_region as tr
from curvax.core.small_linalg import (
    cholesky_factor,
    cholesky_solve,
    column_scaled_inverse,
    gram_schmidt_r,
    matvec,
    upper_triangular_solve,
)

Array = jax.Array

#: Initial damping, relative to the diagonal scaling ``D``.
LAMBDA_START = 1e-3
#: Range of the damping (beyond it steps are zero or undamped to working precision).
LAMBDA_MIN, LAMBDA_MAX = 1e-20, 1e30
#: Smallest ``ρ`` for which a step is accepted.
ACCEPT_RATIO = 1e-4
#: Loop status while iterating (never returned).
_RUNNING = 99
#: Largest bound on the scaled condition number for which ``chol(JᵀJ)ᵀ`` serves as ``R``.
NORMAL_FACTOR_MAX_COND = 1e3


class NormalLMOutput(NamedTuple):
    """Result of :func:`lm_normal` for one problem (``A = JᵀJ`` at ``x``)."""

    x: Array
    A: Array
    cost: Array
    initial_cost: Array
    nfev: Array
    nit: Array
    status: Array
    optimality: Array
    recheck: Array
    claimed: Array  # the status before refuse_far_convergence_normal judged it


class _State(NamedTuple):
    p: Array
    A: Array
    g: Array
    cost: Array
    D: Array
    lam: Array
    nu: Array
    nfev: Array
    nit: Array
    status: Array


def _gtol_measure(A: Array, g: Array, cost: Array) -> Array:
    """max_j |g_j| / (‖J_j‖ ‖r‖), 0 where a column or the residual vanishes."""
    den = jnp.sqrt(jnp.diagonal(A) * (2.0 * cost))
    return jnp.max(jnp.where(den > 0, jnp.abs(g) / jnp.where(den > 0, den, 1.0), 0.0))


def lm_normal(
    value_and_jac: Callable[[Array], tuple[Array, Array]],
    p0: Array,
    x_scale: Array | None,
    ftol: Array,
    xtol: Array,
    gtol: Array,
    max_nfev: Array,
) -> NormalLMOutput:
    """Minimise ``½‖r(p)‖²`` from ``p0`` (see the module docstring for the method).

    Parameters
    ----------
    value_and_jac : callable
        ``p ↦ (r (n,), J (n, P))``, residuals and Jacobian in one pass (rows of
        masked points zero).
    p0 : Array (P,)
        Start.
    x_scale : Array (P,) or None
        Characteristic scales of the parameters; None for the Jacobian-based scaling.
    ftol, xtol, gtol : scalar Arrays
        Tolerances of the termination tests.
    max_nfev : scalar Array
        Budget of residual-and-Jacobian evaluations (the start included).
    """
    dtype = p0.dtype
    r0, J0 = value_and_jac(p0)
    cost0 = 0.5 * jnp.sum(r0 * r0)
    A0 = J0.T @ J0
    g0 = J0.T @ r0
    finite0 = jnp.isfinite(cost0) & jnp.all(jnp.isfinite(A0)) & jnp.all(jnp.isfinite(g0))
    if x_scale is None:
        D0 = jnp.diagonal(A0)
    else:
        D0 = 1.0 / jnp.asarray(x_scale, dtype) ** 2
    status0 = jnp.where(
        ~finite0, -1, jnp.where(_gtol_measure(A0, g0, cost0) <= gtol, 1, _RUNNING)
    )
    state = _State(
        p=p0,
        A=A0,
        g=g0,
        cost=cost0,
        D=D0,
        lam=jnp.asarray(LAMBDA_START, dtype),
        nu=jnp.asarray(2.0, dtype),
        nfev=jnp.asarray(1, jnp.int32),
        nit=jnp.asarray(0, jnp.int32),
        status=status0.astype(jnp.int32),
    )

    def cond(s: _State) -> Array:
        return (s.status == _RUNNING) & (s.nfev < max_nfev)

    def body(s: _State) -> _State:
        # Marquardt scaling; a column that has always been zero gets 1 (as in MINPACK).
        # (Not a floor relative to the largest column: with column norms 10¹⁰⁰ apart
        # that over-damped the small one and passed the xtol test at the start.)
        Dm = jnp.where(s.D > 0, s.D, 1.0)
        M = s.A + jnp.diag(s.lam * Dm)
        d = -cholesky_solve(M, s.g)
        pt = s.p + d
        rt, Jt = value_and_jac(pt)
        ct = 0.5 * jnp.sum(rt * rt)
        At = Jt.T @ Jt
        gt = Jt.T @ rt
        finite = (
            jnp.isfinite(ct)
            & jnp.all(jnp.isfinite(d))
            & jnp.all(jnp.isfinite(At))
            & jnp.all(jnp.isfinite(gt))
        )
        pred = -jnp.sum(s.g * d) - 0.5 * jnp.sum(d * matvec(s.A, d))
        ared = s.cost - ct
        pred_safe = jnp.where(pred > 0, pred, 1.0)
        rho = jnp.where(pred > 0, ared / pred_safe, -1.0)
        ok = finite & (ared > 0) & (rho >= ACCEPT_RATIO)

        lam_ok = s.lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        lam = jnp.clip(jnp.where(ok, lam_ok, s.lam * s.nu), LAMBDA_MIN, LAMBDA_MAX)
        nu = jnp.where(ok, 2.0, 2.0 * s.nu)

        f_conv = (
            finite
            & (jnp.abs(ared) <= ftol * s.cost)
            & (pred <= ftol * s.cost)
            & (rho <= 2.0)
        )
        sd = jnp.sqrt(Dm)
        x_conv = jnp.linalg.norm(sd * jnp.where(jnp.isfinite(d), d, 0.0)) <= xtol * (
            xtol + jnp.linalg.norm(sd * s.p)
        )

        p = jnp.where(ok, pt, s.p)
        A = jnp.where(ok, At, s.A)
        g = jnp.where(ok, gt, s.g)
        cost = jnp.where(ok, ct, s.cost)
        D = jnp.maximum(s.D, jnp.diagonal(A)) if x_scale is None else s.D
        g_conv = ok & (_gtol_measure(A, g, cost) <= gtol)
        status = jnp.where(
            f_conv & x_conv,
            4,
            jnp.where(f_conv, 2, jnp.where(x_conv, 3, jnp.where(g_conv, 1, _RUNNING))),
        )
        return _State(
            p, A, g, cost, D, lam, nu, s.nfev + 1, s.nit + ok, status.astype(jnp.int32)
        )

    s = jax.lax.while_loop(cond, body, state)
    claimed = jnp.where(s.status == _RUNNING, 0, s.status)
    status, recheck = refuse_far_convergence_normal(claimed, s.p, s.A, s.g, s.cost)
    return NormalLMOutput(
        x=s.p,
        A=s.A,
        cost=s.cost,
        initial_cost=cost0,
        nfev=s.nfev,
        nit=s.nit,
        status=status,
        optimality=jnp.max(jnp.abs(s.g)),
        recheck=recheck,
        claimed=claimed,
    )


def refuse_far_convergence_normal(
    status: Array, x: Array, A: Array, g: Array, cost: Array
) -> tuple[Array, Array]:
    """``(status, recheck)``: status -4 instead of a convergence claim far from a
    minimum, from ``A = JᵀJ`` and ``g = Jᵀr`` at ``x`` —
    :func:`curvax.core.trust_region.refuse_far_convergence` on the normal equations —
    and whether a claim that stands needs the final check of :func:`finish_normal_fits`.

    Started many orders of magnitude away, every step the damping allows can change
    the cost by less than float64 resolves, and the ``ftol`` test passes at a point that
    is no minimum.  With ``D = diag(A)^½`` (unit columns), the Gauss–Newton step is
    ``δ = −D⁻¹ (D⁻¹AD⁻¹)⁻¹ D⁻¹g`` and the linear model predicts that it lowers ``C`` by
    ``½ gᵀA⁻¹g``.  The claim is refused when that is more than
    :data:`~curvax.core.trust_region.FAR_FROM_MINIMUM` of ``C`` and the step moves some
    parameter by more than :data:`~curvax.core.trust_region.FAR_STEP_RTOL` of the
    largest one.  The test is skipped (the status kept) where the Gauss–Newton system
    cannot be solved reliably: a zero column, or a Cholesky solve whose residual
    exceeds ``10⁻⁶`` of the right-hand side (a scaled condition number near ``1/√ε``).

    ``recheck`` is True for a convergence claim that stands although the test was
    skipped for an inaccurate solve (no zero column), or although the step is
    predicted to remove more than :data:`~curvax.core.trust_region.PROBE_SHARE` of the
    cost.
    """
    d = jnp.sqrt(jnp.diagonal(A))
    solvable = jnp.all(d > 0) & jnp.isfinite(cost) & (cost > 0)
    d_safe = jnp.where(d > 0, d, 1.0)
    As = A / d_safe[:, None] / d_safe[None, :]
    gs = g / d_safe
    step_s = -cholesky_solve(As, gs)
    finite = jnp.all(jnp.isfinite(step_s))
    accurate = finite & (tr.norm(matvec(As, step_s) + gs) <= 1e-6 * tr.norm(gs))
    gain = -0.5 * jnp.sum(gs * step_s)
    share = gain / jnp.where(solvable, cost, 1.0)
    step = step_s / d_safe
    status = tr.far_from_minimum_status(status, x, share, step, solvable & accurate)
    converged = (status >= 1) & (status <= 4)
    suspect = ~accurate | ((share > tr.PROBE_SHARE) & tr.moves_far(step, x))
    return status, converged & solvable & suspect


def gram_schmidt_prediction(r: Array, J: Array) -> tuple[Array, Array, Array, Array]:
    """``(R, share, step, trusted)`` of one fit from its residuals and Jacobian.

    ``J`` (columns scaled to unit norm by ``D``) and ``r`` are factored together by
    modified Gram–Schmidt: :func:`~curvax.core.small_linalg.gram_schmidt_r` of
    ``[J D⁻¹ r]`` gives ``R D⁻¹`` and ``Qᵀr`` as accurately as a Householder QR.
    ``R`` (``RᵀR = JᵀJ``) is the covariance factor; the full Gauss–Newton step is
    ``δ = −D⁻¹ (R D⁻¹)⁻¹ Qᵀr`` and its linear model removes ``share`` =
    ``‖Qᵀr‖² / ‖r‖²`` of ``C = ½‖r‖²``.  ``trusted`` is False where ``R D⁻¹`` is near
    singular (a diagonal entry below ``√ε``: a column within ``√ε`` of the span of the
    others), the step is not finite, or ``C = 0``.
    """
    p = J.shape[1]
    cn = jnp.sqrt(jnp.sum(J * J, axis=0))
    cn = jnp.where(cn > 0, cn, 1.0)
    Ra = gram_schmidt_r(jnp.concatenate([J / cn, r[:, None]], axis=1))
    Rs, qtf = Ra[:p, :p], Ra[:p, p]
    rr = jnp.sum(r * r)
    step = -upper_triangular_solve(Rs, qtf) / cn
    share = jnp.sum(qtf * qtf) / jnp.where(rr > 0, rr, 1.0)
    eps = jnp.finfo(r.dtype).eps
    trusted = (
        jnp.all(jnp.abs(jnp.diagonal(Rs)) > jnp.sqrt(eps))
        & jnp.all(jnp.isfinite(step))
        & (rr > 0)
    )
    return Rs * cn[None, :], share, jnp.where(trusted, step, 0.0), trusted


def _scaled_condition_bound(R: Array) -> Array:
    """Upper bound ``√p ‖(R D)⁻¹‖_F`` on the condition number of ``R D`` (unit columns)."""
    T, _ = column_scaled_inverse(R)
    return jnp.sqrt(R.shape[0]) * jnp.sqrt(jnp.sum(T * T))


def finish_normal_fits(
    A: Array,
    x: Array,
    status: Array,
    recheck: Array,
    values_and_jacobians: Callable[[], tuple[Array, Array]],
    residuals_at: Callable[[Array], Array],
) -> tuple[Array, Array]:
    """``(R, status)`` of a batch of :func:`lm_normal` fits: their covariance factors
    (B, P, P) with ``RᵀR = JᵀJ``, and their final statuses (B,).

    **Factor.** ``chol(A)ᵀ`` for the fits where it is accurate — its relative error is
    about ``ε κ²``, so only where the scaled condition bound is at most
    :data:`NORMAL_FACTOR_MAX_COND` — and otherwise the Gram–Schmidt factor of the final
    Jacobian (:func:`gram_schmidt_prediction`).  Fits with non-finite ``A`` (failed
    starts) never ask for it.

    **Verdict.** A convergence claim flagged ``recheck`` by
    :func:`refuse_far_convergence_normal` is judged again from ``J`` rather than ``JᵀJ``:
    it becomes -4 when the accurate Gauss–Newton step removes more than
    :data:`~curvax.core.trust_region.FAR_FROM_MINIMUM` of the cost and is not small
    (:func:`~curvax.core.trust_region.far_from_minimum_status`), or when a point along
    that step has a clearly lower cost (:func:`~curvax.core.trust_region.lowest_cost_along`,
    tried when the step is predicted to remove more than
    :data:`~curvax.core.trust_region.PROBE_SHARE`).  Where the step is not trusted the
    claim stands.

    ``values_and_jacobians()`` gives the final residuals (B, n) and Jacobians (B, n, P),
    ``residuals_at(q)`` the residuals (B, n) at points q (B, P).  Both run only when the
    batch has a fit that needs them (one real branch, outside ``vmap``): then one
    Jacobian and ``len(PROBE_FRACTIONS) + len(STEP_FRACTIONS)`` (14) residual
    evaluations per fit (:func:`~curvax.core.trust_region.probe_points`).
    """
    R = jnp.swapaxes(jax.vmap(cholesky_factor)(A), 1, 2)
    bound = jax.vmap(_scaled_condition_bound)(R)
    finite = jnp.all(jnp.isfinite(A), axis=(1, 2))
    good = (bound <= NORMAL_FACTOR_MAX_COND) | ~finite

    def precise() -> tuple[Array, Array]:
        r, J = values_and_jacobians()
        Rj, share, step, trusted = jax.vmap(gram_schmidt_prediction)(r, J)
        judged = jax.vmap(tr.far_from_minimum_status)(status, x, share, step, trusted)
        converged = (judged >= 1) & (judged <= 4)
        far = tr.moves_far(step, x)
        probe = recheck & converged & trusted & far & (share > tr.PROBE_SHARE)

        def cost_at(q: Array) -> Array:
            rq = residuals_at(q)
            return 0.5 * jnp.sum(rq * rq, axis=1)

        cost = 0.5 * jnp.sum(r * r, axis=1)
        best = tr.lowest_cost_along(cost_at, x, step)
        lower = probe & (best < (1.0 - tr.PROBE_GAIN) * cost)
        judged = jnp.where(lower, tr.FAR_FROM_MINIMUM_STATUS, judged).astype(status.dtype)
        return jnp.where(good[:, None, None], R, Rj), jnp.where(recheck, judged, status)

    return jax.lax.cond(jnp.all(good) & ~jnp.any(recheck), lambda: (R, status), precise)
