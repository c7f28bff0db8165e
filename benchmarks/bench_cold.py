"""Cold start of curvax: the first fit in a fresh process, without and with the cache.

Not a test (nothing is asserted).  For the exponential problem of ``bench_fit.py`` at
each N it starts fresh worker processes (``bench_fit.py``'s own worker, so the problem,
data and timing are the same as its "cvx cold" column):

* ``no cache``: the first fit compiles everything (median of ``--repeats`` processes);
* ``cache, 1st``: the first process with JAX's persistent compilation cache turned on
  (``CURVAX_COMPILATION_CACHE_DIR`` pointing at a new, empty folder): it compiles and
  writes the programs;
* ``cache, 2nd``: later processes with the same folder (median of ``--repeats``): they
  trace and lower the program (which the cache key needs) but load the compiled code.

Import and backend start-up are excluded from every figure, as in ``bench_fit.py``; they
are reported alongside.  The JSON goes to ``benchmarks/results/cold-<machine>-<date>.json``.

Example::

    python benchmarks/bench_cold.py                       # N = 1e2, 1e4, 1e6; 3 repeats
    python benchmarks/bench_cold.py --sizes 1e3 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fit as bf

#: The environment variable curvax reads at import to turn the cache on (the parent
#: process never imports curvax or JAX, so it is named here).
CACHE_VAR = "CURVAX_COMPILATION_CACHE_DIR"


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _worker(n: int, env_cache: str | None, timeout: float) -> dict:
    argv = ["--worker", "jax", "--lib", "curvax", "--model", "exp", "--n", str(n),
            "--repeats", "1", "--budget", "1", "--curvax-kwargs", "{}"]
    old = os.environ.pop(CACHE_VAR, None)
    try:
        if env_cache is not None:
            os.environ[CACHE_VAR] = env_cache
        return bf._run_worker(sys.executable, argv, timeout)
    finally:
        os.environ.pop(CACHE_VAR, None)
        if old is not None:
            os.environ[CACHE_VAR] = old


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e2,1e4,1e6", help="comma-separated N values")
    p.add_argument("--repeats", type=int, default=3, help="processes per median")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    sizes = [int(float(v)) for v in args.sizes.split(",")]

    probe = bf._run_worker(sys.executable, ["--worker", "probe", "--lib", "curvax"], 600)
    if not probe.get("ok"):
        print(f"bench_cold: cannot import curvax: {probe.get('error')}", file=sys.stderr)
        return 2
    machine = bf.machine_description(probe)
    rows = []
    print(f"{'N':>8} {'no cache':>10} {'cache, 1st':>11} {'cache, 2nd':>11} "
          f"{'import':>8} {'backend':>8}  scipy.linalg imported in the fit")
    for n in sizes:
        plain = [_worker(n, None, args.timeout) for _ in range(args.repeats)]
        with tempfile.TemporaryDirectory(prefix="curvax-cache-") as d:
            first = _worker(n, d, args.timeout)
            second = [_worker(n, d, args.timeout) for _ in range(args.repeats)]
        errors = [r["error"] for r in [*plain, first, *second] if "error" in r]
        row = {
            "n": n,
            "no_cache_cold_s": _median(plain, "cold_s"),
            "no_cache_cold_all_s": [r.get("cold_s") for r in plain],
            "cache_first_cold_s": first.get("cold_s"),
            "cache_second_cold_s": _median(second, "cold_s"),
            "cache_second_cold_all_s": [r.get("cold_s") for r in second],
            "cache_second_compiles": [r.get("cold_compiles") for r in second],
            "import_s": _median(plain, "import_s"),
            "backend_init_s": _median(plain, "backend_init_s"),
            "cold_imported_scipy_linalg": [r.get("cold_imported_scipy_linalg") for r in plain],
            "errors": errors,
        }
        rows.append(row)

        def fmt(v: float | None) -> str:
            return "error" if v is None else f"{v:.3f} s"

        print(f"{n:>8} {fmt(row['no_cache_cold_s']):>10} {fmt(row['cache_first_cold_s']):>11} "
              f"{fmt(row['cache_second_cold_s']):>11} {fmt(row['import_s']):>8} "
              f"{fmt(row['backend_init_s']):>8}  {any(row['cold_imported_scipy_linalg'])}")
        for e in errors:
            print(f"  error: {bf._one_line(e)}")
    date = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    out = Path(args.out) if args.out else (
        bf.RESULTS_DIR / f"cold-{bf.machine_kind(machine)}-{date}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "config": vars(args), "rows": rows},
                              indent=2, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
