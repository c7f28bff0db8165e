"""Fits whose blocked reduction may need its QR fallback (core/solve.speculative_kernel).

A fit of more than one block first runs a program compiled without the QR fallback;
where a Gram factor fails its tests that program stops, and the fit is redone from the
start by the program with the fallback.  The references here are independent (SciPy,
a polynomial fit, counts taken with NumPy) and, for "the same result", the program with
the fallback run alone (speculation switched off by a monkeypatch).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import curvax
import curvax.core.solve as solve_mod
from curvax.core import engine, gram_kernel
from curvax.core import trust_region as tr
from curvax.core.reduction import GRAM_REJECTED, Reduction


@pytest.fixture
def runs(monkeypatch):
    """``(gram_fallback, status, nfev, gram style)`` of every fit program run, in order."""
    seen: list[tuple[bool, int, int, str]] = []
    real = solve_mod.run_kernel

    def spy(k, data, args):
        out = real(k, data, args)
        sol = out.solver()[0]
        seen.append((k.gram_fallback, int(sol.status), int(sol.nfev), k.gram))
        return out

    monkeypatch.setattr(solve_mod, "run_kernel", spy)
    return seen


@pytest.fixture(params=["kernel", "dot", pytest.param("fused", marks=pytest.mark.slow)])
def style(request, monkeypatch):
    """The CPU's Gram styles — curvax's compiled product (its default for these sizes)
    and XLA's — and the accelerators' (every block, one here, through the Gram matrix
    first) run on the CPU (``-m slow``: the default run keeps CI short)."""
    module = sys.modules["curvax.curve_fit"]  # the module, not the function
    if request.param == "kernel" and not gram_kernel.enabled():
        pytest.skip(f"compiled Gram product: {gram_kernel.status()}")
    if request.param == "dot":
        monkeypatch.setattr(engine, "use_gram_kernel", lambda *args: False)
    if request.param == "fused":
        monkeypatch.setattr(module, "reduction_defaults", lambda mesh=None: (1 << 16, "fused"))
    return request.param


def _without_speculation(monkeypatch, fit):
    with monkeypatch.context() as m:
        m.setattr(solve_mod, "speculative_kernel", lambda kernel, n_points: None)
        return fit()


def test_well_conditioned_fit_runs_only_the_program_without_fallback(runs, monkeypatch, style):
    def decay(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    rng = np.random.default_rng(3)
    x = np.linspace(0, 4, 20_000)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.02 * rng.standard_normal(x.size)
    res = curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.0])
    popt, pcov = res.x, res.pcov
    assert [r[0] for r in runs] == [False] and "discarded_nfev" not in res.extra
    assert runs[0][3] == style
    ref, ref_cov = scipy_curve_fit(
        lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=[1.0, 1.0, 0.0]
    )
    np.testing.assert_allclose(popt, ref, rtol=1e-7)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-5)
    full = _without_speculation(monkeypatch, lambda: curvax.curve_fit(decay, x, y, p0=[1, 1, 0]))
    assert runs[-1][0] is True
    np.testing.assert_allclose(popt, full[0], rtol=1e-12)


@pytest.mark.parametrize(("method", "loss"), [("trf", "soft_l1"), ("lm", "linear")])
def test_fits_that_pass_equal_the_full_programs(runs, monkeypatch, method, loss):
    """A Gaussian peak (trf: soft_l1 loss and bounds; lm: linear loss): the program
    without the fallback takes, in every reduction, the branch the full program takes,
    so both give the same fit (bit for bit on jaxlib 0.10; to rounding asserted here)."""

    def peak(x, a, m, s, c):
        return a * jnp.exp(-0.5 * ((x - m) / s) ** 2) + c

    rng = np.random.default_rng(11)
    x = np.linspace(0, 4, 30_000)
    y = 3.0 * np.exp(-0.5 * ((x - 2.2) / 0.7) ** 2) + 0.1 + 0.05 * rng.standard_normal(x.size)
    kw = dict(p0=[1.0, 2.0, 1.0, 0.0], method=method, loss=loss, f_scale=0.1)
    if method == "trf":
        kw["bounds"] = ([0.0, 0.0, 0.01, -1.0], [10.0, 4.0, 4.0, 1.0])
    res = curvax.fit_curve(peak, x, y, **kw)
    assert [r[0] for r in runs] == [False] and res.success
    full = _without_speculation(monkeypatch, lambda: curvax.fit_curve(peak, x, y, **kw))
    assert runs[-1][0] is True
    assert res.nfev == full.nfev and res.status == full.status
    np.testing.assert_allclose(res.x, full.x, rtol=1e-12)
    np.testing.assert_allclose(res.pcov, full.pcov, rtol=1e-10)


def _near_1000(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list, list]:
    """``(x, y, p0, reference)`` for ``a + b x + c x²`` with x in [1000, 1001]: the
    columns 1, x, x² are nearly parallel (κ ~ 1e11), so every Gram factor fails.  The
    reference is NumPy's polynomial fit in t = x − 1000, mapped back to (a, b, c)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(1000.0, 1001.0, n)
    y = 1.0 + 2e-3 * (x - 1000.0) ** 2 + 1e-4 * rng.standard_normal(x.size)
    coef = np.polynomial.polynomial.polyfit(x - 1000.0, y, 2)
    ref = [coef[0] - 1000 * coef[1] + 1e6 * coef[2], coef[1] - 2000 * coef[2], coef[2]]
    return x, y, [2e3, -4.0, 2e-3], ref


