"""Large-data benchmarks of issue 3 (run by hand; multi-GB sizes, not in the tests).

    python benchmarks/bench_large.py inmemory --n 50000000 --memory-limit-gb 0.25
    python benchmarks/bench_large.py hdf5 --n 200000000 --path /tmp/big.h5

``inmemory``: x and y (N float64 each) are held in memory and fitted with
``curve_fit_large(memory_limit_gb=...)``; reports peak RSS minus the size of x and y
(target: <= 400 MB).  ``hdf5``: writes an N-point HDF5 file (16·N bytes) if absent,
fits it out of core, and reports the peak RSS (target: <= 1 GB for N = 2e8).  Each
run prints one JSON line with the numbers; each runs in its own process so that the
peak RSS is its own.  Parameters are compared with the in-memory fit of a 1e6-point
subsample only as a sanity check: exactness itself is tested in
``tests/test_large_exact.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _model():
    import jax.numpy as jnp

    def f(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    return f


def bench_inmemory(n: int, limit: float) -> dict:
    from curvax.scale import curve_fit_large

    rng = np.random.default_rng(0)
    x = np.empty(n)
    y = np.empty(n)
    for a in range(0, n, 1 << 20):  # in pieces: no N-sized temporaries before the fit
        b = min(n, a + (1 << 20))
        x[a:b] = rng.uniform(0, 5, b - a)
        y[a:b] = 3 * np.exp(-1.3 * x[a:b]) + 0.5 + 0.05 * rng.standard_normal(b - a)
    data_mb = (x.nbytes + y.nbytes) / 2**20
    rss_before = _rss_mb()
    t = time.perf_counter()
    popt, pcov, info, _, _ = curve_fit_large(
        _model(), x, y, [2.0, 1.0, 0.0], memory_limit_gb=limit, full_output=True
    )
    wall = time.perf_counter() - t
    peak = _rss_mb()
    return dict(
        bench="inmemory",
        n=n,
        memory_limit_gb=limit,
        wall_s=wall,
        peak_rss_mb=peak,
        data_mb=data_mb,
        peak_minus_data_mb=peak - data_mb,
        rss_before_fit_mb=rss_before,
        popt=popt.tolist(),
        perr=np.sqrt(np.diag(pcov)).tolist(),
        passes=info["result"].extra.get("n_passes"),
        chunk_size=info["result"].extra.get("chunk_size"),
    )


def bench_hdf5(n: int, path: str, limit: float) -> dict:
    import h5py

    from curvax.scale import HDF5Source, curve_fit_large

    if not os.path.exists(path):
        rng = np.random.default_rng(0)
        with h5py.File(path, "w") as fh:
            dx = fh.create_dataset("x", (n,), "f8")
            dy = fh.create_dataset("y", (n,), "f8")
            for a in range(0, n, 2_000_000):
                b = min(n, a + 2_000_000)
                xx = rng.uniform(0, 5, b - a)
                dx[a:b] = xx
                dy[a:b] = 3 * np.exp(-1.3 * xx) + 0.5 + 0.05 * rng.standard_normal(b - a)
    t = time.perf_counter()
    popt, pcov, info, _, _ = curve_fit_large(
        _model(),
        HDF5Source(path),
        p0=[2.0, 1.0, 0.0],
        memory_limit_gb=limit,
        full_output=True,
    )
    wall = time.perf_counter() - t
    return dict(
        bench="hdf5",
        n=n,
        file_gb=os.path.getsize(path) / 2**30,
        memory_limit_gb=limit,
        wall_s=wall,
        peak_rss_mb=_rss_mb(),
        popt=popt.tolist(),
        perr=np.sqrt(np.diag(pcov)).tolist(),
        passes=info["result"].extra.get("n_passes"),
        chunk_size=info["result"].extra.get("chunk_size"),
        read_s=info["result"].extra.get("read_seconds"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["inmemory", "hdf5"])
    ap.add_argument("--n", type=int, default=50_000_000)
    ap.add_argument("--memory-limit-gb", type=float, default=0.25)
    ap.add_argument("--path", default="/tmp/curvax_bench_large.h5")
    a = ap.parse_args()
    if a.which == "inmemory":
        rec = bench_inmemory(a.n, a.memory_limit_gb)
    else:
        rec = bench_hdf5(a.n, a.path, a.memory_limit_gb)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
