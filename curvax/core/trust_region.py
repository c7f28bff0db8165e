"""Building blocks shared by the trust-region solvers (``trf`` and ``lm``).

All functions are pure JAX and work on p-sized quantities only: the triangular
factor ``R`` and projected residuals ``qtf`` of a :class:`~curvax.core.reduction.Reduction`
stand in for the full Jacobian, because for any step ``s``

    ‖J̃ s + r̃‖² = ‖R s + Q₁ᵀr̃‖² + const,

so every quadratic model below is evaluated exactly with ``R``.

The trust-region subproblem ``min ‖A s + b‖  s.t. ‖s‖ ≤ Δ`` is solved as in Moré
(1977), "The Levenberg–Marquardt algorithm: implementation and theory", with a
single SVD instead of repeated Cholesky factorisations: one finds α ≥ 0 such that
``s(α) = −(AᵀA + αI)⁻¹Aᵀb`` has ``‖s(α)‖ = Δ`` by a safeguarded Newton iteration on
``φ(α) = ‖s(α)‖ − Δ``.

Bound handling follows Coleman & Li (1996), "An interior trust region approach for
nonlinear minimization subject to bounds", and Branch, Coleman & Li (1999): the
scaling vector ``v`` (:func:`coleman_li_scaling`) shrinks the trust region along
directions that lead into a nearby bound, and :func:`select_step` picks the best of
the truncated trust-region step, its reflection off the bound and the scaled
steepest-descent step.

Termination tests (:func:`termination_status`) use SciPy's ``least_squares``
meanings: status 2 when ``dF < ftol·F`` (and the step was a good one, ratio > ¼),
3 when ``‖dx‖ < xtol·(xtol + ‖x‖)``, 4 when both, 1 when the scaled gradient's
max-norm is below ``gtol``, 0 when ``max_nfev`` evaluations were spent.  Status 2 is
also given after a good step when no further step could pass it any more: the largest
decrease the Gauss–Newton model allows from the new point, ``½‖Q₁ᵀr̃‖²``, is below
``ftol·F`` (:func:`gauss_newton_gain_below`) — the trial that would only confirm this
is not evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from curvax.core.reduction import gram_rejected
from curvax.core.select import where
from curvax.core.small_linalg import cholesky_solve

Array = jax.Array

RUNNING = 99  # internal status while the loop runs; never returned

#: Internal status of a fit stopped because a reduction compiled without its QR
#: fallback was rejected (:func:`~curvax.core.reduction.gram_rejected`); never returned:
#: :func:`curvax.core.solve.solve` redoes such a fit with the fallback.
GRAM_REJECTED_STATUS = 98

#: Status of a fit whose convergence test passed far from a minimum (see
#: :func:`refuse_far_convergence`).
FAR_FROM_MINIMUM_STATUS = -4

#: Status of a fit whose iteration ran to parameters where the weighted Jacobian's
#: squares leave the floating-point range (see :func:`curvax.core.solve.solve`).
OUT_OF_RANGE_STATUS = -5

STATUS_MESSAGES = {
    -5: (
        "The iteration ran to parameters where the model's sensitivities are too large or "
        "too small for the squares of the Jacobian to be represented; the end point is no "
        "minimum. Start closer, try x_scale=1.0, or rescale the parameters (with a "
        "robust loss, residuals far beyond f_scale make the loss flat: increase f_scale)."
    ),
    -4: (
        "The cost stopped changing far from a minimum: a Gauss-Newton step would still "
        "remove most of it. Start closer or rescale the parameters."
    ),
    -3: "The wall-clock time limit was reached; the best point so far is returned.",
    -2: "The fit was stopped by a callback.",
    -1: "Improper input parameters status returned from the solver.",
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}


def norm(v: Array) -> Array:
    return jnp.sqrt(jnp.sum(v * v))


class Subproblem(NamedTuple):
    """SVD data of the (scaled) trust-region subproblem ``min ‖A s + b‖``."""

    uf: Array  # Uᵀ b
    s: Array  # singular values of A, descending
    V: Array  # right singular vectors as columns


SvdFn = Callable[[Array], tuple[Array, Array, Array]]


def thin_svd(A: Array) -> tuple[Array, Array, Array]:
    """Thin SVD ``A = U diag(s) Vᵀ`` (s descending) by LAPACK: the default ``svd``."""
    return jnp.linalg.svd(A, full_matrices=False)


def subproblem_from_factor(A: Array, b: Array, svd: SvdFn | None = None) -> Subproblem:
    """SVD of ``A`` (k×p, k ≥ p) and the projection ``Uᵀb``.

    ``svd`` (optional) replaces the LAPACK thin SVD; it must return ``(U, s, Vᵀ)``
    with ``s`` descending, as ``jnp.linalg.svd(A, full_matrices=False)`` does.
    """
    U, s, Vt = (thin_svd if svd is None else svd)(A)
    return Subproblem(U.T @ b, s, Vt.T)


#: A converged point from which a full Gauss–Newton step is predicted to remove more
#: than this share of the cost is not accepted as a minimum.
FAR_FROM_MINIMUM = 0.5
#: ... and which the Gauss–Newton step would move by more than this share of the largest
#: parameter.
FAR_STEP_RTOL = 1e-3


def kept_singular_values(s: Array, n_residuals: int) -> Array:
    """The singular values taken as nonzero: ``σ_i > eps·max(m, 1)·σ_max`` (s descending)."""
    eps = jnp.finfo(s.dtype).eps
    return s > eps * max(n_residuals, 1) * s[0]


def column_scaled_subproblem(
    R: Array, b: Array, svd: SvdFn | None = None
) -> tuple[Subproblem, Array]:
    """``(subproblem of R D⁻¹ and b, D)`` with ``D`` the column norms of ``R`` (1 for a
    zero column): a step ``s`` of the scaled subproblem is ``s / D`` in the parameters.
    Rank decisions on it do not depend on the parameters' units."""
    cn = jnp.sqrt(jnp.sum(R * R, axis=0))
    safe = where(cn > 0, cn, 1.0)
    return subproblem_from_factor(R / safe, b, svd), safe


