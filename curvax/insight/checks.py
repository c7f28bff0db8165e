"""Argument checks shared by the functions of :mod:`curvax.insight`.

Each check raises ``TypeError`` for a wrong kind of object and ``ValueError`` for a
wrong value, with a message that names the argument (as
:mod:`curvax.core.validation` does for the fitting functions).
"""

from __future__ import annotations

from typing import Any

from curvax.core.result import FitResult

__all__ = ["check_fit_result"]


def check_fit_result(result: Any, name: str = "result") -> FitResult:
    """``result`` itself when it is a :class:`~curvax.FitResult`, else ``TypeError``."""
    if isinstance(result, FitResult):
        return result
    hint = ""
    if isinstance(result, tuple):
        hint = (
            "; curvax.curve_fit returns (popt, pcov) as SciPy does — use curvax.fit_curve "
            "(or full_output) for a FitResult"
        )
    raise TypeError(
        f"{name}: expected a FitResult (from curvax.fit_curve or curvax.least_squares), "
        f"got {type(result).__name__}{hint}"
    )
