"""Size buckets: data sets of differing length reuse compiled programs, answers unchanged."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core import gram_kernel
from curvax.core.engine import COMPILE_CACHE
from curvax.core.host_buffers import ALIGNMENT
from curvax.core.memo import canonical_function
from curvax.curve_fit import bucket_size, pad_points, point_mask


def bdecay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def test_bucket_sizes() -> None:
    assert bucket_size(10) == 10  # tiny fits are not padded
    assert bucket_size(1000) == 1024 and bucket_size(1024) == 1024
    assert bucket_size(100_000) == 131_072
    n = 10_000_000
    assert n <= bucket_size(n) <= 1.25 * n
    sizes = {bucket_size(int(n)) for n in np.linspace(1000, 100_000, 500)}
    assert len(sizes) <= 8


def test_pad_points_repeats_the_last_point_in_aligned_memory() -> None:
    rng = np.random.default_rng(1)
    for shape, axis in [((37,), 0), ((37,), -1), ((2, 37), -1), ((37, 2), 0), ((3, 37), 1)]:
        a = rng.normal(size=shape)
        n = a.shape[axis]
        padded = pad_points(a, 64, axis)
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, 64 - n)
        np.testing.assert_array_equal(padded, np.pad(a, widths, mode="edge"), strict=True)
        assert padded.flags.c_contiguous
        assert padded.__array_interface__["data"][0] % ALIGNMENT == 0
    mask = point_mask(37, 64)
    np.testing.assert_array_equal(mask, np.arange(64) < 37, strict=True)
    assert not mask.flags.writeable and mask.__array_interface__["data"][0] % ALIGNMENT == 0


def test_padding_changes_nothing() -> None:
    rng = np.random.default_rng(2)
    x = np.linspace(0, 5, 1500)
    y = 3 * np.exp(-1.3 * x) + 0.5 + 0.02 * rng.normal(size=x.size)
    sig = 0.02 * (1 + rng.uniform(size=x.size))
    for kw in ({}, {"sigma": sig}, {"loss": "huber", "f_scale": 0.03}):
        a = curvax.fit_curve(bdecay, x, y, p0=[1, 1, 0], **kw)
        b = curvax.fit_curve(bdecay, x, y, p0=[1, 1, 0], bucket=False, **kw)
        np.testing.assert_allclose(a.x, b.x, rtol=1e-10)
        np.testing.assert_allclose(a.pcov, b.pcov, rtol=1e-8)
        assert a.fun.shape == (1500,) and a.dof == 1497
        np.testing.assert_allclose(a.cost, b.cost, rtol=1e-12)


def own_decay(x, a, b, c):  # used by one test only, so its compile count is its own
    return a * jnp.exp(-b * x) + c


def test_hundred_random_lengths_compile_at_most_eight_times() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1_000, 100_001, size=100)
    results = []
    for n in lengths:
        x = np.linspace(0, 5, n)
        y = 3 * np.exp(-1.3 * x) + 0.5 + 0.01 * rng.normal(size=n)
        results.append(curvax.fit_curve(own_decay, x, y, p0=[1.0, 1.0, 0.0], method="trf"))
    assert all(r.success for r in results)
    fn = canonical_function(own_decay)  # the one function object the fits ran
    # one kernel for data of one block; for more, the one without the QR fallback
    # (core.solve.speculative_kernel), and never the one with it: none was rejected.
    # From MIN_POINTS on, the Gram product is curvax's own (core.gram_kernel).
    kernels = {k: prog.run for k, prog in COMPILE_CACHE._entries.items()
               if k.fn is fn and k.method == "trf"}
    expected = [(False, "dot"), (True, "dot")]
    if gram_kernel.enabled():
        expected.insert(1, (False, "kernel"))
    assert sorted((k.gram_fallback, k.gram) for k in kernels) == expected
    n_compiled = sum(run._cache_size() for run in kernels.values())
    assert 2 <= n_compiled <= 8, n_compiled
    for r in results:
        np.testing.assert_allclose(r.x, [3.0, 1.3, 0.5], rtol=0.05)


@pytest.mark.parametrize("shape_k", [1, 2])
def test_padding_multi_predictor(shape_k: int) -> None:
    rng = np.random.default_rng(5)
    X = rng.uniform(0, 2, size=(2, 700))

    def f(X, a, b):
        return a * X[0] * jnp.exp(-b * X[1])

    y = 1.5 * X[0] * np.exp(-0.7 * X[1]) + 0.01 * rng.normal(size=700)
    a = curvax.fit_curve(f, X, y, p0=[1.0, 1.0])
    b = curvax.fit_curve(f, X, y, p0=[1.0, 1.0], bucket=False)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-10)
