"""Parameter covariance from the triangular factor of the final Jacobian.

At the solution, with ``J̃ = Q₁R`` the (loss-rescaled, sigma-weighted) Jacobian, the
Gauss–Newton approximation of the covariance of the estimates is

    pcov = s² (J̃ᵀJ̃)⁻¹ = s² V diag(1/σ_k²) Vᵀ,     R = U diag(σ_k) Vᵀ,

computed from the SVD of ``R`` (the singular values of ``R`` are those of ``J̃``, so no
``JᵀJ`` is ever formed and its squared condition number is avoided).

* ``absolute_sigma=False`` (default): ``s² = 2C / (m − n)``, the residual variance —
  the covariance is rescaled so that the reduced χ² is 1, i.e. ``sigma`` is taken as
  relative weights only.  Requires ``m > n``.
* ``absolute_sigma=True``: ``s² = 1`` — ``sigma`` are the true standard deviations.

What it assumes: the model is locally linear over the uncertainty region, the errors
are independent (or correlated exactly as a 2-D ``sigma`` says) with zero mean, and
the Jacobian has full column rank.  When a singular value of the column-scaled factor
is below ``eps · max(m, n) · σ_max`` (rank deficiency: some combination of parameters is not
determined by the data), or when ``m ≤ n`` with ``absolute_sigma=False``, the
covariance cannot be estimated: every entry is ``inf`` and the caller warns.

Compiled batch programs use :func:`covariance_from_triangular`, which reaches the same
decision and value without an SVD where the rank test is clear-cut, and says when it is
not (the caller then applies :func:`covariance_from_factors` to those fits).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.small_linalg import column_scaled_inverse, inverse_column_norms, outer_gram

#: float64 machine epsilon, of the host-side rank tests.
_EPS = float(np.finfo(np.float64).eps)

#: Margin on the bounds of the rank test of :func:`covariance_from_triangular`.
RANK_TEST_MARGIN = 8.0


#: Largest number of parameters whose covariance :func:`covariance_from_factor`
#: computes with Python floats (:func:`_triangular_covariance`) before NumPy's SVD.
SMALL_FACTOR = 6


def covariance_from_factor(
    R: np.ndarray,
    n_residuals: int,
    cost: float,
    absolute_sigma: bool,
) -> tuple[np.ndarray, bool]:
    """Return ``(pcov, ok)``; ``ok`` is False when pcov is all-inf (see module docstring).

    The same computation as :func:`covariance_from_factors` for one fit, written for a
    single p×p factor: about half the NumPy calls, which is most of its cost for the few
    parameters of a curve fit.  An upper-triangular factor of at most
    :data:`SMALL_FACTOR` columns goes first through :func:`_triangular_covariance`
    (Python floats, no NumPy call: 117 → ~40 µs inside a warm 100-point fit); the SVD
    below then serves only the factors whose rank test that leaves undecided.
    """
    R = np.asarray(R, dtype=np.float64)
    n = R.shape[1]
    m = float(n_residuals)
    not_estimable = np.full((n, n), np.inf), False
    if n <= SMALL_FACTOR and R.shape == (n, n):
        decided = _triangular_covariance(R.tolist(), m, float(cost), absolute_sigma)
        if decided is not None:
            return (np.array(decided), True) if decided else not_estimable
    if not np.isfinite(R).all():
        return not_estimable
    cn = np.hypot.reduce(R, axis=0)  # column norms, without overflow
    if not (cn > 0).all():
        return not_estimable
    with np.errstate(over="ignore"):
        d = 1.0 / cn
    if not np.isfinite(d).all():  # a subnormal column: as singular as a zero one
        return not_estimable
    _, s, Vt = np.linalg.svd(R * d, full_matrices=False)
    if not (s[0] > 0 and (s > _EPS * max(m, n) * s[0]).all()):
        return not_estimable
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow: not estimable
        pcov = (Vt.T * (1.0 / s**2)) @ Vt * d[:, None] * d[None, :]
        if not absolute_sigma:
            if m <= n:
                return not_estimable
            pcov = pcov * (2.0 * float(cost) / (m - n))
    if not np.isfinite(pcov).all():
        return not_estimable
    return 0.5 * (pcov + pcov.T), True


def _triangular_covariance(
    R: list[list[float]], m: float, cost: float, absolute_sigma: bool
) -> list[list[float]] | bool | None:
    """:func:`covariance_from_triangular`'s computation for one small upper-triangular
    factor, in Python floats.

    ``U = R D`` with unit columns, ``T = U⁻¹`` by back substitution and
    ``pcov = s² D T Tᵀ D``; the rank test ``σ_min > ε·max(m, n)·σ_max`` of
    :func:`covariance_from_factor` is decided from the bounds ``1 ≤ σ_max ≤ √n`` and
    ``1/‖T‖_F ≤ σ_min ≤ √n/‖T‖_F`` with the margin :data:`RANK_TEST_MARGIN`.
    Returns the covariance (nested lists), False when it is not estimable, or None when
    the bounds leave the rank test undecided or ``R`` is not upper triangular (the
    caller then takes the SVD path).
    """
    n = len(R)
    if any(R[i][j] != 0.0 for i in range(1, n) for j in range(i)):
        return None
    if not all(math.isfinite(v) for row in R for v in row):
        return False
    cn = [math.hypot(*(R[i][j] for i in range(j + 1))) for j in range(n)]
    if not all(c > 0.0 for c in cn):
        return False
    d = [1.0 / c for c in cn]
    if not all(math.isfinite(v) for v in d):  # a subnormal column: singular
        return False
    U = [[R[i][j] * d[j] for j in range(n)] for i in range(n)]
    if any(U[i][i] == 0.0 for i in range(n)):
        return False
    T = [[0.0] * n for _ in range(n)]  # T = U⁻¹, upper triangular, column by column
    for j in range(n):
        T[j][j] = 1.0 / U[j][j]
        for i in range(j - 1, -1, -1):
            acc = 0.0
            for k in range(i + 1, j + 1):
                acc += U[i][k] * T[k][j]
            T[i][j] = -acc / U[i][i]
    tf = math.sqrt(sum(v * v for row in T for v in row))
    if not (math.isfinite(tf) and tf > 0.0):
        return None
    thr = _EPS * max(m, n)
    root_n = math.sqrt(n)
    if root_n / tf < thr / RANK_TEST_MARGIN:
        return False
    if not 1.0 / tf > RANK_TEST_MARGIN * thr * root_n:
        return None
    if absolute_sigma:
        scale = 1.0
    elif m <= n:
        return False
    else:
        scale = 2.0 * cost / (m - n)
    pcov = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            acc = 0.0
            for k in range(j, n):  # T upper triangular: T[i][k] T[j][k] vanish for k < j
                acc += T[i][k] * T[j][k]
            v = acc * d[i] * d[j] * scale
            if not math.isfinite(v):
                return False
            pcov[i][j] = pcov[j][i] = v
    return pcov


def covariance_from_factors(
    R: np.ndarray,
    n_residuals: np.ndarray,
    cost: np.ndarray,
    absolute_sigma: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`covariance_from_factor` for a stack of fits, vectorised.

    ``R`` (B, n, n), ``n_residuals`` and ``cost`` (B,); returns ``(pcov (B, n, n),
    ok (B,))``.  The rank test and the inverse use the column-scaled factor
    ``R D`` (``D`` = inverse column norms), so that parameters of very different
    magnitudes (e.g. a prefactor of 10¹⁶ beside an energy of 10⁵) are not mistaken for
    a rank deficiency: ``pcov = D (DᵀRᵀRD)⁻¹ D``.
    """
    R = np.asarray(R, dtype=np.float64)
    b, _, n = R.shape
    m = np.asarray(n_residuals, dtype=np.float64).reshape(b)
    cost = np.asarray(cost, dtype=np.float64).reshape(b)
    finite = np.all(np.isfinite(R), axis=(1, 2))
    Rs = np.where(finite[:, None, None], R, 0.0)
    # (B, n) column norms, overflow-safe; 1/cn overflows for a subnormal column: d = 0
    with np.errstate(over="ignore"):
        cn, d = inverse_column_norms(Rs, np)
    _, s, Vt = np.linalg.svd(Rs * d[:, None, :], full_matrices=False)
    threshold = _EPS * np.maximum(m, n) * s[:, 0]
    ok = finite & np.all(cn > 0, axis=1) & (s[:, 0] > 0) & np.all(s > threshold[:, None], axis=1)
    s_safe = np.where(ok[:, None], s, 1.0)
    pcov = np.einsum("bki,bk,bkj->bij", Vt, 1.0 / s_safe**2, Vt)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow: not estimable
        pcov = pcov * d[:, :, None] * d[:, None, :]
    ok = ok & np.all(np.isfinite(pcov), axis=(1, 2))
    pcov = 0.5 * (pcov + np.swapaxes(pcov, 1, 2))
    if not absolute_sigma:
        ok = ok & (m > n)
        dof = np.where(m > n, m - n, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            pcov = pcov * (2.0 * cost / dof)[:, None, None]
        ok = ok & np.all(np.isfinite(pcov), axis=(1, 2))
    pcov[~ok] = np.inf
    return pcov, ok


def covariance_from_triangular(
    R: jax.Array, n_residuals: jax.Array, cost: jax.Array, absolute_sigma: bool
) -> tuple[jax.Array, jax.Array]:
    """The covariance of one fit from its upper-triangular ``R``, inside a JAX program.

    Returns ``(pcov, decided)``.  With ``U = R D`` (unit columns, ``D`` the inverse column
    norms) and ``T = U⁻¹`` by back substitution, ``pcov = s² D T Tᵀ D`` — the same matrix
    as :func:`covariance_from_factors`' ``D V diag(σ⁻²) Vᵀ D``.  The rank test
    ``σ_min > ε·max(m, n)·σ_max`` is decided from bounds instead of singular values:
    unit columns give ``1 ≤ σ_max ≤ √n``, and ``‖T‖_F`` gives
    ``1/‖T‖_F ≤ σ_min ≤ √n/‖T‖_F``.  Where these bounds (widened by
    :data:`RANK_TEST_MARGIN`) leave the test undecided — a condition number within a
    factor ~``8√n`` of ``1/(ε·max(m, n))`` — ``decided`` is False and the caller must use
    :func:`covariance_from_factors` for that fit.  Vectorises under ``vmap`` into a few
    dozen element-wise operations for a handful of parameters.
    """
    n = R.shape[-1]
    dtype = R.dtype
    finite = jnp.all(jnp.isfinite(R))
    T, d = column_scaled_inverse(jnp.where(finite, R, 0.0))
    tf = jnp.sqrt(jnp.sum(T * T))
    eps = jnp.finfo(dtype).eps
    thr = eps * jnp.maximum(n_residuals, n).astype(dtype)
    usable = finite & jnp.all(d > 0) & jnp.isfinite(tf) & (tf > 0)
    tf_safe = jnp.where(usable, tf, 1.0)
    sure_ok = usable & (1.0 / tf_safe > RANK_TEST_MARGIN * thr * jnp.sqrt(n))
    sure_bad = ~usable | (jnp.sqrt(n) / tf_safe < thr / RANK_TEST_MARGIN)
    pcov = outer_gram(T) * d[:, None] * d[None, :]
    pcov = 0.5 * (pcov + pcov.T)
    ok = sure_ok & jnp.all(jnp.isfinite(pcov))
    m = n_residuals.astype(dtype)
    if not absolute_sigma:
        ok = ok & (m > n)
        dof = jnp.where(m > n, m - n, 1.0)
        pcov = pcov * (2.0 * cost / dof)
        ok = ok & jnp.all(jnp.isfinite(pcov))
    return jnp.where(ok, pcov, jnp.inf), sure_ok | sure_bad
