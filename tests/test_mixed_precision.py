"""Mixed precision: the float32 → float64 upgrade really happens and the answer is right."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core.memo import canonical_function
from curvax.core.mixed_precision import (
    MixedPrecisionConfig,
    configure_mixed_precision,
    current_mixed_precision,
)
from curvax.datasets import load_nist, lre


def mdecay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


X = np.linspace(0, 5, 3000)
Y = 3 * np.exp(-1.3 * X) + 0.5 + 0.01 * np.random.default_rng(0).normal(size=X.size)


def test_upgrade_happens_and_matches_float64() -> None:
    ref = curvax.fit_curve(mdecay, X, Y, p0=[1.0, 1.0, 0.0])
    res = curvax.fit_curve(mdecay, X, Y, p0=[1.0, 1.0, 0.0], mixed_precision=True)
    assert res.precision_upgraded and res.dtype == np.float64
    assert res.extra["float32_nfev"] > 0
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-9)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)
    assert not ref.precision_upgraded


def test_float32_result_kept_when_loose_tolerances_suffice() -> None:
    res = curvax.fit_curve(mdecay, X, Y, p0=[1.0, 1.0, 0.0], mixed_precision=True,
                           ftol=1e-5, xtol=1e-5, gtol=1e-5)
    assert res.success and not res.precision_upgraded and res.dtype == np.float32


def test_hard_nist_problem_stalls_in_float32_and_is_certified_after_upgrade() -> None:
    prob = load_nist("MGH09")
    with configure_mixed_precision(enable=True, max_degradation_iterations=3):
        assert current_mixed_precision().enable
        res = curvax.fit_curve(prob.model, prob.x, prob.y, p0=prob.start1)
    assert not current_mixed_precision().enable  # the scope ended
    assert res.precision_upgraded
    assert res.extra["upgrade_reason"] in (
        "progress stalled", "trust radius collapsed", "non-finite values",
        "float32 cannot meet the requested tolerances",
    )
    assert lre(res.x, prob.certified_values).min() >= 6


def test_overflow_in_float32_goes_to_float64() -> None:
    def big(x, a, b):
        return a * jnp.exp(b * x)  # exp(100) overflows float32

    x = np.linspace(0, 1, 50)
    y = 2.0 * np.exp(100.0 * x)
    res = curvax.fit_curve(big, x, y, p0=[1.0, 100.0], mixed_precision=True)
    assert res.precision_upgraded and res.extra["upgrade_reason"] == "non-finite values"
    np.testing.assert_allclose(res.x, [2.0, 100.0], rtol=1e-8)


def test_environment_and_validation(monkeypatch) -> None:
    from curvax.core import mixed_precision as mp

    monkeypatch.setenv("CURVAX_MIXED_PRECISION_ENABLE", "1")
    monkeypatch.setenv("CURVAX_MIXED_PRECISION_MAX_DEGRADATION_ITERATIONS", "7")
    cfg = mp._env_default()
    assert cfg.enable and cfg.max_degradation_iterations == 7
    monkeypatch.setenv("CURVAX_MIXED_PRECISION_ENABLE", "maybe")
    with pytest.raises(ValueError, match="CURVAX_MIXED_PRECISION_ENABLE"):
        mp._env_default()
    with pytest.raises(ValueError, match="max_degradation_iterations"):
        MixedPrecisionConfig(enable=True, max_degradation_iterations=0)
    with pytest.raises(TypeError, match="unknown setting"):
        configure_mixed_precision(patience=3)
    with pytest.raises(TypeError, match="mixed_precision"):
        curvax.fit_curve(mdecay, X, Y, p0=[1.0, 1.0, 0.0], mixed_precision="yes")


def test_float32_phase_halves_the_device_memory_of_a_large_fit() -> None:
    """Memory of the compiled program (XLA's plan) in float32 vs float64, same data.

    A mixed-precision fit with tolerances float32 can meet finishes in float32: its
    program needs about half the device memory of the float64 fit, and its answer
    agrees with the float64 fit to float32 accuracy.
    """
    from curvax.core.engine import COMPILE_CACHE, program_memory

    n = 1 << 18
    x = np.linspace(0, 5, n)
    y = 3 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.random.default_rng(1).normal(size=n)
    tol = dict(ftol=1e-6, xtol=1e-6, gtol=1e-6)
    ref = curvax.fit_curve(mdecay, x, y, p0=[1.0, 1.0, 0.0], **tol)
    res = curvax.fit_curve(mdecay, x, y, p0=[1.0, 1.0, 0.0], mixed_precision=True, **tol)
    assert res.success and not res.precision_upgraded and res.dtype == np.float32
    np.testing.assert_allclose(res.x, ref.x, rtol=2e-5)
    np.testing.assert_allclose(res.perr, ref.perr, rtol=1e-3)
    kernel = next(k for k in COMPILE_CACHE._entries if k.fn is canonical_function(mdecay))
    m32 = program_memory(kernel, {"x": x, "y": y}, 3, np.float32)
    m64 = program_memory(kernel, {"x": x, "y": y}, 3, np.float64)
    data64 = 2 * 8 * n
    assert m64["argument"] >= data64  # the data are on the device
    assert m32["total"] <= 0.55 * m64["total"]
