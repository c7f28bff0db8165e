"""Small helpers shared by the example scripts: options, figure, report table."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import curvax


def parse_args(argv: Sequence[str] | None, doc: str | None) -> argparse.Namespace:
    """Command-line options shared by all examples: ``--small`` and ``--out DIR``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--small", action="store_true", help="fewer points (fast; for tests)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the figure")
    return parser.parse_args(argv)


def save_figure(
    result: curvax.FitResult, out: Path | None, name: str, labels: tuple[str, str, str]
) -> Path | None:
    """Save ``result.plot()`` with ``labels = (title, x label, y label)`` as ``out/name``.

    ``out`` defaults to a new temporary directory; without matplotlib nothing is drawn.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return None
    out = Path(tempfile.mkdtemp(prefix="curvax-example-")) if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    title, xlabel, ylabel = labels
    fig = result.plot(title=title)  # data, fit, 95% band and a residual panel
    fig.axes[0].set_ylabel(ylabel)
    fig.axes[-1].set_xlabel(xlabel)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure saved to {path}")
    return path


def report(truth: dict[str, float], est: dict[str, float], err: dict[str, float]) -> None:
    """Print estimate ± standard error next to the true value, and the z-score."""
    print(f"{'quantity':<22}{'true':>12}{'estimate':>14}{'std err':>12}{'z':>7}")
    for key, true in truth.items():
        z = (est[key] - true) / err[key]
        print(f"{key:<22}{true:>12.5g}{est[key]:>14.6g}{err[key]:>12.3g}{z:>7.2f}")
