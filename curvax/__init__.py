"""curvax: nonlinear least-squares curve fitting on JAX."""

from curvax import callbacks, datasets, models
from curvax.compilation_cache import _enable_from_environment, enable_persistent_cache
from curvax.core.least_squares import least_squares
from curvax.core.mixed_precision import MixedPrecisionConfig, configure_mixed_precision
from curvax.core.result import FitResult
from curvax.curve_fit import curve_fit, fit_curve
from curvax.fit import CurveFit
from curvax.insight import (
    Diagnostics,
    bootstrap,
    compare_models,
    confidence_intervals,
    diagnose_result,
    f_test,
    predict,
)
from curvax.warnings import CurvaxWarning, OptimizeWarning, PerformanceWarning

__version__ = "0.1.0"

_enable_from_environment()

__all__ = [
    "CurvaxWarning",
    "CurveFit",
    "Diagnostics",
    "FitResult",
    "MixedPrecisionConfig",
    "OptimizeWarning",
    "PerformanceWarning",
    "__version__",
    "bootstrap",
    "callbacks",
    "compare_models",
    "confidence_intervals",
    "configure_mixed_precision",
    "curve_fit",
    "datasets",
    "diagnose_result",
    "enable_persistent_cache",
    "f_test",
    "fit_curve",
    "least_squares",
    "models",
    "predict",
]
