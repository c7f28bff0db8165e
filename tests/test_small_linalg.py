"""Unrolled small linear algebra and the in-program covariance, against NumPy/LAPACK."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvax.core import covariance
from curvax.core.covariance import (
    SMALL_FACTOR,
    _triangular_covariance,
    covariance_from_factor,
    covariance_from_factors,
    covariance_from_triangular,
)
from curvax.core.lm_normal import NORMAL_FACTOR_MAX_COND, finish_normal_fits
from curvax.core.small_linalg import (
    UNROLL_MAX,
    cholesky_factor,
    cholesky_solve,
    gram_schmidt_r,
    jacobi_svd,
    upper_triangular_inverse,
)

SIZES = [1, 2, 5, 9, UNROLL_MAX + 2]  # the last one takes the LAPACK fallback


pytestmark = pytest.mark.usefixtures("float64_only")


def _spd(p: int, rng: np.random.Generator) -> np.ndarray:
    J = rng.normal(size=(3 * p, p)) * 10.0 ** rng.uniform(-2, 2, p)
    return J.T @ J


@pytest.mark.parametrize("p", SIZES)
def test_cholesky_factor_and_solve_match_numpy(p: int) -> None:
    rng = np.random.default_rng(p)
    M = _spd(p, rng)
    b = rng.normal(size=p)
    L = np.asarray(jax.jit(cholesky_factor)(M))
    np.testing.assert_allclose(L, np.linalg.cholesky(M), rtol=1e-10, atol=1e-12 * np.abs(L).max())
    x = np.asarray(jax.jit(cholesky_solve)(M, b))
    np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-8)


def test_cholesky_of_indefinite_matrix_is_not_finite_or_huge() -> None:
    """Not positive definite: the caller must be able to see it (no silent wrong solve)."""
    M = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3, -1
    x = np.asarray(cholesky_solve(jnp.asarray(M), jnp.asarray([1.0, 1.0])))
    assert not np.all(np.isfinite(x)) or np.max(np.abs(x)) > 1e100


@pytest.mark.parametrize("p", SIZES)
def test_upper_triangular_inverse_matches_numpy(p: int) -> None:
    rng = np.random.default_rng(10 + p)
    U = np.triu(rng.normal(size=(p, p))) + 3.0 * np.eye(p)
    T = np.asarray(jax.jit(upper_triangular_inverse)(U))
    np.testing.assert_allclose(T, np.linalg.inv(U), rtol=1e-10, atol=1e-14)
    assert np.all(np.tril(T, -1) == 0.0)


@pytest.mark.parametrize("shape", [(25, 5), (64, 4), (7, 7), (40, 13)])
def test_gram_schmidt_r_is_the_qr_factor(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    J = rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 3, shape[1])
    R = np.asarray(jax.jit(gram_schmidt_r)(J))
    Rq = np.linalg.qr(J, mode="r")
    assert np.all(np.tril(R, -1) == 0.0)
    # unique up to the signs of the rows
    np.testing.assert_allclose(np.abs(R), np.abs(Rq), rtol=1e-9, atol=1e-12 * np.abs(Rq).max())
    np.testing.assert_allclose(R.T @ R, J.T @ J, rtol=1e-10, atol=1e-12 * np.abs(J.T @ J).max())


@pytest.mark.parametrize("shape", [(25, 5), (6, 6), (30, 1)])
def test_jacobi_svd_matches_lapack(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[1])
    A = rng.normal(size=shape)
    U, s, Vt = (np.asarray(a) for a in jax.jit(jacobi_svd)(A))
    np.testing.assert_allclose(s, np.linalg.svd(A, compute_uv=False), rtol=1e-12)
    np.testing.assert_allclose((U * s) @ Vt, A, atol=1e-12)
    np.testing.assert_allclose(Vt @ Vt.T, np.eye(shape[1]), atol=1e-12)


# --- covariance inside programs ----------------------------------------------------------


def _triangular_cov(R: np.ndarray, m: int, cost: float, absolute: bool):
    pcov, decided = jax.jit(covariance_from_triangular, static_argnums=3)(
        jnp.asarray(R), jnp.asarray(m), jnp.asarray(cost), absolute
    )
    return np.asarray(pcov), bool(decided)


@pytest.mark.parametrize("absolute", [False, True])
def test_triangular_covariance_equals_svd_covariance(absolute: bool) -> None:
    rng = np.random.default_rng(3)
    for trial in range(20):
        p = int(rng.integers(1, 8))
        J = rng.normal(size=(30, p)) * 10.0 ** rng.uniform(-6, 6, p)  # wildly scaled columns
        R = np.linalg.qr(J, mode="r")
        cost = float(rng.uniform(0.1, 10))
        pcov, decided = _triangular_cov(R, 30, cost, absolute)
        ref, ok = covariance_from_factors(R[None], np.array([30]), np.array([cost]), absolute)
        assert decided and ok[0], trial
        np.testing.assert_allclose(pcov, ref[0], rtol=1e-9, err_msg=str(trial))


def test_triangular_covariance_rank_deficiency() -> None:
    rng = np.random.default_rng(4)
    J = rng.normal(size=(30, 3))
    J[:, 2] = 2.0 * J[:, 0]  # exactly dependent column
    R = np.linalg.qr(J, mode="r")
    pcov, decided = _triangular_cov(R, 30, 1.0, False)
    ref, ok = covariance_from_factors(R[None], np.array([30]), np.array([1.0]), False)
    assert not ok[0] and np.all(np.isinf(ref))
    # either decided (and then also all-inf) or handed back to the SVD path
    assert not decided or np.all(np.isinf(pcov))
    # a zero column is always decided: not estimable
    Z = np.triu(rng.normal(size=(3, 3)))
    Z[:, 1] = 0.0
    pcov_z, decided_z = _triangular_cov(Z, 30, 1.0, False)
    assert decided_z and np.all(np.isinf(pcov_z))


def test_triangular_covariance_defers_near_the_rank_threshold() -> None:
    """A condition number near 1/(eps·m): the bounds cannot decide, the SVD path must."""
    eps = np.finfo(np.float64).eps
    s = np.array([1.0, 1.0, 30 * eps * 1.5])  # just above the threshold eps*max(m,n)*s_max
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    V, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = np.linalg.qr((Q * s) @ V.T, mode="r")
    _, decided = _triangular_cov(R, 30, 1.0, True)
    assert not decided


def test_normal_fits_factor_switches_to_gram_schmidt() -> None:
    """Well conditioned: chol(JᵀJ)ᵀ; ill conditioned: the Gram–Schmidt factor of J."""
    rng = np.random.default_rng(6)
    x = np.linspace(1000.0, 1001.0, 40)
    J_bad = np.stack([np.ones_like(x), x, x**2], axis=1)  # scaled condition ~1e11
    J_good = rng.normal(size=(40, 3))
    for J, precise in ((J_good, False), (J_bad, True)):
        Jb = jnp.asarray(np.stack([J, J_good]))
        A = jnp.einsum("bni,bnj->bij", Jb, Jb)
        def factor(A, J):
            r = jnp.ones(J.shape[:2], J.dtype)
            st = jnp.zeros(2, jnp.int32)  # no convergence claim to judge
            x = jnp.ones((2, 3), J.dtype)
            return finish_normal_fits(A, x, st, st > 0, lambda: (r, J), lambda q: r)[0]

        R = np.asarray(jax.jit(factor)(A, Jb))[0]
        Rq = np.linalg.qr(J, mode="r")
        # R must be as good as a QR factor: compare the covariances (JᵀJ)⁻¹ they imply
        cov = np.linalg.inv(R.T @ R) if not precise else None
        if precise:
            Ri = np.linalg.inv(R)
            Rqi = np.linalg.inv(Rq)
            np.testing.assert_allclose(np.abs(Ri @ Ri.T), np.abs(Rqi @ Rqi.T), rtol=1e-4)
        else:
            np.testing.assert_allclose(cov, np.linalg.inv(J.T @ J), rtol=1e-10)
    assert NORMAL_FACTOR_MAX_COND < 1e11  # the bad case is beyond the switch


@pytest.mark.parametrize("absolute", [False, True])
def test_single_fit_covariance_equals_the_batched_one(absolute: bool) -> None:
    """covariance_from_factor (one p×p factor, the single-fit path) must give what
    covariance_from_factors gives for a stack of one — value, all-inf pattern and ok
    flag — across well-scaled, wildly scaled (1e±150), rank-deficient, zero-column,
    subnormal-column and non-finite factors, and m ≤ n."""
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(12):
        p = int(rng.integers(1, 7))
        J = rng.normal(size=(30, p)) * 10.0 ** rng.uniform(-150, 150, p)
        cases.append((np.linalg.qr(J, mode="r"), 30))
    R0 = cases[0][0]
    cases.append((R0, R0.shape[0]))  # m == n: s² undefined
    J = rng.normal(size=(30, 3))
    J[:, 2] = 2.0 * J[:, 0]
    cases.append((np.linalg.qr(J, mode="r"), 30))  # rank deficient
    Z = np.triu(rng.normal(size=(3, 3)))
    cases.append((np.where(np.arange(3) == 1, 0.0, Z), 30))  # zero column
    cases.append((np.where(np.arange(3) == 1, 1e-320 * Z, Z), 30))  # subnormal column
    cases.append((np.where(np.eye(3) > 0, np.nan, Z), 30))  # not finite
    for i, (R, m) in enumerate(cases):
        cost = float(rng.uniform(0.1, 10))
        pcov, ok = covariance_from_factor(R, m, cost, absolute)
        ref, ok_ref = covariance_from_factors(R[None], np.array([m]), np.array([cost]), absolute)
        assert ok == bool(ok_ref[0]), i
        if ok:
            np.testing.assert_allclose(pcov, ref[0], rtol=1e-12, atol=0, err_msg=str(i))
            np.testing.assert_array_equal(pcov, pcov.T)
        else:
            assert np.all(np.isinf(pcov)) and np.all(np.isinf(ref[0])), i


def test_small_factors_take_the_python_path_and_agree_with_the_svd() -> None:
    """Up to SMALL_FACTOR parameters the single-fit covariance comes from back
    substitution in Python floats; it must equal the SVD path, and hand back to it
    (None) where the rank test is too close to call or R is not triangular."""
    rng = np.random.default_rng(11)
    for n in range(1, SMALL_FACTOR + 1):
        for absolute in (False, True):
            J = rng.normal(size=(40, n)) * 10.0 ** rng.uniform(-100, 100, n)
            R = np.linalg.qr(J, mode="r")
            cost = float(rng.uniform(0.1, 10))
            fast = _triangular_covariance(R.tolist(), 40.0, cost, absolute)
            assert isinstance(fast, list), n  # decided: the SVD is not needed
            ref, ok = covariance_from_factors(R[None], np.array([40]), np.array([cost]), absolute)
            assert ok[0]
            np.testing.assert_allclose(np.array(fast), ref[0], rtol=1e-12, atol=0)
    # condition number near 1/(eps·m): the bounds cannot decide, the SVD does
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    edge = 1.0 / (np.finfo(float).eps * 40)
    R = np.linalg.qr(np.diag([1.0, 1.0, 1.0 / edge]) @ Q, mode="r")
    assert _triangular_covariance(R.tolist(), 40.0, 1.0, True) is None
    pcov, ok = covariance_from_factor(R, 40, 1.0, True)
    ref, ok_ref = covariance_from_factors(R[None], np.array([40]), np.array([1.0]), True)
    assert ok == bool(ok_ref[0])
    if ok:
        np.testing.assert_allclose(pcov, ref[0], rtol=1e-6)
    full = rng.normal(size=(3, 3))  # not triangular: the SVD path
    assert _triangular_covariance(full.tolist(), 40.0, 1.0, True) is None
    pcov, ok = covariance_from_factor(full, 40, 1.0, True)
    np.testing.assert_allclose(pcov, np.linalg.inv(full.T @ full), rtol=1e-10)


def test_python_path_changes_no_fit_covariance(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole single-fit covariance of random small factors, with the Python path
    on and off (SMALL_FACTOR = 0), rank-deficient and m <= n cases included."""
    rng = np.random.default_rng(12)
    cases = []
    for n in range(1, SMALL_FACTOR + 1):
        cases.append((np.linalg.qr(rng.normal(size=(25, n)), mode="r"), 25))
    J = rng.normal(size=(25, 3))
    J[:, 1] = 3.0 * J[:, 2]
    cases += [(np.linalg.qr(J, mode="r"), 25), (cases[2][0], 3)]
    on = [covariance_from_factor(R, m, 2.5, False) for R, m in cases]
    monkeypatch.setattr(covariance, "SMALL_FACTOR", 0)
    off = [covariance_from_factor(R, m, 2.5, False) for R, m in cases]
    for (a, ok_a), (b, ok_b) in zip(on, off, strict=True):
        assert ok_a == ok_b
        np.testing.assert_allclose(a, b, rtol=1e-12)
