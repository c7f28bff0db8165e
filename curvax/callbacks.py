"""Callbacks that watch (and may stop) a fit, iteration by iteration.

A callback is either a plain function ``fn(state, iteration) -> bool`` or an object
with ``on_iteration(state, iteration) -> bool`` and optionally ``on_start()`` and
``on_complete(result)``.  ``state`` is a :class:`curvax.core.monitor.IterationState`
(iteration, nfev, cost, params, grad_norm, step_norm, trust_radius, accepted).
Returning True stops the fit, which then reports status -2 ("stopped by a callback")
with the best point so far.  Callbacks run on the host through one
``io_callback`` per iteration, compiled in only when callbacks are given.
"""

from __future__ import annotations

import json
from typing import Any

from curvax.core.monitor import IterationState


class Callback:
    """Base class: override any of the three hooks."""

    def on_start(self) -> None:
        """Called once before the first iteration."""

    def on_iteration(self, state: IterationState, iteration: int) -> bool:
        """Called after every trial step; return True to stop."""
        return False

    def on_complete(self, result: Any) -> None:
        """Called once with the :class:`~curvax.FitResult`."""


class ProgressBar(Callback):
    """A tqdm progress bar over evaluations, showing the cost (needs ``tqdm``)."""

    def __init__(self, total: int | None = None, desc: str = "curvax fit", **tqdm_kwargs: Any):
        try:
            from tqdm.auto import tqdm
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError("ProgressBar needs tqdm: pip install 'curvax[progress]'") from err
        self._tqdm = tqdm
        self.total = total
        self.desc = desc
        self.kwargs = tqdm_kwargs
        self.bar: Any = None

    def on_start(self) -> None:
        self.bar = self._tqdm(total=self.total, desc=self.desc, unit="eval", **self.kwargs)

    def on_iteration(self, state: IterationState, iteration: int) -> bool:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(cost=f"{state.cost:.6g}", refresh=False)
        return False

    def on_complete(self, result: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class IterationLogger(Callback):
    """Record every iteration; optionally write them as JSON lines to ``filename``."""

    def __init__(self, filename: str | None = None) -> None:
        self.filename = filename
        self.records: list[dict[str, Any]] = []
        self._fh: Any = None

    def on_start(self) -> None:
        self.records = []
        if self.filename is not None:
            self._fh = open(self.filename, "w", encoding="utf-8")

    def on_iteration(self, state: IterationState, iteration: int) -> bool:
        rec = {
            "iteration": state.iteration,
            "nfev": state.nfev,
            "cost": state.cost,
            "params": [float(v) for v in state.params],
            "grad_norm": state.grad_norm,
            "step_norm": state.step_norm,
            "trust_radius": state.trust_radius,
            "accepted": state.accepted,
        }
        self.records.append(rec)
        if self._fh is not None:
            self._fh.write(json.dumps(rec) + "\n")
        return False

    def on_complete(self, result: Any) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class EarlyStopping(Callback):
    """Stop when the cost has not improved by more than ``min_delta`` (relative) for
    ``patience`` consecutive accepted iterations."""

    def __init__(self, min_delta: float = 1e-6, patience: int = 5) -> None:
        if min_delta < 0:
            raise ValueError(f"min_delta: must be non-negative, got {min_delta}")
        if patience < 1:
            raise ValueError(f"patience: must be a positive integer, got {patience}")
        self.min_delta = float(min_delta)
        self.patience = int(patience)
        self.best = float("inf")
        self.wait = 0
        self.stopped_at: int | None = None

    def on_start(self) -> None:
        self.best, self.wait, self.stopped_at = float("inf"), 0, None

    def on_iteration(self, state: IterationState, iteration: int) -> bool:
        if not state.accepted:
            return False
        if state.cost < self.best * (1.0 - self.min_delta):
            self.best = state.cost
            self.wait = 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_at = iteration
            return True
        return False


__all__ = ["Callback", "EarlyStopping", "IterationLogger", "IterationState", "ProgressBar"]
