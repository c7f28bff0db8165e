"""Bad input to the large-data front doors gets a clear error naming the argument.

Covers :class:`~curvax.scale.StreamingOptimizer` (online mode checks what the exact
mode checks), complex data, ``curve_fit_large`` options of the chunked path, and
callable sources that change between passes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

import curvax
from curvax.scale import (
    DataConsistencyError,
    StreamingConfig,
    StreamingOptimizer,
    fit_chunked,
)
from curvax.warnings import PerformanceWarning

X = np.linspace(0.0, 4.0, 40)
Y = 2.0 * np.exp(-1.3 * X) + 0.01 * np.cos(7.0 * X)  # deterministic "noise"


def decay(x, a, b):
    return a * jnp.exp(-b * x)


def decay_numpy(x, a, b):
    return a * np.exp(-b * np.asarray(x))


def online(**kw):
    return StreamingConfig(batch_size=16, optimizer="adam", n_epochs=2, **kw)


# --- StreamingOptimizer: the online mode checks what the exact mode checks ----------------

BAD_SETUPS = [
    (dict(p0=[1, 1], loss="huber", f_scale=-1), r"^f_scale: expected a positive finite"),
    (dict(p0=[1, 1], loss="huber", f_scale=0), r"^f_scale: expected a positive finite"),
    (dict(p0=[1, 10], bounds=([0, 0], [5, 5])), r"^p0: p0\[1\]=10 lies outside its bounds"),
    (dict(p0=[1, 1], method="foo"), r"^method: unknown method 'foo'"),
    (dict(p0=[1, 1], method="lm", bounds=(0, 5)), r"^method='lm' does not handle bounds"),
    (dict(p0=[1, 1, 1]), r"^p0: has 3 values but the model takes 2 parameters"),
]


@pytest.mark.parametrize("optimizer", ["lm", "adam", "sgd"])
@pytest.mark.parametrize(("kwargs", "match"), BAD_SETUPS)
def test_streaming_setup_checked_alike_in_every_mode(optimizer, kwargs, match):
    kw = dict(kwargs)
    p0 = kw.pop("p0")
    cfg = StreamingConfig(batch_size=16, optimizer=optimizer)
    with pytest.raises(ValueError, match=match):
        StreamingOptimizer(decay, p0, cfg, **kw)


@pytest.mark.parametrize("optimizer", ["lm", "adam"])
@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_streaming_fit_refuses_non_positive_sigma(optimizer, bad):
    opt = StreamingOptimizer(decay, [1, 1], StreamingConfig(batch_size=16, optimizer=optimizer))
    with pytest.raises(ValueError, match=r"^sigma: (chunk|batch) 0 has non-positive uncertainties"):
        opt.fit(X, Y, sigma=np.full(X.size, bad))


@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_streaming_update_refuses_non_positive_sigma_batch(bad):
    opt = StreamingOptimizer(decay, [1, 1], online())
    with pytest.raises(ValueError, match=r"^sigma_batch: batch 0 has non-positive uncertainties"):
        opt.update(X[:8], Y[:8], np.full(8, bad))
    assert opt.batch == 0 and opt.t == 0  # nothing was stepped


def test_streaming_config_eps_and_backoff_are_checked_by_the_config():
    with pytest.raises(ValueError, match=r"^eps: expected a positive finite number, got -1"):
        online(eps=-1)
    with pytest.raises(ValueError, match=r"^retry_backoff: expected a non-negative finite"):
        StreamingConfig(retry_backoff=-0.5)


@pytest.mark.parametrize("optimizer", ["lm", "adam"])
def test_streaming_model_wrong_shape(optimizer):
    def short(x, a, b):
        return a * jnp.exp(-b * x[:-1])

    opt = StreamingOptimizer(short, [1, 1], StreamingConfig(batch_size=16, optimizer=optimizer))
    with pytest.raises(ValueError, match=r"^model: the model returned shape \(39,\) for a chunk"):
        opt.fit(X, Y)


def test_streaming_update_model_wrong_shape():
    opt = StreamingOptimizer(lambda x, a, b: a * jnp.exp(-b * x[:-1]), [1, 1], online())
    with pytest.raises(ValueError, match=r"^model: the model returned shape \(7,\)"):
        opt.update(X[:8], Y[:8])


def test_streaming_online_numpy_model_runs_on_host_path():
    ref = StreamingOptimizer(decay, [1, 1], online(learning_rate=0.05)).fit(X, Y)
    with pytest.warns(PerformanceWarning, match="^model: the model cannot be traced"):
        res = StreamingOptimizer(decay_numpy, [1, 1], online(learning_rate=0.05)).fit(X, Y)
    # same Adam steps; only the Jacobian differs (finite differences on the host)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    assert not np.allclose(res.x, [1.0, 1.0])


def test_streaming_update_empty_batch():
    opt = StreamingOptimizer(decay, [1, 1], online())
    with pytest.raises(ValueError, match=r"^y_batch: the batch is empty"):
        opt.update(np.array([]), np.array([]))


# --- complex data are refused, never cut to their real part -------------------------------


def test_fit_chunked_refuses_complex_y():
    with pytest.raises(ValueError, match=r"^y: complex values are not supported"):
        fit_chunked(decay, X, [1, 1], y=Y + 1j, chunk_size=16)


def test_fit_chunked_refuses_complex_sigma():
    with pytest.raises(ValueError, match=r"^sigma: complex values are not supported"):
        fit_chunked(decay, X, [1, 1], y=Y, sigma=np.ones(X.size) + 0j, chunk_size=16)


def test_fit_chunked_refuses_complex_chunk_of_callable_source():
    def chunks():
        yield X[:20], Y[:20]
        yield X[20:], Y[20:] + 1j

    with pytest.raises(ValueError, match=r"^y \(chunk 1\): complex values are not supported"):
        fit_chunked(decay, chunks, [1, 1])


@pytest.mark.parametrize("chunk_size", [None, 16])
def test_curve_fit_large_refuses_complex_ydata(chunk_size):
    with pytest.raises(ValueError, match=r"^ydata: complex values are not supported"):
        curvax.curve_fit_large(decay, X, Y + 1j, [1, 1], chunk_size=chunk_size)


@pytest.mark.parametrize("chunk_size", [None, 16])
def test_curve_fit_large_names_its_own_arguments_in_shape_errors(chunk_size):
    """The shape checks are the chunk source's, whose arguments are x and y; from
    curve_fit_large they must name xdata and ydata."""
    with pytest.raises(ValueError, match=r"^xdata: shape \(3, 5\) does not match ydata's 7"):
        curvax.curve_fit_large(decay, np.ones((3, 5)), np.ones(7), [1, 1], chunk_size=chunk_size)
    with pytest.raises(ValueError, match=r"^ydata: must be 1-D, got shape \(5, 2\)"):
        curvax.curve_fit_large(decay, np.ones(5), np.ones((5, 2)), [1, 1], chunk_size=chunk_size)


def test_streaming_update_refuses_complex_y_batch():
    opt = StreamingOptimizer(decay, [1, 1], online())
    with pytest.raises(ValueError, match=r"^y_batch: complex values are not supported"):
        opt.update(X[:8], Y[:8] + 1j)
    assert opt.t == 0


# --- curve_fit_large: the chunked path ---------------------------------------------------


def test_curve_fit_large_fixed_in_chunks_matches_closed_form():
    # with b held at 1.3 the model is linear in a: a = Σ y e / Σ e², e = exp(-1.3 x)
    e = np.exp(-1.3 * X)
    a_ref = float(Y @ e / (e @ e))
    popt, pcov = curvax.curve_fit_large(decay, X, Y, [1, 1], chunk_size=16, fixed={"b": 1.3})
    np.testing.assert_allclose(popt, [a_ref, 1.3], rtol=1e-10)
    s2 = float(np.sum((Y - a_ref * e) ** 2)) / (X.size - 1)
    np.testing.assert_allclose(pcov[0, 0], s2 / (e @ e), rtol=1e-6)
    assert pcov[1, 1] == 0.0 and pcov[0, 1] == 0.0


def test_fit_chunked_fixed_outside_bounds():
    with pytest.raises(ValueError, match=r"^fixed: b=1.3 lies outside its bounds \[0, 1\]"):
        fit_chunked(decay, X, [1, 0.5], y=Y, bounds=([0, 0], [5, 1]), fixed={"b": 1.3})


def test_fit_chunked_fixed_unknown_name():
    with pytest.raises(ValueError, match=r"^fixed: unknown parameter name\(s\) \['c'\]"):
        fit_chunked(decay, X, [1, 1], y=Y, fixed={"c": 1.0})


def test_curve_fit_large_in_memory_only_option_in_chunks():
    with pytest.raises(ValueError, match=r"^timeout: not supported by the chunked fit.*chunk_size"):
        curvax.curve_fit_large(decay, X, Y, [1, 1], chunk_size=16, timeout=5.0)


def test_curve_fit_large_unknown_option():
    with pytest.raises(TypeError, match=r"^foo: unknown option"):
        curvax.curve_fit_large(decay, X, Y, [1, 1], chunk_size=16, foo=1)


def test_curve_fit_large_covariance_sigma_refused_in_chunks():
    cov = np.diag(np.full(X.size, 0.01))
    with pytest.raises(ValueError, match=r"^sigma: a 2-D sigma \(covariance matrix\) is not"):
        curvax.curve_fit_large(decay, X, Y, [1, 1], sigma=cov, chunk_size=16)


def test_curve_fit_large_covariance_sigma_in_memory():
    # a diagonal covariance is the same fit as its 1-D standard deviations
    sd = 0.05 + 0.01 * X
    popt, pcov = curvax.curve_fit_large(decay, X, Y, [1, 1], sigma=np.diag(sd**2))
    ref, ref_cov = so.curve_fit(decay_numpy, X, Y, [1, 1], sigma=sd)
    np.testing.assert_allclose(popt, ref, rtol=1e-7)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-5)  # SciPy: finite-difference J


def test_fit_chunked_covariance_sigma():
    with pytest.raises(ValueError, match=r"^sigma: a 2-D sigma \(covariance matrix"):
        fit_chunked(decay, X, [1, 1], y=Y, sigma=np.eye(X.size))


# --- callable sources ------------------------------------------------------------------------


def test_callable_source_shrinking_after_first_call_is_refused():
    calls = {"n": 0}

    def chunks():
        calls["n"] += 1
        stop = 40 if calls["n"] == 1 else 30
        for a in range(0, stop, 10):
            yield X[a : a + 10], Y[a : a + 10]

    match = r"^source: pass 2 delivered 30 points .* first pass delivered 40"
    with pytest.raises(DataConsistencyError, match=match):
        fit_chunked(decay, chunks, [1, 1])


def test_callable_source_empty_chunk_contributes_nothing():
    def chunks():
        yield X[:10], Y[:10]
        yield X[:0], Y[:0]
        yield X[10:], Y[10:]

    res = fit_chunked(decay, chunks, [1, 1])
    ref, _ = so.curve_fit(decay_numpy, X, Y, [1, 1])
    np.testing.assert_allclose(res.x, ref, rtol=1e-6)
    assert res.extra["n_points"] == 40


def test_iterator_source_is_refused():
    gen = ((X[a : a + 10], Y[a : a + 10]) for a in range(0, 40, 10))
    with pytest.raises(TypeError, match=r"^source: got an iterator"):
        fit_chunked(decay, gen, [1, 1])


def test_fit_chunked_refuses_non_numeric_y():
    with pytest.raises(ValueError, match=r"^y: not numeric \(dtype <U1\)"):
        fit_chunked(decay, X, [1, 1], y=np.array(["a"] * X.size))
