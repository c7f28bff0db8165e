"""Throughput of many small fits: curvax.batch.curve_fit_batch vs a SciPy loop.

Not a test (nothing is asserted).  Two problems, as in Gpufit's benchmark:

* ``gauss2d``: 5-parameter symmetric 2-D Gaussian on a 5×5 pixel spot;
* ``gauss1d``: 4-parameter 1-D Gaussian with baseline on 64 points.

Every library fits exactly the same data from the same starts (10 % off the truth).
curvax is timed warm (the compiled program exists), SciPy as a Python loop of
``scipy.optimize.curve_fit(method='lm')`` with an analytic Jacobian, in the same run.
Both use the same tolerances (``--tol``, default 1e-8 = SciPy's defaults).  The
accuracy columns give the median relative difference of curvax's parameters from
SciPy's.  A JSON record with the machine description goes to ``benchmarks/results/``.

On a CPU curvax uses every core by default: its compiled calls run side by side on
``workers`` threads (one per core; ``--workers K`` sets the number, ``--workers 1`` times
one core).  ``--devices K`` (CPU) instead splits the host into K XLA devices before JAX
starts (``--xla_force_host_platform_device_count``) and times curvax twice in the same
run: with the default and with ``devices='all'``, which runs each chunk's share on
every device at once.

``--stream N`` additionally streams N fits (e.g. 10**7) of the 2-D problem through
``curve_fit_batch_stream`` in batches generated on the fly and reports the peak
resident memory, which stays bounded by one batch whatever N.

Examples::

    python benchmarks/bench_batch.py --quick
    python benchmarks/bench_batch.py --n 200000 --scipy-n 3000 --stream 10000000
    python benchmarks/bench_batch.py --n 200000 --workers 1     # one core
    python benchmarks/bench_batch.py --n 200000 --devices 2
    python benchmarks/bench_batch.py --n 100000 --dtype float32 --method lm
    python benchmarks/bench_batch.py --stream 10000000 --stream-batch 65536
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._batch_problems import X1, XY, peaks, spots  # noqa: E402


def make_problem(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, ydata, p0) for ``n`` fits of problem ``name``."""
    return (spots if name == "gauss2d" else peaks)(n, seed)


# --- SciPy reference (NumPy model + analytic Jacobian) ----------------------------------


def np_g2d(xy, a, x0, y0, s, o):
    return a * np.exp(-((xy[0] - x0) ** 2 + (xy[1] - y0) ** 2) / (2 * s * s)) + o


def np_g2d_jac(xy, a, x0, y0, s, o):
    dx, dy = xy[0] - x0, xy[1] - y0
    r2 = dx * dx + dy * dy
    e = np.exp(-r2 / (2 * s * s))
    ae = a * e / (s * s)
    return np.stack([e, ae * dx, ae * dy, ae * r2 / s, np.ones_like(e)], axis=1)


def np_g1d(x, a, c, s, o):
    return a * np.exp(-0.5 * ((x - c) / s) ** 2) + o


def np_g1d_jac(x, a, c, s, o):
    d = (x - c) / s
    e = np.exp(-0.5 * d * d)
    return np.stack([e, a * e * d / s, a * e * d * d / s, np.ones_like(e)], axis=1)


def scipy_loop(name: str, y: np.ndarray, p0: np.ndarray, tol: float) -> tuple[float, np.ndarray]:
    from scipy.optimize import curve_fit

    f, jac, x = (np_g2d, np_g2d_jac, XY) if name == "gauss2d" else (np_g1d, np_g1d_jac, X1)
    out = np.full(p0.shape, np.nan)
    t = time.perf_counter()
    for b in range(y.shape[0]):
        try:
            out[b] = curve_fit(
                f, x, y[b], p0[b], jac=jac, method="lm", ftol=tol, xtol=tol, gtol=tol
            )[0]
        except RuntimeError:
            pass
    return time.perf_counter() - t, out


def curvax_run(
    name: str,
    y: np.ndarray,
    p0: np.ndarray,
    args: argparse.Namespace,
    repeats: int,
    devices: str | None = None,
):
    from curvax.batch import curve_fit_batch
    from curvax.models import constant, gaussian, gaussian_2d

    model, x = (gaussian_2d, XY) if name == "gauss2d" else (gaussian + constant, X1)
    kw = dict(
        method=args.method,
        dtype=args.dtype,
        ftol=args.tol,
        xtol=args.tol,
        gtol=args.tol,
        chunk_size=args.chunk,
        devices=devices,
        workers=args.workers,
    )
    t = time.perf_counter()
    curve_fit_batch(
        model,
        x,
        y[: min(len(y), 2 * (args.chunk or 256))],
        p0[: min(len(y), 2 * (args.chunk or 256))],
        **kw,
    )
    warmup = time.perf_counter() - t
    times = []
    res = None
    for _ in range(repeats):
        t = time.perf_counter()
        res = curve_fit_batch(model, x, y, p0, **kw)
        times.append(time.perf_counter() - t)
    return warmup, min(times), res


