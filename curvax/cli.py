"""The ``curvax`` command line: ``fit``, ``models``, ``demo`` and ``info``.

Exit codes (for scripts): 0 success, 2 bad input (a file, column, model or option
that cannot be used — one line on stderr, no traceback unless ``--debug``), 3 the fit
did not converge, 1 an unexpected internal error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3


class InputError(Exception):
    """A problem with what the user gave on the command line (exit code 2)."""


def _read_table(path: str, key: str | None) -> dict[str, np.ndarray]:
    """Columns of a CSV/TSV (header row), NPZ, HDF5 or Parquet file as float arrays."""
    import os

    if not os.path.exists(path):
        raise InputError(f"DATA: no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".csv", ".tsv", ".txt", ".dat"):
            delim = "\t" if ext == ".tsv" else ","
            with open(path, encoding="utf-8") as fh:
                header = fh.readline().strip()
            if not header:
                raise InputError(f"DATA: {path} is empty")
            names = [h.strip() for h in header.split(delim)]
            raw = np.genfromtxt(path, delimiter=delim, skip_header=1, dtype=str, ndmin=2)
            cols: dict[str, np.ndarray] = {}
            for j, name in enumerate(names):
                try:
                    cols[name] = raw[:, j].astype(np.float64)
                except ValueError as err:
                    raise InputError(
                        f"DATA: column {name!r} has non-numeric cells ({err})"
                    ) from err
            return cols
        if ext == ".npz":
            with np.load(path) as z:
                return {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
        if ext in (".h5", ".hdf5"):
            try:
                import h5py
            except ImportError as err:
                raise InputError("DATA: HDF5 files need h5py: pip install 'curvax[hdf5]'") from err
            with h5py.File(path, "r") as fh:
                grp = fh[key] if key else fh
                return {k: np.asarray(grp[k], dtype=np.float64) for k in grp}
        if ext == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError as err:
                raise InputError(
                    "DATA: Parquet files need pyarrow: pip install 'curvax[parquet]'"
                ) from err
            table = pq.read_table(path)
            return {k: np.asarray(table[k], dtype=np.float64) for k in table.column_names}
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"DATA: cannot read {path}: {err}") from err
    raise InputError(f"DATA: unknown file type {ext!r} (csv, tsv, npz, h5/hdf5, parquet)")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError as err:
        raise InputError(f"{what}: expected comma-separated numbers, got {text!r}") from err


def _load_model(spec: str):
    """A built-in model name, or ``path/to/file.py:function``."""
    from curvax import models

    if ":" in spec and spec.split(":")[0].endswith(".py"):
        import importlib.util

        path, func = spec.rsplit(":", 1)
        sp = importlib.util.spec_from_file_location("curvax_user_models", path)
        if sp is None or sp.loader is None:
            raise InputError(f"--model: cannot load {path}")
        mod = importlib.util.module_from_spec(sp)
        try:
            sp.loader.exec_module(mod)
        except FileNotFoundError as err:
            raise InputError(f"--model: no such file: {path}") from err
        if not hasattr(mod, func):
            raise InputError(f"--model: {path} has no function {func!r}")
        return getattr(mod, func)
    try:
        return models.get_model(spec)
    except ValueError as err:
        raise InputError(f"--model: {err}") from err


def _fit(args: argparse.Namespace) -> int:
    """Fit a model to columns of a data file; print the report, write JSON and PNG."""
    import os

    import curvax

    cols = _read_table(args.data, args.key)
    names = list(cols)
    xname = args.x or names[0]
    yname = args.y or (names[1] if len(names) > 1 else None)
    for label, name in (("--x", xname), ("--y", yname), ("--sigma", args.sigma)):
        if name is not None and name not in cols:
            raise InputError(f"{label}: no column {name!r} in {args.data}; columns: {names}")
    if yname is None:
        raise InputError("--y: the file has a single column; name the y column")
    model = _load_model(args.model)
    kw: dict = {"loss": args.loss}
    if args.method:
        kw["method"] = args.method
    if args.p0:
        kw["p0"] = _floats(args.p0, "--p0")
    if args.bounds:
        parts = args.bounds.split(":")
        if len(parts) != 2:
            raise InputError("--bounds: expected LOWER:UPPER, each comma-separated numbers")
        kw["bounds"] = (_floats(parts[0], "--bounds"), _floats(parts[1], "--bounds"))
    if args.fix:
        fixed = {}
        for item in args.fix:
            if "=" not in item:
                raise InputError(f"--fix: expected NAME=VALUE, got {item!r}")
            name, value = item.split("=", 1)
            fixed[name.strip()] = _floats(value, "--fix")[0]
        kw["fixed"] = fixed
    if args.sigma:
        kw["sigma"] = cols[args.sigma]
    if args.progress:
        kw["callbacks"] = [curvax.callbacks.ProgressBar()]
    try:
        res = curvax.fit_curve(model, cols[xname], cols[yname], **kw)
    except (ValueError, TypeError) as err:
        raise InputError(str(err)) from err
    print(res.summary())
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        res.to_json(os.path.join(args.out, "result.json"), indent=1)
        try:
            fig = res.plot(os.path.join(args.out, "fit.png"), title=f"{args.model}: {args.data}")
            import matplotlib.pyplot as plt

            plt.close(fig)  # written to disk: do not keep it open (or shown in notebooks)
        except ImportError as err:
            print(f"note: no plot written ({err})", file=sys.stderr)
        print(f"\nwrote {args.out}/result.json and {args.out}/fit.png")
    return EXIT_OK if res.success else EXIT_NOT_CONVERGED


def _models(_: argparse.Namespace) -> int:
    """List the built-in models with their parameters."""
    from curvax import models

    for name, params in models.list_models().items():
        print(f"{name:24s} {', '.join(params)}")
    return EXIT_OK


def _demo(_: argparse.Namespace) -> int:
    """Fit a bundled data set (NIST StRD Eckerle4, a Gaussian peak) and print the report."""
    import curvax
    from curvax.datasets import load_nist, lre

    prob = load_nist("Eckerle4")
    print("curvax demo: NIST StRD 'Eckerle4' — a Gaussian peak, 35 points")
    print(f"model: y = {prob.formula}")
    print(f"start: {dict(zip(prob.param_names, prob.start1.tolist()))}\n")
    res = curvax.fit_curve(prob.model, prob.x, prob.y, p0=prob.start1, param_names=prob.param_names)
    print(res.summary())
    digits = lre(res.x, prob.certified_values)
    print("\nagreement with the NIST certified values (correct significant digits):")
    for name, value, cert, d in zip(prob.param_names, res.x, prob.certified_values, digits):
        print(f"  {name}: {value:.10g}  certified {cert:.10g}  ({d:.1f} digits)")
    return EXIT_OK if res.success else EXIT_NOT_CONVERGED


def _info(_: argparse.Namespace) -> int:
    """Print versions, devices and precision."""
    import jax
    import jaxlib

    import curvax

    print(f"curvax {curvax.__version__}")
    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, numpy {np.__version__}")
    print(f"python {sys.version.split()[0]}")
    for d in jax.devices():
        print(f"device: {d.platform} {d.device_kind} (id {d.id})")
    print("default precision: float64 inside fits (scoped; global JAX setting untouched)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="curvax", description="Nonlinear least-squares curve fitting on JAX."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit a model to a data file")
    p.add_argument("data", help="CSV/TSV (header row), NPZ, HDF5 or Parquet file")
    p.add_argument("--model", required=True, help="built-in name or file.py:function")
    p.add_argument("--x", help="x column (default: first)")
    p.add_argument("--y", help="y column (default: second)")
    p.add_argument("--sigma", help="column of y uncertainties")
    p.add_argument("--key", help="HDF5 group holding the columns")
    p.add_argument("--p0", help="initial values, comma-separated (default: the model's guess)")
    p.add_argument("--bounds", help="LOWER:UPPER, each comma-separated")
    p.add_argument("--fix", action="append", help="NAME=VALUE (repeatable)")
    p.add_argument("--loss", default="linear", help="linear, soft_l1, huber, cauchy, ...")
    p.add_argument("--method", choices=["trf", "lm"])
    p.add_argument("--out", help="directory for result.json and fit.png")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_fit)
    sub.add_parser("models", help="list the built-in models").set_defaults(func=_models)
    sub.add_parser("demo", help="fit a bundled data set and print the report").set_defaults(
        func=_demo
    )
    sub.add_parser("info", help="print versions, devices and precision").set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``curvax`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as err:
        if args.debug:
            raise
        print(f"curvax: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:
        if args.debug:
            raise
        print(
            f"curvax: internal error: {type(err).__name__}: {err} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
