"""The opt-in persistent compilation cache writes programs a new process can reuse."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import numpy as np, jax.numpy as jnp, curvax
def f(x, a, b, c):
    return a * jnp.exp(-b * x) + c
x = np.linspace(0, 5, 300)
popt, _ = curvax.curve_fit(f, x, 3 * np.exp(-1.3 * x) + 0.5, p0=[1, 1, 0])
assert np.allclose(popt, [3, 1.3, 0.5])
"""


def test_cache_directory_is_filled_and_reused(tmp_path) -> None:
    env = dict(os.environ, CURVAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    entries = [p for p in os.listdir(tmp_path / "cache") if p.startswith("jit_run")]
    assert len(entries) == 1  # the fit program, written once and reused the second time


LARGE_SCRIPT = """
import numpy as np, jax.numpy as jnp, curvax
def f(x, a, b, c):
    return a * jnp.exp(-b * x) + c
x = np.linspace(0, 5, 1 << 20)
y = 3 * np.exp(-1.3 * x) + 0.5
popt, _ = curvax.curve_fit(f, x, y, p0=[1, 1, 0])
assert np.allclose(popt, [3, 1.3, 0.5])
"""


def test_large_fits_stay_cacheable_with_the_cache_on(tmp_path) -> None:
    """≥ 2²⁰ points on a CPU reduce on threads by default, through a host callback that
    JAX never writes to the persistent cache; with the cache on, the default is one
    thread, so the fit program itself is stored for the next process."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    env["CURVAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-c", LARGE_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    entries = [p for p in os.listdir(tmp_path / "cache") if p.startswith("jit_run")]
    assert len(entries) == 1
