"""Benchmark models and data shared by the large-data tests."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

N = 140_000


def exp_decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def gauss_peak(x, a, mu, s, c):
    return a * jnp.exp(-0.5 * ((x - mu) / s) ** 2) + c


def three_gauss(x, a1, m1, s1, a2, m2, s2, a3, m3, s3, c):
    g = lambda a, m, s: a * jnp.exp(-0.5 * ((x - m) / s) ** 2)  # noqa: E731
    return g(a1, m1, s1) + g(a2, m2, s2) + g(a3, m3, s3) + c


def logistic4(x, bottom, top, ec50, hill):
    return bottom + (top - bottom) / (1.0 + (x / ec50) ** hill)


# name -> (model, true params, p0, x range)
MODELS = {
    "exp": (exp_decay, [3.0, 1.3, 0.5], [2.0, 1.0, 0.0], (0.0, 5.0)),
    "gauss": (gauss_peak, [2.0, 5.0, 0.8, 0.3], [1.5, 4.7, 1.0, 0.0], (0.0, 10.0)),
    "three_gauss": (
        three_gauss,
        [2.0, 2.0, 0.5, 1.5, 5.0, 0.7, 1.0, 8.0, 0.4, 0.2],
        [1.8, 2.1, 0.6, 1.3, 4.9, 0.8, 1.1, 7.9, 0.5, 0.1],
        (0.0, 10.0),
    ),
    "logistic": (logistic4, [0.1, 1.0, 3.0, 1.5], [0.0, 1.2, 2.0, 1.0], (0.01, 100.0)),
}


def make_data(name: str, n: int = N, order: str = "shuffled", seed: int = 0):
    """(f, x, y, sigma, p0) with heteroscedastic noise; ``order`` 'sorted'|'shuffled'."""
    f, ptrue, p0, (lo, hi) = MODELS[name]
    rng = np.random.default_rng(seed)
    if name == "logistic":
        x = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    else:
        x = rng.uniform(lo, hi, n)
    if order == "sorted":
        x = np.sort(x)
    y0 = np.asarray(f(x, *ptrue))
    sigma = 0.02 + 0.03 * rng.uniform(size=n)
    y = y0 + sigma * rng.standard_normal(n)
    y[rng.choice(n, n // 100, replace=False)] += 0.5  # outliers for the robust losses
    return f, x, y, sigma, np.asarray(p0, dtype=float)
