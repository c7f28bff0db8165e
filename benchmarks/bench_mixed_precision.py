"""What mixed precision saves on a large fit, and whether its answer is right.

    python benchmarks/bench_mixed_precision.py [--n 10000000] [--out FILE]

For N points of an exponential decay it runs, each in its own process (so that each
peak RSS is its own): a float64 fit, and a mixed-precision fit with tolerances float32
can meet (1e-6: it finishes in float32) and with the default tolerances (1e-12: it
upgrades to float64 and continues).  Reported per run: wall time of a warm fit, peak
RSS of the process, and the device memory XLA plans for the compiled program
(arguments + outputs + temporaries; on a GPU this is the memory that matters); and
the largest relative difference of the parameters from the float64 fit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np


def one(mode: str, n: int) -> dict:
    import jax.numpy as jnp

    import curvax
    from curvax.core.engine import COMPILE_CACHE, program_memory

    def f(x, a, k, c):
        return a * jnp.exp(-k * x) + c

    x = np.linspace(0, 5, n)
    y = 3 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.random.default_rng(0).normal(size=n)
    opts: dict = {"p0": [1.0, 1.0, 0.0]}
    if mode == "mixed_loose":
        opts.update(mixed_precision=True, ftol=1e-6, xtol=1e-6, gtol=1e-6)
    elif mode == "mixed_default":
        opts.update(mixed_precision=True)
    elif mode == "float64_loose":
        opts.update(ftol=1e-6, xtol=1e-6, gtol=1e-6)
    base = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    r = curvax.fit_curve(f, x, y, **opts)  # compile
    t = time.perf_counter()
    r = curvax.fit_curve(f, x, y, **opts)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kernel = next(k for k in COMPILE_CACHE._entries if k.fn is f)
    mem = program_memory(kernel, {"x": x, "y": y}, 3, r.dtype)
    return {
        "mode": mode,
        "dtype": str(np.dtype(r.dtype)),
        "upgraded": bool(r.precision_upgraded),
        "wall_s": wall,
        "nfev": int(r.nfev),
        "peak_rss_mb": peak,
        "rss_before_fit_mb": base,
        "program_device_mb": mem["total"] / 2**20,
        "popt": [float(v) for v in r.popt],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one(a.child, a.n)))
        return
    rows = []
    for mode in ("float64", "float64_loose", "mixed_loose", "mixed_default"):
        out = subprocess.run(
            [sys.executable, __file__, "--n", str(a.n), "--child", mode],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(out)
    ref = {r["mode"]: np.array(r["popt"]) for r in rows}
    for r in rows:
        base = ref["float64_loose"] if r["mode"] == "mixed_loose" else ref["float64"]
        r["max_rel_diff_vs_float64"] = float(np.max(np.abs(np.array(r["popt"]) / base - 1)))
    result = {
        "benchmark": "bench_mixed_precision",
        "machine": f"{platform.node()}: {os.cpu_count()} CPU cores, no GPU",
        "n": a.n,
        "rows": rows,
    }
    text = json.dumps(result, indent=1)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