def test_ill_conditioned_fit_is_redone_with_the_fallback(runs, monkeypatch, style):
    def quad(x, a, b, c):
        return a + b * x + c * x * x

    x, y, p0, ref = _near_1000(20_000, seed=1)
    popt, pcov = curvax.curve_fit(quad, x, y, p0=p0)
    assert [r[:2] for r in runs] == [(False, tr.GRAM_REJECTED_STATUS), (True, runs[1][1])]
    assert 1 <= runs[1][1] <= 4 and runs[0][3] == style
    np.testing.assert_allclose(popt, ref, rtol=1e-5)
    # the program with the fallback, run alone, gives the same bits
    full = _without_speculation(monkeypatch, lambda: curvax.curve_fit(quad, x, y, p0=p0))
    np.testing.assert_array_equal(popt, full[0])
    np.testing.assert_array_equal(pcov, full[1])
    # once rejected, the program without the fallback is not tried again
    del runs[:]
    y2 = y + 1e-4 * np.random.default_rng(9).standard_normal(x.size)
    curvax.curve_fit(quad, x, y2, p0=p0)
    assert [r[0] for r in runs] == [True]


@pytest.mark.parametrize("method", ["lm", "trf"])
def test_rejection_after_the_start_gives_the_full_programs_fit(runs, monkeypatch, method):
    """A rate that tends to 0 makes ``e^{-bx}`` parallel to the constant: the start is
    well conditioned, later steps are not, and the fit is redone from the start."""

    def decay(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    rng = np.random.default_rng(7)
    x = np.linspace(0, 4, 20_000)
    y = 2.0 * np.exp(-1e-5 * x) + 0.5 + 1e-3 * rng.standard_normal(x.size)
    res = curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.0], method=method)
    assert len(runs) == 2 and runs[0][:2] == (False, tr.GRAM_REJECTED_STATUS)
    assert runs[0][2] > 1  # stopped after the start
    full = _without_speculation(
        monkeypatch, lambda: curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.0], method=method)
    )
    assert runs[-1][0] is True
    np.testing.assert_array_equal(res.x, full.x)
    assert res.status == full.status and res.nfev == full.nfev
    assert res.cost == full.cost
    # the discarded attempt is reported
    assert res.extra["discarded_nfev"] == runs[0][2]
    assert "discarded_nfev" not in full.extra


