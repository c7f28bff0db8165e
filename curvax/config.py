"""Configuration objects of the large-data front doors.

``LDMemoryConfig`` sets the memory budget of :class:`curvax.scale.LargeDatasetFitter`;
``StreamingConfig`` sets up :class:`curvax.scale.StreamingOptimizer`.  Both validate
their fields on construction and name the offending one in the error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

OPTIMIZERS = ("lm", "adam", "sgd")


def _pos_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")


def _pos_float(name: str, v: Any, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0) or v == float("inf"):
        raise ValueError(f"{name}: expected a positive finite number, got {v!r}")


@dataclass(frozen=True)
class LDMemoryConfig:
    """Memory budget of a large fit.

    Parameters
    ----------
    max_memory_gb : float
        Budget for the fit's working memory (chunk buffers, Jacobian blocks, device
        copies), in GiB; the data already held by the caller are not counted.
    min_chunk_size, max_chunk_size : int
        Bounds on the chunk size chosen from the budget.
    enable_streaming : bool
        Allow the chunked (streamed) strategy when the data do not fit the budget; if
        False such a fit raises instead.
    safety_factor : float
        Fraction of the budget actually planned for (the rest is head-room).
    """

    max_memory_gb: float = 4.0
    min_chunk_size: int = 1024
    max_chunk_size: int = 1_048_576
    enable_streaming: bool = True
    safety_factor: float = 0.8

    def __post_init__(self) -> None:
        _pos_float("max_memory_gb", self.max_memory_gb)
        _pos_int("min_chunk_size", self.min_chunk_size)
        _pos_int("max_chunk_size", self.max_chunk_size)
        if self.min_chunk_size > self.max_chunk_size:
            raise ValueError(
                f"min_chunk_size: {self.min_chunk_size} exceeds max_chunk_size "
                f"{self.max_chunk_size}"
            )
        if not 0 < self.safety_factor <= 1:
            raise ValueError(
                f"safety_factor: expected a number in (0, 1], got {self.safety_factor!r}"
            )


@dataclass(frozen=True)
class StreamingConfig:
    """Set-up of a :class:`~curvax.scale.StreamingOptimizer`.

    Parameters
    ----------
    batch_size : int
        Points per chunk (exact mode) or per gradient step (online mode).
    n_epochs : int
        Passes over the data: the most trust-region steps in exact mode (``'lm'``),
        the number of epochs in online mode (``'adam'``, ``'sgd'``).
    optimizer : {'lm', 'adam', 'sgd'}
        ``'lm'``: exact multi-pass mode, one trust-region step per pass over a
        replayable source, reaching the in-memory answer.  ``'adam'``/``'sgd'``:
        online first-order updates on each batch, for sources that cannot be replayed.
    learning_rate : float
        Step size of Adam/SGD.
    beta1, beta2, eps : float
        Adam's moment decay rates and denominator guard.
    momentum : float
        Heavy-ball momentum of SGD (0 = plain SGD).
    enable_checkpointing : bool
        Write checkpoints to ``checkpoint_dir`` every ``checkpoint_interval`` passes
        (exact mode) or batches (online mode).
    tol : float
        Exact mode: ``ftol = xtol = gtol`` of the trust-region solver.
    max_retries, retry_backoff, on_chunk_error
        Fault tolerance of reads (see :func:`curvax.scale.fit_chunked`).
    """

    batch_size: int = 65536
    n_epochs: int = 50
    optimizer: str = "lm"
    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    enable_checkpointing: bool = False
    checkpoint_dir: str | None = None
    checkpoint_interval: int = 1
    tol: float = 1e-12
    max_retries: int = 3
    retry_backoff: float = 0.05
    on_chunk_error: str = "raise"

    def __post_init__(self) -> None:
        _pos_int("batch_size", self.batch_size)
        _pos_int("n_epochs", self.n_epochs)
        _pos_int("checkpoint_interval", self.checkpoint_interval)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        _pos_float("learning_rate", self.learning_rate)
        _pos_float("tol", self.tol)
        _pos_float("eps", self.eps)
        rb = self.retry_backoff
        if isinstance(rb, bool) or not isinstance(rb, (int, float)) or not 0 <= rb < float("inf"):
            raise ValueError(f"retry_backoff: expected a non-negative finite number, got {rb!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"{name}: expected a number in [0, 1), got {v!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {self.momentum!r}")
        if self.enable_checkpointing and not self.checkpoint_dir:
            raise ValueError("checkpoint_dir: required when enable_checkpointing=True")
        if self.on_chunk_error not in ("raise", "skip"):
            raise ValueError(
                f"on_chunk_error: expected 'raise' or 'skip', got {self.on_chunk_error!r}"
            )
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or (self.max_retries < 0)
        ):
            raise ValueError(
                f"max_retries: expected a non-negative integer, got {self.max_retries!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["LDMemoryConfig", "StreamingConfig"]
