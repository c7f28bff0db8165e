"""Dask back end (issue 7): time per pass with 1 and 2 workers, and the bytes per pass.

    python benchmarks/bench_dask.py                       # N = 4e6 and 1e6, 8 blocks
    python benchmarks/bench_dask.py --n 4e6 --n-small 1e6 --blocks 8 --passes 7

For each worker count (1, 2) a ``LocalCluster`` (one process per worker, one thread
each) generates the data on its workers (``exp_decay`` + noise, a stacked (3, N)
array persisted there, ``--blocks`` blocks) and then

* times passes of the reduction (:class:`curvax.scale.dask_backend.DaskReducer`: one
  map task per block + a tree merge) at fresh parameters after one warm-up pass (the
  workers compile their per-chunk kernel);
* times a whole ``fit_chunked`` (Levenberg–Marquardt from a fixed start) and divides
  by its number of passes;
* reads, from the workers' own transfer logs, the bytes sent per pass to the client
  and between workers, and records the pickled size of the graph the client submits
  per pass and of the partial it receives.

The same bytes are then measured at ``--n-small`` points (same blocks, same workers),
to show that they do not grow with N.  A baseline times the in-process chunked
reduction (one Python process, NumPy arrays) at the same N.  The timings are repeated
with the workers' glibc malloc tuned (``MALLOC_TRIM_THRESHOLD_=2**28``,
``MALLOC_MMAP_THRESHOLD_=2**24`` through ``distributed.nanny.pre-spawn-environ``):
Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` makes every large temporary a fresh
``mmap`` and measured ~2x slower per block on this box.  Results: one JSON file
under ``benchmarks/results/`` (``--out``), with the machine described.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

P0 = np.array([2.0, 1.0, 0.0])
TRUE = (3.0, 1.3, 0.5)


def exp_decay(x, a, b, c):
    import jax.numpy as jnp

    return a * jnp.exp(-b * x) + c


def gen_block(n_block: int, block_id=None) -> np.ndarray:
    rng = np.random.default_rng([7, block_id[1]])
    x = rng.uniform(0.0, 5.0, n_block)
    y = TRUE[0] * np.exp(-TRUE[1] * x) + TRUE[2] + 0.05 * rng.standard_normal(n_block)
    return np.stack([x, y, np.full(n_block, 0.05)])


def make_data(n: int, blocks: int):
    import dask
    import dask.array as da
    from distributed import wait

    nb = n // blocks
    data = da.map_blocks(
        gen_block,
        nb,
        chunks=((3,), (nb,) * blocks),
        dtype=np.float64,
        meta=np.empty((0, 0)),
        name=f"bench-data-{n}-{blocks}",
    )
    (data,) = dask.persist(data)
    wait(data)
    return data


def reducer_for(data, chunk_size: int):
    from curvax.core.engine import Kernel
    from curvax.scale.dask_backend import DaskArraySource, DaskReducer

    k = Kernel("pointwise", exp_decay, "args", "fwd", "linear", "lm", True, 4096)
    src = DaskArraySource(data[0], data[1], data[2])
    return DaskReducer(k, src, 3, np.float64, 1.0, chunk_size)


def _logs(client) -> dict:
    return client.run(lambda dask_worker: list(dask_worker.transfer_outgoing_log))


def _traffic(client, before: dict, workers: set) -> tuple[int, int]:
    after = _logs(client)
    to_client = between = 0
    for w, entries in after.items():
        for e in entries[len(before.get(w, [])) :]:
            if e["who"] in workers:
                between += e["total"]
            else:
                to_client += e["total"]
    return to_client, between


def time_passes(client, red, passes: int) -> dict:
    from curvax.scale.dask_backend import pack_width

    workers = set(client.scheduler_info()["workers"])
    red.reduce(P0)  # warm-up: compile on every worker
    before = _logs(client)
    times = []
    for i in range(passes):
        q = P0 + 1e-3 * (i + 1)
        t = time.perf_counter()
        red.reduce(q)
        times.append(time.perf_counter() - t)
    to_client, between = _traffic(client, before, workers)
    graph = red.pass_collection(P0 + 0.5).__dask_graph__()
    return dict(
        pass_s_median=statistics.median(times),
        pass_s_min=min(times),
        pass_s_all=times,
        bytes_to_client_per_pass=to_client / passes,
        bytes_between_workers_per_pass=between / passes,
        graph_pickled_bytes_per_pass=len(pickle.dumps(dict(graph))),
        partial_bytes=8 * pack_width(red.n_free),
        n_blocks=red.source.n_blocks,
    )


def time_fit(data) -> dict:
    from curvax.scale import DaskArraySource, fit_chunked

    t = time.perf_counter()
    res = fit_chunked(exp_decay, DaskArraySource(data[0], data[1], data[2]), P0)
    wall = time.perf_counter() - t
    return dict(
        fit_s=wall,
        n_passes=res.extra["n_passes"],
        fit_s_per_pass=wall / res.extra["n_passes"],
        popt=res.x.tolist(),
        bytes_fetched=res.extra["bytes_fetched"],
    )


def in_process_baseline(n: int, blocks: int, chunk_size: int, passes: int) -> dict:
    from curvax.core.engine import Kernel
    from curvax.scale.host_reduce import HostReducer
    from curvax.scale.sources import ArraySource

    nb = n // blocks
    parts = [gen_block(nb, (0, j)) for j in range(blocks)]
    data = np.concatenate(parts, axis=1)
    k = Kernel("pointwise", exp_decay, "args", "fwd", "linear", "lm", True, 4096)
    red = HostReducer(k, ArraySource(data[0], data[1], data[2]), 3, np.float64, 1.0, chunk_size)
    red.reduce(P0)
    times = []
    for i in range(passes):
        t = time.perf_counter()
        red.reduce(P0 + 1e-3 * (i + 1))
        times.append(time.perf_counter() - t)
    return dict(pass_s_median=statistics.median(times), pass_s_min=min(times))


def machine() -> dict:
    import dask
    import distributed
    import jax

    import curvax

    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(
        name=f"cpu-{os.cpu_count()}core",
        description=f"{os.cpu_count()}-core CPU box (shared with other jobs)",
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        platform=platform.platform(),
        cpu_model=cpu,
        cpu_count=os.cpu_count(),
        loadavg_at_start=list(os.getloadavg()),
        python=platform.python_version(),
        numpy=np.__version__,
        jax=jax.__version__,
        dask=dask.__version__,
        distributed=distributed.__version__,
        curvax_file=curvax.__file__,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=float, default=4e6)
    ap.add_argument("--n-small", type=float, default=1e6)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--chunk-size", type=int, default=65536)
    ap.add_argument("--out", type=str, default=None)
    args = ap.parse_args()
    import dask
    from distributed import Client, LocalCluster

    n, n_small = int(args.n), int(args.n_small)
    out: dict = dict(
        benchmark="curvax benchmarks/bench_dask.py",
        argv=sys.argv[1:],
        config=dict(
            n=n,
            n_small=n_small,
            blocks=args.blocks,
            passes=args.passes,
            chunk_size=args.chunk_size,
            model="a*exp(-b*x)+c, p=3, linear loss, lm",
        ),
        machine=machine(),
        runs=[],
    )
    # Stealing off: the traffic measured is the reduction's own (see tests/test_dask.py).
    # Two worker environments: Dask's default (its nanny sets MALLOC_TRIM_THRESHOLD_,
    # which also fixes glibc's mmap threshold at 128 KiB, so every large temporary is a
    # fresh mmap with page faults) and one where large blocks stay in the heap.
    envs = {
        "dask-default": {},
        "malloc-tuned": {
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 2**28,
            "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 2**24,
        },
    }
    for env_name, env in envs.items():
        conf = {"distributed.scheduler.work-stealing": False, **env}
        with dask.config.set(conf):
            for n_workers in (1, 2):
                with (
                    LocalCluster(
                        n_workers=n_workers,
                        processes=True,
                        threads_per_worker=1,
                        dashboard_address=None,
                        worker_dashboard_address=None,
                    ) as cluster,
                    Client(cluster) as client,
                ):
                    sizes = (n, n_small) if env_name == "dask-default" else (n,)
                    for size in sizes:
                        data = make_data(size, args.blocks)
                        row = dict(worker_env=env_name, n_workers=n_workers, n=size)
                        red = reducer_for(data, args.chunk_size)
                        row.update(time_passes(client, red, args.passes))
                        if size == n:
                            row.update(time_fit(data))
                        out["runs"].append(row)
                        print(json.dumps({k: v for k, v in row.items() if k != "pass_s_all"}))
                        del data
    out["in_process_baseline"] = dict(
        n=n, **in_process_baseline(n, args.blocks, args.chunk_size, args.passes)
    )
    print(json.dumps(out["in_process_baseline"]))
    out["machine"]["loadavg_at_end"] = list(os.getloadavg())
    path = args.out or str(
        ROOT
        / "benchmarks"
        / "results"
        / f"dask-{out['machine']['name']}-{datetime.now(UTC):%Y-%m-%d-%H%M}.json"
    )
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