def test_non_finite_start_is_counted_by_the_fallback(runs, monkeypatch):
    def root(x, a, b):
        return a * jnp.sqrt(x - b)

    x = np.linspace(0.0, 1.0, 20_000)
    y = 2.0 * np.sqrt(x)
    with pytest.raises(ValueError, match="not finite at the initial point") as err:
        curvax.curve_fit(root, x, y, p0=[1.0, 0.25])
    assert [r[:2] for r in runs] == [(False, tr.GRAM_REJECTED_STATUS), (True, -1)]
    n_bad = int(np.sum(x < 0.25))  # points whose residual is NaN
    assert f"({n_bad} non-finite entries" in str(err.value)
    with pytest.raises(ValueError) as err_full:
        _without_speculation(monkeypatch, lambda: curvax.curve_fit(root, x, y, p0=[1.0, 0.25]))
    assert str(err_full.value) == str(err.value)


def test_polish_stops_and_reports_a_rejected_reduction():
    """The Gauss–Newton refinement on its own: a rejected reduction at its first step
    leaves x and the reduction as they were and is reported."""
    with jax.enable_x64(True):
        R = jnp.array([[2.0, 0.5], [0.0, 1.0]])
        factor = jnp.zeros((3, 3)).at[:2, :2].set(R).at[:2, 2].set(jnp.array([0.3, -0.2]))
        red = Reduction(jnp.asarray(1.0), factor.at[2, 2].set(0.1), jnp.asarray(0, jnp.int32))
        x = jnp.array([1.0, 2.0])

        def rejecting(q):
            return Reduction(red.cost * 0.5, red.factor, jnp.asarray(GRAM_REJECTED, jnp.int32))

        inf = jnp.full(2, jnp.inf)
        x1, red1, n, rejected = tr.gauss_newton_polish(rejecting, x, red, -inf, inf, 50, 5)
        assert bool(rejected) and int(n) == 1
        np.testing.assert_array_equal(np.asarray(x1), np.asarray(x))
        np.testing.assert_array_equal(np.asarray(red1.factor), np.asarray(red.factor))

        def accepting(q):  # a reduction that keeps lowering the cost
            return Reduction(red.cost * 0.5, red.factor, jnp.asarray(0, jnp.int32))

        _, _, _, rejected = tr.gauss_newton_polish(accepting, x, red, -inf, inf, 50, 1)
        assert not bool(rejected)


# --- chunked fits: the per-chunk program (scale/host_reduce.HostReducer) ---------------


@pytest.fixture
def chunk_kernels(monkeypatch):
    """``gram_fallback`` of every chunk program a chunked fit asks for, in order."""
    import curvax.scale.host_reduce as hr

    asked: list[bool] = []
    real = hr.chunk_kernel

    def spy(kernel):
        asked.append(kernel.gram_fallback)
        return real(kernel)

    monkeypatch.setattr(hr, "chunk_kernel", spy)
    return asked


def test_chunked_fit_runs_the_chunk_program_without_fallback(chunk_kernels):
    def decay(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    rng = np.random.default_rng(5)
    x = np.linspace(0, 4, 40_000)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.02 * rng.standard_normal(x.size)
    res = curvax.fit_chunked(decay, x, [1.0, 1.0, 0.0], y=y, chunk_size=16_384)
    assert chunk_kernels == [False] and res.extra["redone_chunks"] == 0
    ref, _ = scipy_curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=[1, 1, 0])
    np.testing.assert_allclose(res.x, ref, rtol=1e-7)


def test_chunked_fit_redoes_a_rejected_chunk_with_the_fallback(chunk_kernels, monkeypatch):
    import curvax.scale.host_reduce as hr

    def quad(x, a, b, c):
        return a + b * x + c * x * x

    x, y, p0, ref = _near_1000(40_000, seed=2)
    res = curvax.fit_chunked(quad, x, p0, y=y, chunk_size=16_384)
    assert chunk_kernels == [False, True]  # the first chunk is redone, the rest use QR
    assert res.extra["redone_chunks"] == 1
    np.testing.assert_allclose(res.x, ref, rtol=1e-5)
    with monkeypatch.context() as m:
        m.setattr(hr, "speculative_kernel", lambda kernel, n_points: None)
        full = curvax.fit_chunked(quad, x, p0, y=y, chunk_size=16_384)
    np.testing.assert_array_equal(res.x, full.x)
    np.testing.assert_array_equal(res.pcov, full.pcov)
    assert res.nfev == full.nfev
