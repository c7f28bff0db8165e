"""Tiny dense linear algebra written as element-wise JAX operations.

When thousands of small fits run as one ``vmap``-ed program, every LAPACK call
(here ``gesdd``, the SVD) becomes a loop of tiny library calls on the CPU, each costing
microseconds of overhead for a 5×5 problem.  The routine below does the same work
with explicit, fully unrolled arithmetic on the rows / columns of a single small
matrix.  Under ``vmap`` each such operation becomes one vectorised operation over the
whole batch, which XLA fuses and runs with SIMD instructions.

* :func:`jacobi_svd` — the thin SVD by the one-sided (Hestenes) Jacobi method, the
  drop-in for ``jnp.linalg.svd(A, full_matrices=False)`` used by the trust-region
  solvers (their optional ``svd`` argument).
* :func:`cholesky_factor`, :func:`cholesky_solve` — ``M = L Lᵀ`` and ``x = M⁻¹ b`` for
  a symmetric positive definite ``M`` (the damped normal equations of
  :mod:`curvax.core.lm_normal`).
* :func:`gram_schmidt_r` — the triangular factor ``R`` of ``J = QR`` by modified
  Gram–Schmidt (the covariance of a fit needs only ``R``).
* :func:`upper_triangular_solve` — ``U⁻¹ b`` by back substitution;
  :func:`upper_triangular_inverse` — ``U⁻¹`` by back substitution, and
  :func:`column_scaled_inverse` — the inverse of ``R`` with its columns scaled to unit
  norm (the covariance and its rank test).
* :func:`matvec`, :func:`outer_gram` — ``A x`` and ``T Tᵀ`` as sums of broadcast
  products.  Under ``vmap`` ``A @ x`` becomes a batched ``dot`` that XLA's CPU backend
  runs as one tiny matrix product per fit; measured on a 2-core CPU for 4×4 matrices
  in batches of 65,536, ``T @ T.T`` took 164 ns per matrix and the element-wise form
  56 ns.

They are meant for matrices with a handful of columns (the number of fit parameters);
the unrolled program grows like ``columns²`` (``columns³`` for the Cholesky
factorisation), so callers fall back to LAPACK above :data:`UNROLL_MAX` columns.
Measured on a 2-core CPU for 10×5 matrices in batches of 256: the Jacobi SVD takes
about 2 µs per matrix against about 4-12 µs for the batched LAPACK call.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

#: Upper limit of Jacobi sweeps (convergence is quadratic; 5×5 needs about 5-7).
MAX_SWEEPS = 12
#: Largest number of columns for which :func:`cholesky_solve` is unrolled.
UNROLL_MAX = 12


def matvec(A: Array, x: Array) -> Array:
    """``A x`` for a small matrix, as ``Σ_j A_:j x_j`` (see the module docstring).

    The sum is written out term by term (element-wise operations, no reduction), so the
    result is the same bits whatever the batch size around it.
    """
    acc = A[:, 0] * x[0]
    for j in range(1, A.shape[1]):
        acc = acc + A[:, j] * x[j]
    return acc


def outer_gram(T: Array) -> Array:
    """``T Tᵀ`` for a small matrix, as ``Σ_k T_:k T_:kᵀ``, term by term like :func:`matvec`."""
    acc = T[:, None, 0] * T[None, :, 0]
    for k in range(1, T.shape[1]):
        acc = acc + T[:, None, k] * T[None, :, k]
    return acc


def _rotate(ai: Array, aj: Array, vi: Array, vj: Array, eps: Array) -> tuple:
    """One Jacobi rotation making columns ``ai`` and ``aj`` orthogonal."""
    a = jnp.sum(ai * ai)
    b = jnp.sum(aj * aj)
    g = jnp.sum(ai * aj)
    active = jnp.abs(g) > eps * jnp.sqrt(a * b)
    g_safe = jnp.where(active, g, 1.0)
    zeta = (b - a) / (2.0 * g_safe)
    t = jnp.where(zeta >= 0, 1.0, -1.0) / (jnp.abs(zeta) + jnp.sqrt(1.0 + zeta * zeta))
    c = 1.0 / jnp.sqrt(1.0 + t * t)
    s = c * t
    c = jnp.where(active, c, 1.0)
    s = jnp.where(active, s, 0.0)
    off = jnp.where(active, jnp.abs(g) / jnp.sqrt(jnp.where(a * b > 0, a * b, 1.0)), 0.0)
    return c * ai - s * aj, s * ai + c * aj, c * vi - s * vj, s * vi + c * vj, off


def jacobi_svd(A: Array, max_sweeps: int = MAX_SWEEPS) -> tuple[Array, Array, Array]:
    """Thin SVD ``A = U diag(s) Vᵀ`` of a small matrix (k×p, k ≥ p), s descending.

    One-sided Jacobi: plane rotations ``V ← V G`` applied to the columns of ``A V``
    until every pair is orthogonal to working precision, i.e.
    ``|a_iᵀa_j| ≤ ε ‖a_i‖‖a_j‖``; then ``s_i = ‖(AV)_i‖`` and ``U_i = (AV)_i / s_i``
    (a zero column gives ``s_i = 0`` and ``U_i = 0``).  The method computes small
    singular values to high relative accuracy.  Sweeps stop when no rotation was
    needed or after ``max_sweeps``.  Returns ``(U (k×p), s (p,), Vᵀ (p×p))`` like
    ``jnp.linalg.svd(A, full_matrices=False)``; non-finite input gives non-finite
    output without looping for ever.
    """
    k, p = A.shape
    if k < p:
        raise ValueError(f"jacobi_svd: expected rows >= columns, got shape {A.shape}")
    dtype = A.dtype
    eps = jnp.asarray(jnp.finfo(dtype).eps, dtype)
    cols = tuple(A[:, i] for i in range(p))
    eye = jnp.eye(p, dtype=dtype)
    vcols = tuple(eye[:, i] for i in range(p))
    pairs = [(i, j) for i in range(p - 1) for j in range(i + 1, p)]

    def sweep(c: tuple, v: tuple) -> tuple[tuple, tuple, Array]:
        c, v = list(c), list(v)
        worst = jnp.zeros((), dtype)
        for i, j in pairs:
            c[i], c[j], v[i], v[j], off = _rotate(c[i], c[j], v[i], v[j], eps)
            worst = jnp.maximum(worst, off)
        return tuple(c), tuple(v), worst

    def cond(state: tuple) -> Array:
        it, _, _, worst = state
        return (it < max_sweeps) & (worst > eps)

    def body(state: tuple) -> tuple:
        it, c, v, _ = state
        c, v, worst = sweep(c, v)
        return it + 1, c, v, worst

    if p > 1:
        init = (jnp.zeros((), jnp.int32), cols, vcols, jnp.ones((), dtype))
        _, cols, vcols, _ = jax.lax.while_loop(cond, body, init)
    AV = jnp.stack(cols, axis=1)
    V = jnp.stack(vcols, axis=1)
    s = jnp.sqrt(jnp.sum(AV * AV, axis=0))
    order = jnp.argsort(-s)
    s = s[order]
    AV = AV[:, order]
    V = V[:, order]
    U = AV / jnp.where(s > 0, s, 1.0)
    return U, s, V.T



def cholesky_factor(M: Array) -> Array:
    """Lower-triangular ``L`` with ``M = L Lᵀ`` for a small symmetric positive definite ``M``.

    Column by column: ``L_jj = √(M_jj − Σ_k<j L_jk²)``,
    ``L_ij = (M_ij − Σ_k<j L_ik L_jk) / L_jj``.  Only the lower triangle of ``M`` is read.
    A pivot that is not positive (``M`` not positive definite to working precision) is
    replaced by the smallest normal number, which gives huge but finite or non-finite
    entries further on; callers test the result.  Above :data:`UNROLL_MAX` columns
    LAPACK's factorisation is used instead (NaN where it fails).
    """
    p = M.shape[0]
    if p > UNROLL_MAX:
        return jnp.linalg.cholesky(M)
    tiny = jnp.asarray(jnp.finfo(M.dtype).tiny, M.dtype)
    zero = jnp.zeros((), M.dtype)
    L = [[zero] * p for _ in range(p)]
    for j in range(p):
        acc = M[j, j]
        for k in range(j):
            acc = acc - L[j][k] * L[j][k]
        L[j][j] = jnp.sqrt(jnp.maximum(acc, tiny))
        for i in range(j + 1, p):
            acc = M[i, j]
            for k in range(j):
                acc = acc - L[i][k] * L[j][k]
            L[i][j] = acc / L[j][j]
    return jnp.stack([jnp.stack(row) for row in L])


def cholesky_solve(M: Array, b: Array) -> Array:
    """Solve ``M x = b`` for a small symmetric positive definite ``M`` (p×p).

    ``M = L Lᵀ`` (:func:`cholesky_factor`), then ``L z = b`` and ``Lᵀ x = z`` by
    substitution.  A matrix that is not positive definite gives a huge or non-finite
    ``x``; the caller must test the result (the Levenberg–Marquardt solver rejects such
    a step and raises its damping).
    """
    p = M.shape[0]
    L = cholesky_factor(M)
    if p > UNROLL_MAX:
        z = jax.scipy.linalg.solve_triangular(L, b, lower=True)
        return jax.scipy.linalg.solve_triangular(L.T, z, lower=False)
    z: list[Array] = []
    for i in range(p):
        acc = b[i]
        for k in range(i):
            acc = acc - L[i, k] * z[k]
        z.append(acc / L[i, i])
    return upper_triangular_solve(L.T, jnp.stack(z))


def gram_schmidt_r(J: Array) -> Array:
    """Upper-triangular ``R`` (p×p) with ``RᵀR = JᵀJ``, by modified Gram–Schmidt.

    For each column in turn: ``R_jj = ‖a_j‖``, ``q_j = a_j / R_jj``, and every later
    column loses its component along ``q_j`` (``R_jk = q_jᵀa_k``).  The computed ``R``
    is backward stable (it is the exact factor of ``J + E`` with ``‖E‖ = O(ε‖J‖)``),
    as accurate as a Householder ``R`` even though ``Q`` may lose orthogonality; a
    zero (or exactly dependent) column gives a zero row, which the covariance's rank
    test then sees.
    """
    p = J.shape[1]
    cols = [J[:, j] for j in range(p)]
    zero = jnp.zeros((), J.dtype)
    rows: list[list[Array]] = []
    for j in range(p):
        v = cols[j]
        big = jnp.max(jnp.abs(v))  # scaled norm: no overflow of squares beyond 1e154
        big_safe = jnp.where(big > 0, big, 1.0)
        nrm = big * jnp.sqrt(jnp.sum((v / big_safe) ** 2))
        q = v / jnp.where(nrm > 0, nrm, 1.0)
        row = [zero] * j + [nrm]
        for k in range(j + 1, p):
            rjk = jnp.sum(q * cols[k])
            cols[k] = cols[k] - rjk * q
            row.append(rjk)
        rows.append(row)
    return jnp.stack([jnp.stack(r) for r in rows])


def upper_triangular_solve(U: Array, b: Array) -> Array:
    """``x = U⁻¹ b`` for an upper-triangular ``U`` (p×p) by back substitution,
    ``x_i = (b_i − Σ_{k>i} U_ik x_k) / U_ii``, unrolled; a zero on the diagonal gives
    non-finite entries (the caller tests them)."""
    p = U.shape[0]
    x: list[Array] = [b[0]] * p
    for i in reversed(range(p)):
        acc = b[i]
        for k in range(i + 1, p):
            acc = acc - U[i, k] * x[k]
        x[i] = acc / U[i, i]
    return jnp.stack(x)


def upper_triangular_inverse(U: Array) -> Array:
    """Inverse of an upper-triangular ``U`` (p×p) by back substitution, column by column.

    ``T = U⁻¹`` is upper triangular with ``T_jj = 1/U_jj`` and, for ``i < j``,
    ``T_ij = −(Σ_{i<k≤j} U_ik T_kj) / U_ii``.  A zero on the diagonal gives non-finite
    entries (the caller tests them).  Above :data:`UNROLL_MAX` columns a triangular solve
    against the identity is used instead.
    """
    p = U.shape[0]
    if p > UNROLL_MAX:
        return jax.scipy.linalg.solve_triangular(U, jnp.eye(p, dtype=U.dtype), lower=False)
    zero = jnp.zeros((), U.dtype)
    T = [[zero] * p for _ in range(p)]
    for j in range(p):
        T[j][j] = 1.0 / U[j, j]
        for i in reversed(range(j)):
            acc = zero
            for k in range(i + 1, j + 1):
                acc = acc + U[i, k] * T[k][j]
            T[i][j] = -acc / U[i, i]
    return jnp.stack([jnp.stack(row) for row in T])


def column_scaled_inverse(R: Array) -> tuple[Array, Array]:
    """``(T, d)`` with ``d`` the inverse column norms of ``R`` and ``T = (R diag(d))⁻¹``.

    ``R`` is upper triangular (p×p).  The norms are computed scaled by each column's
    largest entry, so columns beyond 1e154 do not overflow when squared; a zero column,
    or one so small that its inverse norm overflows, gets ``d = 0`` (and ``T`` is then
    not finite: the scaled factor is singular).  ``√p ‖T‖_F`` bounds the condition
    number of the unit-column factor from above, ``‖T‖_F`` bounds ``1/σ_min``.
    """
    _, d = inverse_column_norms(R)
    return upper_triangular_inverse(R * d[None, :]), d


def inverse_column_norms(R: Any, xp: Any = jnp) -> tuple[Any, Any]:
    """``(cn, d)``: the column norms of ``R`` (…, k, p) and their inverses.

    The norms are computed scaled by each column's largest entry, so that columns beyond
    1e154 do not overflow when squared; ``d = 0`` for a zero column and for one whose
    inverse norm overflows (a subnormal column).  ``xp`` is the array namespace, NumPy or
    ``jax.numpy``: the NumPy covariance uses the same function (inside
    ``np.errstate(over='ignore')``).
    """
    big = xp.abs(R).max(axis=-2)  # (methods: cheaper than xp.max/xp.sum in NumPy)
    big_safe = xp.where(big > 0, big, 1.0)
    cn = big * xp.sqrt(((R / big_safe[..., None, :]) ** 2).sum(axis=-2))
    inv = 1.0 / xp.where(cn > 0, cn, 1.0)
    return cn, xp.where((cn > 0) & xp.isfinite(inv), inv, 0.0)