def minimum_norm_step(sub: Subproblem, n_residuals: int) -> Array:
    """The full Gauss–Newton step ``−A⁺b`` of a subproblem: the minimum-norm least-squares
    solution, singular values not kept by :func:`kept_singular_values` ignored."""
    uf, s, V = sub
    keep = kept_singular_values(s, n_residuals)
    return -(V @ where(keep, uf / where(keep, s, 1.0), 0.0))


def polish_step(
    R: Array, qtf: Array, x: Array, n_residuals: int, svd: SvdFn | None = None
) -> Array:
    """The full Gauss–Newton step ``δ`` of the polish: a least-squares solution of
    ``R δ ≈ −Qᵀr`` whose choice does not depend on the parameters' units.

    With ``A = R D⁻¹ = U Σ Vᵀ`` (``D`` the column norms) and the kept singular directions
    ``V_k`` (:func:`kept_singular_values`), the least-squares solutions in scaled
    variables ``z = Dδ`` are those with ``V_kᵀ z = c``, ``c = −Σ_k⁻¹ U_kᵀ Qᵀr``.  At full
    rank (zero columns aside) there is one, :func:`minimum_norm_step`'s ``z = V_k c``.
    When ``A`` is rank deficient beyond its zero columns they form a family, and the
    least ``‖z‖`` treats every column alike: with parallel columns of very different
    norms (every point at one x, so that ``a·e^{−kx₀}`` and ``c`` have constant columns
    10³³ apart) it moves the weak parameters by ~10³⁰ and the step is useless.  There
    the step of least *relative* change is taken instead: the least ``‖δ/w‖``, ``w = |x|``
    (``1/D`` for a parameter at exactly 0).  With ``E = D w`` and ``δ = w u`` that is
    ``u = (V_kᵀE)⁺ c = E V_k (V_kᵀ E² V_k)⁻¹ c``, the k×k system solved by Cholesky
    after scaling it to a unit diagonal (dropped directions get an identity row).
    """
    sub, safe = column_scaled_subproblem(R, qtf, svd)
    keep = kept_singular_values(sub.s, n_residuals)
    zero_columns = jnp.sum(jnp.sum(R * R, axis=0) == 0)  # as column_scaled_subproblem
    deficient = jnp.sum(~keep) > zero_columns

    def least_relative_change() -> Array:
        c = where(keep, -sub.uf / where(keep, sub.s, 1.0), 0.0)
        w = where(x != 0, jnp.abs(x), 1.0 / safe)
        B = where(keep[None, :], sub.V, 0.0) * (safe * w)[:, None]  # E V_k, masked
        G = B.T @ B
        d = jnp.sqrt(where(keep, jnp.diagonal(G), 1.0))
        G = where(keep[:, None] & keep[None, :], G / (d[:, None] * d[None, :]), 0.0)
        G = G + jnp.diag(where(keep, 0.0, 1.0))
        if svd is None:  # LAPACK, as for the SVD: one call each, little to compile
            L = jnp.linalg.cholesky(G)
            y = jax.scipy.linalg.cho_solve((L, True), c / d) / d
        else:  # the caller's small unrolled linear algebra (vmapped batches)
            y = cholesky_solve(G, c / d) / d
        return w * (B @ y)

    return jax.lax.cond(
        deficient, least_relative_change, lambda: minimum_norm_step(sub, n_residuals) / safe
    )


def gauss_newton_share(sub: Subproblem, cost: Array, n_residuals: int) -> Array:
    """Share of the cost a full Gauss–Newton step is predicted to remove.

    With ``A = UΣVᵀ`` and ``uf = Uᵀb`` (:func:`subproblem_from_factor`, ``b = Qᵀr``), the
    linear model's reduction of ``C = ½‖r‖²`` by the minimum-norm step is
    ``½ Σ uf_i²`` over the singular values kept (``σ_i > eps·m·σ_max``), so the share
    is ``Σ uf_i² / (2C)`` ∈ [0, 1]: 0 at a stationary point (``Aᵀb = 0``), near 1 far
    from one.
    """
    uf, s, _ = sub
    gain = jnp.sum(where(kept_singular_values(s, n_residuals), uf * uf, 0.0))
    return where(cost > 0, gain / where(cost > 0, 2.0 * cost, 1.0), 0.0)


