"""Scaling of a multi-device fit over 1, 2, 4 simulated devices at fixed total N.

    python benchmarks/bench_devices.py [--n 4000000] [--devices 1 2 4] [--out FILE]

Runs in one process with ``--xla_force_host_platform_device_count=max(devices)`` (set
here, before JAX starts; on a machine with several GPUs the real devices are used
instead).  For each device count it reports the warm time of a whole fit, the time per
reduction (fit time / function evaluations), and what travels between devices per
reduction, read from the compiled program's collectives: their element counts, the
bytes each device contributes, and the same at N/4 to show it does not grow with N
(it is D·(p+1)² numbers for the factors plus two scalars).

On simulated CPU devices all "devices" share the same cores, so the timings show the
overhead of the sharded program rather than a speed-up; on real multi-device hardware
the per-device work falls as 1/D.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n", type=int, default=4_000_000)
parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
parser.add_argument("--repeat", type=int, default=3)
parser.add_argument("--out", default=None)
ARGS = parser.parse_args()

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={max(ARGS.devices)}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import curvax  # noqa: E402
from curvax.core.engine import COMPILE_CACHE, lower_program  # noqa: E402
from curvax.core.sharding import place  # noqa: E402


def model(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def collectives(kernel, n: int) -> list[dict]:
    """Element counts and bytes of the collectives in the compiled program at size n."""
    x = np.linspace(0, 5, n)
    with jax.enable_x64(True):
        data = place({"x": x, "y": x.copy()}, kernel.mesh, kernel.x_axis)
        hlo = lower_program(kernel, data, 3, np.float64).compile().as_text()
    out = []
    for line in hlo.splitlines():
        m = re.search(r"=\s*(\S+)\s+(all-gather|all-reduce)\(", line)
        if not m:
            continue
        sizes = [
            int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            for dims in re.findall(r"[fs]\d+\[([\d,]*)\]", m.group(1))
        ]
        out.append({"op": m.group(2), "elements": sum(sizes)})
    return out


def main() -> None:
    n = ARGS.n
    rng = np.random.default_rng(0)
    x = np.linspace(0, 5, n)
    y = np.asarray(model(x, 2.0, 1.3, 0.5)) + 0.02 * rng.standard_normal(n)
    rows = []
    ref = None
    for d in ARGS.devices:
        r = curvax.fit_curve(model, x, y, p0=[1, 1, 0], devices=d)  # compile
        times = []
        for _ in range(ARGS.repeat):
            t = time.perf_counter()
            r = curvax.fit_curve(model, x, y, p0=[1, 1, 0], devices=d)
            times.append(time.perf_counter() - t)
        ref = r if ref is None else ref
        kernel = next(
            k
            for k in reversed(COMPILE_CACHE._entries)
            if k.mesh is not None and k.mesh.devices.size == d and k.fn is model
        )
        coll_n = collectives(kernel, min(n, 1 << 20))
        coll_small = collectives(kernel, 1 << 16)
        elements = sum(c["elements"] for c in coll_n)
        rows.append(
            {
                "devices": d,
                "fit_s": min(times),
                "nfev": int(r.nfev),
                "s_per_reduction": min(times) / max(int(r.nfev), 1),
                "collectives": coll_n,
                "elements_moved_per_program_at_N": elements,
                "elements_moved_per_program_at_2^16": sum(c["elements"] for c in coll_small),
                "bytes_per_device_per_reduction": 8 * (4 * 4 + 2),
                "max_rel_diff_popt_vs_first": float(np.max(np.abs(r.popt / ref.popt - 1))),
            }
        )
        print(json.dumps(rows[-1]))
    result = {
        "benchmark": "bench_devices",
        "machine": f"{platform.node()} {os.cpu_count()} CPU cores, simulated devices",
        "jax": jax.__version__,
        "devices_available": [str(dv) for dv in jax.devices()],
        "n": n,
        "rows": rows,
    }
    if ARGS.out:
        with open(ARGS.out, "w") as fh:
            json.dump(result, fh, indent=1)
    print(json.dumps(result, indent=1), file=sys.stderr if ARGS.out else sys.stdout)


if __name__ == "__main__":
    main()
