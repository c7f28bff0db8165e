"""Mixed precision: start a fit in float32, continue in float64 when float32 runs out.

float32 halves the memory of data copies and is many times faster on GPUs, but its
ε ≈ 1.2·10⁻⁷ limits how far a fit can go.  With mixed precision enabled a fit runs in
float32 first and watches, after every trial step, for the signs that float32 is no
longer enough (the *upgrade triggers*):

* the cost has decreased by less than ``stall_rtol`` (relative) for
  ``max_degradation_iterations`` consecutive trial steps;
* the gradient's max-norm exceeds ``gradient_threshold`` (numbers growing out of
  float32's range);
* NaN or Inf appear in the cost or the parameters;
* the trust radius collapses below ``min_trust_radius · max(1, ‖x‖)``.

On a trigger, or when the float32 phase ends without meeting tolerances that
float32 can honour (any of ftol/xtol/gtol below ``FLOAT32_TOL``), the fit continues
in float64 from where it stands, with the remaining evaluation budget; the result
reports ``precision_upgraded`` and the dtype that produced the final answer.

Configuration is explicit and scoped: :func:`configure_mixed_precision` sets it for
the current context (thread / task) and can be used as a context manager that
restores the previous setting; the process-wide default is read once, at import,
from the environment variables ``CURVAX_MIXED_PRECISION_ENABLE`` (0/1, true/false),
``CURVAX_MIXED_PRECISION_MAX_DEGRADATION_ITERATIONS``,
``CURVAX_MIXED_PRECISION_GRADIENT_THRESHOLD``, ``CURVAX_MIXED_PRECISION_STALL_RTOL``
and ``CURVAX_MIXED_PRECISION_MIN_TRUST_RADIUS``.  A fit's own ``mixed_precision=``
argument overrides both.
"""

from __future__ import annotations

import contextvars
import math
import os
from dataclasses import dataclass, replace
from typing import Any

from curvax.core.monitor import IterationState

FLOAT32_TOL = 1e-6


@dataclass(frozen=True)
class MixedPrecisionConfig:
    """Settings of the float32 → float64 fallback (see the module docstring)."""

    enable: bool = False
    max_degradation_iterations: int = 5
    gradient_threshold: float = 1e30
    stall_rtol: float = 1e-6
    min_trust_radius: float = 1e-7

    def __post_init__(self) -> None:
        if self.max_degradation_iterations < 1:
            raise ValueError(
                "max_degradation_iterations: must be a positive integer, got "
                f"{self.max_degradation_iterations}"
            )
        for name in ("gradient_threshold", "stall_rtol", "min_trust_radius"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{name}: must be a positive finite number, got {v!r}")


def _env_default() -> MixedPrecisionConfig:
    def flag(name: str) -> bool | None:
        raw = os.environ.get(name)
        if raw is None:
            return None
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected 0/1 or true/false, got {raw!r}")

    kw: dict[str, Any] = {}
    enable = flag("CURVAX_MIXED_PRECISION_ENABLE")
    if enable is not None:
        kw["enable"] = enable
    for field, conv in (
        ("max_degradation_iterations", int),
        ("gradient_threshold", float),
        ("stall_rtol", float),
        ("min_trust_radius", float),
    ):
        raw = os.environ.get(f"CURVAX_MIXED_PRECISION_{field.upper()}")
        if raw is not None:
            try:
                kw[field] = conv(raw)
            except ValueError as err:
                raise ValueError(
                    f"CURVAX_MIXED_PRECISION_{field.upper()}: not a number: {raw!r}"
                ) from err
    return MixedPrecisionConfig(**kw)


_CURRENT: contextvars.ContextVar[MixedPrecisionConfig] = contextvars.ContextVar(
    "curvax_mixed_precision",
    default=_env_default(),  # noqa: B039 - the config is a frozen dataclass
)


class _Scope:
    """Returned by :func:`configure_mixed_precision`; ``with`` restores the old setting."""

    def __init__(self, config: MixedPrecisionConfig) -> None:
        self.config = config
        self._token = _CURRENT.set(config)

    def __enter__(self) -> MixedPrecisionConfig:
        return self.config

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)


def configure_mixed_precision(enable: bool = True, **settings: Any) -> _Scope:
    """Set mixed precision for the current context; usable as a context manager.

    >>> with configure_mixed_precision(enable=True, max_degradation_iterations=3):
    ...     pass  # fits here start in float32
    """
    unknown = set(settings) - {
        "max_degradation_iterations",
        "gradient_threshold",
        "stall_rtol",
        "min_trust_radius",
    }
    if unknown:
        raise TypeError(f"configure_mixed_precision: unknown setting(s) {sorted(unknown)}")
    return _Scope(replace(_CURRENT.get(), enable=bool(enable), **settings))


def current_mixed_precision() -> MixedPrecisionConfig:
    """The mixed-precision configuration in force in this context."""
    return _CURRENT.get()


def resolve(arg: bool | MixedPrecisionConfig | None) -> MixedPrecisionConfig:
    """A fit's ``mixed_precision=`` argument, falling back to the context setting."""
    if arg is None:
        return _CURRENT.get()
    if isinstance(arg, MixedPrecisionConfig):
        return arg
    if isinstance(arg, bool):
        return replace(_CURRENT.get(), enable=arg)
    raise TypeError(f"mixed_precision: expected True/False or a MixedPrecisionConfig, got {arg!r}")


class UpgradeTrigger:
    """Callback that stops the float32 phase when a trigger of the config fires."""

    def __init__(self, config: MixedPrecisionConfig) -> None:
        self.config = config
        self.reason: str | None = None
        self._stall = 0
        self._last: float | None = None

    def on_iteration(self, state: IterationState, iteration: int) -> bool:
        c = self.config
        xnorm = float(sum(float(v) * float(v) for v in state.params) ** 0.5)
        if not math.isfinite(state.cost) or not all(math.isfinite(float(v)) for v in state.params):
            self.reason = "non-finite values"
        elif state.grad_norm > c.gradient_threshold:
            self.reason = "gradient above threshold"
        elif state.trust_radius < c.min_trust_radius * max(1.0, xnorm):
            self.reason = "trust radius collapsed"
        else:
            if self._last is not None and self._last - state.cost < c.stall_rtol * abs(self._last):
                self._stall += 1
            else:
                self._stall = 0
            self._last = state.cost
            if self._stall >= c.max_degradation_iterations:
                self.reason = "progress stalled"
        return self.reason is not None
