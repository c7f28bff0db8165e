"""The blocked reduction of independent points (core/problem.pointwise_reducer).

With more than one block the reducer accumulates the Gram matrix of ``[J̃ | r̃]``
(transposed layout, one small product per block) and falls back to block QR when the
result is not finite or too ill-conditioned.  Every path must give the reduction of
the whole data set, checked here against NumPy computed directly from the model's
closed-form Jacobian (an independent reference).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvax.core.loss import get_loss
from curvax.core.problem import PointwiseData, pointwise_reducer


def expdecay(x, p):
    return p[0] * jnp.exp(-p[1] * x) + p[2]


def exp_reference(x, y, w, mask, p, loss="linear", f_scale=1.0):
    """Cost, JᵀJ, Jᵀr of the weighted (and loss-rescaled) rows, in NumPy."""
    e = np.exp(-p[1] * x)
    r = (p[0] * e + p[2] - y) * w
    J = np.stack([e, -p[0] * x * e, np.ones_like(x)], axis=1) * w[:, None]
    r, J = r[mask], J[mask]
    if loss == "linear":
        return 0.5 * np.sum(r * r), J.T @ J, J.T @ r
    # soft_l1 with scale c: rho(z) = 2(sqrt(1+z) - 1), z = (r/c)^2
    z = (r / f_scale) ** 2
    rho0 = 2.0 * (np.sqrt(1 + z) - 1) * f_scale**2
    rho1 = 1.0 / np.sqrt(1 + z)
    rho2 = -0.5 * (1 + z) ** -1.5 / f_scale**2
    js = np.sqrt(np.maximum(rho1 + 2 * rho2 * r**2, np.finfo(float).eps))
    rt, Jt = rho1 * r / js, J * js[:, None]
    return 0.5 * np.sum(rho0), Jt.T @ Jt, Jt.T @ rt


def reduce(x, y, w, mask, p, block, loss="linear", f_scale=1.0, gram="dot"):
    rho = None if loss == "linear" else get_loss(loss)
    with jax.enable_x64(True):
        fn = pointwise_reducer(PointwiseData(
            expdecay, "fwd", jnp.asarray(x), jnp.asarray(y),
            None if w is None else jnp.asarray(w),
            None if mask is None else jnp.asarray(mask),
            rho, jnp.asarray(f_scale), block, gram=gram,
        ))
        red = jax.jit(fn)(jnp.asarray(p))
        return (float(red.cost), np.asarray(red.R), np.asarray(red.grad),
                int(red.n_nonfinite))


# 'dot' is the CPU style, 'fused' the accelerator one (core/engine.reduction_defaults);
# both run here on the CPU.  Blocks: many, several with a ragged last one, exactly one,
# and one larger than the data.
@pytest.mark.parametrize("gram", ["dot", "fused"])
@pytest.mark.parametrize("loss", ["linear", "soft_l1"])
@pytest.mark.parametrize("block", [64, 1000, 4096, 10000])
def test_gram_blocks_equal_the_whole_reduction(loss: str, block: int, gram: str) -> None:
    rng = np.random.default_rng(2)
    n = 4096
    x = np.linspace(0, 5, n)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.3 * rng.standard_normal(n)
    w = 1.0 / (0.05 * (1 + np.arange(n) % 3))
    mask = np.arange(n) < n - 37  # padding rows at the end, as size buckets make them
    y[~mask] = np.nan  # padding must change nothing, even if not finite
    p = np.array([2.4, 1.56, 0.6])
    cost, R, grad, bad = reduce(x, y, w, mask, p, block, loss, f_scale=2.0, gram=gram)
    c_ref, JtJ, g_ref = exp_reference(x, y, w, mask, p, loss, f_scale=2.0)
    assert bad == 0
    np.testing.assert_allclose(cost, c_ref, rtol=1e-12)
    np.testing.assert_allclose(R.T @ R, JtJ, rtol=1e-11, atol=1e-11 * np.abs(JtJ).max())
    np.testing.assert_allclose(grad, g_ref, rtol=1e-9, atol=1e-11 * np.abs(g_ref).max())


@pytest.mark.parametrize(("gram", "block"), [("dot", 256), ("fused", 256), ("fused", 300),
                                             ("fused", 4096)])
def test_non_finite_points_are_counted_through_the_fallback(gram: str, block: int) -> None:
    n = 2048
    x = np.linspace(0, 5, n)
    y = 2.5 * np.exp(-1.3 * x) + 0.5
    y[[3, 700, 1500]] = [np.nan, np.inf, -np.inf]
    _, _, _, bad = reduce(x, y, np.ones(n), None, np.array([2.4, 1.56, 0.6]), block, gram=gram)
    assert bad == 3


@pytest.mark.parametrize(("gram", "block"), [("dot", 128), ("fused", 128), ("fused", 2048),
                                             ("fused", 1000)])
def test_ill_conditioned_gram_falls_back_to_qr(gram: str, block: int) -> None:
    """x in [1000, 1001]: the columns 1, x, x² are nearly parallel (κ ~ 1e11), so a
    Gram matrix would lose everything; the factor must still reproduce JᵀJ."""
    n = 2048
    x = np.linspace(1000.0, 1001.0, n)
    y = 1.0 + 2e-3 * (x - 1000.0) ** 2

    def quad(x, p):
        return p[0] + p[1] * x + p[2] * x * x

    with jax.enable_x64(True):
        fn = pointwise_reducer(PointwiseData(quad, "fwd", jnp.asarray(x), jnp.asarray(y), None,
                                             None, None, jnp.asarray(1.0), block, gram=gram))
        red = jax.jit(fn)(jnp.asarray([1.0, 0.0, 0.0]))
        R = np.asarray(red.R)
    J = np.stack([np.ones(n), x, x * x], axis=1)
    R_ref = np.linalg.qr(J, mode="r")
    # R is unique up to row signs: compare |R| entry by entry, relative to each column
    size = np.abs(R_ref).max(axis=0)
    np.testing.assert_allclose(np.abs(R) / size, np.abs(R_ref) / size, rtol=0, atol=1e-7)
    # the last diagonal entry is what a Gram factor gets wrong (here by 50 %)
    np.testing.assert_allclose(np.abs(np.diag(R)), np.abs(np.diag(R_ref)), rtol=1e-6)
    assert np.linalg.cond(J / np.linalg.norm(J, axis=0)) > 1e6  # a Gram factor would fail


def _count_block_evaluations(n: int, block: int, mask: np.ndarray, n_real: int | None,
                             gram: str = "dot") -> tuple[int, tuple]:
    """Run one reduction; return how many blocks of ``block`` points the model was
    evaluated on (a host callback inside the model counts them) and the reduction."""
    calls = []

    def counted(x, p):
        jax.debug.callback(lambda size: calls.append(int(size)), x.shape[0])
        return expdecay(x, p)

    rng = np.random.default_rng(8)
    x = np.linspace(0, 5, n)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.1 * rng.standard_normal(n)
    y[~mask] = np.nan  # padding: never seen in the result
    with jax.enable_x64(True):
        fn = pointwise_reducer(PointwiseData(
            counted, "fwd", jnp.asarray(x), jnp.asarray(y), None, jnp.asarray(mask), None,
            jnp.asarray(1.0), block, gram=gram,
            n_real=None if n_real is None else jnp.int32(n_real),
        ))
        red = jax.jit(fn)(jnp.asarray([2.4, 1.56, 0.6]))
        jax.effects_barrier()
        out = (float(red.cost), np.asarray(red.R), np.asarray(red.grad), int(red.n_nonfinite))
    return sum(1 for s in calls if s == block), out


@pytest.mark.parametrize("gram", ["dot", "fused"])
def test_blocks_after_the_last_real_point_are_not_visited(gram: str) -> None:
    """Size-bucket padding (real points first) and a mask with holes: on a CPU ('dot')
    only the blocks up to the last real point are evaluated; the accelerator style
    ('fused') keeps a loop of fixed length and visits all 16.  Either way the reduction
    is that of the real points."""
    n, block = 4096, 256
    prefix = np.arange(n) < 1000  # 4 blocks hold real points, 12 only padding
    holes = prefix.copy()
    holes[100:300] = False  # an interior block entirely masked still counts (it is early)
    holes[2900] = True  # the last real point: 12 blocks reach it
    for mask, n_real, expected in ((prefix, 1000, 4), (prefix, None, 4), (holes, None, 12)):
        visited, (cost, R, grad, bad) = _count_block_evaluations(n, block, mask, n_real, gram)
        assert visited == (expected if gram == "dot" else n // block), (n_real, expected)
        x = np.linspace(0, 5, n)
        rng = np.random.default_rng(8)
        y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.1 * rng.standard_normal(n)
        c_ref, JtJ, g_ref = exp_reference(x, y, np.ones(n), mask, np.array([2.4, 1.56, 0.6]))
        assert bad == 0
        np.testing.assert_allclose(cost, c_ref, rtol=1e-12)
        np.testing.assert_allclose(R.T @ R, JtJ, rtol=1e-11, atol=1e-11 * np.abs(JtJ).max())
        np.testing.assert_allclose(grad, g_ref, rtol=1e-9, atol=1e-11 * np.abs(g_ref).max())


def test_used_blocks_against_numpy() -> None:
    from curvax.core.reduction import used_blocks

    rng = np.random.default_rng(9)
    block, n_blocks = 16, 10
    for _ in range(30):
        mask = rng.random(n_blocks * block) < rng.choice([0.0, 0.02, 0.3])
        real = np.flatnonzero(mask)
        expected = 0 if real.size == 0 else real[-1] // block + 1
        assert int(jax.jit(used_blocks, static_argnums=(1, 2))(mask, n_blocks, block)) == expected
    for n_real in (0, 1, 16, 17, 160, 500):  # beyond the blocks: all of them
        got = used_blocks(None, n_blocks, block, jnp.int32(n_real))
        assert int(got) == min(-(-n_real // block), n_blocks)
    assert used_blocks(None, n_blocks, block) == n_blocks
