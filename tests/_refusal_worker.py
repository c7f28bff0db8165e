"""One process of a two-process fit whose solver refuses its convergence claim (-4).

Run by ``tests/test_multihost.py``: ``python _refusal_worker.py COORDINATOR N_PROC ID OUT``.
Data that want ``a² < 0`` (minimum at a = 0, c = mean(y), where a's column vanishes);
each process holds half of the points and fits them with ``devices='all'``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def data() -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 4.0, 40)
    y = -0.5 * np.exp(-x) + 1.0 + 0.01 * np.random.default_rng(0).standard_normal(40)
    return x, y


def model(x, a, c):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp

    return a**2 * jnp.exp(-x) + c


def main(coordinator: str, n_proc: int, pid: int, out: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=n_proc, process_id=pid)
    import curvax

    x, y = data()
    mine = np.array_split(np.arange(x.size), n_proc)[pid]
    found = {}
    for method in ("lm", "trf"):
        r = curvax.fit_curve(model, x[mine], y[mine], p0=[1.0, 0.0], method=method, devices="all")
        found[method] = {"status": int(r.status), "x": r.x.tolist(), "cost": float(r.cost)}
    Path(out, f"refusal_{pid}.json").write_text(json.dumps(found))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
