"""The ``curvax`` command line: ``curvax demo`` and ``curvax info``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

EXIT_OK = 0
EXIT_NOT_CONVERGED = 3


def _demo(_: argparse.Namespace) -> int:
    """Fit a bundled data set (NIST StRD Eckerle4, a Gaussian peak) and print the report."""
    import curvax
    from curvax.datasets import load_nist, lre

    prob = load_nist("Eckerle4")
    print("curvax demo: NIST StRD 'Eckerle4' — a Gaussian peak, 35 points")
    print(f"model: y = {prob.formula}")
    print(f"start: {dict(zip(prob.param_names, prob.start1.tolist()))}\n")
    res = curvax.fit_curve(
        prob.model, prob.x, prob.y, p0=prob.start1, param_names=prob.param_names
    )
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
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="fit a bundled data set and print the report").set_defaults(
        func=_demo
    )
    sub.add_parser("info", help="print versions, devices and precision").set_defaults(
        func=_info
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``curvax`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
