"""curvax: nonlinear least-squares curve fitting on JAX."""

from curvax import callbacks, datasets, models
from curvax.core.least_squares import least_squares
from curvax.core.mixed_precision import MixedPrecisionConfig, configure_mixed_precision
from curvax.core.result import FitResult
from curvax.curve_fit import curve_fit, fit_curve
from curvax.fit import CurveFit
from curvax.warnings import CurvaxWarning, OptimizeWarning, PerformanceWarning

__version__ = "0.1.0"

__all__ = [
    "CurvaxWarning",
    "CurveFit",
    "FitResult",
    "MixedPrecisionConfig",
    "OptimizeWarning",
    "PerformanceWarning",
    "__version__",
    "callbacks",
    "configure_mixed_precision",
    "curve_fit",
    "datasets",
    "fit_curve",
    "least_squares",
    "models",
]