def near_bound_sides(x: Array, lb: Array, ub: Array) -> tuple[Array, Array]:
    """``(lo, hi)``: parameters within ``BOUND_SNAP_RTOL·max(1, |bound|)`` of a finite
    lower / upper bound."""
    lo = jnp.isfinite(lb) & (x - lb <= BOUND_SNAP_RTOL * jnp.maximum(1.0, jnp.abs(lb)))
    hi = jnp.isfinite(ub) & (ub - x <= BOUND_SNAP_RTOL * jnp.maximum(1.0, jnp.abs(ub)))
    return lo, hi


def near_bounds(x: Array, lb: Array, ub: Array) -> Array:
    """True for parameters within ``BOUND_SNAP_RTOL·max(1, |bound|)`` of a finite bound."""
    lo, hi = near_bound_sides(x, lb, ub)
    return lo | hi


def refuse_far_convergence(
    status: Array,
    x: Array,
    red: Any,
    at_bound: Array | None,
    n_residuals: int,
    svd: SvdFn | None = None,
) -> Array:
    """Status ``FAR_FROM_MINIMUM_STATUS`` instead of a convergence claim far from a minimum.

    The ``ftol``/``xtol`` tests look at the change of cost and parameters over a step.
    Started many orders of magnitude away, each step the trust region allows can change
    the cost by less than float64 resolves, and the tests pass at a point that is no
    minimum (MINPACK and SciPy report success there too).  After the final refinement
    the claim is refused when a full Gauss–Newton step would both remove more than
    :data:`FAR_FROM_MINIMUM` of the cost (:func:`gauss_newton_share`, on the
    column-scaled factor so that parameter units do not matter) and move some parameter
    by more than :data:`FAR_STEP_RTOL` of the largest one.  (The second condition keeps
    exact-data fits, whose residuals are rounding noise, from being flagged.)  With any
    parameter at or near a bound the test is skipped: a minimum on a bound is not a
    stationary point of the unconstrained model.
    """
    share, step = gauss_newton_prediction(red.R, red.qtf, red.cost, n_residuals, svd)
    trusted = jnp.asarray(True) if at_bound is None else ~jnp.any(at_bound)
    return far_from_minimum_status(status, x, share, step, trusted)


def gauss_newton_prediction(
    R: Array, qtf: Array, cost: Array, n_residuals: int, svd: SvdFn | None = None
) -> tuple[Array, Array]:
    """``(share, step)`` of the full Gauss–Newton step from a factor ``R`` and ``Qᵀr``.

    ``step`` is the minimum-norm solution of ``min ‖R s + Qᵀr‖`` on the column-scaled
    factor (:func:`column_scaled_subproblem`, so rank decisions do not depend on the
    parameters' units), in parameter units; ``share`` the part of ``C = ½‖r‖²`` its
    linear model removes (:func:`gauss_newton_share`).
    """
    sub, safe = column_scaled_subproblem(R, qtf, svd)
    share = gauss_newton_share(sub, cost, n_residuals)
    return share, minimum_norm_step(sub, n_residuals) / safe


