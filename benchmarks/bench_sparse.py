#!/usr/bin/env python
"""Sparse-Jacobian benchmark: column grouping against dense forward mode.

This is a benchmark script, not a test: it measures and reports, it never asserts on
timings.  The problem is a sum of 20 windowed Gaussian peaks (60 parameters, peak k
counted only for x in its fixed window [c_k − 8, c_k + 8), windows of neighbours
overlapping), so six groups of structurally orthogonal columns cover the Jacobian.
For each data size N it times, warm (compiled) and as the median of several repeats:

* ``jacobian``  — residuals and the N × 60 Jacobian (dense: 60 tangent passes; sparse:
  6 grouped passes and the scatter back by the pattern);
* ``reduction`` — the full reduction the solver needs per evaluation (cost and the
  triangular factor of [J | r], block by block);
* ``fit``       — ``curvax.fit_curve`` from a perturbed start (warm: the compiled program
  reused on new data of the same shape); ``fit_cold`` is the first fit (compilation).

and checks that sparse and dense fits agree (max relative difference of the parameters).

Usage (from the repository root)::

    python benchmarks/bench_sparse.py                 # N = 1e3, 1e4, 1e5
    python benchmarks/bench_sparse.py --sizes 1e3,1e6 --repeats 5 --out my.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import curvax  # noqa: E402
from curvax.core.problem import (  # noqa: E402
    PointwiseData,
    pointwise_reducer,
    value_and_jacobian,
)
from curvax.core.sparsity import greedy_colouring  # noqa: E402
from tests._sparse_models import CENTRES, K, peaks, window_pattern  # noqa: E402


def problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth_rng = np.random.default_rng(1)
    x = np.linspace(0.0, 200.0, n)
    truth = np.stack(
        [
            truth_rng.uniform(1, 3, K),
            CENTRES + truth_rng.uniform(-1, 1, K),
            truth_rng.uniform(0.8, 1.5, K),
        ],
        1,
    ).ravel()
    with jax.enable_x64(True):
        y = np.asarray(peaks(jnp.asarray(x), jnp.asarray(truth)))
    y = y + 0.01 * rng.standard_normal(n)
    p0 = truth.copy()
    p0[0::3] *= 1.1
    p0[1::3] += 0.3
    p0[2::3] *= 0.9
    return x, y, p0, truth


def paired_medians(fns: dict, repeats: int) -> dict:
    """Median time of each function, the functions called in alternation.

    Alternating (dense, sparse, dense, ...) exposes both to the same machine load, which
    matters on a shared machine.  Each is called once first (compilation, warm-up).
    """
    for fn in fns.values():
        jax.block_until_ready(fn())
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_size(n: int, repeats: int) -> dict:
    x, y, p0, _ = problem(n, 0)
    P = window_pattern(x)
    colours = greedy_colouring(P)
    out: dict = {"n_points": n, "n_params": 3 * K, "n_groups": max(colours) + 1}
    with jax.enable_x64(True):
        xj, yj, pj, Pj = jnp.asarray(x), jnp.asarray(y), jnp.asarray(p0), jnp.asarray(P)
        jac = {
            "dense": jax.jit(lambda q: value_and_jacobian(lambda t: peaks(xj, t) - yj, q, "fwd")),
            "sparse": jax.jit(
                lambda q: value_and_jacobian(lambda t: peaks(xj, t) - yj, q, "fwd", colours, Pj)
            ),
        }
        red = {
            kind: jax.jit(
                pointwise_reducer(PointwiseData(
                    peaks,
                    "fwd",
                    xj,
                    yj,
                    None,
                    None,
                    None,
                    jnp.asarray(1.0),
                    4096,
                    -1,
                    Pj if kind == "sparse" else None,
                    colours if kind == "sparse" else None,
                ))
            )
            for kind in ("dense", "sparse")
        }
        Jd, Js = np.asarray(jac["dense"](pj)[1]), np.asarray(jac["sparse"](pj)[1])
        out["jacobian_max_abs_diff"] = float(np.max(np.abs(Jd - Js)))
        for what, fns in (("jacobian", jac), ("reduction", red)):
            med = paired_medians({k: (lambda f=f: f(pj)) for k, f in fns.items()}, repeats)
            for kind, v in med.items():
                out[f"{what}_{kind}_s"] = v
    fits, specs = {}, {"dense": None, "sparse": P}
    for kind, spec in specs.items():
        t = time.perf_counter()
        fits[kind] = curvax.fit_curve(peaks, x, y, p0, jac_sparsity=spec)
        out[f"fit_cold_{kind}_s"] = time.perf_counter() - t
        out[f"fit_{kind}_nfev"] = int(fits[kind].nfev)
    times: dict = {k: [] for k in specs}
    for seed in range(1, repeats + 1):  # new data of the same shape: compiled program reused
        _, y_new, _, _ = problem(n, seed)
        for kind, spec in specs.items():
            t = time.perf_counter()
            curvax.fit_curve(peaks, x, y_new, p0, jac_sparsity=spec)
            times[kind].append(time.perf_counter() - t)
    for kind in specs:
        out[f"fit_{kind}_s"] = statistics.median(times[kind])
    out["fit_max_rel_diff"] = float(np.max(np.abs(fits["sparse"].x / fits["dense"].x - 1)))
    for what in ("jacobian", "reduction", "fit", "fit_cold"):
        out[f"{what}_speedup"] = out[f"{what}_dense_s"] / out[f"{what}_sparse_s"]
    return out


def machine(label: str) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "label": label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "curvax_file": curvax.__file__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1e3,1e4,1e5")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--machine", default=f"{jax.default_backend()}-{os.cpu_count()}core")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    report = {
        "benchmark": "curvax benchmarks/bench_sparse.py",
        "machine": machine(args.machine),
        "config": {"sizes": sizes, "repeats": args.repeats, "model": "20 windowed peaks"},
        "results": [],
    }
    head = f"{'N':>8} {'groups':>6} {'what':>10} {'dense s':>10} {'sparse s':>10} {'speed-up':>9}"
    print(head)
    for n in sizes:
        r = bench_size(n, args.repeats)
        report["results"].append(r)
        for what in ("jacobian", "reduction", "fit", "fit_cold"):
            print(
                f"{n:>8} {r['n_groups']:>6} {what:>10} {r[f'{what}_dense_s']:>10.4g} "
                f"{r[f'{what}_sparse_s']:>10.4g} {r[f'{what}_speedup']:>8.1f}x"
            )
        print(f"{'':>8} fits agree to {r['fit_max_rel_diff']:.1e} (nfev {r['fit_dense_nfev']})")
    date = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    out = Path(args.out) if args.out else HERE / "results" / f"sparse-{args.machine}-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
