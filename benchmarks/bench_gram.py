"""One compiled pass over the data, with each block's Gram product formed three ways.

A benchmark, not a test. For a model of p parameters it times a loop over blocks of
4096 points that forms the rows ``A = [J | r]ᵀ`` of each block and adds

* ``xla``: ``A Aᵀ`` by XLA's matrix product (``lax.dot_general``), as before session 22;
* ``curvax``: ``A Aᵀ`` by curvax's compiled loop (:mod:`curvax.core.gram_kernel`);
* ``rows``: the row sums only, no product: the floor for any Gram product.

Two models: the exponential ``a·exp(−b·x) + c`` (p + 1 = 4) and three Gaussian peaks and
an offset (p + 1 = 11), their Jacobians written out. The variants are timed in turn,
``--rounds`` times each, and the fastest and median ns per point printed.

    python benchmarks/bench_gram.py --sizes 1e5,1e6 --rounds 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core import gram_kernel
from curvax.core.xla_options import cpu_compiler_options

BLOCK = 4096


def exp_rows(p, x, y):
    a, b, c = p[0], p[1], p[2]
    e = jnp.exp(-b * x)
    return jnp.stack([e, -a * x * e, jnp.ones_like(x), a * e + c - y])


def peaks_rows(p, x, y):
    cols, f = [], p[9]
    for k in range(3):
        amp, mu, s = p[3 * k], p[3 * k + 1], p[3 * k + 2]
        z = (x - mu) / s
        g = jnp.exp(-0.5 * z * z)
        f = f + amp * g
        cols += [g, amp * g * z / s, amp * g * z * z / s]
    return jnp.stack([*cols, jnp.ones_like(x), f - y])


def products(m: int) -> dict:
    def rows(a):
        return jnp.sum(a, axis=1)[:, None] * jnp.ones((1, m))

    return {
        "xla": gram_kernel.xla_gram_product,
        "curvax": gram_kernel.block_gram_product,
        "rows": rows,
    }


def one_pass(rows_fn, product, m: int):
    def run(p, x, y):
        def step(i, g):
            xs = jax.lax.dynamic_slice(x, (i * BLOCK,), (BLOCK,))
            ys = jax.lax.dynamic_slice(y, (i * BLOCK,), (BLOCK,))
            return g + product(rows_fn(p, xs, ys))

        return jax.lax.fori_loop(0, x.shape[0] // BLOCK, step, jnp.zeros((m, m)))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    print(f"compiled Gram product: {gram_kernel.status()}")
    options = cpu_compiler_options() or {}
    problems = {
        "exp": (exp_rows, 4, np.array([2.0, 1.0, 0.3]), (0.0, 5.0)),
        "peaks3": (
            peaks_rows, 11, np.array([1.0, 2.0, 0.5, 1.0, 5.0, 0.6, 1.0, 8.0, 0.7, 0.1]),
            (0.0, 10.0),
        ),
    }
    for name, (rows_fn, m, p, (lo, hi)) in problems.items():
        for size in (int(float(s)) for s in args.sizes.split(",")):
            n = max(BLOCK, size // BLOCK * BLOCK)
            x = np.linspace(lo, hi, n)
            y = np.sin(x) + 2.0
            programs = {
                k: jax.jit(one_pass(rows_fn, prod, m), compiler_options=options)
                for k, prod in products(m).items()
            }
            ref = np.asarray(programs["xla"](p, x, y))
            got = np.asarray(programs["curvax"](p, x, y))
            for prog in programs.values():
                prog(p, x, y).block_until_ready()
            times: dict[str, list[float]] = {k: [] for k in programs}
            for _ in range(args.rounds):
                for k, prog in programs.items():
                    t = time.perf_counter()
                    prog(p, x, y).block_until_ready()
                    times[k].append(time.perf_counter() - t)
            cells = "  ".join(
                f"{k} {min(v) / n * 1e9:.2f} / {np.median(v) / n * 1e9:.2f}"
                for k, v in times.items()
            )
            diff = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
            print(f"{name:7s} N={n:>9d}  ns/point fastest / median:  {cells}  "
                  f"(max rel diff {diff:.1e})")


if __name__ == "__main__":
    main()
