"""Warning classes of curvax.

Each warning curvax emits is of one of these classes, so that users can filter or
escalate them precisely (``warnings.simplefilter('error', curvax.OptimizeWarning)``).
"""

from __future__ import annotations


class CurvaxWarning(UserWarning):
    """Base class of every warning curvax emits."""


class OptimizeWarning(CurvaxWarning):
    """The fit finished but something about its result deserves attention.

    Emitted, as by SciPy, when the covariance of the parameters cannot be estimated.
    """


class PerformanceWarning(CurvaxWarning):
    """The fit runs on a slower path than it could (e.g. a model JAX cannot trace)."""
