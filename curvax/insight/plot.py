"""Figures of a fit: data, fitted curve, confidence band and residuals (matplotlib).

matplotlib is an optional dependency (``pip install 'curvax[plot]'``); it is imported
only when a figure is asked for, with the non-interactive Agg backend unless another
backend is already active.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - optional dependency
        raise ImportError("plots need matplotlib: pip install 'curvax[plot]'") from err
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        import matplotlib.pyplot as plt

        if not plt.get_fignums():
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fit(
    result: Any,
    path: str | None = None,
    *,
    level: float = 0.95,
    n_curve: int = 400,
    title: str | None = None,
) -> Any:
    """Plot a 1-D fit: data (with error bars when ``sigma`` was given), the fitted curve
    with its ``level`` confidence band, and the residuals in a panel below.

    Parameters
    ----------
    result : FitResult
        A fit made in this session (it keeps references to its model and data).
    path : str, optional
        Save the figure there (format from the extension: .png, .svg, .pdf).
    level : float
        Coverage of the confidence band.
    n_curve : int
        Number of points of the drawn curve.

    Returns
    -------
    matplotlib.figure.Figure
    """
    model, style, (x, y, sigma) = result._fit_context()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(
            f"plot: only fits with 1-D xdata can be drawn (got xdata of shape {x.shape})"
        )
    plt = _pyplot()
    from curvax.insight.uncertainty import predict

    order = np.argsort(x)
    grid = np.linspace(x.min(), x.max(), n_curve)
    band = predict(result, model, grid, level, param_style=style)
    fig, (ax, axr) = plt.subplots(
        2, 1, sharex=True, figsize=(7.0, 5.5), gridspec_kw={"height_ratios": [3, 1]}
    )
    s1 = None if sigma is None else np.asarray(sigma, dtype=np.float64)
    if s1 is not None and s1.ndim == 1:
        ax.errorbar(x, y, yerr=s1, fmt="o", ms=3, lw=0.8, color="0.35", label="data")
    else:
        ax.plot(x, y, "o", ms=3, color="0.35", label="data")
    ax.fill_between(
        grid,
        band.lower,
        band.upper,
        color="tab:blue",
        alpha=0.25,
        label=f"{level:.0%} confidence band",
    )
    ax.plot(grid, band.y, color="tab:blue", lw=1.8, label="fit")
    ax.legend(loc="best", frameon=False)
    ax.set_ylabel("y")
    if title:
        ax.set_title(title)
    yhat = np.asarray(predict(result, model, x, level, param_style=style).y)
    resid = np.asarray(y) - yhat
    axr.axhline(0.0, color="0.5", lw=0.8)
    axr.plot(x[order], resid[order], "o", ms=3, color="tab:red", label="residuals")
    axr.set_xlabel("x")
    axr.set_ylabel("residual")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
