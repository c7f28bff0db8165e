"""curvax's compiled Gram product of a block (core/gram_kernel).

The product must be ``A Aᵀ`` to rounding for any row count (tiles of four rows, the
last one partial) and any block length (vector loops with a remainder), exactly
symmetric, and must let NaN and infinity through (the reduction's QR fallback depends
on it).  Fits that use it must give the answer of fits that use XLA's product, SciPy's
answer, and the same on threads; it must be possible to turn it off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import curvax
from curvax.core import engine, gram_kernel, reduction

pytestmark = pytest.mark.skipif(
    not gram_kernel.enabled(), reason=f"compiled Gram product: {gram_kernel.status()}"
)


def product(a: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(jax.jit(gram_kernel.block_gram_product)(jnp.asarray(a)))


@pytest.mark.parametrize("m", [2, 3, 4, 5, 7, 8, 11, 13])
@pytest.mark.parametrize("k", [1, 7, 8, 9, 100, 4096, 4099])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_product_is_a_a_transpose(m: int, k: int, dtype) -> None:
    rng = np.random.default_rng([m, k])
    a = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10.0, (m, 1))).astype(dtype)
    g = product(a)
    assert g.dtype == dtype
    wide = a.astype(np.float64)
    reference = wide @ wide.T  # of the same (rounded) entries, in float64
    scale = np.sqrt(np.outer(np.diag(reference), np.diag(reference)))  # |G_ij| ≤ this
    assert np.all(np.abs(g - reference) <= 8 * k * np.finfo(dtype).eps * scale)
    np.testing.assert_array_equal(g, g.T)


def test_product_inside_a_loop_equals_the_sum_of_products() -> None:
    # as in a pass: one product per block inside a compiled loop, summed
    rng = np.random.default_rng(1)
    blocks = rng.standard_normal((6, 4, 4096))

    def total(b):
        return jax.lax.fori_loop(
            0, b.shape[0], lambda i, s: s + gram_kernel.block_gram_product(b[i]),
            jnp.zeros((4, 4)),
        )

    with jax.enable_x64(True):
        g = np.asarray(jax.jit(total)(jnp.asarray(blocks)))
    np.testing.assert_allclose(g, np.einsum("bik,bjk->ij", blocks, blocks), rtol=1e-12)


def test_nan_and_infinity_reach_the_product() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((5, 300))
    a[1, 17] = np.nan
    a[3, 250] = np.inf
    g = product(a)
    finite = np.isfinite(g)
    for i in range(5):
        for j in range(5):
            touched = {1, 3} & {i, j}
            assert finite[i, j] == (not touched), (i, j, g[i, j])
    assert g[3, 3] == np.inf


@pytest.mark.parametrize(
    "shapes", [[(1,)], [(3,), (3,)], [(2, 9), (9,)], [(9,), (4, 9), (9,), (3, 9)], [(64, 5)]]
)
def test_rows_given_apart_equal_the_product_of_their_stack(shapes) -> None:
    # rows (k,) and stacks of rows (r, k) in any mix: the Gram matrix of all rows in turn
    rng = np.random.default_rng(len(shapes))
    blocks = [rng.standard_normal(s) for s in shapes]
    a = np.vstack([b.reshape(-1, b.shape[-1]) for b in blocks])
    with jax.enable_x64(True):
        g = np.asarray(
            jax.jit(gram_kernel.block_gram_product)(*(jnp.asarray(b) for b in blocks))
        )
    np.testing.assert_array_equal(g, product(a))  # the same sums in the same order
    np.testing.assert_allclose(g, a @ a.T, rtol=1e-13, atol=1e-13)


def test_vmap_and_eager_calls_give_each_members_product() -> None:
    # a batching rule (one product per member, in a loop) and an eager evaluation rule
    rng = np.random.default_rng(11)
    stacks, r = rng.standard_normal((5, 3, 50)), rng.standard_normal(50)
    with jax.enable_x64(True):
        eager = [np.asarray(gram_kernel.block_gram_product(jnp.asarray(a), jnp.asarray(r)))
                 for a in stacks]
        mapped = jax.jit(jax.vmap(gram_kernel.block_gram_product, in_axes=(1, None)))(
            jnp.asarray(np.moveaxis(stacks, 0, 1)), jnp.asarray(r)
        )
    for a, g, gm in zip(stacks, eager, np.asarray(mapped), strict=True):
        full = np.vstack([a, r[None]])
        np.testing.assert_allclose(g, full @ full.T, rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(gm, g)


def test_bad_blocks_are_refused() -> None:
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="blocks: expected 1-D or 2-D arrays"):
            gram_kernel.block_gram_product(jnp.ones((3, 8), jnp.float16))
        with pytest.raises(ValueError, match="all float64 or all float32"):
            gram_kernel.block_gram_product(jnp.ones((3, 8)), jnp.ones(8, jnp.float32))
        with pytest.raises(ValueError, match="blocks: expected 1-D or 2-D arrays"):
            gram_kernel.block_gram_product(jnp.ones((3, 8)), jnp.ones(7))
        with pytest.raises(ValueError, match="blocks: expected 1-D or 2-D arrays"):
            gram_kernel.block_gram_product(jnp.ones((2, 3, 8)))
        with pytest.raises(ValueError, match="65 rows in all"):
            gram_kernel.block_gram_product(jnp.ones((64, 8)), jnp.ones(8))
        with pytest.raises(ValueError, match="at least one block"):
            gram_kernel.block_gram_product()


def test_which_fits_use_it() -> None:
    assert gram_kernel.use_for(gram_kernel.MIN_POINTS, np.float64)
    assert not gram_kernel.use_for(gram_kernel.MIN_POINTS - 1, np.float64)
    assert gram_kernel.use_for(10**6, np.float32)
    assert not gram_kernel.use_for(10**6, np.float16)
    assert not gram_kernel.use_for(10**6, np.float64, mesh=object())


def assert_cov_close(actual: np.ndarray, desired: np.ndarray, rtol: float) -> None:
    """Covariances equal to ``rtol`` of ``sqrt(C_ii C_jj)`` (entries near zero compared
    on the scale of their variances, where finite differences leave their mark)."""
    d = np.sqrt(np.diag(desired))
    assert np.all(np.abs(actual - desired) <= rtol * np.outer(d, d))


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def peaks(x, a1, m1, s1, a2, m2, s2, c):
    return (
        a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2)
        + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)
        + c
    )


def peaks_np(x, a1, m1, s1, a2, m2, s2, c):
    return (
        a1 * np.exp(-0.5 * ((x - m1) / s1) ** 2)
        + a2 * np.exp(-0.5 * ((x - m2) / s2) ** 2)
        + c
    )


def peaks3(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):  # ten parameters: rows formed apart
    return peaks(x, a1, m1, s1, a2, m2, s2, c) + a3 * jnp.exp(-0.5 * ((x - m3) / s3) ** 2)


def peaks3_np(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):
    return peaks_np(x, a1, m1, s1, a2, m2, s2, c) + a3 * np.exp(-0.5 * ((x - m3) / s3) ** 2)


PROBLEMS = {
    "decay": (decay, decay_np, (0.0, 5.0), (2.0, 1.3, 0.5), (1.0, 1.0, 0.3)),
    "peaks3": (
        peaks3, peaks3_np, (0.0, 10.0),
        (3.0, 2.0, 0.6, 2.0, 5.0, 1.1, 1.5, 8.0, 0.5, 0.4),
        (2.6, 2.2, 0.7, 1.7, 4.8, 1.0, 1.3, 8.1, 0.6, 0.3),
    ),
    "peaks": (
        peaks, peaks_np, (0.0, 10.0), (3.0, 3.0, 0.6, 2.0, 6.5, 1.1, 0.4),
        (2.5, 3.2, 0.8, 1.5, 6.0, 1.0, 0.2),
    ),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_fit_with_it_equals_scipy_and_the_fit_without(name: str, monkeypatch) -> None:
    f, f_np, (lo, hi), truth, p0 = PROBLEMS[name]
    n = 30_011  # a length of its own: the fit program is traced here
    rng = np.random.default_rng(3)
    x = np.linspace(lo, hi, n)
    y = f_np(x, *truth) + 0.05 * rng.standard_normal(n)

    traced = []
    real = reduction.block_gram_product
    monkeypatch.setattr(
        reduction, "block_gram_product", lambda *a: traced.append(1) or real(*a)
    )
    with_kernel = curvax.fit_curve(f, x, y, p0=p0, workers=1)
    assert traced, "the fit did not use the compiled Gram product"

    monkeypatch.setattr(engine, "use_gram_kernel", lambda *args: False)
    traced.clear()
    without = curvax.fit_curve(f, x, y, p0=p0, workers=1)
    assert not traced

    ref, ref_cov = scipy_curve_fit(f_np, x, y, p0=p0, method="lm", xtol=1e-14, ftol=1e-14)
    assert with_kernel.success and without.success
    np.testing.assert_allclose(with_kernel.x, without.x, rtol=1e-11)
    np.testing.assert_allclose(with_kernel.x, ref, rtol=1e-7)
    np.testing.assert_allclose(with_kernel.pcov, without.pcov, rtol=1e-8)
    assert_cov_close(with_kernel.pcov, ref_cov, rtol=1e-5)


def test_rows_apart_with_a_fixed_parameter(monkeypatch) -> None:
    # nine free parameters of ten: still formed apart, the fixed one from p_full
    f, f_np, (lo, hi), truth, p0 = PROBLEMS["peaks3"]
    n = 20_011
    x = np.linspace(lo, hi, n)
    y = f_np(x, *truth) + 0.03 * np.random.default_rng(6).standard_normal(n)
    fixed_c = truth[-1]
    calls = []
    real = reduction.block_gram_product
    monkeypatch.setattr(
        reduction, "block_gram_product", lambda *a: calls.append(len(a)) or real(*a)
    )
    res = curvax.fit_curve(f, x, y, p0=p0, fixed={"c": fixed_c}, workers=1)
    assert 10 in calls, calls  # nine rows and the residuals
    ref, _ = scipy_curve_fit(
        lambda x, *q: f_np(x, *q, fixed_c), x, y, p0=p0[:-1], method="lm",
        xtol=1e-14, ftol=1e-14,
    )
    assert res.success
    np.testing.assert_allclose(res.x[:-1], ref, rtol=1e-7)
    assert res.x[-1] == fixed_c


def test_rows_apart_with_weights_and_a_robust_loss(monkeypatch) -> None:
    # ten parameters: each Jacobian row goes to the product on its own, masked (bucket
    # padding) and rescaled by the loss row by row
    f, f_np, (lo, hi), truth, p0 = PROBLEMS["peaks3"]
    n = 20_011
    rng = np.random.default_rng(5)
    x = np.linspace(lo, hi, n)
    sigma = rng.uniform(0.5, 2.0, n) * 0.05
    y = f_np(x, *truth) + sigma * rng.standard_normal(n)
    y[::97] += 1.0  # outliers for the loss to tame
    kw = dict(p0=p0, sigma=sigma, loss="soft_l1", f_scale=2.0, workers=1)
    calls = []
    real = reduction.block_gram_product
    monkeypatch.setattr(
        reduction, "block_gram_product", lambda *a: calls.append(len(a)) or real(*a)
    )
    with_kernel = curvax.fit_curve(f, x, y, **kw)
    assert 11 in calls, calls  # ten rows and the residuals, one operand each
    monkeypatch.setattr(engine, "use_gram_kernel", lambda *args: False)
    without = curvax.fit_curve(f, x, y, **kw)
    ref, _ = scipy_curve_fit(
        f_np, x, y, p0=p0, sigma=sigma, method="trf", loss="soft_l1", f_scale=2.0,
        xtol=1e-15, ftol=1e-15, gtol=1e-15,
    )
    assert with_kernel.success and without.success
    np.testing.assert_allclose(with_kernel.x, without.x, rtol=1e-10)
    np.testing.assert_allclose(with_kernel.x, ref, rtol=1e-7)
    np.testing.assert_allclose(with_kernel.pcov, without.pcov, rtol=1e-7)


@pytest.mark.parametrize("name", ["decay", "peaks3"])  # peaks3: rows one operand each
def test_threads_with_it_equal_one_program(name: str) -> None:
    f, f_np, (lo, hi), truth, p0 = PROBLEMS[name]
    x = np.linspace(lo, hi, 40_000)
    y = f_np(x, *truth) + 0.05 * np.random.default_rng(4).standard_normal(x.size)
    one = curvax.fit_curve(f, x, y, p0=p0, workers=1)
    two = curvax.fit_curve(f, x, y, p0=p0, workers=2)
    assert one.success and two.success
    np.testing.assert_allclose(two.x, one.x, rtol=1e-11)


@pytest.mark.parametrize("name", ["decay", "peaks3"])
def test_chunked_fit_with_it_equals_scipy(name: str) -> None:
    f, f_np, (lo, hi), truth, p0 = PROBLEMS[name]
    x = np.linspace(lo, hi, 100_000)
    y = f_np(x, *truth) + 0.05 * np.random.default_rng(5).standard_normal(x.size)
    popt, pcov = curvax.curve_fit_large(f, x, y, p0=p0, chunk_size=32_768)
    ref, ref_cov = scipy_curve_fit(f_np, x, y, p0=p0, method="lm", xtol=1e-14, ftol=1e-14)
    np.testing.assert_allclose(popt, ref, rtol=1e-7)
    assert_cov_close(pcov, ref_cov, rtol=1e-5)


@pytest.mark.parametrize("name", ["decay", "peaks3"])
def test_float32_fit_with_it_equals_the_fit_without(name: str, monkeypatch) -> None:
    # float32 blocks go to the float32 function: the answer of XLA's float32 product and
    # of the float64 fit, to float32's precision
    f, f_np, (lo, hi), truth, p0 = PROBLEMS[name]
    x = np.linspace(lo, hi, 30_011)
    y = f_np(x, *truth) + 0.05 * np.random.default_rng(8).standard_normal(x.size)
    calls = []
    real = reduction.block_gram_product
    monkeypatch.setattr(
        reduction, "block_gram_product",
        lambda *a: calls.append(np.dtype(a[0].dtype)) or real(*a),
    )
    with_kernel = curvax.fit_curve(f, x, y, p0=p0, dtype="float32", workers=1)
    assert np.dtype(np.float32) in calls
    monkeypatch.setattr(engine, "use_gram_kernel", lambda *args: False)
    without = curvax.fit_curve(f, x, y, p0=p0, dtype="float32", workers=1)
    wide = curvax.fit_curve(f, x, y, p0=p0, workers=1)
    assert with_kernel.success and without.success and wide.success
    scale = np.sqrt(np.diag(wide.pcov))  # the statistical error of each parameter
    assert np.all(np.abs(with_kernel.x - wide.x) <= 1e-2 * scale + 1e-5 * np.abs(wide.x))
    assert np.all(np.abs(with_kernel.x - without.x) <= 1e-2 * scale + 1e-5 * np.abs(wide.x))


def test_environment_variable_turns_it_off() -> None:
    code = textwrap.dedent(
        """
        import numpy as np
        from curvax.core import gram_kernel
        assert not gram_kernel.enabled()
        assert gram_kernel.status() == "off: CURVAX_GRAM_KERNEL=0", gram_kernel.status()
        assert not gram_kernel.use_for(10**6, np.float64)
        print("ok")
        """
    )
    env = dict(os.environ, CURVAX_GRAM_KERNEL="0", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_object_code_kept_with_the_persistent_cache_gives_the_same_fit(tmp_path) -> None:
    # the first process compiles the kernel and stores its object code beside JAX's
    # cache; the second loads it: the same product, so the same fit to the last bit
    code = textwrap.dedent(
        """
        import sys
        import jax, jax.numpy as jnp, numpy as np
        import curvax
        from curvax.core import gram_kernel
        curvax.enable_persistent_cache(sys.argv[1])
        x = np.linspace(0.0, 5.0, 50_000)
        y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(6).standard_normal(x.size)
        f = lambda x, a, b, c: a * jnp.exp(-b * x) + c
        popt, pcov = curvax.curve_fit(f, x, y, p0=[1.0, 1.0, 0.3])
        assert gram_kernel.status() == "ready", gram_kernel.status()
        print(",".join(v.hex() for v in np.concatenate([popt, pcov.ravel()])))
        """
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    outs, stamps = [], []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr
        outs.append(out.stdout.strip())
        (obj,) = tmp_path.glob("curvax-gram-kernel-*.o")
        stamps.append(obj.stat().st_mtime_ns)
    assert stamps[0] == stamps[1]  # read, not written again, by the second process
    assert outs[0] == outs[1]


def test_blocks_of_many_rows_keep_xlas_product(monkeypatch) -> None:
    # beyond MAX_ROWS the reduction does not call the kernel (measured no faster there)
    calls = []
    monkeypatch.setattr(
        reduction, "block_gram_product", lambda a: calls.append(a) or a @ a.T
    )
    rng = np.random.default_rng(7)
    for m in (4, gram_kernel.MAX_ROWS, gram_kernel.MAX_ROWS + 1):
        r, jac_t = rng.standard_normal(64), rng.standard_normal((m - 1, 64))
        with jax.enable_x64(True):
            _, g = reduction.block_gram(
                jnp.asarray(r), jnp.asarray(jac_t), None, None, jnp.float64(1.0), "kernel"
            )
        a = np.vstack([jac_t, r[None]])
        np.testing.assert_allclose(np.asarray(g), a @ a.T, rtol=1e-12)
    assert [c.shape[0] for c in calls] == [4, gram_kernel.MAX_ROWS]


def test_without_llvmlite_fits_warn_once_and_use_xlas_product() -> None:
    code = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["llvmlite"] = None  # as if it were not installed
        import jax.numpy as jnp, numpy as np
        from scipy.optimize import curve_fit as scipy_curve_fit
        import curvax
        from curvax.core import gram_kernel
        from curvax.warnings import PerformanceWarning
        x = np.linspace(0.0, 5.0, 30_000)
        y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(8).standard_normal(x.size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                popt, _ = curvax.curve_fit(lambda x, a, b, c: a * jnp.exp(-b * x) + c,
                                           x, y, p0=[1.0, 1.0, 0.3])
        ours = [str(w.message) for w in caught if issubclass(w.category, PerformanceWarning)]
        assert len(ours) == 1 and "llvmlite" in ours[0], [str(w.message) for w in caught]
        status = gram_kernel.status()
        assert status.startswith("off: llvmlite is not importable"), status
        f_np = lambda x, a, b, c: a * np.exp(-b * x) + c
        ref, _ = scipy_curve_fit(f_np, x, y, p0=[1.0, 1.0, 0.3])
        np.testing.assert_allclose(popt, ref, rtol=1e-7)
        print("ok")
        """
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
