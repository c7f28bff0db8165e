"""The in-memory reduction shared by CPU threads (core/threaded).

Parts of the data are reduced by one compiled program each, on their own threads,
called back from inside the fit program.  The answer must equal the one-program fit up
to rounding (the Gram matrices of the parts are added in a fixed order), also through
the QR fallback, with fixed parameters and with a robust loss; a program that is not
safe on threads (a custom call in the model) must fall back to one thread; and two
threads inside a callback must not deadlock on a CPU with a single XLA device.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core.engine import Kernel, parted_gram
from curvax.core.threaded import split_points


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 5.0, n)
    return x, 2.0 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(n)


OPTIONS = ({}, {"loss": "soft_l1", "f_scale": 0.1}, {"fixed": {"c": 0.5}},
           {"bounds": ([0, 0, 0], [5, 5, 5])})


# Every option with two parts; three (uneven) parts once — the options act inside each
# part's program the same way whatever the split, and each case compiles two programs.
# The default run takes the plain fit and the robust loss with two parts (``-m slow``: all).
@pytest.mark.parametrize(
    ("workers", "options"),
    [
        (2, OPTIONS[:2]),
        pytest.param(2, OPTIONS[2:], marks=pytest.mark.slow),
        (3, OPTIONS[:1]),
    ],
)
def test_threads_give_the_one_program_answer(workers: int, options: tuple) -> None:
    x, y = data(20_000)
    for kw in options:
        r1 = curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.4], workers=1, **kw)
        rw = curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.4], workers=workers, **kw)
        assert rw.success and r1.success
        np.testing.assert_allclose(rw.x, r1.x, rtol=1e-11, err_msg=str(kw))
        np.testing.assert_allclose(rw.pcov, r1.pcov, rtol=1e-9, atol=1e-14, err_msg=str(kw))


def test_threads_are_deterministic() -> None:
    x, y = data(30_000, seed=4)
    runs = [curvax.curve_fit(decay, x, y, p0=[1.0, 1.0, 0.0], workers=2)[1] for _ in range(3)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_ill_conditioned_data_go_through_the_qr_fallback() -> None:
    """Columns 1, x, x² with x in [1000, 1001]: the Gram factor fails the conditioning
    test, so the fit program's QR fallback must give the one-program answer."""
    x = np.linspace(1000.0, 1001.0, 20_000)
    y = 1.0 + 2e-3 * (x - 1000.0) ** 2 + 1e-4 * np.random.default_rng(1).standard_normal(x.size)

    def quad(x, a, b, c):
        return a + b * x + c * x * x

    p1, c1 = curvax.curve_fit(quad, x, y, p0=[2e3, -4.0, 2e-3], workers=1)
    p2, c2 = curvax.curve_fit(quad, x, y, p0=[2e3, -4.0, 2e-3], workers=2)
    coef = np.polynomial.polynomial.polyfit(x - 1000.0, y, 2)  # independent reference
    # a + b x + c x² with x = 1000 + t
    ref = [coef[0] - 1000 * coef[1] + 1e6 * coef[2], coef[1] - 2000 * coef[2], coef[2]]
    np.testing.assert_allclose(p2, p1, rtol=1e-7)
    np.testing.assert_allclose(p2, ref, rtol=1e-5)
    np.testing.assert_allclose(c2, c1, rtol=1e-5)


