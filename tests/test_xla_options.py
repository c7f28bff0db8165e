"""The XLA:CPU compiler options of curvax's programs (curvax.core.xla_options)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core import xla_options
from curvax.datasets import load_nist


@pytest.fixture
def fresh_options():
    """Forget the memoised answer before and after the test."""
    xla_options.cpu_compiler_options.cache_clear()
    yield xla_options
    xla_options.cpu_compiler_options.cache_clear()


def _model_copy(model):
    """A new function object (a new compiled program) computing ``model``."""
    return lambda x, *p: model(x, *p)


def _xla_accepts(options) -> bool:
    """Whether this jaxlib's XLA compiles a program with ``options`` (independent of
    curvax: jaxlib 0.12 no longer knows ``xla_cpu_use_fusion_emitters``)."""
    try:
        jax.jit(lambda v: v + 1, compiler_options=options).lower(np.float32(0)).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


def test_taken_on_the_cpu_unless_the_environment_says_otherwise(fresh_options, monkeypatch):
    monkeypatch.delenv(xla_options.ENV_VAR, raising=False)
    assert jax.default_backend() == "cpu"
    accepted = _xla_accepts(xla_options.CPU_OPTIONS)
    expected = xla_options.CPU_OPTIONS if accepted else None
    assert fresh_options.cpu_compiler_options() == expected
    monkeypatch.setenv(xla_options.ENV_VAR, "1")
    fresh_options.cpu_compiler_options.cache_clear()
    assert fresh_options.cpu_compiler_options() is None


def test_an_option_this_xla_lacks_is_left_out(fresh_options, monkeypatch):
    """On a jaxlib not known to accept the options they are probed, and left out when
    XLA does not know them."""
    monkeypatch.delenv(xla_options.ENV_VAR, raising=False)
    monkeypatch.setattr(xla_options, "VERIFIED_JAXLIB", ())
    probed = xla_options.CPU_OPTIONS if _xla_accepts(xla_options.CPU_OPTIONS) else None
    assert fresh_options.cpu_compiler_options() == probed  # taken where XLA knows them
    fresh_options.cpu_compiler_options.cache_clear()
    monkeypatch.setattr(xla_options, "CPU_OPTIONS", {"xla_cpu_no_such_option": True})
    assert fresh_options.cpu_compiler_options() is None


def test_the_options_reach_the_fit_program(monkeypatch):
    """An option XLA does not know makes the compile fail: proof that it was passed."""
    monkeypatch.setattr(
        "curvax.core.engine.cpu_compiler_options", lambda: {"xla_cpu_no_such_option": 1}
    )
    x = np.linspace(0.0, 4.0, 50)

    def decay(x, a, b):
        return a * jax.numpy.exp(-b * x)

    with pytest.raises(jax.errors.JaxRuntimeError, match="No such compile option"):
        curvax.curve_fit(decay, x, 2.0 * np.exp(-x), p0=[1.0, 1.0])


def test_the_answer_does_not_depend_on_the_code_generator(fresh_options, monkeypatch):
    """A hard NIST problem (MGH09, both starts) fitted by programs compiled with
    curvax's options and with XLA's defaults: the same parameters and errors."""
    prob = load_nist("MGH09")
    results = []
    for env in ("0", "1"):  # curvax's options, then XLA's defaults
        monkeypatch.setenv(xla_options.ENV_VAR, env)
        fresh_options.cpu_compiler_options.cache_clear()
        model = _model_copy(prob.model)
        results.append([curvax.curve_fit(model, prob.x, prob.y, p0=s) for s in
                        (prob.start1, prob.start2)])
    for (p_opt, c_opt), (p_def, c_def) in zip(*results, strict=True):
        np.testing.assert_allclose(p_opt, p_def, rtol=1e-10)
        np.testing.assert_allclose(c_opt, c_def, rtol=1e-6)


def test_kernels_are_not_split_over_xlas_threads(fresh_options, monkeypatch):
    """With the options a large fused kernel stays whole (no ``outer_dimension_partitions``
    in the compiled program); without them XLA may split it (checked only where it
    does, as the reference that the option changes something)."""
    monkeypatch.delenv(xla_options.ENV_VAR, raising=False)
    options = fresh_options.cpu_compiler_options()
    if options is None:
        pytest.skip("this jaxlib does not take curvax's options")
    assert fresh_options.kernels_stay_whole()
    x = np.linspace(0.0, 1.0, 1 << 20)

    def text(opts):
        fn = jax.jit(lambda v: jnp.exp(-v) * jnp.sin(v) / (1.0 + v), compiler_options=opts)
        return fn.lower(x).compile().as_text()

    assert "outer_dimension_partitions" not in text(options)
    if "outer_dimension_partitions" not in text(None):
        pytest.skip("XLA does not split this kernel here either")
    monkeypatch.setenv(xla_options.ENV_VAR, "1")
    fresh_options.cpu_compiler_options.cache_clear()
    assert not fresh_options.kernels_stay_whole()
