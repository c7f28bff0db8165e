"""curvax: nonlinear least-squares curve fitting on JAX."""

from curvax import callbacks, datasets, models
from curvax.batch import BatchResult, curve_fit_batch, curve_fit_batch_stream
from curvax.compilation_cache import _enable_from_environment, enable_persistent_cache
from curvax.core.host_buffers import release_host_buffers
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
    multistart,
    predict,
)
from curvax.scale import (
    LargeDatasetFitter,
    LDMemoryConfig,
    StreamingConfig,
    StreamingOptimizer,
    curve_fit_large,
    estimate_memory_requirements,
    fit_chunked,
)
from curvax.warnings import CurvaxWarning, OptimizeWarning, PerformanceWarning

__version__ = "0.1.0"

_enable_from_environment()

__all__ = [
    "BatchResult",
    "CurvaxWarning",
    "CurveFit",
    "Diagnostics",
    "FitResult",
    "LDMemoryConfig",
    "LargeDatasetFitter",
    "MixedPrecisionConfig",
    "OptimizeWarning",
    "PerformanceWarning",
    "StreamingConfig",
    "StreamingOptimizer",
    "__version__",
    "bootstrap",
    "callbacks",
    "compare_models",
    "confidence_intervals",
    "configure_mixed_precision",
    "curve_fit",
    "curve_fit_batch",
    "curve_fit_batch_stream",
    "curve_fit_large",
    "datasets",
    "diagnose_result",
    "enable_persistent_cache",
    "estimate_memory_requirements",
    "f_test",
    "fit_chunked",
    "fit_curve",
    "least_squares",
    "models",
    "multistart",
    "predict",
    "release_host_buffers",
]
