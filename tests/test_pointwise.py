"""Models that are not point-by-point are recognised and fitted on all points at once.

Padding to a size bucket, blocks and threads assume ``f(x)[i]`` depends on ``x[i]``
alone; a model using ``mean(x)``, a cumulative sum, ``len(x)`` or a closed-over
template used to be fitted to padded or split data, silently wrong.  The reference is
SciPy's ``curve_fit``, which always evaluates the model on all the points.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import curvax
from curvax.core.pointwise import evaluated_verdict, is_pointwise, jaxpr_verdict
from curvax.core.problem import adapt_model

F64 = np.dtype(np.float64)


def verdict(f, shape=(64,), axis=-1, n_params=3):
    return jaxpr_verdict(adapt_model(f, "args"), shape, axis, n_params, F64)


@pytest.mark.parametrize(
    ("name", "f", "shape", "axis", "expect"),
    [
        ("exp", lambda x, a, b, c: a * jnp.exp(-b * x) + c, (64,), -1, True),
        ("where", lambda x, a, b, c: a * jnp.where(x > b, x, 0.0) + jnp.clip(c, 0, 1),
         (64,), -1, True),
        ("special", lambda x, a, b, c: jax.scipy.special.erf(a * x) + jax.nn.softplus(b * x)
         + jnp.sinc(c * x), (64,), -1, True),
        ("2-D x", lambda x, a, b, c: a * jnp.exp(-((x[0] - b) ** 2 + (x[1] - c) ** 2)),
         (2, 64), -1, True),
        ("points first", lambda x, a, b, c: a * x[:, 0] + b * x[:, 1] + c, (64, 2), 0, True),
        ("powers summed", lambda x, a, b, c: jnp.sum(
            jnp.stack([a, b, c]) * x[:, None] ** jnp.arange(3.0), axis=1), (64,), -1, True),
        ("constant", lambda x, a, b, c: a + b + c, (64,), -1, True),
        ("mean", lambda x, a, b, c: a * (x - jnp.mean(x)) + b, (64,), -1, False),
        ("cumsum", lambda x, a, b, c: a * jnp.cumsum(x) + b, (64,), -1, False),
        ("len", lambda x, a, b, c: a * x / len(x) + b, (64,), -1, False),
        ("template", lambda x, a, b, c: a * jnp.sin(jnp.arange(64.0)) + b, (64,), -1, None),
    ],
)
def test_structure_decides_common_cases(name, f, shape, axis, expect) -> None:
    assert verdict(f, shape, axis) is expect, name


def test_every_built_in_model_is_seen_as_pointwise_without_running_it() -> None:
    """The structural test settles all bundled models (no evaluation cost)."""
    for name in curvax.models.list_models():
        m = curvax.models.get_model(name)
        shape = (2, 64) if "2d" in name else (64,)
        assert verdict(m, shape, -1, len(m.param_names)) is True, name


def test_evaluation_settles_what_the_structure_leaves_open() -> None:
    x = np.linspace(0.0, 4.0, 64)
    template = jnp.asarray(np.sin(np.arange(64.0)))
    g = adapt_model(lambda x, a, b: a * template + b, "args")
    assert evaluated_verdict(g, x, -1, np.array([1.0, 1.0]), F64) == (False, True)
    poly = adapt_model(lambda x, p: jnp.polyval(p, x), "array")
    assert verdict(lambda x, p: jnp.polyval(p, x)) is None  # a scan
    assert evaluated_verdict(poly, x, -1, np.array([1.0, 2.0, 3.0]), F64) == (True, True)
    assert is_pointwise(lambda x, p: jnp.polyval(p, x), "array", x, -1,
                        np.array([1.0, 2.0, 3.0]), F64)
    # all points alike in the first coordinate: a verdict, but not a general one
    assert evaluated_verdict(poly, np.ones(64), -1, np.array([1.0, 2.0]), F64)[1] is False


def _compare_with_scipy(f_jax, f_np, x, y, p0, rtol_p=1e-7, rtol_c=1e-5) -> None:
    popt, pcov = curvax.curve_fit(f_jax, x, y, p0=p0)
    ref, ref_cov = scipy_curve_fit(f_np, x, y, p0=p0)
    np.testing.assert_allclose(popt, ref, rtol=rtol_p, atol=1e-9)
    np.testing.assert_allclose(pcov, ref_cov, rtol=rtol_c, atol=1e-6 * np.abs(ref_cov).max())


@pytest.mark.parametrize("n", [40, 5000, 10_000])
def test_a_mean_centred_model_matches_scipy(n: int) -> None:
    """40 points are padded to 64, 5000 to 8192 and reduced in blocks of 4096: both
    used to change the mean the model sees (popt [3, 3.25] instead of [3, 1] at 40)."""
    rng = np.random.default_rng(n)
    x = np.linspace(0.0, 4.0, n)
    y = 3.0 * (x - x.mean()) + 1.0 + 0.01 * rng.standard_normal(n)
    _compare_with_scipy(
        lambda x, a, b: a * (x - jnp.mean(x)) + b,
        lambda x, a, b: a * (x - np.mean(x)) + b,
        x, y, [1.0, 1.0],
    )


def test_other_non_pointwise_models_match_scipy() -> None:
    rng = np.random.default_rng(7)
    n = 300
    x = np.linspace(0.0, 1.0, n)
    # a reverse cumulative sum, scaled by the number of points
    rc_np = lambda x, a, b: a * np.cumsum(x[::-1])[::-1] / len(x) + b  # noqa: E731
    y = rc_np(x, 2.0, 0.3) + 0.001 * rng.standard_normal(n)
    _compare_with_scipy(
        lambda x, a, b: a * jnp.cumsum(x[::-1])[::-1] / len(x) + b, rc_np, x, y, [1.0, 1.0]
    )
    # a closed-over template of the data's length; x is not even used
    t = np.sin(np.linspace(0.0, 10.0, n))
    tj = jnp.asarray(t)
    y = 2.0 * t + 0.5 + 0.01 * rng.standard_normal(n)
    _compare_with_scipy(lambda x, a, b: a * tj + b, lambda x, a, b: a * t + b,
                        np.arange(n, dtype=float), y, [1.0, 1.0])


def test_options_that_split_the_points_are_refused_for_such_models() -> None:
    x = np.linspace(0.0, 4.0, 100)
    y = 3.0 * (x - x.mean()) + 1.0

    def centred(x, a, b):
        return a * (x - jnp.mean(x)) + b

    with pytest.raises(ValueError, match="devices: the model f is not point-by-point"):
        curvax.fit_curve(centred, x, y, p0=[1.0, 1.0], devices=2)
    with pytest.raises(ValueError, match="jac_sparsity: 'auto'"):
        curvax.fit_curve(centred, x, y, p0=[1.0, 1.0], jac_sparsity="auto")
    with pytest.raises(ValueError, match=r"workers: .*not point-by-point"):
        curvax.fit_curve(centred, x, y, p0=[1.0, 1.0], workers=2)


def test_chunked_and_streaming_fits_refuse_such_models() -> None:
    """Chunks and batches split the points by construction: refused, not fitted wrong."""
    x = np.linspace(0.0, 4.0, 400)
    y = 3.0 * (x - x.mean()) + 1.0

    def centred(x, a, b):
        return a * (x - jnp.mean(x)) + b

    with pytest.raises(ValueError, match="f: the model is not point-by-point"):
        curvax.fit_chunked(centred, x, [1.0, 1.0], y=y, chunk_size=64)
    opt = curvax.StreamingOptimizer(centred, [1.0, 1.0], curvax.StreamingConfig(batch_size=32))
    with pytest.raises(ValueError, match="model: the model is not point-by-point"):
        opt.fit(x, y)
    # a point-by-point model in chunks: the closed-form line through y
    np.testing.assert_allclose(
        curvax.fit_chunked(lambda x, a, b: a * x + b, x, [1.0, 1.0], y=y, chunk_size=64).x,
        [3.0, 1.0 - 3.0 * x.mean()], rtol=1e-10,
    )


def test_batch_fits_with_masked_points_refuse_such_models() -> None:
    """A batch program passes masked points to the model (with zero weight): fine for a
    point-by-point model, a different fit for one using mean(x).  Without a mask the
    model sees exactly the curve's points, so the batch fit equals SciPy's."""
    x = np.linspace(0.0, 3.0, 57)
    rng = np.random.default_rng(3)
    y = 2.0 * np.exp(-0.7 * (x - x.mean())) + 0.01 * rng.standard_normal((2, 57))

    def centred(x, a, b):
        return a * jnp.exp(-b * (x - jnp.mean(x)))

    keep = np.ones((2, 57), dtype=bool)
    keep[:, 40:] = False
    with pytest.raises(ValueError, match="mask/nan_policy: the model f is not point-by-point"):
        curvax.curve_fit_batch(centred, x, y, p0=[1.0, 1.0], mask=keep)
    res = curvax.curve_fit_batch(centred, x, y, p0=[1.0, 1.0])
    for b in range(2):
        ref, _ = scipy_curve_fit(lambda x, a, c: a * np.exp(-c * (x - np.mean(x))), x, y[b],
                                 p0=[1.0, 1.0])
        np.testing.assert_allclose(res.popt[b], ref, rtol=1e-6)
