"""Insight into a finished fit: diagnostics, uncertainty and model comparison.

* :func:`diagnose_result` — convergence, identifiability (Jacobian singular values and
  the degenerate parameter combinations), bounds, correlations, residual tests (runs,
  serial correlation, moments), influence (leverage, Cook's distance) and goodness of
  fit (χ², R², AIC/AICc/BIC), with advice for every warning.
* :func:`confidence_intervals`, :func:`predict` (confidence and prediction bands by
  the delta method) and :func:`bootstrap` (residual or pairs resampling).
* :func:`compare_models` and :func:`f_test`.
* :mod:`curvax.insight.stats` — the t, F and normal distributions without SciPy.

The formulas are in each module's docstring and in ``docs/diagnostics.md``.
"""

from curvax.insight.compare import FTestResult, ModelComparison, compare_models, f_test
from curvax.insight.diagnostics import (
    DegenerateDirection,
    Diagnostics,
    DiagnosticWarning,
    diagnose_result,
)
from curvax.insight.multistart import MultiStartResult, multistart
from curvax.insight.uncertainty import (
    BootstrapResult,
    ParameterIntervals,
    Prediction,
    bootstrap,
    confidence_intervals,
    predict,
)

__all__ = [
    "BootstrapResult",
    "DegenerateDirection",
    "DiagnosticWarning",
    "Diagnostics",
    "FTestResult",
    "ModelComparison",
    "MultiStartResult",
    "ParameterIntervals",
    "Prediction",
    "bootstrap",
    "compare_models",
    "confidence_intervals",
    "diagnose_result",
    "f_test",
    "multistart",
    "predict",
]
