#!/usr/bin/env python
"""Curve-fitting benchmark: ``curvax.curve_fit`` against ``scipy.optimize.curve_fit``.

This is a benchmark script, not a test: it measures and reports, it never asserts on
timings. See ``benchmarks/README.md`` for what every column means.

Usage (from the repository root)::

    python benchmarks/bench_fit.py --quick
    python benchmarks/bench_fit.py                      # N = 1e2 ... 1e7, all models
    python benchmarks/bench_fit.py --sizes 1e3,1e6 --models exp,peaks3 --repeats 5
    python benchmarks/bench_fit.py --sizes 1e8 --scipy-max-n 1e7
    python benchmarks/bench_fit.py --nlsq-python /path/to/venv-with-nlsq/bin/python

Design
------
The parent ("orchestrator") process never imports JAX, curvax or SciPy. For every
(model, N) cell it starts fresh worker processes running this same file:

* a *jax worker* (library ``curvax``, or ``nlsq`` in the interpreter given by
  ``--nlsq-python``): its first fit is the COLD time (compilation included, imports and
  JAX backend start-up excluded and reported separately); it then fits NEW data of the
  same shape (other noise seeds) and reports the median as the WARM time;
* a *scipy worker*: after a warm-up on a small problem it times ``curve_fit`` with
  ``method='lm'`` and ``method='trf'`` (finite-difference Jacobian, SciPy's default) and,
  unless ``--no-analytic-jac``, again with an analytic numpy Jacobian.

Workers write a JSON result file; the orchestrator prints one aligned table and writes a
JSON report (with a machine description) under ``benchmarks/results/``.

Memory: each worker reports the peak *additional* resident memory (RSS) of one fit: on
Linux the kernel's RSS high-water mark is reset by writing ``5`` to
``/proc/self/clear_refs`` just before the fit, and after it ``VmHWM - VmRSS(before)`` is
read from ``/proc/self/status``. This covers everything the process touches (numpy, XLA
buffers, compiler). Where that reset is unavailable the fallback is
``ru_maxrss(after) - ru_maxrss(before)``, which under-reports when an earlier phase of the
process already reached a higher peak (the method used is recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
RESULTS_DIR = HERE / "results"

DEFAULT_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (100, 1_000, 10_000, 100_000)
DEFAULT_REPEATS = 7
QUICK_REPEATS = 3
# Per library/method: stop adding warm repeats once the timed fits of one cell add up to
# this many seconds (at least one warm fit is always timed).
DEFAULT_BUDGET_S = 15.0
QUICK_BUDGET_S = 3.0
AGREEMENT_RTOL = 1e-5
EXIT_NO_CURVAX = 2


# --------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------
#
# Each problem has a numpy model (for SciPy), an analytic numpy Jacobian, and a
# jax.numpy model (for curvax / nlsq) built lazily so that this file imports without JAX.


def _exp_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def _exp_jac_np(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(x)], axis=-1)


def _gauss_np(x, a, mu, s, c):
    return a * np.exp(-((x - mu) ** 2) / (2.0 * s**2)) + c


def _gauss_jac_np(x, a, mu, s, c):
    d = x - mu
    g = np.exp(-(d**2) / (2.0 * s**2))
    return np.stack([g, a * g * d / s**2, a * g * d**2 / s**3, np.ones_like(x)], axis=-1)


def _peaks3_np(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):
    return (
        a1 * np.exp(-((x - m1) ** 2) / (2.0 * s1**2))
        + a2 * np.exp(-((x - m2) ** 2) / (2.0 * s2**2))
        + a3 * np.exp(-((x - m3) ** 2) / (2.0 * s3**2))
        + c
    )


def _peaks3_jac_np(x, *p):
    cols = []
    for k in range(3):
        a, m, s = p[3 * k : 3 * k + 3]
        d = x - m
        g = np.exp(-(d**2) / (2.0 * s**2))
        cols += [g, a * g * d / s**2, a * g * d**2 / s**3]
    cols.append(np.ones_like(x))
    return np.stack(cols, axis=-1)


def _logistic4_np(x, bottom, hill, ec50, top):
    return top + (bottom - top) / (1.0 + (x / ec50) ** hill)


def _logistic4_jac_np(x, bottom, hill, ec50, top):
    r = x / ec50
    u = r**hill
    den = 1.0 + u
    inv = 1.0 / den
    diff = bottom - top
    d_bottom = inv
    d_hill = -diff * u * np.log(r) * inv**2
    d_ec50 = diff * hill * u / ec50 * inv**2
    d_top = 1.0 - inv
    return np.stack([d_bottom, d_hill, d_ec50, d_top], axis=-1)


def _dampsin_np(x, a, tau, omega, phi, c):
    return a * np.exp(-x / tau) * np.sin(omega * x + phi) + c


def _dampsin_jac_np(x, a, tau, omega, phi, c):
    e = np.exp(-x / tau)
    s, co = np.sin(omega * x + phi), np.cos(omega * x + phi)
    return np.stack(
        [e * s, a * e * s * x / tau**2, a * e * co * x, a * e * co, np.ones_like(x)], axis=-1
    )


@cache
def _jax_models() -> dict[str, Callable]:
    """jax.numpy twins of the numpy models; created once per process (stable identity)."""
    import jax.numpy as jnp

    def exp(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    def gauss(x, a, mu, s, c):
        return a * jnp.exp(-((x - mu) ** 2) / (2.0 * s**2)) + c

    def peaks3(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):
        return (
            a1 * jnp.exp(-((x - m1) ** 2) / (2.0 * s1**2))
            + a2 * jnp.exp(-((x - m2) ** 2) / (2.0 * s2**2))
            + a3 * jnp.exp(-((x - m3) ** 2) / (2.0 * s3**2))
            + c
        )

    def logistic4(x, bottom, hill, ec50, top):
        return top + (bottom - top) / (1.0 + (x / ec50) ** hill)

    def dampsin(x, a, tau, omega, phi, c):
        return a * jnp.exp(-x / tau) * jnp.sin(omega * x + phi) + c

    return {
        "exp": exp, "gauss": gauss, "peaks3": peaks3, "logistic4": logistic4,
        "dampsin": dampsin,
    }


@dataclass(frozen=True)
class Problem:
    name: str
    description: str
    param_names: tuple[str, ...]
    truth: tuple[float, ...]
    # p0 = truth + p0_scale * U(-1, 1), drawn once from a generator seeded by the name.
    p0_scale: tuple[float, ...]
    noise: float
    x_grid: tuple[str, float, float]  # ("lin" | "log", lo, hi)
    f_np: Callable
    jac_np: Callable

    @property
    def n_params(self) -> int:
        return len(self.truth)

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    def p0(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 20240601])
        u = rng.uniform(-1.0, 1.0, self.n_params)
        return np.asarray(self.truth) + np.asarray(self.p0_scale) * u

    def xdata(self, n: int) -> np.ndarray:
        kind, lo, hi = self.x_grid
        if kind == "log":
            return np.logspace(lo, hi, n)
        return np.linspace(lo, hi, n)

    def ydata(self, x: np.ndarray, seed: int) -> np.ndarray:
        """Noisy observations; the noise stream depends on (model, N, seed) only."""
        rng = np.random.default_rng([self.seed, x.size, seed])
        y = self.f_np(x, *self.truth)
        y += self.noise * rng.standard_normal(x.size)
        return y

    def f_jax(self) -> Callable:
        return _jax_models()[self.name]

    def describe(self) -> dict:
        return {
            "description": self.description,
            "params": list(self.param_names),
            "truth": list(self.truth),
            "p0": self.p0().tolist(),
            "noise_sigma": self.noise,
            "x_grid": list(self.x_grid),
        }


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        Problem(
            name="exp",
            description="a*exp(-b*x) + c on x in [0, 5]",
            param_names=("a", "b", "c"),
            truth=(2.5, 1.3, 0.5),
            p0_scale=(0.5, 0.3, 0.2),
            noise=0.02,
            x_grid=("lin", 0.0, 5.0),
            f_np=_exp_np,
            jac_np=_exp_jac_np,
        ),
        Problem(
            name="gauss",
            description="a*exp(-(x-mu)^2/(2 s^2)) + c on x in [-5, 5]",
            param_names=("a", "mu", "s", "c"),
            truth=(3.0, 0.4, 0.8, 0.2),
            p0_scale=(0.6, 0.2, 0.15, 0.1),
            noise=0.05,
            x_grid=("lin", -5.0, 5.0),
            f_np=_gauss_np,
            jac_np=_gauss_jac_np,
        ),
        Problem(
            name="peaks3",
            description="three Gaussian peaks (amp, center, width) + offset on x in [0, 10]",
            param_names=("a1", "m1", "s1", "a2", "m2", "s2", "a3", "m3", "s3", "c"),
            truth=(2.0, 2.0, 0.5, 1.5, 5.0, 0.7, 1.0, 7.5, 0.4, 0.1),
            p0_scale=(0.3, 0.15, 0.1, 0.3, 0.15, 0.1, 0.2, 0.1, 0.08, 0.05),
            noise=0.03,
            x_grid=("lin", 0.0, 10.0),
            f_np=_peaks3_np,
            jac_np=_peaks3_jac_np,
        ),
        Problem(
            name="logistic4",
            description="4PL dose-response top + (bottom-top)/(1+(x/ec50)^hill), x log-spaced",
            param_names=("bottom", "hill", "ec50", "top"),
            truth=(0.05, 1.2, 1.5, 1.0),
            p0_scale=(0.03, 0.3, 0.5, 0.2),
            noise=0.02,
            x_grid=("log", -2.0, 2.0),
            f_np=_logistic4_np,
            jac_np=_logistic4_jac_np,
        ),
        Problem(
            name="dampsin",
            description="damped oscillation a*exp(-x/tau)*sin(omega*x+phi) + c on x in [0, 10]",
            param_names=("a", "tau", "omega", "phi", "c"),
            truth=(1.5, 3.0, 2.0, 0.3, 0.1),
            p0_scale=(0.2, 0.4, 0.05, 0.1, 0.05),
            noise=0.02,
            x_grid=("lin", 0.0, 10.0),
            f_np=_dampsin_np,
            jac_np=_dampsin_jac_np,
        ),
    )
}
#: The issue's four models, run by default; the others on request (--models).
DEFAULT_MODELS = ("exp", "gauss", "peaks3", "logistic4")


# --------------------------------------------------------------------------------------
# Small helpers shared by the workers
# --------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform == "darwin" else float(r)  # bytes on macOS


class PeakMemory:
    """Peak additional resident memory of the enclosed block, in MiB."""

    def __enter__(self) -> PeakMemory:
        self.method = "ru_maxrss-delta"
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the RSS high-water mark to the current RSS
            rss = _proc_status_kib("VmRSS")
            if rss is not None:
                self.method = "VmHWM-after-reset"
                self._before = float(rss)
        except OSError:
            pass
        if self.method == "ru_maxrss-delta":
            self._before = _maxrss_kib()
        return self

    def __exit__(self, *exc) -> None:
        after = _proc_status_kib("VmHWM") if self.method == "VmHWM-after-reset" else None
        if after is None:
            after = _maxrss_kib()
        self.mib = max(0.0, (after - self._before) / 1024.0)


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


#: Up to this N a cell times ``SMALL_N_REPEAT_FACTOR`` times as many warm fits.
SMALL_N = 100_000
SMALL_N_REPEAT_FACTOR = 5


def _max_repeats(n: int, repeats: int) -> int:
    """Static cap on warm repeats (the time budget may stop earlier).

    Fits of up to :data:`SMALL_N` points take a few milliseconds (curvax) to a few
    hundred (SciPy), and the first few after a warm-up are still settling (curvax at
    10² points, 2-core VM: 1.37, 0.79, 0.67, 0.63 ms for the first four warm fits,
    0.31 ms after a hundred; at 10⁵ points: 2.58, 1.96, 1.53 ms, then 1.3–1.4 ms after
    a few dozen); so there, both libraries time :data:`SMALL_N_REPEAT_FACTOR` times as
    many fits, which steadies the median at a cost of a few seconds per cell at most
    (the budget still stops SciPy's slower methods early).

    At least three wherever the budget allows: the first fit of a new 10⁷-point data set
    in a process touches memory the process has not used before, which on the 2-core VM
    is several times slower than touching it again (a fresh process filling two new
    100 MB arrays: 218 ms the first time, 46 ms each time after — NumPy alone, no JAX),
    and a single timed fit would report that instead of the warm time.
    """
    if n >= 1_000_000:
        return min(repeats, 3)
    if n <= SMALL_N:
        return repeats * SMALL_N_REPEAT_FACTOR
    return repeats


def _finite_list(a) -> list:
    return [float(v) if math.isfinite(float(v)) else str(float(v)) for v in np.ravel(a)]


def _write_json(path: str | Path, obj: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, default=str)
        fh.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Workers (each runs in its own fresh process)
# --------------------------------------------------------------------------------------


def _import_library(lib: str):
    """Import curvax (from this checkout first) or nlsq; return (module, curve_fit)."""
    if lib == "curvax":
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        import curvax as mod

        return mod, mod.curve_fit
    if lib == "nlsq":
        import nlsq as mod

        return mod, mod.curve_fit
    raise ValueError(f"unknown library {lib!r}")


def _jax_info() -> dict:
    import jax

    info: dict = {"jax": jax.__version__}
    try:
        import jaxlib

        info["jaxlib"] = jaxlib.__version__
    except Exception:  # pragma: no cover - depends on the install
        info["jaxlib"] = None
    devs = jax.devices()
    info["backend"] = jax.default_backend()
    info["devices"] = [str(d) for d in devs]
    info["device_kind"] = devs[0].device_kind if devs else None
    info["x64_enabled_globally"] = bool(jax.config.jax_enable_x64)
    try:
        info["compilation_cache_dir"] = jax.config.jax_compilation_cache_dir
    except AttributeError:
        info["compilation_cache_dir"] = None
    return info


def worker_probe(args) -> dict:
    """Can the library be imported, and what does this interpreter run on?"""
    out: dict = {"lib": args.lib, "python": sys.version.split()[0], "executable": sys.executable}
    try:
        mod, cf = _import_library(args.lib)
    except Exception as e:
        out["ok"] = False
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    out["ok"] = callable(cf)
    out["file"] = getattr(mod, "__file__", None)
    out["version"] = getattr(mod, "__version__", None)
    out.update(_jax_info())
    if args.lib == "curvax":  # curvax's compiled Gram product on a CPU, or why not
        from curvax.core import gram_kernel

        out["gram_kernel"] = gram_kernel.status()
    out["numpy"] = np.__version__
    try:
        import scipy

        out["scipy"] = scipy.__version__
    except ImportError:
        out["scipy"] = None
    return out


def _quiet_nlsq_logging() -> None:
    """nlsq logs every iteration at INFO level; keep that I/O out of the timings."""
    import logging

    root = logging.getLogger("nlsq")
    root.propagate = False  # its own console handler stays (at WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name == "nlsq" or name.startswith("nlsq."):
            logging.getLogger(name).setLevel(logging.WARNING)


class CompileCounter:
    """Counts JAX tracing and XLA compilations (and their seconds) via jax.monitoring.

    Load-independent diagnostics: a warm fit should compile nothing.
    """

    def __init__(self) -> None:
        self.events = {
            "/jax/core/compile/jaxpr_trace_duration": "trace",
            "/jax/core/compile/backend_compile_duration": "compile",
        }
        self.counts = {"trace": 0, "compile": 0}
        self.seconds = {"trace": 0.0, "compile": 0.0}
        try:
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(self._listener)
            self.available = True
        except (ImportError, AttributeError):
            self.available = False

    def _listener(self, event: str, duration: float, *args, **kwargs) -> None:
        kind = self.events.get(event)
        if kind is not None:
            self.counts[kind] += 1
            self.seconds[kind] += duration

    def snapshot(self) -> dict:
        return {"counts": dict(self.counts), "seconds": dict(self.seconds)}

    def since(self, snap: dict) -> dict | None:
        if not self.available:
            return None
        return {
            "n_traces": self.counts["trace"] - snap["counts"]["trace"],
            "n_compiles": self.counts["compile"] - snap["counts"]["compile"],
            "trace_s": self.seconds["trace"] - snap["seconds"]["trace"],
            "compile_s": self.seconds["compile"] - snap["seconds"]["compile"],
        }


def worker_jax(args) -> dict:
    """COLD first fit in this fresh process, then WARM fits of new data of the same shape."""
    prob = PROBLEMS[args.model]
    n = args.n
    out: dict = {"lib": args.lib, "model": prob.name, "n": n}

    t = time.perf_counter()
    mod, curve_fit = _import_library(args.lib)
    out["import_s"] = time.perf_counter() - t
    out["version"] = getattr(mod, "__version__", None)

    import jax

    if args.lib == "nlsq":
        # nlsq is a separate process and a separate interpreter: a global float64 switch
        # here is harmless and makes the comparison float64 against float64.
        jax.config.update("jax_enable_x64", True)
        _quiet_nlsq_logging()
    t = time.perf_counter()
    jax.devices()  # start the backend outside the timed region
    out["backend_init_s"] = time.perf_counter() - t
    out["backend"] = jax.default_backend()

    f = prob.f_jax()
    p0 = prob.p0()
    kw = args.curvax_kwargs if args.lib == "curvax" else {}
    out["kwargs"] = kw
    x = prob.xdata(n)
    y = prob.ydata(x, seed=0)

    compiles = CompileCounter()
    snap = compiles.snapshot()
    scipy_linalg_before = "scipy.linalg" in sys.modules
    with PeakMemory() as mem:
        t = time.perf_counter()
        popt, pcov = curve_fit(f, x, y, p0=p0, **kw)
        popt = np.asarray(popt)  # forces completion of any asynchronous work
        pcov = np.asarray(pcov)
        cold = time.perf_counter() - t
    out["cold_s"] = cold
    # jaxlib loads its CPU LAPACK kernels from SciPy on the first lowering of a LAPACK
    # call: importing scipy.linalg then falls inside the cold fit (~0.1-0.2 s here).
    out["cold_imported_scipy_linalg"] = (not scipy_linalg_before) and "scipy.linalg" in sys.modules
    out["cold_compiles"] = compiles.since(snap)
    out["cold_peak_mib"] = mem.mib
    out["mem_method"] = mem.method
    out["popt"] = _finite_list(popt)
    out["popt_dtype"] = str(popt.dtype)
    out["perr"] = _finite_list(np.sqrt(np.abs(np.diag(pcov))))
    del y

    if args.lib == "nlsq":
        _quiet_nlsq_logging()  # again: nlsq creates some loggers lazily during a fit
    times: list[float] = []
    peaks: list[float] = []
    cap = _max_repeats(n, args.repeats)
    snap = compiles.snapshot()
    for seed in range(1, cap + 1):
        y = prob.ydata(x, seed=seed)
        with PeakMemory() as mem:
            t = time.perf_counter()
            p, c = curve_fit(f, x, y, p0=p0, **kw)
            np.asarray(p), np.asarray(c)
            times.append(time.perf_counter() - t)
        peaks.append(mem.mib)
        del y, p, c
        if sum(times) >= args.budget:
            break
    out["warm_times_s"] = times
    out["warm_s"] = _median(times)
    out["warm_min_s"] = min(times) if times else None
    out["warm_peak_mib"] = max(peaks) if peaks else None
    out["warm_compiles"] = compiles.since(snap)  # over all warm fits; expected 0

    if out["backend"] != "cpu":
        # Data already on the accelerator (jax arrays placed before the clock starts):
        # the fit without the host-to-device copy of x and y.
        with jax.enable_x64(True):
            x_dev = jax.device_put(x)
            y_dev = jax.device_put(prob.ydata(x, seed=0))
        # Untimed first fit of device arrays: jit specialises on where its arguments
        # lie, so this compiles once more (and the small device-side checks) — a cold
        # fit, not a warm one.
        t = time.perf_counter()
        p, c = curve_fit(f, x_dev, y_dev, p0=p0, **kw)
        np.asarray(p), np.asarray(c)
        out["cold_device_data_s"] = time.perf_counter() - t
        times = []
        for seed in range(1, cap + 1):
            with jax.enable_x64(True):
                y_dev = jax.device_put(prob.ydata(x, seed=seed))
                y_dev.block_until_ready()
            t = time.perf_counter()
            p, c = curve_fit(f, x_dev, y_dev, p0=p0, **kw)
            np.asarray(p), np.asarray(c)
            times.append(time.perf_counter() - t)
            del y_dev, p, c
            if sum(times) >= args.budget:
                break
        out["warm_device_data_times_s"] = times
        out["warm_device_data_s"] = _median(times)

    # Diagnostics, untimed: one more fit of the seed-0 data with full_output=True.
    if out["warm_s"] is not None and out["warm_s"] < args.budget / 4:
        y = prob.ydata(x, seed=0)
        try:
            _, _, info, mesg, ier = curve_fit(f, x, y, p0=p0, full_output=True, **kw)
            out["nfev"] = int(np.asarray(info["nfev"])) if "nfev" in info else None
            out["ier"] = int(np.asarray(ier))
            out["mesg"] = str(mesg)[:300]
        except Exception as e:
            out["full_output_error"] = _one_line(f"{type(e).__name__}: {e}")
    return out


def _scipy_fit(curve_fit, prob: Problem, x, y, method: str, use_jac: bool, **kw):
    if use_jac:
        kw["jac"] = prob.jac_np
    return curve_fit(prob.f_np, x, y, p0=prob.p0(), method=method, **kw)


def worker_scipy(args) -> dict:
    """SciPy curve_fit, method lm and trf, finite-difference and analytic Jacobian."""
    import warnings

    import scipy
    from scipy.optimize import curve_fit

    prob = PROBLEMS[args.model]
    n = args.n
    out: dict = {"lib": "scipy", "version": scipy.__version__, "model": prob.name, "n": n}
    variants = [("lm", False), ("trf", False)]
    if args.analytic_jac:
        variants += [("lm", True), ("trf", True)]

    # Warm-up on a small problem so that lazy imports / first-call costs are excluded.
    xs = prob.xdata(200)
    ys = prob.ydata(xs, seed=0)
    for method, use_jac in variants:
        _scipy_fit(curve_fit, prob, xs, ys, method, use_jac)

    x = prob.xdata(n)
    cap = _max_repeats(n, args.repeats)
    for method, use_jac in variants:
        key = method + ("_jac" if use_jac else "")
        res: dict = {}
        y = prob.ydata(x, seed=0)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with PeakMemory() as mem:
                    t = time.perf_counter()
                    popt, pcov, info, mesg, ier = _scipy_fit(
                        curve_fit, prob, x, y, method, use_jac, full_output=True)
                    res["first_s"] = time.perf_counter() - t
            res["nfev"] = int(info["nfev"]) if "nfev" in info else None
            res["ier"] = int(ier)
            res["mesg"] = str(mesg)[:300]
            res["peak_mib"] = mem.mib
            res["mem_method"] = mem.method
            res["popt"] = _finite_list(popt)
            res["perr"] = _finite_list(np.sqrt(np.abs(np.diag(pcov))))
            res["warnings"] = sorted({str(w.message)[:200] for w in caught})
            del y
            times: list[float] = []
            if res["first_s"] >= args.budget:
                # Very slow (big N): SciPy has nothing to compile, so after the small
                # warm-up the seed-0 fit already is a warm fit; time nothing more.
                times.append(res["first_s"])
                res["timed_on_seed0_only"] = True
            n_more = 0 if times else cap
            for seed in range(1, n_more + 1):
                y = prob.ydata(x, seed=seed)
                t = time.perf_counter()
                _scipy_fit(curve_fit, prob, x, y, method, use_jac)
                times.append(time.perf_counter() - t)
                del y
                if sum(times) >= args.budget:
                    break
            res["warm_times_s"] = times
            res["warm_s"] = _median(times)
            res["warm_min_s"] = min(times) if times else None
        except Exception as e:  # report, don't crash: the other variants still run
            res["error"] = f"{type(e).__name__}: {e}"
        out[key] = res
    return out


def worker_main(args) -> int:
    fn = {"probe": worker_probe, "jax": worker_jax, "scipy": worker_scipy}[args.worker]
    try:
        out = fn(args)
    except BaseException as e:
        out = {
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc()[-4000:],
        }
    out["worker_maxrss_mib"] = _maxrss_kib() / 1024.0
    _write_json(args.result_file, out)
    return 0


# --------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------


def _run_worker(python: str, argv: list[str], timeout: float) -> dict:
    """Run this file in worker mode in a fresh process; return its JSON result."""
    fd, path = tempfile.mkstemp(prefix="curvax-bench-", suffix=".json")
    os.close(fd)
    cmd = [python, str(Path(__file__).resolve()), *argv, "--result-file", path]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.unlink(path)
        return {"error": f"timeout after {timeout:.0f} s"}
    wall = time.perf_counter() - t
    try:
        with open(path) as fh:
            text = fh.read()
        res = json.loads(text) if text.strip() else None
    except (OSError, json.JSONDecodeError):
        res = None
    finally:
        if os.path.exists(path):
            os.unlink(path)
    if res is None:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        res = {"error": f"worker exited with code {proc.returncode} and no result", "stderr": tail}
    elif proc.returncode != 0 and "error" not in res:
        res["error"] = f"worker exited with code {proc.returncode}"
    res["process_wall_s"] = wall
    if proc.stderr.strip():
        res["stderr_tail"] = proc.stderr.strip()[-1500:]
    return res


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cpu_id() -> dict | None:
    """Family, model and vector extensions from ``/proc/cpuinfo`` (Linux): a VM's model
    name can stay "AMD EPYC" across processor generations (family 25 is Zen 3/4, 26 is
    Zen 5), which round and time differently."""
    fields: dict = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("cpu family", "model", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        return None
    flags = fields.get("flags", "").split()
    return {
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "vector_extensions": sorted(f for f in flags if f.startswith(("avx", "amx", "sve"))),
    }


def _mem_total_gib() -> float | None:
    kib = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    break
    except OSError:
        return None
    return round(kib / 2**20, 2) if kib else None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _git_commit() -> str | None:
    """Commit of this checkout, read from .git files (no git command is run).

    In a linked worktree (``git worktree add``) ``.git`` is a file naming the worktree's
    own git folder, which holds its HEAD; branch refs then live in the main repository's
    folder (``commondir``).
    """
    git = REPO_ROOT / ".git"
    try:
        if git.is_file():  # "gitdir: <path>"
            git = (REPO_ROOT / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if (git / "commondir").exists():
            common = (git / (git / "commondir").read_text().strip()).resolve()
            if head.startswith("ref:"):
                git = common
        if head.startswith("ref:"):
            ref = head.split(None, 1)[1]
            ref_file = git / ref
            if ref_file.exists():
                return ref_file.read_text().strip()
            packed = git / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
            return None
        return head
    except OSError:
        return None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_description(probe: dict) -> dict:
    from importlib import metadata

    def ver(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    env_keys = ("JAX_PLATFORMS", "XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "JAX_COMPILATION_CACHE_DIR")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_id": _cpu_id(),
        "cpu_count": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "mem_total_gib": _mem_total_gib(),
        "loadavg_at_start": _loadavg(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "numpy": np.__version__,
        "scipy": probe.get("scipy") or ver("scipy"),
        "jax": probe.get("jax"),
        "jaxlib": probe.get("jaxlib"),
        "jax_backend": probe.get("backend"),
        "jax_devices": probe.get("devices"),
        "jax_device_kind": probe.get("device_kind"),
        "jax_compilation_cache_dir": probe.get("compilation_cache_dir"),
        "curvax_version": probe.get("version"),
        "curvax_file": probe.get("file"),
        "curvax_gram_kernel": probe.get("gram_kernel"),
        "curvax_git_commit": _git_commit(),
        # curvax's own switches (e.g. CURVAX_FAST_POW=0) change what is measured
        "env": {
            k: v for k, v in sorted(os.environ.items())
            if k in env_keys or k.startswith("CURVAX_")
        },
    }


def machine_kind(machine: dict) -> str:
    backend = machine.get("jax_backend") or "cpu"
    if backend == "cpu":
        return f"cpu-{machine.get('usable_cores')}core"
    kind = (machine.get("jax_device_kind") or backend).lower()
    slug = "".join(ch if ch.isalnum() else "-" for ch in kind).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{backend}-{slug}"


def _rel_diff(a: list, b: list) -> float | None:
    try:
        a_arr = np.asarray(a, dtype=float)
        b_arr = np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return None
    if a_arr.shape != b_arr.shape:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(a_arr - b_arr) / np.maximum(np.abs(b_arr), 1e-300)
    return float(np.max(r)) if np.all(np.isfinite(r)) else math.inf


def _sigma_diff(a: list, b: list, perr: list) -> float | None:
    try:
        d = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
        s = np.asarray(perr, dtype=float)
    except (TypeError, ValueError):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        r = d / s
    return float(np.max(r)) if np.all(np.isfinite(r)) else None


def _one_line(msg: object, limit: int = 240) -> str:
    text = " ".join(str(msg).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def evaluate_cell(cell: dict) -> None:
    """Derived quantities of one (model, N) cell: ratio, agreement, flags."""
    cvx = cell.get("curvax") or {}
    sp = cell.get("scipy") or {}
    flags: list[str] = []
    if cvx.get("error"):
        flags.append(f"curvax error: {_one_line(cvx['error'])}")
    if sp.get("skipped"):
        pass
    elif sp.get("error"):
        flags.append(f"scipy error: {_one_line(sp['error'])}")

    fd = {m: sp[m]["warm_s"] for m in ("lm", "trf") if sp.get(m, {}).get("warm_s")}
    best_any = {
        m: sp[m]["warm_s"]
        for m in ("lm", "trf", "lm_jac", "trf_jac")
        if sp.get(m, {}).get("warm_s")
    }
    cw = cvx.get("warm_s")
    cell["scipy_best"] = min(fd.items(), key=lambda kv: kv[1])[0] if fd else None
    cell["ratio"] = (min(fd.values()) / cw) if (fd and cw) else None
    cell["ratio_vs_analytic_jac"] = (min(best_any.values()) / cw) if (best_any and cw) else None

    diffs = {}
    for m in ("lm", "trf", "lm_jac", "trf_jac"):
        ref = sp.get(m, {})
        if "popt" in ref and "popt" in cvx:
            diffs[m] = {
                "max_rel_diff": _rel_diff(cvx["popt"], ref["popt"]),
                "max_diff_in_sigma": _sigma_diff(cvx["popt"], ref["popt"], ref.get("perr", [])),
            }
        if ref.get("error"):
            flags.append(f"scipy {m} error: {_one_line(ref['error'])}")
    cell["agreement"] = diffs
    ref_key = "lm" if "lm" in diffs else ("trf" if "trf" in diffs else None)
    cell["max_rel_diff_ref"] = ref_key
    cell["max_rel_diff"] = diffs[ref_key]["max_rel_diff"] if ref_key else None
    mrd = cell["max_rel_diff"]
    if mrd is not None and not mrd <= AGREEMENT_RTOL:
        flags.append(
            f"curvax popt differs from scipy {ref_key} popt by max rel {mrd:.3g} "
            f"(> {AGREEMENT_RTOL:g}); in units of scipy's std. error: "
            f"{diffs[ref_key]['max_diff_in_sigma']}"
        )
    wc = cvx.get("warm_compiles") or {}
    if wc.get("n_compiles"):
        flags.append(f"curvax compiled {wc['n_compiles']} time(s) during the warm fits "
                     f"({wc['compile_s']:.2f} s): new data of the same shape recompiles")
    if cvx.get("popt_dtype") and cvx["popt_dtype"] != "float64":
        flags.append(f"curvax popt dtype is {cvx['popt_dtype']}, expected float64")

    nl = cell.get("nlsq")
    if nl is not None:
        if nl.get("error"):
            flags.append(f"nlsq error: {_one_line(nl['error'])}")
        ref = sp.get(ref_key, {}) if ref_key else {}
        if "popt" in nl and "popt" in ref:
            cell["nlsq_max_rel_diff"] = _rel_diff(nl["popt"], ref["popt"])
        elif "popt" in nl and "popt" in cvx:
            cell["nlsq_max_rel_diff_vs_curvax"] = _rel_diff(nl["popt"], cvx["popt"])
        if fd and nl.get("warm_s"):
            cell["nlsq_ratio"] = min(fd.values()) / nl["warm_s"]
        if cw and nl.get("warm_s"):
            cell["nlsq_over_curvax"] = nl["warm_s"] / cw
        if cvx.get("warm_device_data_s") and nl.get("warm_device_data_s"):
            cell["nlsq_over_curvax_device_data"] = (
                nl["warm_device_data_s"] / cvx["warm_device_data_s"]
            )
    cell["flags"] = flags


# ---- formatting ----------------------------------------------------------------------


def _fmt_t(v) -> str:
    if v is None:
        return "-"
    if v < 1e-3:
        return f"{v * 1e6:.0f} us"
    if v < 1.0:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def _fmt_n(n: int) -> str:
    e = math.log10(n)
    return f"1e{round(e)}" if abs(e - round(e)) < 1e-9 else f"{n:.3g}"


def _fmt_ratio(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}x" if v >= 0.1 else f"{v:.2g}x"


def _fmt_diff(v) -> str:
    if v is None:
        return "-"
    s = f"{v:.1e}"
    return s + (" !" if not v <= AGREEMENT_RTOL else "")


def _fmt_mb(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _status(d: dict | None, key: str = "warm_s") -> str | None:
    """'skipped' / 'error' / 'timeout' for a missing measurement, else None."""
    if d is None:
        return "-"
    if d.get("skipped"):
        return "skipped"
    if d.get("error"):
        return "timeout" if "timeout" in str(d["error"]) else "error"
    if d.get(key) is None:
        return "-"
    return None


def table_rows(cells: list[dict], with_nlsq: bool) -> tuple[list[str], list[list[str]]]:
    head = ["model", "N", "cvx cold", "cvx warm", "scipy lm", "scipy trf", "scipy/cvx",
            "max rel diff", "cvx MB", "scipy MB"]
    with_dev = any((c.get("curvax") or {}).get("warm_device_data_s") for c in cells)
    if with_dev:
        head += ["cvx warm dev"]
    if with_nlsq:
        head += ["nlsq cold", "nlsq warm", "scipy/nlsq", "nlsq/cvx"]
        if with_dev:
            head += ["nlsq warm dev", "nlsq/cvx dev"]
    rows = []
    for c in cells:
        cvx = c.get("curvax")
        sp = c.get("scipy") or {}
        row = [c["model"], _fmt_n(c["n"])]
        row.append(_status(cvx, "cold_s") or _fmt_t(cvx["cold_s"]))
        row.append(_status(cvx) or _fmt_t(cvx["warm_s"]))
        for m in ("lm", "trf"):
            if sp.get("skipped"):
                row.append("skipped")
            else:
                row.append(_status(sp.get(m) if "error" not in sp else sp) or
                           _fmt_t(sp[m]["warm_s"]))
        row.append(_fmt_ratio(c.get("ratio")))
        row.append(_fmt_diff(c.get("max_rel_diff")))
        row.append(_fmt_mb(cvx.get("warm_peak_mib")) if cvx else "-")
        sp_peaks = [sp[m]["peak_mib"] for m in ("lm", "trf") if "peak_mib" in sp.get(m, {})]
        row.append("skipped" if sp.get("skipped") else _fmt_mb(max(sp_peaks) if sp_peaks else None))
        if with_dev:
            row.append(_status(cvx, "warm_device_data_s") or _fmt_t(cvx["warm_device_data_s"]))
        if with_nlsq:
            nl = c.get("nlsq")
            row.append(_status(nl, "cold_s") or _fmt_t(nl["cold_s"]))
            row.append(_status(nl) or _fmt_t(nl["warm_s"]))
            row.append(_fmt_ratio(c.get("nlsq_ratio")))
            row.append(_fmt_ratio(c.get("nlsq_over_curvax")))
            if with_dev:
                row.append(_status(nl, "warm_device_data_s") or _fmt_t(nl["warm_device_data_s"]))
                row.append(_fmt_ratio(c.get("nlsq_over_curvax_device_data")))
        rows.append(row)
    return head, rows


def format_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    left = {0}

    def fmt(r):
        return "  ".join(
            (v.ljust(w) if i in left else v.rjust(w)) for i, (v, w) in enumerate(zip(r, widths))
        )

    lines = [fmt(head), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[int]:
    sizes = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        v = float(tok)
        if not (v >= 1 and v == int(v)):
            raise argparse.ArgumentTypeError(f"bad size {tok!r}")
        sizes.append(int(v))
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def _parse_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in models if m not in PROBLEMS]
    if bad or not models:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {bad}; choose from {', '.join(PROBLEMS)}"
        )
    return models


def _parse_kwargs(text: str) -> dict:
    try:
        kw = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(kw, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"block_size\": 8192}'")
    return kw


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark curvax.curve_fit against scipy.optimize.curve_fit "
        "(and optionally nlsq). Not a test: nothing is asserted.",
    )
    p.add_argument("--sizes", type=_parse_sizes, default=None,
                   help="comma-separated N values, e.g. 1e2,1e3,1e6 (default 1e2..1e7; "
                        "--quick: 1e2..1e5)")
    p.add_argument("--models", type=_parse_models, default=None,
                   help=f"comma-separated subset of {','.join(PROBLEMS)} (default: "
                        f"{','.join(DEFAULT_MODELS)})")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"max warm repeats per cell (default {DEFAULT_REPEATS}, --quick "
                        f"{QUICK_REPEATS}); capped at 3 for N>=1e6")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timed warm fits per library/method and cell after which "
                        f"no more repeats are started (default {DEFAULT_BUDGET_S}, --quick "
                        f"{QUICK_BUDGET_S})")
    p.add_argument("--quick", action="store_true",
                   help=f"N up to 1e5 with {QUICK_REPEATS} repeats (a few minutes)")
    p.add_argument("--scipy-max-n", type=float, default=1e7,
                   help="skip SciPy above this N (recorded as 'skipped'; default 1e7)")
    p.add_argument("--no-analytic-jac", dest="analytic_jac", action="store_false",
                   help="do not also time SciPy with the analytic numpy Jacobian")
    p.add_argument("--nlsq-python", default=None, metavar="PATH",
                   help="python interpreter with the 'nlsq' package: adds nlsq columns "
                        "(run in that interpreter through a subprocess)")
    p.add_argument("--out", default=None,
                   help="JSON output path (default benchmarks/results/<machine>-<date>.json)")
    p.add_argument("--curvax-kwargs", type=_parse_kwargs, default={}, metavar="JSON",
                   help='extra keyword arguments for curvax.curve_fit as a JSON object, '
                        'e.g. \'{"block_size": 65536}\' (default: none, library defaults)')
    p.add_argument("--worker-timeout", type=float, default=1800.0,
                   help="seconds before a worker process is killed (default 1800)")
    # Internal: worker mode.
    p.add_argument("--worker", choices=("probe", "jax", "scipy"), help=argparse.SUPPRESS)
    p.add_argument("--lib", default="curvax", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.budget is None:
        args.budget = QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S
    if args.worker:
        return worker_main(args)

    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    models = args.models or list(DEFAULT_MODELS)
    if args.repeats < 1:
        print("--repeats must be >= 1", file=sys.stderr)
        return 1

    common = ["--repeats", str(args.repeats), "--budget", str(args.budget)]
    probe = _run_worker(sys.executable, ["--worker", "probe", "--lib", "curvax"], 600)
    if not probe.get("ok"):
        why = probe.get("error") or "curvax has no callable curve_fit"
        print(
            "bench_fit: cannot benchmark: `import curvax; curvax.curve_fit` failed in "
            f"{sys.executable}\n  ({why})\n"
            f"  Run from a checkout where curvax.curve_fit exists ({REPO_ROOT}) or "
            "install curvax into this interpreter.",
            file=sys.stderr,
        )
        return EXIT_NO_CURVAX

    nlsq_probe = None
    if args.nlsq_python:
        nlsq_probe = _run_worker(args.nlsq_python, ["--worker", "probe", "--lib", "nlsq"], 600)
        if not nlsq_probe.get("ok"):
            print(f"bench_fit: nlsq unavailable in {args.nlsq_python}: "
                  f"{nlsq_probe.get('error') or nlsq_probe.get('stderr')}; "
                  "nlsq columns will show 'error'.", file=sys.stderr)

    machine = machine_description(probe)
    date = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    out_path = Path(args.out) if args.out else (
        RESULTS_DIR / f"{machine_kind(machine)}-{date}{'-quick' if args.quick else ''}.json"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)

    report: dict = {
        "benchmark": "curvax benchmarks/bench_fit.py",
        "schema_version": 1,
        "argv": sys.argv[1:] if argv is None else argv,
        "config": {
            "sizes": sizes, "models": models, "repeats": args.repeats, "budget_s": args.budget,
            "quick": args.quick, "scipy_max_n": args.scipy_max_n,
            "analytic_jac": args.analytic_jac, "agreement_rtol": AGREEMENT_RTOL,
            "nlsq_python": args.nlsq_python, "curvax_kwargs": args.curvax_kwargs,
        },
        "machine": machine,
        "nlsq": nlsq_probe,
        "problems": {m: PROBLEMS[m].describe() for m in models},
        "cells": [],
    }

    load = machine["loadavg_at_start"]
    if load and load[0] > 0.5 * machine["usable_cores"]:
        print(f"bench_fit: WARNING: the machine is busy (1-min load average {load[0]} on "
              f"{machine['usable_cores']} cores); timings will be noisy. The load before "
              "each cell is recorded in the JSON (loadavg_before).", file=sys.stderr)
    t_start = time.perf_counter()
    print(f"bench_fit: curvax {probe.get('version')} from {probe.get('file')}; "
          f"jax {probe.get('jax')} on {probe.get('backend')} {probe.get('devices')}",
          file=sys.stderr)
    cells: list[dict] = report["cells"]
    for model in models:
        for n in sizes:
            cell: dict = {"model": model, "n": n, "loadavg_before": _loadavg()}
            base = ["--model", model, "--n", str(n), *common]
            cvx_kw = ["--curvax-kwargs", json.dumps(args.curvax_kwargs)]
            cell["curvax"] = _run_worker(
                sys.executable, ["--worker", "jax", "--lib", "curvax", *base, *cvx_kw],
                args.worker_timeout)
            if n > args.scipy_max_n:
                cell["scipy"] = {"skipped": f"N > --scipy-max-n={args.scipy_max_n:g}"}
            else:
                extra = [] if args.analytic_jac else ["--no-analytic-jac"]
                cell["scipy"] = _run_worker(
                    sys.executable, ["--worker", "scipy", *base, *extra], args.worker_timeout)
            if args.nlsq_python:
                if nlsq_probe and nlsq_probe.get("ok"):
                    cell["nlsq"] = _run_worker(
                        args.nlsq_python, ["--worker", "jax", "--lib", "nlsq", *base],
                        args.worker_timeout)
                else:
                    cell["nlsq"] = {"error": "nlsq unavailable"}
            evaluate_cell(cell)
            cells.append(cell)
            head, rows = table_rows([cell], bool(args.nlsq_python))
            print("  " + " | ".join(f"{h}={v}" for h, v in zip(head, rows[0])),
                  f"[{time.perf_counter() - t_start:.0f} s]", file=sys.stderr)
            report["elapsed_s"] = time.perf_counter() - t_start
            _write_json(out_path, report)

    head, rows = table_rows(cells, bool(args.nlsq_python))
    table = format_table(head, rows)
    report["table"] = table.splitlines()
    report["elapsed_s"] = time.perf_counter() - t_start
    _write_json(out_path, report)

    print()
    print(f"curvax {probe.get('version')}  |  {machine['cpu_model']}  |  "
          f"{machine['usable_cores']} cores  |  jax {machine['jax']} "
          f"({machine['jax_backend']})  |  numpy {machine['numpy']}  scipy {machine['scipy']}")
    print(table)
    flagged = [(c["model"], c["n"], f) for c in cells for f in c["flags"]]
    if flagged:
        print("\nFlags:")
        for model, n, f in flagged:
            print(f"  {model} N={_fmt_n(n)}: {f}")
    loads = [c["loadavg_before"][0] for c in cells if c.get("loadavg_before")]
    if loads and max(loads) > 0.5 * machine["usable_cores"]:
        print(f"\nNote: the 1-min load average before a cell reached {max(loads)} on "
              f"{machine['usable_cores']} cores: other work was running, timings are noisy.")
    print(f"\nwall time {report['elapsed_s']:.0f} s; results written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
