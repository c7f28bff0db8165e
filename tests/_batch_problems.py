"""Many small fits shared by the batch tests and ``benchmarks/bench_batch.py``.

Gpufit's benchmark problems: a symmetric 2-D Gaussian on a 5x5 pixel spot and a 1-D
Gaussian with baseline on 64 points, each with a start 10 % off the truth.
"""

from __future__ import annotations

import numpy as np

GX, GY = np.meshgrid(np.arange(5.0), np.arange(5.0))
XY = np.stack([GX.ravel(), GY.ravel()])  # (2, 25): Gpufit's 5x5 spot
X1 = np.linspace(-5.0, 5.0, 64)


def spots(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy 5x5 spots (truth, data, a start 10 % off the truth)."""
    rng = np.random.default_rng(seed)
    truth = np.stack(
        [
            rng.uniform(80, 120, n),
            rng.uniform(1.5, 2.5, n),
            rng.uniform(1.5, 2.5, n),
            rng.uniform(0.9, 1.3, n),
            rng.uniform(5, 15, n),
        ],
        axis=1,
    )
    r2 = (XY[0] - truth[:, 1:2]) ** 2 + (XY[1] - truth[:, 2:3]) ** 2
    y = truth[:, :1] * np.exp(-r2 / (2 * truth[:, 3:4] ** 2)) + truth[:, 4:]
    y = y + rng.normal(0, 1.0, y.shape)
    p0 = truth * (1 + rng.uniform(-0.1, 0.1, truth.shape))
    return truth, y, p0


def peaks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy 1-D Gaussian peaks on a baseline, 64 points."""
    rng = np.random.default_rng(seed)
    truth = np.stack(
        [
            rng.uniform(5, 10, n),
            rng.uniform(-1.5, 1.5, n),
            rng.uniform(0.6, 1.5, n),
            rng.uniform(0.5, 2.0, n),
        ],
        axis=1,
    )
    y = truth[:, :1] * np.exp(-0.5 * ((X1 - truth[:, 1:2]) / truth[:, 2:3]) ** 2) + truth[:, 3:]
    y = y + rng.normal(0, 0.2, y.shape)
    p0 = truth * (1 + rng.uniform(-0.1, 0.1, truth.shape))
    return truth, y, p0
