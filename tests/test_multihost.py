"""Multi-process fits under ``jax.distributed`` on localhost (CPU, gloo collectives).

The workers are the runnable example ``examples/distributed/multi_host.py``; each
process holds only its share of the points.  The reference is the one-process fit of
all points in this process (issue bar: popt rtol 1e-8, pcov rtol 1e-6).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import curvax

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distributed" / "multi_host.py"


def _example():
    spec = importlib.util.spec_from_file_location("curvax_multi_host_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(n_processes: int, n: int, tmp_path: Path) -> None:
    ex = _example()
    results = ex.launch(n_processes, n, tmp_path)
    x, y = ex.simulate(n)
    ref = curvax.fit_curve(ex.model, x, y, p0=[1.0, 1.0, 0.0])
    shares = [ex.my_share(n, k, n_processes).size for k in range(n_processes)]
    for k, r in enumerate(results):
        assert r["processes"] == n_processes and r["devices"] == n_processes
        assert r["success"]
        np.testing.assert_allclose(r["popt"], ref.popt, rtol=1e-8)
        np.testing.assert_allclose(r["pcov"], ref.pcov, rtol=1e-6)
        assert r["n_points"] == n  # all points count in the degrees of freedom
        assert r["n_local"] == shares[k]  # but each process returns its own residuals
    # every process got the bit-identical answer (replicated solver state)
    assert all(r["popt"] == results[0]["popt"] for r in results)


def test_two_processes_equal_one(tmp_path: Path) -> None:
    _check(2, 20_001, tmp_path)


@pytest.mark.slow
def test_four_processes_equal_one(tmp_path: Path) -> None:
    _check(4, 200_003, tmp_path)


def test_refusal_is_probed_across_processes(tmp_path: Path) -> None:
    """A -4 is probed before it is reported (curvax.core.refusal.judge_refusal); over
    two processes each probe cost is a sum over both.  The one-process fit of all points
    reports convergence, and so must both processes: a = 0 and the closed form
    c = mean(y)."""
    import json
    import os
    import subprocess
    import sys

    from tests import _refusal_worker as module

    worker = Path(module.__file__)
    x, y = module.data()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    address = f"localhost:{_example().free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), address, "2", str(k), str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for k in range(2)
    ]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:  # a worker that hangs must not outlive the test
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), logs
    for method in ("lm", "trf"):
        one = curvax.fit_curve(module.model, x, y, p0=[1.0, 0.0], method=method)
        assert one.success
        for k in range(2):
            got = json.loads((tmp_path / f"refusal_{k}.json").read_text())[method]
            assert got["status"] == one.status
            assert abs(got["x"][0]) < 1e-5
            np.testing.assert_allclose(got["x"][1], y.mean(), rtol=1e-9)
