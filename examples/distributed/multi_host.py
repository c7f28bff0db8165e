"""Multi-host fit: several processes, each holding its own share of the points.

Under ``jax.distributed`` every process runs this same script.  Each one reads (here:
simulates) only its own part of the data and calls ``curvax.fit_curve(...,
devices='all')``: the points stay where they are, every device reduces its share to a
(p+1)×(p+1) triangular factor, and only those factors travel between processes.  All
processes get the same parameters and covariance — the ones a single process would get
from all the data.  ``result.fun`` holds this process's residuals; ``result.n_points``
counts the points of all processes.

On a cluster, start one worker per host with the coordinator's address, e.g.::

    python multi_host.py --worker --coordinator host0:12345 --num-processes 4 --process-id K

Run:  python examples/distributed/multi_host.py [--processes 2] [--small] [--out DIR]
      (starts the workers on localhost, CPU only, and compares with a one-process fit)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRUE = {"amplitude": 2.0, "rate": 1.3, "offset": 0.5}
SEED = 7


def simulate(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``n`` points of the experiment (each worker keeps only its own slice)."""
    rng = np.random.default_rng(SEED)
    x = np.linspace(0.0, 5.0, n)
    y = TRUE["amplitude"] * np.exp(-TRUE["rate"] * x) + TRUE["offset"]
    return x, y + 0.02 * rng.standard_normal(n)


def my_share(n: int, process_id: int, num_processes: int) -> np.ndarray:
    """Indices of the points process ``process_id`` reads (contiguous, nearly equal)."""
    return np.array_split(np.arange(n), num_processes)[process_id]


def model(x: Any, amplitude: Any, rate: Any, offset: Any) -> Any:
    import jax.numpy as jnp

    return amplitude * jnp.exp(-rate * x) + offset


def worker(args: argparse.Namespace) -> None:
    """One process of the distributed fit."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives
    jax.distributed.initialize(
        args.coordinator, num_processes=args.num_processes, process_id=args.process_id
    )
    import curvax

    x, y = simulate(args.n)
    mine = my_share(args.n, args.process_id, args.num_processes)
    result = curvax.fit_curve(model, x[mine], y[mine], p0=[1.0, 1.0, 0.0], devices="all")
    if args.process_id == 0:
        print(result.summary())
    if args.out:
        path = Path(args.out) / f"result_{args.process_id}.json"
        path.write_text(
            json.dumps(
                {
                    "popt": result.popt.tolist(),
                    "pcov": result.pcov.tolist(),
                    "n_points": result.n_points,
                    "n_local": int(result.fun.size),
                    "success": bool(result.success),
                    "devices": len(jax.devices()),
                    "processes": jax.process_count(),
                }
            )
        )
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def launch(n_processes: int, n: int, out: Path, timeout: float = 300.0) -> list[dict]:
    """Start ``n_processes`` workers on localhost and return their JSON results."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                str(n_processes),
                "--process-id",
                str(k),
                "--n",
                str(n),
                "--out",
                str(out),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in range(n_processes)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for k, p in enumerate(procs):
        if p.returncode != 0:
            raise RuntimeError(f"worker {k} failed (exit {p.returncode}):\n{logs[k][-3000:]}")
    print(logs[0])
    return [json.loads((out / f"result_{k}.json").read_text()) for k in range(n_processes)]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="workers to start locally")
    parser.add_argument("--small", action="store_true", help="fewer points (for tests)")
    parser.add_argument("--out", default="multi_host_out", help="folder for the results")
    parser.add_argument("--n", type=int, default=None, help="total number of points")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 20_001 if args.small else 2_000_001
    if args.worker:
        worker(args)
        return {}
    results = launch(args.processes, args.n, Path(args.out))
    return {"truth": TRUE, "results": results, "n": args.n}


if __name__ == "__main__":
    main()