def test_a_model_with_a_custom_call_runs_on_one_thread() -> None:
    def det_model(x, p):  # jnp.linalg.svd lowers to a LAPACK custom call
        m = jnp.array([[p[0], p[1], 0.0], [0.0, 1.0, p[0]], [1.0, 0.0, 1.0]])
        return jnp.linalg.svd(m, compute_uv=False)[0] * jnp.exp(-p[1] * x)

    x, y = data(4_000)
    k = Kernel(kind="pointwise", fn=det_model, param_style="array", jac="fwd",
               loss="linear", method="trf", jac_scale=True, workers=2)
    with jax.enable_x64(True):
        dd = {"x": x, "y": y}
        k1, parted = parted_gram(k, dd, np.float64(1.0), 2, np.float64)
    assert parted is None and k1.workers == 1
    k2 = Kernel(kind="pointwise", fn=lambda x, p: p[0] * jnp.exp(-p[1] * x),
                param_style="array", jac="fwd", loss="linear", method="trf",
                jac_scale=True, workers=2)
    with jax.enable_x64(True):
        k3, parted = parted_gram(k2, dd, np.float64(1.0), 2, np.float64)
    assert parted is not None and k3.workers == 2
    parted.close()


def test_split_points_cover_the_data_at_aligned_cuts() -> None:
    for n, parts in [(10, 2), (1000, 3), (1 << 20, 2), (17, 4), (5, 8)]:
        cuts = split_points(n, parts, 8)
        assert cuts[0][0] == 0 and cuts[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(cuts))
        assert all(lo % 8 == 0 for lo, _ in cuts)
        assert len(cuts) <= parts


def test_bad_workers_are_refused() -> None:
    x, y = data(100)
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="workers: expected a positive integer"):
            curvax.curve_fit(decay, x, y, p0=[1.0, 1.0, 0.0], workers=bad)
    cov = np.diag(np.full(x.size, 0.05**2))
    for kw in ({"sigma": cov}, {"devices": "all"},
               {"jac_sparsity": np.ones((x.size, 3), dtype=bool)}):
        with pytest.raises(ValueError, match="workers: threads share the reduction"):
            curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.0], workers=2, **kw)


