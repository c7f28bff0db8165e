"""The 20-peak model shared by the sparse-Jacobian tests and ``benchmarks/bench_sparse.py``.

A sum of K = 20 Gaussian peaks (60 parameters) in which peak k counts only for x in
its fixed window [c_k − 8, c_k + 8); windows of neighbouring peaks overlap, those of
peaks two apart do not, so six groups of structurally orthogonal columns suffice.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

K = 20
CENTRES = 5.0 + 10.0 * np.arange(K)
LO, HI = CENTRES - 8.0, CENTRES + 8.0


def peaks(x, p):
    """Sum of K windowed Gaussians; p = [a_0, mu_0, s_0, a_1, ...]."""
    a, mu, s = p[0::3], p[1::3], p[2::3]
    inside = (x[None, :] >= LO[:, None]) & (x[None, :] < HI[:, None])
    g = a[:, None] * jnp.exp(-0.5 * ((x[None, :] - mu[:, None]) / s[:, None]) ** 2)
    return jnp.sum(jnp.where(inside, g, 0.0), axis=0)


def window_pattern(x: np.ndarray) -> np.ndarray:
    """(N, 60) pattern from the windows (independent of the code under test)."""
    P = np.zeros((x.size, 3 * K), dtype=bool)
    for k in range(K):
        P[(x >= LO[k]) & (x < HI[k]), 3 * k : 3 * k + 3] = True
    return P