def machine() -> dict:
    import jax

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "load_average_at_start": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def stream(n_total: int, batch: int, args: argparse.Namespace) -> dict:
    """Stream ``n_total`` 2-D fits through in generated batches; bounded memory."""
    from curvax.batch import curve_fit_batch_stream
    from curvax.models import gaussian_2d

    def batches():
        done = 0
        seed = 1000
        while done < n_total:
            b = min(batch, n_total - done)
            _, y, _ = make_problem("gauss2d", b, seed)
            seed += 1
            done += b
            yield y

    n_ok = 0
    n = 0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    for res in curve_fit_batch_stream(
        gaussian_2d,
        XY,
        batches(),
        None,  # automatic per-fit guesses
        method=args.method,
        dtype=args.dtype,
        ftol=args.tol,
        xtol=args.tol,
        gtol=args.tol,
        chunk_size=args.chunk,
        workers=args.workers,
    ):
        n += len(res)
        n_ok += int(res.success.sum())
    wall = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n_fits": n,
        "converged": n_ok,
        "seconds": wall,
        "fits_per_s": n / wall,
        "batch": batch,
        "peak_rss_mib_before": rss0 / 1024,
        "peak_rss_mib_after": rss1 / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="fits per problem for curvax")
    ap.add_argument("--scipy-n", type=int, default=2000, help="fits in the SciPy loop")
    ap.add_argument("--problems", default="gauss2d,gauss1d")
    ap.add_argument("--method", default="lm", choices=["lm", "trf"])
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--chunk", type=int, default=None, help="chunk size (default: automatic)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="n=4000, scipy-n=500, 2 repeats")
    ap.add_argument("--stream", type=int, default=0, help="also stream this many 2-D fits")
    ap.add_argument("--stream-batch", type=int, default=65536)
    ap.add_argument(
        "--stream-only",
        action="store_true",
        help="only the --stream run, in this fresh process (its peak memory alone)",
    )
    ap.add_argument("--devices", type=int, default=1, help="CPU: split into K XLA devices")
    ap.add_argument(
        "--workers", type=int, default=None, help="threads for curvax (default: one per core)"
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.devices > 1:
        if "jax" in sys.modules:
            raise SystemExit("--devices must be applied before JAX is imported")
        flag = f"--xla_force_host_platform_device_count={args.devices}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    if args.quick:
        args.n, args.scipy_n, args.repeats = 4000, 500, 2
    try:
        import scipy  # noqa: F401
    except ImportError:
        print("scipy is needed for the reference loop (pip install scipy)")
        sys.exit(2)

    import jax

    from curvax.core.threaded import default_workers

    on_cpu = jax.default_backend() == "cpu"
    rows = []
    for name in [] if args.stream_only else args.problems.split(","):
        _, y, p0 = make_problem(name, args.n)
        warm, t_cx, res = curvax_run(name, y, p0, args, args.repeats)
        t_all = None
        if args.devices > 1:
            _, t_all, res_all = curvax_run(name, y, p0, args, args.repeats, devices="all")
            ok = res.success & res_all.success
            dev_diff = float(
                np.max(np.abs(res_all.popt[ok] - res.popt[ok]) / np.abs(res.popt[ok]), initial=0.0)
            )
        k = min(args.scipy_n, args.n)
        t_sp, popt_sp = scipy_loop(name, y[:k], p0[:k], args.tol)
        both = res.success[:k] & np.all(np.isfinite(popt_sp), axis=1)
        rel = np.abs(res.popt[:k][both] - popt_sp[both]) / np.maximum(np.abs(popt_sp[both]), 1e-12)
        row = {
            "problem": name,
            "n_fits": args.n,
            "curvax_seconds": t_cx,
            "curvax_fits_per_s": args.n / t_cx,
            "curvax_first_call_seconds": warm,
            "curvax_workers": args.workers or (default_workers() if on_cpu else 1),
            "curvax_converged": float(res.success.mean()),
            "curvax_mean_nfev": float(res.nfev.mean()),
            "scipy_n_fits": k,
            "scipy_seconds": t_sp,
            "scipy_fits_per_s": k / t_sp,
            "speedup": (args.n / t_cx) / (k / t_sp),
            "curvax_all_devices_fits_per_s": None if t_all is None else args.n / t_all,
            "speedup_all_devices": None if t_all is None else (args.n / t_all) / (k / t_sp),
            "all_devices_max_rel_diff_popt": None if t_all is None else dev_diff,
            "median_rel_diff_vs_scipy": float(np.median(rel)) if rel.size else None,
            "max_rel_diff_vs_scipy": float(np.max(rel)) if rel.size else None,
        }
        rows.append(row)

    if rows:
        print(f"\ncurvax on {rows[0]['curvax_workers']} thread(s), SciPy on one")
        print(
            f"{'problem':<9} {'curvax fits/s':>14} {'SciPy fits/s':>13} {'ratio':>7} "
            f"{'conv.':>6} {'nfev':>5} {'med. rel. diff':>15}"
        )
    for r in rows:
        print(
            f"{r['problem']:<9} {r['curvax_fits_per_s']:>14,.0f} {r['scipy_fits_per_s']:>13,.0f} "
            f"{r['speedup']:>6.1f}x {r['curvax_converged']:>6.1%} {r['curvax_mean_nfev']:>5.1f} "
            f"{r['median_rel_diff_vs_scipy']:>15.2e}"
        )
        if r["curvax_all_devices_fits_per_s"] is not None:
            print(
                f"{'':<9} {r['curvax_all_devices_fits_per_s']:>14,.0f} {'':>13} "
                f"{r['speedup_all_devices']:>6.1f}x  on {args.devices} devices "
                f"(popt vs 1 device: max rel. diff {r['all_devices_max_rel_diff_popt']:.1e})"
            )
    record = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "options": vars(args),
        "results": rows,
    }
    if args.stream:
        s = stream(args.stream, args.stream_batch, args)
        record["stream"] = s
        print(
            f"\nstream: {s['n_fits']:,} fits in {s['seconds']:.1f} s "
            f"({s['fits_per_s']:,.0f} fits/s), {s['converged']:,} converged, peak RSS "
            f"{s['peak_rss_mib_after']:.0f} MiB "
            f"(before streaming {s['peak_rss_mib_before']:.0f} MiB)"
        )
    out = args.out
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = ROOT / "benchmarks" / "results" / f"batch-{platform.node() or 'host'}-{stamp}.json"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
