#!/usr/bin/env python
"""Where a warm CPU fit's time goes, against what the machine itself can do (issue #9).

A benchmark script, not a test: it measures and reports, and asserts nothing.

Usage (from the repository root)::

    python benchmarks/bench_roofline.py                 # the four bench_fit models
    python benchmarks/bench_roofline.py --models exp --sizes 1e5

It measures, in one process on this machine:

1. **The machine**: memory bandwidth (a NumPy copy of 256 MB, read + write counted)
   and the float64 rate of a large matrix product (NumPy's BLAS, all cores).
2. **XLA:CPU, per point**, with curvax's compiler options, for each model of
   ``bench_fit.py`` over 2²⁰ points visited in 4096-point blocks, one core:

   * ``forward``: the model and ``½Σr²`` (no Jacobian);
   * ``gram``: the product ``AAᵀ`` of already formed (p+1)×4096 blocks by XLA's
     matrix product (its rate in GFlop/s; ``2(p+1)²`` flops per point), and
     ``kernel_gram`` the same by curvax's compiled product
     (:mod:`curvax.core.gram_kernel`);
   * ``evaluation``: one whole evaluation as a fit runs it: the fit's own reduction
     (:func:`curvax.core.engine.pointwise_data`, :func:`curvax.core.problem.pointwise_gram`
     of the kernel a fit of 2²⁰ points compiles: its fast float64 operations, rows,
     block size and Gram product), residuals and forward-mode Jacobian ``[J | r]`` of
     each block, then their Gram product.  (Forming the rows alone cannot be timed
     apart: any consumer that keeps XLA from discarding them — a sum, a buffer they are
     added into — costs more than the product it replaces.)  Before session 23 this
     timed a generic evaluation (batched rows, XLA's product, no fast operations).
3. **Fixed costs**: calling a trivial compiled program, one ``jax.pure_callback``
   round trip (the threaded reduction makes one per evaluation), a warm fit of 32
   points.
4. **Per target cell** (model, N): SciPy's faster method and curvax timed here, side by
   side, curvax's evaluation count, and three times for one fit — the issue's target
   (SciPy ÷ 10), the hardware's floor (the evaluations' x and y read at the measured
   bandwidth, or their Gram flops at the measured rate, whichever is longer), and
   XLA:CPU's floor (the evaluations at the measured per-point cost, shared by the
   cores, plus one warm 32-point fit for the fixed costs).

The JSON report (with the machine's description) goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_fit import PROBLEMS, machine_description, machine_kind  # noqa: E402

POINTS = 1 << 20
BLOCK = 4096


def median_time(fn, repeats: int = 15) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine_rates() -> dict:
    src = np.ones(32 * 2**20)  # 256 MB
    dst = np.empty_like(src)
    copy_s = median_time(lambda: np.copyto(dst, src), 5)
    a = np.random.default_rng(0).random((2048, 2048))
    gemm_s = median_time(lambda: a @ a, 3)
    return {
        "bandwidth_gb_s": 2 * src.nbytes / copy_s / 1e9,
        "matmul_gflop_s": 2 * 2048**3 / gemm_s / 1e9,
    }


def xla_rates(name: str) -> dict:
    import jax
    import jax.numpy as jnp

    from curvax.core import gram_kernel
    from curvax.core.engine import Kernel, gram_style, pointwise_data
    from curvax.core.memo import canonical_function
    from curvax.core.problem import pointwise_gram
    from curvax.core.separate_rows import rows_block_size
    from curvax.core.xla_options import cpu_compiler_options

    prob = PROBLEMS[name]
    f = prob.f_jax()
    opts = cpu_compiler_options()
    with jax.enable_x64(True):
        x = jnp.asarray(prob.xdata(POINTS))
        y = jnp.asarray(prob.ydata(np.asarray(x), 0))
        p = jnp.asarray(prob.p0())
        k = p.shape[0] + 1

        def model(xb, q):
            return f(xb, *q)

        def blocks(body, init):
            def step(i, carry):
                xb = jax.lax.dynamic_slice_in_dim(x, i * BLOCK, BLOCK)
                yb = jax.lax.dynamic_slice_in_dim(y, i * BLOCK, BLOCK)
                return body(xb, yb, carry)

            return jax.lax.fori_loop(0, POINTS // BLOCK, step, init)

        def forward(q):
            return blocks(lambda xb, yb, c: c + 0.5 * jnp.sum((model(xb, q) - yb) ** 2), 0.0)

        a = jax.random.normal(jax.random.key(0), (k, POINTS), dtype=jnp.float64)

        def blocks_gram(product):
            def gram(a):
                def step(i, c):
                    return c + product(jax.lax.dynamic_slice_in_dim(a, i * BLOCK, BLOCK, 1))

                return jax.lax.fori_loop(0, POINTS // BLOCK, step, jnp.zeros((k, k)))

            return gram

        # the fit's kernel for 2²⁰ points of this model (as curvax.curve_fit builds it)
        n_free = p.shape[0]
        kernel = Kernel(
            kind="pointwise", fn=canonical_function(f), param_style="args", jac="fwd",
            loss="linear", method="trf", jac_scale=True,
            block_size=rows_block_size(BLOCK, "cpu", n_free),
            gram=gram_style("dot", POINTS, np.float64, None, eligible=True),
        )
        data = {"x": x, "y": y, "mask": jnp.ones(POINTS, bool), "n_real": jnp.int32(POINTS)}
        evaluation = pointwise_gram(pointwise_data(kernel, data, jnp.asarray(1.0)))
        out = {"kernel_gram": gram_kernel.status(), "evaluation_block_size": kernel.block_size}
        for label, fn, arg in (
            ("forward", forward, p),
            ("gram", blocks_gram(gram_kernel.xla_gram_product), a),
            ("kernel_gram", blocks_gram(gram_kernel.block_gram_product), a),
            ("evaluation", evaluation, p),
        ):
            compiled = jax.jit(fn, compiler_options=opts)
            seconds = median_time(lambda c=compiled, v=arg: jax.block_until_ready(c(v)))
            out[f"{label}_ns_per_point"] = seconds / POINTS * 1e9
        out["gram_gflop_s"] = 2 * k * k / out["gram_ns_per_point"]
        out["gram_flops_per_point"] = 2 * k * k
    return out


def fixed_costs() -> dict:
    import jax
    import jax.numpy as jnp

    import curvax

    trivial = jax.jit(lambda v: v + 1.0)
    v = jnp.ones(4)
    dispatch = median_time(lambda: trivial(v).block_until_ready(), 200)

    def host(q):
        return np.asarray(q) * 2.0

    @jax.jit
    def many(q):
        def body(i, q):
            return jax.pure_callback(host, jax.ShapeDtypeStruct(q.shape, q.dtype), q) * 0.5

        return jax.lax.fori_loop(0, 100, body, q)

    callback = median_time(lambda: many(v).block_until_ready(), 10) / 100
    prob = PROBLEMS["exp"]
    x = prob.xdata(32)
    ys = [prob.ydata(x, s) for s in range(8)]
    i = iter(range(10**9))
    fit32 = median_time(
        lambda: curvax.curve_fit(prob.f_jax(), x, ys[next(i) % 8], p0=prob.p0()), 50
    )
    return {"dispatch_us": dispatch * 1e6, "callback_us": callback * 1e6, "fit_32_us": fit32 * 1e6}


def cell(name: str, n: int, rates: dict, machine: dict, fixed: dict, cores: int) -> dict:
    import scipy.optimize

    import curvax

    prob = PROBLEMS[name]
    x = prob.xdata(n)
    ys = [prob.ydata(x, s) for s in range(6)]
    p0 = prob.p0()
    i = iter(range(10**9))
    best = min(
        median_time(
            lambda m=m: scipy.optimize.curve_fit(
                prob.f_np, x, ys[next(i) % 6], p0=p0, method=m
            ),
            3,
        )
        for m in ("lm", "trf")
    )
    res = curvax.fit_curve(prob.f_jax(), x, ys[0], p0=p0)
    warm = median_time(lambda: curvax.curve_fit(prob.f_jax(), x, ys[next(i) % 6], p0=p0), 5)
    nfev = int(res.nfev)
    bytes_per_eval = 16 * n  # x and y, float64
    hardware = nfev * max(
        bytes_per_eval / (machine["bandwidth_gb_s"] * 1e9),
        n * rates["gram_flops_per_point"] / (machine["matmul_gflop_s"] * 1e9),
    )
    xla = nfev * n * rates["evaluation_ns_per_point"] * 1e-9 / cores + fixed["fit_32_us"] * 1e-6
    return {
        "model": name,
        "n": n,
        "scipy_best_s": best,
        "curvax_warm_s": warm,
        "ratio": best / warm,
        "nfev": nfev,
        "target_s": best / 10,
        "hardware_floor_s": hardware,
        "xla_floor_s": xla,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="exp,gauss,peaks3,logistic4")
    ap.add_argument("--sizes", default="1e5,1e6")
    args = ap.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    models = args.models.split(",")
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    from curvax.core.threaded import default_workers

    cores = default_workers()
    hw = machine_rates()
    print(f"memory bandwidth {hw['bandwidth_gb_s']:.1f} GB/s, "
          f"matrix product {hw['matmul_gflop_s']:.1f} GFlop/s ({cores} cores)")
    rates = {}
    for name in models:
        rates[name] = r = xla_rates(name)
        print(f"{name:10s} per point, one core: forward {r['forward_ns_per_point']:.2f} ns, "
              f"Gram {r['gram_ns_per_point']:.2f} ns "
              f"({r['gram_gflop_s']:.1f} GFlop/s; curvax's {r['kernel_gram_ns_per_point']:.2f} "
              f"ns), evaluation {r['evaluation_ns_per_point']:.2f} ns")
    fixed = fixed_costs()
    print(f"fixed: compiled call {fixed['dispatch_us']:.0f} us, pure_callback round trip "
          f"{fixed['callback_us']:.0f} us, warm 32-point fit {fixed['fit_32_us']:.0f} us")
    cells = []
    print(f"{'model':10s} {'N':>8s} {'scipy':>9s} {'curvax':>9s} {'ratio':>6s} {'nfev':>4s} "
          f"{'target':>9s} {'hw floor':>9s} {'xla floor':>9s}")
    for name in models:
        for n in sizes:
            c = cell(name, n, rates[name], hw, fixed, cores)
            cells.append(c)
            print(f"{name:10s} {n:8d} {c['scipy_best_s'] * 1e3:7.2f}ms "
                  f"{c['curvax_warm_s'] * 1e3:7.2f}ms {c['ratio']:6.2f} {c['nfev']:4d} "
                  f"{c['target_s'] * 1e3:7.2f}ms {c['hardware_floor_s'] * 1e3:7.3f}ms "
                  f"{c['xla_floor_s'] * 1e3:7.2f}ms")
    probe = {"jax": jax.__version__, "backend": jax.default_backend()}
    import curvax

    probe["version"] = curvax.__version__
    probe["file"] = curvax.__file__
    machine = machine_description(probe)
    report = {
        "benchmark": "roofline",
        "machine": machine,
        "machine_rates": hw,
        "xla_rates": rates,
        "fixed_costs": fixed,
        "cells": cells,
    }
    out = HERE / "results" / (
        f"roofline-{machine_kind(machine)}-{datetime.now(UTC).strftime('%Y-%m-%d-%H%M')}.json"
    )
    out.write_text(json.dumps(report, indent=1))
    print(f"written {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()