def test_threads_inside_the_fit_do_not_deadlock_on_one_cpu_device() -> None:
    """The suite splits the CPU into 4 XLA devices (conftest), which hides pool
    contention: run the threaded fit in a child on one device, with a time limit."""
    code = textwrap.dedent(
        """
        import numpy as np, jax.numpy as jnp, curvax
        x = np.linspace(0, 5, 1 << 17)
        y = 2 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(0).standard_normal(x.size)
        f = lambda x, a, b, c: a * jnp.exp(-b * x) + c
        for _ in range(5):
            p2, _ = curvax.curve_fit(f, x, y, p0=[1, 1, 0], workers=2)
        p1, _ = curvax.curve_fit(f, x, y, p0=[1, 1, 0], workers=1)
        assert np.allclose(p1, p2, rtol=1e-11), (p1, p2)
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_each_part_program_compiles_once() -> None:
    """Both threads call the part program first at the same moment; it must be compiled
    once per part shape (ahead of time, in the background), not once per thread."""
    compiled: list[str] = []

    def listen(event: str, duration: float, **kw: object) -> None:
        if event.endswith("backend_compile_duration"):
            compiled.append(str(kw.get("fun_name")))

    def fresh_decay(x, a, b, c):  # a model of its own: nothing compiled yet
        return a * jnp.exp(-b * x) + c

    x, y = data(20_000, seed=7)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        r = curvax.fit_curve(fresh_decay, x, y, p0=[1.0, 1.0, 0.4], workers=2)
        # data of another length in the same bucket: nothing new to compile
        r2 = curvax.fit_curve(fresh_decay, x[:-3], y[:-3], p0=[1.0, 1.0, 0.4], workers=2)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert r.success and r2.success
    assert compiled.count("jit(gram_part)") == 1, compiled
    assert compiled.count("jit(run)") == 1, compiled


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_balanced_windows_count_every_real_point_once(parts: int) -> None:
    from curvax.core.threaded import balanced_windows, part_length

    rng = np.random.default_rng(parts)
    for _ in range(200):
        n = int(rng.integers(64, 5000))
        n_real = int(rng.integers(1, n + 1))
        windows = balanced_windows(n, n_real, parts, 8)
        if windows is None:  # the windows would not fit: contiguous ranges are used
            continue
        length = part_length(n, parts, 8)
        counted = np.zeros(n, dtype=int)
        for start, real in windows:
            assert start % 8 == 0 and start + length <= n and 0 <= real <= length
            counted[start : start + real] += 1
        np.testing.assert_array_equal(counted[:n_real], 1)
        np.testing.assert_array_equal(counted[n_real:], 0)
        shares = [real for _, real in windows]
        assert max(shares) - min(shares) <= 8 * parts  # even, up to the 64-byte cuts


def test_padded_data_split_by_real_points_give_the_one_program_answer() -> None:
    """20 001 points pad to a bucket of 32 768: an equal cut of the padded length would
    leave the last part mostly padding; the windows share the real points instead."""
    x, y = data(20_001, seed=3)
    sigma = 0.05 + 0.05 * np.random.default_rng(3).uniform(size=x.size)  # weights too
    r1 = curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.4], sigma=sigma, workers=1)
    for workers in (2, 3):
        rw = curvax.fit_curve(decay, x, y, p0=[1.0, 1.0, 0.4], sigma=sigma, workers=workers)
        assert rw.success
        np.testing.assert_allclose(rw.x, r1.x, rtol=1e-11)
        np.testing.assert_allclose(rw.pcov, r1.pcov, rtol=1e-9, atol=1e-14)
        assert rw.cost == pytest.approx(r1.cost, rel=1e-12)


def test_the_parts_are_called_back_on_the_calling_thread(monkeypatch) -> None:
    """XLA:CPU runs the fit program on the calling thread when it deems it cheap and no
    earlier computation is pending; otherwise on one of its own threads (one per core).
    A host callback there keeps that thread waiting, and the parts' programs then share
    the one left: threads become slower than one (seen when the reduction's token was
    read from a packed vector, ``engine.RunArgs``). So the callbacks must arrive on the
    thread that called the fit."""
    import threading

    from curvax.core import threaded

    seen: list[int] = []
    real = threaded.PartedGram.__call__

    def spy(self, q):
        seen.append(threading.get_ident())
        return real(self, q)

    def peaks(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):  # where it was seen
        return (
            a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2)
            + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)
            + a3 * jnp.exp(-0.5 * ((x - m3) / s3) ** 2)
            + c
        )

    monkeypatch.setattr(threaded.PartedGram, "__call__", spy)
    truth = np.array([1, 2, 0.5, 2, 5, 0.7, 1.5, 8, 0.4, 0.1])
    x = np.linspace(0.0, 10.0, 1 << 20)  # the size from which fits take threads
    rng = np.random.default_rng(0)
    for _ in range(3):
        with jax.enable_x64(True):
            y = np.asarray(peaks(x, *truth)) + 0.01 * rng.standard_normal(x.size)
        r = curvax.fit_curve(peaks, x, y, p0=truth * 1.02, workers=2)
        assert r.success
    assert len(seen) >= 6
    assert set(seen) == {threading.get_ident()}


def test_a_variadic_model_fitted_with_two_parameter_counts_on_threads() -> None:
    """``f(x, *p)`` is one function for any number of parameters, so both fits share a
    compiled fit program; each needs part programs for its own parameter count (these
    were keyed by the parts' shapes only, and the second fit called the first's)."""

    def poly(x, *p):
        return sum(c * x**i for i, c in enumerate(p))

    x = np.linspace(-1.0, 1.0, 6000)
    rng = np.random.default_rng(4)
    for coef in ([0.5, -1.0, 2.0], [0.5, -1.0, 2.0, 0.7, -0.3]):
        y = np.polynomial.polynomial.polyval(x, coef) + 0.01 * rng.standard_normal(x.size)
        popt, _ = curvax.curve_fit(poly, x, y, p0=np.ones(len(coef)), workers=2)
        ref = np.polynomial.polynomial.polyfit(x, y, len(coef) - 1)  # linear least squares
        np.testing.assert_allclose(popt, ref, rtol=1e-8, atol=1e-10)