#: A converged point whose Gauss–Newton step is predicted to remove more than this share
#: of the cost is probed along that step (:func:`lowest_cost_along`).
PROBE_SHARE = 1e-2
#: ... and refused as a minimum when a probe lowers the cost by more than this share.
PROBE_GAIN = 1e-3
#: Fractions of the longest probe (which takes some parameter to zero or doubles it).
PROBE_FRACTIONS = (1e-3, 1e-2, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
#: Fractions of the full Gauss–Newton step probed as well.
STEP_FRACTIONS = (1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0)
#: A probe within this share of the cost counts as no lower (rounding).
PROBE_TIE = 1e-10


def probe_points(x: Array, step: Array) -> Array:
    """Points ``x + t·step`` (K, ..., P) at which a convergence claim is probed.

    ``t = f·t_max`` for ``f`` in :data:`PROBE_FRACTIONS`, where ``t_max ≤ 1`` is the
    longest step that changes no parameter by more than its own magnitude
    (``max(|x_j|, FAR_STEP_RTOL·max|x|)``): a parameter headed for zero is brought back
    from a plateau by the fractions close to 1 (to 10 %, 1 %, …, 0.01 % of its value);
    and ``t`` in :data:`STEP_FRACTIONS`, parts of the full step, which reach a
    parameter near zero that must grow.  ``x`` and ``step`` are (P,) or batched (..., P).
    """
    big = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
    scale = jnp.maximum(jnp.abs(x), FAR_STEP_RTOL * big)
    scale = where(scale > 0, scale, 1.0)
    rel = jnp.max(jnp.abs(step) / scale, axis=-1, keepdims=True)
    t_max = where(rel > 1.0, 1.0 / where(rel > 1.0, rel, 1.0), 1.0)
    lead = (1,) * t_max.ndim
    capped = jnp.asarray(PROBE_FRACTIONS, x.dtype).reshape((-1, *lead)) * t_max[None]
    full = jnp.broadcast_to(
        jnp.asarray(STEP_FRACTIONS, x.dtype).reshape((-1, *lead)),
        (len(STEP_FRACTIONS), *t_max.shape),
    )
    t = jnp.concatenate([capped, full], axis=0)  # (K, ..., 1)
    return x[None] + t * step[None]


def lowest_cost_along(cost_at: Callable[[Array], Array], x: Array, step: Array) -> Array:
    """The lowest cost at the :func:`probe_points` of ``x`` along the Gauss–Newton
    ``step`` (non-finite costs count as ``+inf``).

    Below ``(1 − PROBE_GAIN)·cost`` it proves ``x`` is no minimum.  The linear model
    behind :func:`far_from_minimum_status` can be misled where the model is flat in a
    parameter: a decay rate run off to ``b = 115`` makes ``exp(−b x)`` vanish, the cost
    sits on a plateau, and the full step (``10⁴⁹`` in ``b``) is predicted to remove
    49.5 % of the cost — just under the threshold; bringing ``b`` back finds the lower
    cost.  Not below ``(1 − PROBE_TIE)·cost`` it shows the opposite error: a model
    like ``a²·g(x)`` at its minimum ``a = 0`` has a column ``2a·g`` that vanishes
    there, the linear model claims a huge gain, yet every point along the step costs
    more.

    Works on one fit (``x``, ``step`` (P,)) or a batch (leading axes); ``cost_at`` maps
    points of the shape of ``x`` to one cost per fit.
    One evaluation of ``cost_at`` per probe, in a loop (the model is traced once).
    """
    costs = jax.lax.map(cost_at, probe_points(x, step))
    return jnp.min(where(jnp.isfinite(costs), costs, jnp.inf), axis=0)


def moves_far(step: Array, x: Array) -> Array:
    """Whether ``step`` moves some parameter by more than :data:`FAR_STEP_RTOL` of the
    largest ``|x_j|`` (per fit, over the last axis, for batched ``step``/``x``)."""
    largest = jnp.maximum(jnp.max(jnp.abs(x), axis=-1), 1e-300)
    return jnp.max(jnp.abs(step), axis=-1) > FAR_STEP_RTOL * largest


def far_from_minimum_status(
    status: Array, x: Array, share: Array, step: Array, trusted: Array
) -> Array:
    """The verdict of :func:`refuse_far_convergence` (and of the batch solver's
    :func:`~curvax.core.lm_normal.refuse_far_convergence_normal`).

    A convergence status (1–4) becomes :data:`FAR_FROM_MINIMUM_STATUS` when the full
    Gauss–Newton ``step`` from ``x`` is predicted to remove more than
    :data:`FAR_FROM_MINIMUM` of the cost (``share``) and moves some parameter by more
    than :data:`FAR_STEP_RTOL` of the largest one; ``trusted`` False (the step could not
    be computed reliably, or a bound is near) keeps the status.
    """
    big = moves_far(step, x)
    converged = (status >= 1) & (status <= 4)
    far = converged & trusted & (share > FAR_FROM_MINIMUM) & big
    return where(far, FAR_FROM_MINIMUM_STATUS, status).astype(status.dtype)


def solve_trust_region(
    sub: Subproblem,
    n_residuals: int,
    Delta: Array,
    alpha0: Array,
    rtol: float = 0.01,
    max_iter: int = 10,
) -> tuple[Array, Array]:
    """Moré's solution of ``min ‖A s + b‖, ‖s‖ ≤ Δ``; returns ``(s, α)``.

    ``α`` is the Levenberg–Marquardt parameter: ``(AᵀA + αI) s = −Aᵀb``; ``α = 0``
    means the Gauss–Newton step lies inside the region and is returned as is.  The
    root of ``φ(α)`` is accepted when ``|φ| < rtol·Δ``; the final step is rescaled to
    lie exactly on the boundary.  ``A`` counts as rank deficient when its smallest
    singular value is below ``eps · m · s_max`` (m = ``n_residuals``).
    """
    uf, s, V = sub
    n = s.shape[0]
    dtype = s.dtype
    eps = jnp.finfo(dtype).eps
    suf = s * uf
    tiny = jnp.finfo(dtype).tiny

    def over(a: Array, denom: Array) -> Array:
        # a / denom, with 0 where denom == 0: there s_i = 0, so a = 0 too (α = 0 with a
        # rank-deficient A); a plain division would give 0/0 = NaN and a NaN step.
        return where(denom > 0, a / where(denom > 0, denom, 1.0), 0.0)

    def phi_and_derivative(alpha: Array) -> tuple[Array, Array]:
        denom = s**2 + alpha
        p_norm = jnp.maximum(norm(over(suf, denom)), tiny)
        phi = p_norm - Delta
        phi_prime = -jnp.sum(over(suf**2, denom**3)) / p_norm
        return phi, phi_prime

    if n_residuals >= n:
        full_rank = s[-1] > eps * n_residuals * s[0]
    else:
        full_rank = jnp.asarray(False)
    s_safe = where(s > 0, s, 1.0)
    p_gn = -V @ where(s > 0, uf / s_safe, 0.0)
    gn_ok = full_rank & (norm(p_gn) <= Delta)

    alpha_upper = norm(suf) / Delta
    phi0, dphi0 = phi_and_derivative(jnp.zeros((), dtype))
    alpha_lower = where(full_rank, -phi0 / where(dphi0 != 0, dphi0, -1.0), 0.0)
    alpha_lower = jnp.maximum(alpha_lower, 0.0)

    def reset(lo: Array, hi: Array) -> Array:
        return jnp.maximum(0.001 * hi, jnp.sqrt(lo * hi))

    alpha = where(~full_rank & (alpha0 == 0), reset(alpha_lower, alpha_upper), alpha0)

    def cond(c: tuple) -> Array:
        it, _, _, _, done = c
        return (it < max_iter) & ~done

    def body(c: tuple) -> tuple:
        it, alpha, lo, hi, _ = c
        alpha = where((alpha < lo) | (alpha > hi), reset(lo, hi), alpha)
        phi, dphi = phi_and_derivative(alpha)
        hi = where(phi < 0, alpha, hi)
        ratio = phi / where(dphi != 0, dphi, -tiny)
        lo = jnp.maximum(lo, alpha - ratio)
        alpha = alpha - (phi + Delta) * ratio / Delta
        return it + 1, alpha, lo, hi, jnp.abs(phi) < rtol * Delta

    _, alpha, _, _, _ = jax.lax.while_loop(
        cond, body, (0, alpha, alpha_lower, alpha_upper, jnp.asarray(False))
    )
    alpha = jnp.maximum(alpha, 0.0)
    p = -V @ over(suf, s**2 + alpha)
    p = p * (Delta / jnp.maximum(norm(p), tiny))
    return where(gn_ok, p_gn, p), where(gn_ok, 0.0, alpha)


def update_radius(
    Delta: Array,
    actual: Array,
    predicted: Array,
    step_norm: Array,
    bound_hit: Array,
) -> tuple[Array, Array]:
    """Trust-radius update: shrink to ¼‖step‖ when ratio < ¼, double when > ¾ at the edge.

    Returns ``(Δ_new, ratio)`` with ``ratio = actual / predicted`` reduction.
    """
    ratio = where(
        predicted > 0,
        actual / where(predicted > 0, predicted, 1.0),
        where((predicted == 0) & (actual == 0), 1.0, 0.0),
    )
    Delta = where(
        ratio < 0.25, 0.25 * step_norm, where((ratio > 0.75) & bound_hit, 2.0 * Delta, Delta)
    )
    return Delta, ratio


def termination_status(
    dF: Array,
    F: Array,
    dx_norm: Array,
    x_norm: Array,
    ratio: Array,
    ftol: Array,
    xtol: Array,
) -> Array:
    """Status 2 (ftol), 3 (xtol), 4 (both) or ``RUNNING``; see the module docstring."""
    f_ok = (dF < ftol * F) & (ratio > 0.25)
    x_ok = dx_norm < xtol * (xtol + x_norm)
    return where(f_ok & x_ok, 4, where(f_ok, 2, where(x_ok, 3, RUNNING)))


# --- quadratic models -------------------------------------------------------------


def evaluate_quadratic(Rh: Array, g: Array, s: Array, diag: Array | None = None) -> Array:
    """``½ (‖Rh s‖² + sᵀ diag s) + gᵀ s``: the model of the cost change for step ``s``."""
    Rs = Rh @ s
    q = jnp.dot(Rs, Rs)
    if diag is not None:
        q = q + jnp.dot(s * diag, s)
    return 0.5 * q + jnp.dot(g, s)


def quadratic_1d(
    Rh: Array,
    g: Array,
    s: Array,
    diag: Array | None,
    s0: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Coefficients ``(a, b, c)`` of ``t ↦ evaluate_quadratic(Rh, g, s0 + t·s, diag)``."""
    v = Rh @ s
    a = jnp.dot(v, v)
    if diag is not None:
        a = a + jnp.dot(s * diag, s)
    a = 0.5 * a
    b = jnp.dot(g, s)
    c = jnp.zeros_like(a)
    if s0 is not None:
        u = Rh @ s0
        b = b + jnp.dot(u, v)
        c = 0.5 * jnp.dot(u, u) + jnp.dot(g, s0)
        if diag is not None:
            b = b + jnp.dot(s0 * diag, s)
            c = c + 0.5 * jnp.dot(s0 * diag, s0)
    return a, b, c


def minimize_quadratic_1d(
    a: Array, b: Array, lb: Array, ub: Array, c: Array | float = 0.0
) -> tuple[Array, Array]:
    """Minimise ``a t² + b t + c`` over ``lb ≤ t ≤ ub``; returns ``(t, value)``."""
    ext = -0.5 * b / where(a != 0, a, 1.0)
    ext_ok = (a != 0) & (lb < ext) & (ext < ub)
    t = jnp.stack([lb, ub, where(ext_ok, ext, lb)])
    y = t * (a * t + b) + c
    i = jnp.argmin(y)
    return t[i], y[i]


# --- bounds -------------------------------------------------------------------------


def step_to_bound(x: Array, s: Array, lb: Array, ub: Array) -> tuple[Array, Array]:
    """Smallest ``t ≥ 0`` with ``x + t s`` on a bound, and which variables hit it (±1)."""
    nz = s != 0
    s_safe = where(nz, s, 1.0)
    steps = where(nz, jnp.maximum((lb - x) / s_safe, (ub - x) / s_safe), jnp.inf)
    t = jnp.min(steps)
    hits = where(steps == t, jnp.sign(s), 0.0)
    return t, hits


def intersect_trust_region(x: Array, s: Array, Delta: Array) -> tuple[Array, Array]:
    """Roots ``t₋ ≤ t₊`` of ``‖x + t s‖ = Δ`` for ``x`` inside the region."""
    a = jnp.dot(s, s)
    a = where(a > 0, a, 1.0)
    b = jnp.dot(x, s)
    c = jnp.minimum(jnp.dot(x, x) - Delta**2, 0.0)
    d = jnp.sqrt(jnp.maximum(b * b - a * c, 0.0))
    q = -(b + where(b >= 0, d, -d))
    q = where(q != 0, q, -jnp.finfo(x.dtype).tiny)
    t1, t2 = q / a, c / q
    return jnp.minimum(t1, t2), jnp.maximum(t1, t2)


def in_bounds(x: Array, lb: Array, ub: Array) -> Array:
    return jnp.all((x >= lb) & (x <= ub))


def active_constraints(x: Array, lb: Array, ub: Array, rtol: Array | float) -> Array:
    """-1 where a lower bound is active, +1 where an upper bound is, else 0.

    A bound counts as active within ``rtol · max(1, |bound|)``.
    """
    lower_dist = x - lb
    upper_dist = ub - x
    lo_thr = rtol * jnp.maximum(1.0, jnp.abs(lb))
    up_thr = rtol * jnp.maximum(1.0, jnp.abs(ub))
    lower = jnp.isfinite(lb) & (lower_dist <= jnp.minimum(upper_dist, lo_thr))
    upper = jnp.isfinite(ub) & (upper_dist <= jnp.minimum(lower_dist, up_thr))
    return where(upper, 1, where(lower, -1, 0)).astype(jnp.int32)


def make_strictly_feasible(x: Array, lb: Array, ub: Array, rstep: float = 1e-10) -> Array:
    """Move ``x`` into the interior: at least ``rstep·max(1,|bound|)`` from each bound.

    ``rstep = 0`` moves points on a bound to the next representable number inside.
    """
    if rstep == 0:
        lower = x <= lb
        upper = x >= ub
        new = where(lower, jnp.nextafter(lb, ub), x)
        new = where(upper, jnp.nextafter(ub, lb), new)
    else:
        act = active_constraints(x, lb, ub, rstep)
        new = where(act == -1, lb + rstep * jnp.maximum(1.0, jnp.abs(lb)), x)
        new = where(act == 1, ub - rstep * jnp.maximum(1.0, jnp.abs(ub)), new)
    tight = (new < lb) | (new > ub)
    return where(tight, 0.5 * (lb + ub), new)


def coleman_li_scaling(x: Array, g: Array, lb: Array, ub: Array) -> tuple[Array, Array]:
    """Coleman–Li scaling vector ``v`` and its derivative ``dv`` (diagonal of ∂v/∂x).

    ``v_i`` is the distance to the bound that the negative gradient points at
    (``ub_i − x_i`` if ``g_i < 0`` and that bound is finite, ``x_i − lb_i`` if
    ``g_i > 0`` and that bound is finite) and 1 otherwise.
    """
    up = (g < 0) & jnp.isfinite(ub)
    lo = (g > 0) & jnp.isfinite(lb)
    v = where(up, ub - x, where(lo, x - lb, 1.0))
    dv = where(up, -1.0, where(lo, 1.0, 0.0)).astype(x.dtype)
    return v, dv


def select_step(
    x: Array,
    Rh: Array,
    diag_h: Array,
    g_h: Array,
    p: Array,
    p_h: Array,
    d: Array,
    Delta: Array,
    lb: Array,
    ub: Array,
    theta: Array,
) -> tuple[Array, Array, Array]:
    """Choose the trust-region-reflective step (Branch, Coleman & Li 1999).

    If ``x + p`` is feasible it is taken.  Otherwise three candidates are compared by
    the quadratic model (with the Coleman–Li diagonal term): the step truncated just
    before the first bound (factor θ), that step reflected off the bound, and the
    scaled steepest-descent step limited by bounds and region.  Returns
    ``(step, step_in_scaled_variables, predicted_reduction)``.
    """
    full_value = evaluate_quadratic(Rh, g_h, p_h, diag_h)
    feasible = in_bounds(x + p, lb, ub)

    p_stride, hits = step_to_bound(x, p, lb, ub)
    r_h = where(hits != 0, -p_h, p_h)
    r = d * r_h
    pb = p * p_stride
    pb_h = p_h * p_stride
    _, to_tr = intersect_trust_region(pb_h, r_h, Delta)
    to_bound, _ = step_to_bound(x + pb, r, lb, ub)
    r_stride = jnp.minimum(to_bound, to_tr)
    pos = r_stride > 0
    r_lo = where(pos, (1 - theta) * p_stride / where(pos, r_stride, 1.0), 0.0)
    r_hi = where(pos, where(r_stride == to_bound, theta * to_bound, to_tr), -1.0)
    a, b, c = quadratic_1d(Rh, g_h, r_h, diag_h, s0=pb_h)
    t_r, r_value = minimize_quadratic_1d(a, b, r_lo, r_hi, c)
    r_value = where(r_lo <= r_hi, r_value, jnp.inf)
    r_h = r_h * t_r + pb_h
    r = r_h * d

    pt = pb * theta
    pt_h = pb_h * theta
    p_value = evaluate_quadratic(Rh, g_h, pt_h, diag_h)

    ag_h = -g_h
    ag = d * ag_h
    to_tr = Delta / jnp.maximum(norm(ag_h), jnp.finfo(x.dtype).tiny)
    to_bound, _ = step_to_bound(x, ag, lb, ub)
    ag_stride = where(to_bound < to_tr, theta * to_bound, to_tr)
    a, b, _ = quadratic_1d(Rh, g_h, ag_h, diag_h)
    t_ag, ag_value = minimize_quadratic_1d(a, b, jnp.zeros_like(a), ag_stride)
    ag_h = ag_h * t_ag
    ag = ag * t_ag

    use_p = (p_value < r_value) & (p_value < ag_value)
    use_r = ~use_p & (r_value < p_value) & (r_value < ag_value)
    step = where(use_p, pt, where(use_r, r, ag))
    step_h = where(use_p, pt_h, where(use_r, r_h, ag_h))
    value = where(use_p, p_value, where(use_r, r_value, ag_value))
    return (
        where(feasible, p, step),
        where(feasible, p_h, step_h),
        -where(feasible, full_value, value),
    )


def jac_scale(R: Array, scale_inv_old: Array | None = None) -> tuple[Array, Array]:
    """Scale from Jacobian column norms (``x_scale='jac'``): ``(scale, scale_inv)``.

    Column norms of ``J̃`` equal those of ``R``.  Zero columns get 1; later iterations
    keep the largest norm seen so far (as MINPACK and SciPy do).
    """
    scale_inv = jnp.sqrt(jnp.sum(R * R, axis=0))
    if scale_inv_old is None:
        scale_inv = where(scale_inv == 0, 1.0, scale_inv)
    else:
        scale_inv = jnp.maximum(scale_inv, scale_inv_old)
    return 1.0 / scale_inv, scale_inv


def given_scale(R: Array, x_scale: Array) -> tuple[Array, Array]:
    """Fixed scale ``(scale, scale_inv)`` from ``x_scale``, completing its zero entries.

    Entries ``s_j > 0`` are kept.  A zero entry (how ``x_scale='bounds'`` marks a
    parameter without two finite bounds, :func:`curvax.core.validation.check_x_scale`)
    gets ``s_j = κ / ‖J_j‖`` from the Jacobian column norms at the starting point
    (``κ`` alone for a zero column), where

        κ = exp(mean_k log(s_k ‖J_k‖))    over the given entries with ‖J_k‖ > 0,

    the geometric mean of the residual change that a unit scaled step of the given
    parameters produces (1 if there is none): a unit scaled step of a completed
    parameter then changes the residuals as much as a typical given one does.  With no
    zero entry the scale is ``x_scale`` exactly.
    """
    given = x_scale > 0
    cn = jnp.sqrt(jnp.sum(R * R, axis=0))
    c = cn * where(given, x_scale, 1.0)
    use = given & (c > 0)
    mean_log = jnp.sum(where(use, jnp.log(where(use, c, 1.0)), 0.0)) / jnp.maximum(
        jnp.sum(use), 1
    )
    kappa = where(jnp.any(use), jnp.exp(mean_log), 1.0)
    completed = kappa / where(cn > 0, cn, 1.0)
    scale = where(given, x_scale, completed)
    scale_inv = where(given, 1.0 / where(given, x_scale, 1.0), 1.0 / completed)
    return scale, scale_inv


BOUND_SNAP_RTOL = 1e-6  # polish: a bound this close that the gradient presses against is active
COST_NOISE_FLOOR = 1e-10  # polish: relative cost rise always attributed to rounding
#: polish: a step that moves no parameter by more than this fraction of its value is
#: not evaluated (the point is then within ~1e-12 relative of the polished minimum)
POLISH_RTOL = 1e-12


def stop_if_rejected(status: Array, red: Any) -> Array:
    """:data:`GRAM_REJECTED_STATUS` where ``red`` is a rejected Gram reduction, else
    ``status``: the iteration cannot go on from it (it is no reduction of the data)."""
    return where(gram_rejected(red.n_nonfinite), GRAM_REJECTED_STATUS, status)


def gauss_newton_gain_below(red: Any, ftol: Array) -> Array:
    """Whether no step could lower the cost by more than ``ftol`` (relative).

    The Gauss–Newton model ``½‖r̃ + J̃s‖²`` is lowest at the unrestricted step, where it
    has fallen by ``½‖Q₁ᵀr̃‖²`` (``red.qtf``); bounds and a trust region only allow
    less.  When that largest model decrease is below ``ftol·C`` the fit has converged in
    the sense of the ``ftol`` test even if the last step was cut short by the region.
    """
    gain = 0.5 * jnp.sum(red.qtf**2)
    return gain <= ftol * red.cost


def gauss_newton_polish(
    reduce_fn: Callable[[Array], Any],
    x: Array,
    red: Any,
    lb: Array,
    ub: Array,
    n_residuals: int,
    max_steps: int,
    svd: SvdFn | None = None,
) -> tuple[Array, Any, Array, Array]:
    """Refine a converged point with full Gauss–Newton steps; returns ``(x, red, nfev,
    rejected)``, ``rejected`` true when a step's reduction was a rejected Gram reduction
    (:func:`~curvax.core.reduction.gram_rejected`; the refinement stops there).

    The cost is flat near a minimum: once its relative decrease falls below machine
    precision, a cost-based test (``ftol``) cannot see that the parameters are still off by
    up to √ε in poorly determined directions. The gradient ``Rᵀ Qᵀr`` is computed far more
    accurately, so a few undamped steps ``s = −D⁻¹(RD⁻¹)⁺ Qᵀr`` (``D`` the column norms of
    ``R``: the minimum-norm least-squares solution in column-scaled variables, singular
    values below ``eps·m·σ_max`` ignored; where that factor is rank deficient, the
    least-squares step of least relative change instead, :func:`polish_step`) bring the
    point to the precision the gradient allows — the same idea as iterative refinement of a
    linear solve. The rank decision is taken on the scaled factor so that it does not depend
    on the parameters' units: with columns 10⁵⁰ apart the unscaled test dropped the small
    one, and a fit started 100 orders of magnitude off stayed there. A step is kept only
    while it stays inside the bounds, does not raise the cost beyond its rounding noise and
    reduces the scaled gradient norm. The computed cost is uncertain by more than ``ε·C``:
    each residual ``f − y`` carries the cancellation error ``ε|y|``, so ``C`` is uncertain
    by about ``2ε‖y‖/‖r‖`` relatively (``1e-11`` for a signal-to-noise ratio of ``10⁵``),
    and the sum of ``m`` squares by ``~ε√m``; a step to the true minimum can *appear* to
    raise it. The allowance is ``max(8ε√m, 10⁻¹⁰)·C`` — harmless, because the step must also
    lower the gradient, which near a minimum cannot fall while the cost truly rises. The
    refinement stops at the first step that fails, and before evaluating a step that moves
    no parameter by more than :data:`POLISH_RTOL` (10⁻¹²) of its value, or by more than
    rounding (4ε) where that is larger.  Near a minimum the steps shrink geometrically,
    so the point returned lies within about 10⁻¹² (relative) of the end of the full
    refinement, and one or two evaluations per fit are saved (five problems of
    ``benchmarks/bench_fit.py`` at 10²–10⁶ points: 6–12 → 5–10 evaluations, parameters
    moved by at most 9e-13 relative).  The scaled gradient left (``optimality``) is then
    up to ~1e-8 instead of ~1e-11 at 10⁶ points.

    Bounds: an interior method approaches an active bound only geometrically, so with a
    bound active the cost-based tests stop with the *free* parameters still ~√ε off.
    Parameters within ``BOUND_SNAP_RTOL`` of a bound that the gradient presses against
    are therefore set exactly on that bound and left out of the Gauss–Newton step (their
    columns of ``R`` are zeroed, which removes them from the minimum-norm solution); the
    gradient test then uses the free components only.  A snap that raises the cost is
    rejected like any other step.
    ``svd`` optionally replaces the LAPACK SVD (see :func:`subproblem_from_factor`).
    """
    eps = jnp.finfo(x.dtype).eps
    cost_noise = jnp.maximum(8.0 * eps * max(1.0, float(n_residuals) ** 0.5), COST_NOISE_FLOOR)

    def active_set(x: Array, g: Array) -> Array:
        # a bound the descent direction presses against, within BOUND_SNAP_RTOL
        lo, hi = near_bound_sides(x, lb, ub)
        return (lo & (g > 0)) | (hi & (g < 0))

    def gnorm(r: Any, active: Array) -> Array:
        cn = jnp.sqrt(jnp.sum(r.R**2, axis=0))
        return norm(where(active, 0.0, r.grad / where(cn > 0, cn, 1.0)))

    def gn_point(x: Array, red: Any) -> tuple[Array, Array, Array]:
        active = active_set(x, red.grad)
        R_free = where(active[None, :], 0.0, red.R)  # active columns drop out
        # rank decided on the column-scaled factor: it must not depend on units
        step = polish_step(R_free, red.qtf, x, n_residuals, svd)
        step = where(active, 0.0, step)
        x_new = where(active & (red.grad > 0), lb, where(active, ub, x + step))
        # a change below POLISH_RTOL (or rounding) of x: stop without evaluating it
        tiny = jnp.maximum(4.0 * eps, POLISH_RTOL) * jnp.abs(x)
        useful = jnp.any(jnp.abs(x_new - x) > tiny) & jnp.all(jnp.isfinite(x_new))
        return x_new, active, useful

    # n counts the evaluated steps; an iteration whose step is not useful ends the loop
    def cond(c: tuple) -> Array:
        _, _, go, n, _ = c
        return (n < max_steps) & go

    def body(c: tuple) -> tuple:
        x, red, _, n, _ = c
        x_new, active, useful = gn_point(x, red)
        red_new = jax.lax.cond(useful, reduce_fn, lambda _: red, x_new)
        inside = ((x_new > lb) & (x_new < ub)) | active
        ok = (
            useful
            & jnp.all(inside)
            & jnp.isfinite(red_new.cost)
            & (red_new.n_nonfinite == 0)
            & (red_new.cost <= red.cost * (1.0 + cost_noise))
            & (gnorm(red_new, active) < gnorm(red, active))
        )
        x_out = where(ok, x_new, x)
        red_out = jax.tree.map(lambda a, b: where(ok, a, b), red_new, red)
        return x_out, red_out, ok, n + useful.astype(jnp.int32), gram_rejected(red_new.n_nonfinite)

    x, red, _, n, rejected = jax.lax.while_loop(
        cond, body, (x, red, jnp.asarray(True), jnp.int32(0), jnp.asarray(False))
    )
    return x, red, n, rejected
