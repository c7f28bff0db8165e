"""``StreamingOptimizer``: multi-pass exact fits and online first-order fits.

Two modes (``StreamingConfig.optimizer``):

``'lm'`` — exact multi-pass
    Each pass over a replayable source computes the full reduction at one trial
    point, and the trust-region solver (``trf`` with bounds or a robust loss, else
    ``lm``; :mod:`curvax.scale.chunked`) takes one step from it: one step per pass,
    at most ``n_epochs`` passes.  The answer is the in-memory one.  Checkpoints hold
    the best point so far (the solver's current iterate: a trial point is accepted
    only when it lowers the cost); a resumed fit restarts the trust region from it
    and converges to the same minimiser.

``'adam'`` / ``'sgd'`` — online
    For sources that cannot be replayed.  On a batch of ``n`` points with cost
    ``C_b = ½ Σ ρ(r_i²)`` the gradient is ``g = J̃ᵀ r̃ / n`` (mean over the batch,
    from the same per-chunk reduction), and

    * SGD with momentum μ:  ``u ← μ u + g``,  ``p ← p − η u``;
    * Adam (Kingma & Ba 2015):  ``m ← β₁ m + (1−β₁) g``,  ``v ← β₂ v + (1−β₂) g²``,
      ``p ← p − η m̂ / (√v̂ + ε)`` with ``m̂ = m/(1−β₁ᵗ)``, ``v̂ = v/(1−β₂ᵗ)``;

    then ``p`` is clipped into the bounds.  These are plain implementations (no
    optax dependency).  First-order online estimates approach the least-squares
    answer only approximately; the covariance reported in this mode is built from
    the triangular factors of the last epoch's batches, each at the parameters of
    its own step, and is therefore approximate as well.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.config import StreamingConfig
from curvax.core.covariance import covariance_from_factor
from curvax.core.engine import Kernel
from curvax.core.memo import canonical_function
from curvax.core.reduction import empty_factor, merge_factors
from curvax.core.result import FitResult
from curvax.core.validation import check_magnitude_value
from curvax.scale.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
)
from curvax.scale.chunked import (
    LargeFitResult,
    check_fit_setup,
    check_model_output,
    fit_chunked,
)
from curvax.scale.host_reduce import check_chunk_values, chunk_kernel
from curvax.scale.sources import (
    Chunk,
    ChunkFailure,
    ChunkReadError,
    ChunkSource,
    ReadPolicy,
    as_source,
    iter_chunks,
    make_chunk,
    with_retries,
)
from curvax.warnings import PerformanceWarning

CHECKPOINT_NAME = "curvax_checkpoint.npz"
_BATCH_NAMES = ("x_batch", "y_batch", "sigma_batch")


@dataclass
class StreamingState:
    """What :meth:`StreamingOptimizer.update` returns."""

    params: np.ndarray
    cost: float
    grad: np.ndarray
    converged: bool
    epoch: int
    batch: int
    n_seen: int


class StreamingOptimizer:
    """Fit a model to a stream of data (see module docstring).

    Parameters
    ----------
    model : callable
        ``f(x, a, b, ...)`` or ``f(x, params)`` (``jax.numpy``).
    p0 : array_like
        Starting parameters.
    config : StreamingConfig
    loss, f_scale : as in :func:`curvax.curve_fit`
    method : {'trf', 'lm'}, optional
        Exact mode's trust-region method (default as :func:`curvax.curve_fit`).  The
        online mode does not use it, but checks it as the exact mode does.
    bounds : (lb, ub)
        ``p0`` must lie inside them (online steps are clipped into them).
    dtype, param_style : as in :func:`curvax.fit_curve`

    Raises
    ------
    TypeError
        ``model`` is not callable or ``config`` not a :class:`StreamingConfig`.
    ValueError
        Invalid arguments, named in the message.  Both modes run the checks of
        :func:`~curvax.scale.chunked.fit_chunked` (:func:`~curvax.scale.chunked.
        check_fit_setup` here; the model's output on the first chunk and every chunk's
        data, :func:`~curvax.scale.host_reduce.check_chunk_values`, during the fit).
    """

    def __init__(
        self,
        model: Any,
        p0: Any,
        config: StreamingConfig | None = None,
        *,
        loss: Any = "linear",
        f_scale: float = 1.0,
        method: str | None = None,
        bounds: Any = (-np.inf, np.inf),
        dtype: Any = None,
        param_style: str = "auto",
    ) -> None:
        if not callable(model):
            raise TypeError(f"model: expected a callable, got {type(model).__name__}")
        config = StreamingConfig() if config is None else config
        if not isinstance(config, StreamingConfig):
            raise TypeError(f"config: expected a StreamingConfig, got {type(config).__name__}")
        # the checks of the exact mode (fit_chunked), for both modes
        setup = check_fit_setup(
            model,
            p0,
            bounds=bounds,
            method=method,
            loss=loss,
            f_scale=f_scale,
            dtype=dtype,
            param_style=param_style,
            model_name="model",
        )
        self.model = model
        self.config = config
        self.loss = loss
        self.f_scale = setup.f_scale
        self.method = setup.method
        self.bounds = bounds
        self.dtype = setup.dtype
        self.p0 = setup.p0
        self.params = self.p0.copy()
        self.lb, self.ub = setup.lb, setup.ub
        self.param_style = setup.style
        self._jac: str | None = None  # 'fwd', or 'host' for a model JAX cannot trace
        self.fingerprint = model_fingerprint(model, self.p0.size, loss, self.f_scale)
        # online state
        self.t = 0
        self.m = np.zeros_like(self.p0)
        self.v = np.zeros_like(self.p0)
        self.epoch = 0
        self.batch = 0
        self.n_seen = 0
        self._epoch_cost = 0.0
        self._epoch_factor: np.ndarray | None = None
        self._last_epoch: tuple[float, np.ndarray, int] | None = None
        self._prev_epoch_cost: float | None = None
        self.converged = False
        self.n_passes = 0
        self.source_fingerprint: str | None = None
        self._result: FitResult | None = None
        self._kernel: Kernel | None = None

    # -- online mode -----------------------------------------------------------------
    def _check_model(self, x: np.ndarray) -> None:
        """Probe the model on a chunk's points, as the exact mode does (once per shape)."""
        traceable = check_model_output(
            self.model, self.param_style, x, self.params, self.dtype, "model"
        )
        if self._jac is None:
            if not traceable:
                warnings.warn(
                    "model: the model cannot be traced by JAX; curvax fits it through a "
                    "slower host path with finite differences. Write it with jax.numpy "
                    "for the compiled path.",
                    PerformanceWarning,
                    stacklevel=3,
                )
            self._jac = "fwd" if traceable else "host"

    def _online_kernel(self) -> Any:
        # one function object per computation: a global the model reads, changed between
        # batches, gives another object and so another compiled kernel (core/memo.py)
        fn = canonical_function(self.model)
        if self._kernel is None or self._kernel.fn is not fn:
            self._kernel = Kernel(
                kind="pointwise",
                fn=fn,
                param_style=self.param_style,
                jac=self._jac or "fwd",
                loss=self.loss,
                method="trf",
                jac_scale=True,
            )
        return chunk_kernel(self._kernel)

    def update(self, x_batch: Any, y_batch: Any, sigma_batch: Any = None) -> StreamingState:
        """One Adam/SGD step on a batch (online mode); returns the state after it.

        ``cost`` and ``grad`` are the batch's cost ``½ Σ ρ`` and mean gradient at the
        parameters *before* the step.

        Raises
        ------
        ValueError
            An empty batch, complex or mismatched arrays, NaN/Inf values, non-positive
            ``sigma_batch``, or a model that does not return one value per point.
        """
        if self.config.optimizer == "lm":
            raise ValueError(
                "update: the exact mode (optimizer='lm') takes whole passes over a "
                "replayable source; call .fit(source), or use optimizer='adam'/'sgd' for "
                "batch-by-batch updates"
            )
        ch = make_chunk(x_batch, y_batch, sigma_batch, names=_BATCH_NAMES)
        if ch.n == 0:
            raise ValueError("y_batch: the batch is empty (no points)")
        return self._step(ch, _BATCH_NAMES[2])

    def _step(self, ch: Chunk, sigma_name: str = "sigma") -> StreamingState:
        dt = self.dtype
        # the per-chunk checks of the exact mode (curvax.scale.host_reduce)
        _, max_abs = check_chunk_values(
            ch, f"batch {self.batch}", None, sigma_name=sigma_name, omit_hint=False
        )
        check_magnitude_value(max_abs)
        self._check_model(ch.x)
        fn = self._online_kernel()
        with jax.enable_x64(dt == np.float64):
            d: dict[str, Any] = {"x": ch.x.astype(dt), "y": ch.y.astype(dt)}
            if ch.sigma is not None:
                d["w"] = (1.0 / ch.sigma).astype(dt)
            cost, factor, bad = fn(
                jnp.asarray(self.params, dt),
                empty_factor(self.p0.size, dt),
                d,
                jnp.asarray(self.f_scale, dt),
            )
            factor = np.asarray(factor, dtype=np.float64)
            if self._epoch_factor is None:
                self._epoch_factor = factor
            else:
                self._epoch_factor = np.asarray(
                    merge_factors(jnp.asarray(self._epoch_factor), jnp.asarray(factor))
                )
        cost = float(cost)
        if int(bad) or not np.isfinite(cost):
            raise FloatingPointError(
                f"update: the model is not finite on batch {self.batch} at params {self.params}"
            )
        R, qtf = factor[:-1, :-1], factor[:-1, -1]
        g = R.T @ qtf / ch.n
        cfg = self.config
        if cfg.optimizer == "adam":
            self.t += 1
            self.m = cfg.beta1 * self.m + (1 - cfg.beta1) * g
            self.v = cfg.beta2 * self.v + (1 - cfg.beta2) * g * g
            mh = self.m / (1 - cfg.beta1**self.t)
            vh = self.v / (1 - cfg.beta2**self.t)
            step = cfg.learning_rate * mh / (np.sqrt(vh) + cfg.eps)
        else:
            self.t += 1
            self.m = cfg.momentum * self.m + g
            step = cfg.learning_rate * self.m
        self.params = np.clip(self.params - step, self.lb, self.ub)
        self.batch += 1
        self.n_seen += ch.n
        self._epoch_cost += cost
        return StreamingState(
            self.params.copy(), cost, g, self.converged, self.epoch, self.batch, self.n_seen
        )

    def _end_epoch(self) -> None:
        cost = self._epoch_cost
        if self._prev_epoch_cost is not None:
            self.converged = abs(self._prev_epoch_cost - cost) <= 1e-6 * max(cost, 1e-300)
        self._prev_epoch_cost = cost
        if self._epoch_factor is not None:
            self._last_epoch = (cost, self._epoch_factor, self.n_seen)
        self.epoch += 1
        self.batch = 0
        self.n_seen = 0
        self._epoch_cost = 0.0
        self._epoch_factor = None

    # -- checkpoints -----------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "kind": "exact" if self.config.optimizer == "lm" else "online",
            "model_fingerprint": self.fingerprint,
            "source_fingerprint": self.source_fingerprint,
            "config": self.config.to_dict(),
            "n_passes": self.n_passes,
            "epoch": self.epoch,
            "batch": self.batch,
            "n_seen": self.n_seen,
            "t": self.t,
            "epoch_cost": self._epoch_cost,
            "prev_epoch_cost": self._prev_epoch_cost,
        }

    def save_checkpoint(self, path: str) -> None:
        """Write the state atomically to ``path`` (see :mod:`curvax.scale.checkpoint`)."""
        arrays = {"params": self.params, "m": self.m, "v": self.v}
        if self._epoch_factor is not None:
            arrays["epoch_factor"] = self._epoch_factor
        save_checkpoint(path, self._meta(), arrays)

    @classmethod
    def load_checkpoint(
        cls, path: str, model: Any, config: StreamingConfig | None = None, **kwargs: Any
    ) -> StreamingOptimizer:
        """Rebuild an optimizer from a checkpoint; ``model`` must be the same model.

        ``config`` defaults to the one stored.  Raises :class:`CheckpointError` for a
        damaged file or a checkpoint of another model.
        """
        meta, arrays = load_checkpoint(path)
        cfg = config or StreamingConfig(**meta["config"])
        opt = cls(model, arrays["params"], cfg, **kwargs)
        opt._restore(meta, arrays, path)
        return opt

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path: str) -> None:
        if meta.get("model_fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"checkpoint: {path!r} was written for a different model, number of "
                "parameters or loss; refusing to resume"
            )
        kind = "exact" if self.config.optimizer == "lm" else "online"
        if meta.get("kind") != kind:
            raise CheckpointError(
                f"checkpoint: {path!r} is from the {meta.get('kind')} mode, this optimizer "
                f"runs the {kind} mode"
            )
        self.params = np.asarray(arrays["params"], dtype=np.float64)
        self.m = np.asarray(arrays.get("m", np.zeros_like(self.params)))
        self.v = np.asarray(arrays.get("v", np.zeros_like(self.params)))
        self._epoch_factor = arrays.get("epoch_factor")
        self.n_passes = int(meta.get("n_passes", 0))
        self.epoch = int(meta.get("epoch", 0))
        self.batch = int(meta.get("batch", 0))
        self.n_seen = int(meta.get("n_seen", 0))
        self.t = int(meta.get("t", 0))
        self._epoch_cost = float(meta.get("epoch_cost", 0.0))
        pc = meta.get("prev_epoch_cost")
        self._prev_epoch_cost = None if pc is None else float(pc)
        self.source_fingerprint = meta.get("source_fingerprint")

    def _checkpoint_path(self) -> str | None:
        cfg = self.config
        if not cfg.enable_checkpointing or not cfg.checkpoint_dir:
            return None
        return os.path.join(cfg.checkpoint_dir, CHECKPOINT_NAME)

    # -- fitting ---------------------------------------------------------------------
    def fit(
        self,
        source: Any,
        y: Any = None,
        sigma: Any = None,
        *,
        resume: bool | str = True,
        show_progress: bool = False,
    ) -> FitResult:
        """Run the epochs over ``source`` and return the result.

        ``resume=True`` continues from the checkpoint in ``checkpoint_dir`` when there
        is one (``False``: start afresh; a path: that checkpoint).  A checkpoint of
        another model or data source is refused with :class:`CheckpointError`.
        """
        src = as_source(source, y, sigma)
        cfg = self.config
        policy = ReadPolicy(max_retries=cfg.max_retries, retry_backoff=cfg.retry_backoff)
        sample = with_retries(lambda: src.sample(1024), policy)
        self._check_model(sample.x)
        src_fp = src.fingerprint()
        ck = self._checkpoint_path()
        path = resume if isinstance(resume, str) else (ck if resume else None)
        if path is not None and os.path.exists(path):
            meta, arrays = load_checkpoint(path)
            if meta.get("source_fingerprint") != src_fp:
                raise CheckpointError(
                    f"checkpoint: {path!r} was written for a different data source; "
                    "refusing to resume"
                )
            self._restore(meta, arrays, path)
        elif isinstance(resume, str):
            raise CheckpointError(f"checkpoint: file {resume!r} does not exist")
        self.source_fingerprint = src_fp
        if self.config.optimizer == "lm":
            res = self._fit_exact(src, ck, show_progress)
        else:
            res = self._fit_online(src, ck)
        self._result = res
        return res

    def _fit_exact(self, src: ChunkSource, ck: str | None, show_progress: bool) -> FitResult:
        cfg = self.config
        remaining = cfg.n_epochs - self.n_passes
        if remaining < 1:
            raise ValueError(
                f"n_epochs: the checkpoint already used {self.n_passes} passes of "
                f"n_epochs={cfg.n_epochs}; raise n_epochs to continue"
            )
        best: dict[str, Any] = {"cost": np.inf}
        start_passes = self.n_passes

        def on_pass(k: int, q: np.ndarray, cost: float) -> None:
            self.n_passes = start_passes + k
            if np.isfinite(cost) and cost < best["cost"]:
                best["cost"] = cost
                self.params = np.asarray(q, dtype=np.float64).copy()
            if ck is not None and k % cfg.checkpoint_interval == 0:
                self.save_checkpoint(ck)

        res = fit_chunked(
            self.model,
            src,
            self.params,
            bounds=self.bounds,
            method=self.method,
            loss=self.loss,
            f_scale=self.f_scale,
            ftol=cfg.tol,
            xtol=cfg.tol,
            gtol=cfg.tol,
            max_nfev=remaining,
            dtype=self.dtype,
            param_style=self.param_style,
            chunk_size=cfg.batch_size,
            on_chunk_error=cfg.on_chunk_error,
            max_retries=cfg.max_retries,
            retry_backoff=cfg.retry_backoff,
            show_progress=show_progress,
            on_pass=on_pass,
        )
        self.params = np.asarray(res.x, dtype=np.float64)
        self.converged = res.success
        res.extra["total_passes"] = self.n_passes
        if ck is not None:
            self.save_checkpoint(ck)
        return res

    def _fit_online(self, src: ChunkSource, ck: str | None) -> FitResult:
        cfg = self.config
        policy = ReadPolicy(max_retries=cfg.max_retries, retry_backoff=cfg.retry_backoff)
        skipped: dict[int, str] = {}
        while self.epoch < cfg.n_epochs:
            start = self.batch
            for idx, item in iter_chunks(src, cfg.batch_size, policy, set(range(start))):
                if item is None:
                    continue
                if isinstance(item, ChunkFailure):
                    reason = f"{type(item.error).__name__}: {item.error}"
                    if cfg.on_chunk_error == "raise":
                        raise ChunkReadError(
                            f"source: chunk {idx} could not be read: {reason}"
                        ) from item.error
                    skipped[idx] = reason
                    self.batch += 1
                    continue
                if item.n == 0:  # an empty chunk: nothing to step on (and nothing lost)
                    continue
                self._step(item)
                if ck is not None and self.batch % cfg.checkpoint_interval == 0:
                    self.save_checkpoint(ck)
            if self.batch == 0 and self.n_seen == 0:
                raise ValueError("source: the data source delivered no points")
            self._end_epoch()
            if ck is not None:
                self.save_checkpoint(ck)
        return self._online_result(skipped)

    def _online_result(self, skipped: dict[int, str]) -> FitResult:
        n = self.params.size
        if self._last_epoch is not None:
            cost, factor, m = self._last_epoch
            pcov, _ = covariance_from_factor(factor[:-1, :-1], m, cost, False)
            grad = factor[:-1, :-1].T @ factor[:-1, -1]
        else:
            cost, m, pcov, grad = float("nan"), 0, np.full((n, n), np.inf), np.zeros(n)
        return LargeFitResult(
            chisqr=2.0 * cost if self.loss == "linear" else float("nan"),
            x=self.params.astype(self.dtype),
            pcov=pcov,
            status=2 if self.converged else 0,
            cost=cost,
            initial_cost=float("nan"),
            fun=np.empty(0),
            grad=grad,
            nfev=self.t,
            njev=self.t,
            nit=self.t,
            optimality=float(np.max(np.abs(grad))) if grad.size else 0.0,
            active_mask=np.zeros(n, int),
            dtype=self.dtype,
            method=self.config.optimizer,
            loss=self.loss if isinstance(self.loss, str) else "custom",
            n_points=m,
            extra={
                "n_points": m,
                "epochs": self.epoch,
                "chunks_skipped": sorted(skipped),
                "skip_reasons": skipped,
                "n_omitted": 0,
                "approximate": True,
            },
        )

    def result(self) -> FitResult:
        """The result of the last :meth:`fit` (or of the online updates so far)."""
        if self._result is not None:
            return self._result
        if self.config.optimizer == "lm":
            raise ValueError("result: no fit has run yet; call .fit(source)")
        if self._last_epoch is None and self._epoch_factor is not None:
            self._last_epoch = (self._epoch_cost, self._epoch_factor, self.n_seen)
        return self._online_result({})
