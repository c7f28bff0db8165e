"""Front doors for large data: ``curve_fit_large`` and ``LargeDatasetFitter``.

Both plan the memory (:func:`~curvax.scale.memory.estimate_memory_requirements`) and
then fit either in memory (:func:`curvax.fit_curve`) or chunk by chunk
(:func:`~curvax.scale.chunked.fit_chunked`).  The two paths run the same solver on the
same reduction, so they give the same parameters and covariance up to rounding.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from curvax.config import LDMemoryConfig
from curvax.core.result import FitResult
from curvax.curve_fit import fit_curve, scipy_return
from curvax.scale.chunked import fit_chunked
from curvax.scale.dask_backend import DaskDataFrameSource, DaskSource, is_dask_dataframe
from curvax.scale.memory import estimate_memory_requirements
from curvax.scale.sources import ChunkSource, as_source, check_real

_CHUNK_ONLY = {
    "nan_policy",
    "on_chunk_error",
    "max_retries",
    "retry_backoff",
    "prefetch",
    "on_pass",
}
# Options of the in-memory fit that the chunked fit may ignore: it always checks the
# data for NaN/Inf (an error, or rows omitted and counted under nan_policy='omit') and
# pads its chunks its own way.
_NO_EFFECT_IN_CHUNKS = {"check_finite", "bucket"}


def _option_names(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword options of ``fn`` and their defaults."""
    return {k: v.default for k, v in inspect.signature(fn).parameters.items()}


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    simple = (bool, int, float, str, type(None))
    return isinstance(value, simple) and isinstance(default, simple) and value == default


def _check_options(options: dict[str, Any], chunked: bool, why: str, remedy: str) -> None:
    """Refuse options neither path knows, and in-memory-only options in a chunked fit.

    Raises
    ------
    TypeError
        An option that is neither :func:`curvax.fit_curve`'s nor
        :func:`~curvax.scale.chunked.fit_chunked`'s.
    ValueError
        An option of the in-memory fit only (set to other than its default) when the
        fit runs chunk by chunk, where it would otherwise be dropped silently.
    """
    in_memory = _option_names(fit_curve)
    in_chunks = _option_names(fit_chunked)
    for key, value in options.items():
        if key not in in_memory and key not in in_chunks and key not in _CHUNK_ONLY:
            raise TypeError(
                f"{key}: unknown option; the options are those of fit_curve and fit_chunked"
            )
        if (
            chunked
            and key not in in_chunks
            and key not in _NO_EFFECT_IN_CHUNKS
            and not _is_default(value, in_memory.get(key))
        ):
            raise ValueError(
                f"{key}: not supported by the chunked fit, and this fit runs chunk by "
                f"chunk ({why}); leave {key} out, or {remedy}"
            )


def _n_x(x: Any) -> int:
    shape = np.shape(x)
    return 1 if len(shape) <= 1 else int(shape[0])


def _plan(
    src: ChunkSource,
    x: Any,
    n_params: int,
    memory_limit_gb: float | None,
    cfg: LDMemoryConfig,
    dtype: Any,
    has_sigma: bool,
    in_memory_data: bool,
) -> dict[str, Any]:
    n = src.n_points
    if n is None:  # sequential source of unknown length: plan for one max chunk
        n = cfg.max_chunk_size * 2
    return estimate_memory_requirements(
        int(n),
        n_params,
        dtype or "float64",
        n_x=_n_x(x) if in_memory_data else 1,
        has_sigma=has_sigma,
        memory_limit_gb=memory_limit_gb if memory_limit_gb is not None else cfg.max_memory_gb,
        min_chunk_size=cfg.min_chunk_size,
        max_chunk_size=cfg.max_chunk_size,
        safety_factor=cfg.safety_factor,
        data_in_memory=in_memory_data,
    )


def _fit(
    f: Callable[..., Any],
    x: Any,
    y: Any,
    p0: Any,
    sigma: Any,
    *,
    memory_limit_gb: float | None,
    chunk_size: int | None,
    show_progress: bool,
    cfg: LDMemoryConfig,
    options: dict[str, Any],
    names: tuple[str, str] = ("xdata", "ydata"),
) -> tuple[FitResult, dict[str, Any]]:
    if not isinstance(x, ChunkSource):  # dtypes only: nothing is read
        for name, v in zip((*names, "sigma"), (x, y, sigma)):
            check_real(v, name)
    # A covariance (2-D sigma) only works in memory: plan without it, refuse it in chunks.
    covariance = sigma is not None and not isinstance(x, ChunkSource) and np.ndim(sigma) == 2
    src = as_source(x, y, None if covariance else sigma, names)
    on_dask = isinstance(src, DaskSource)
    in_mem_data = not isinstance(x, ChunkSource) and not callable(x) and not on_dask
    if in_mem_data and isinstance(x, np.memmap):
        in_mem_data = False
    n_params = np.size(p0) if p0 is not None else (getattr(f, "n_params", None) or 1)
    has_sigma = sigma is not None or getattr(src, "sigma_name", None) is not None
    plan = _plan(
        src, x, int(n_params), memory_limit_gb, cfg, options.get("dtype"), has_sigma, in_mem_data
    )
    strategy = plan["strategy"]
    if chunk_size is not None:
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or (chunk_size < 1)
        ):
            raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
        strategy = "chunked" if in_mem_data else "streaming"
        plan = dict(plan, strategy=strategy, chunk_size=int(chunk_size))
    if on_dask:  # reduced on the workers, never gathered into memory here
        strategy = "dask"
        plan = dict(plan, strategy=strategy)
    chunked = not (strategy == "in_memory" and in_mem_data)
    if on_dask:
        why = "Dask data are fitted on the workers"
    elif chunk_size is not None:
        why = f"chunk_size={chunk_size} was given"
    elif not in_mem_data:
        why = "the data are a source, a memmap or a callable"
    else:
        why = (
            f"in memory the fit needs {plan.get('in_memory_gb', float('nan')):.3g} GiB, "
            f"over the {plan.get('budget_gb', float('nan')):.3g} GiB budget"
        )
    remedy = (
        "fit in memory (a larger memory_limit_gb, no chunk_size)"
        if in_mem_data
        else "fit in-memory arrays with curve_fit"
    )
    _check_options(options, chunked, why, remedy)
    if chunked and covariance:
        raise ValueError(
            f"sigma: a 2-D sigma (covariance matrix) is not supported for chunked fits, and "
            f"this fit runs chunk by chunk ({why}); give one uncertainty per point (1-D "
            f"sigma) or {remedy}"
        )
    if not chunked:
        opts = {k: v for k, v in options.items() if k not in _CHUNK_ONLY}
        nan_policy = options.get("nan_policy")
        res = fit_curve(f, x, y, p0, sigma, nan_policy=nan_policy, **opts)
        res.extra.update(strategy="in_memory", memory_plan=plan)
        return res, plan
    if not cfg.enable_streaming:
        raise ValueError(
            f"memory_limit_gb: the data ({plan['data_gb']:.3g} GiB) do not fit the budget "
            f"({plan['budget_gb']:.3g} GiB) and enable_streaming=False"
        )
    res = fit_chunked(
        f,
        src,
        p0,
        chunk_size=int(plan["chunk_size"]),
        show_progress=show_progress,
        **options,
    )
    res.extra.update(strategy=strategy, memory_plan=plan)
    return res, plan


def curve_fit_large(
    f: Callable[..., Any] | None = None,
    xdata: Any = None,
    ydata: Any = None,
    p0: Any = None,
    sigma: Any = None,
    bounds: Any = (-np.inf, np.inf),
    method: str | None = None,
    loss: str | Callable[..., Any] = "linear",
    memory_limit_gb: float | None = None,
    chunk_size: int | None = None,
    show_progress: bool = False,
    *,
    model: Callable[..., Any] | None = None,
    x: Any = None,
    y: Any = None,
    absolute_sigma: bool = False,
    full_output: bool = False,
    **kwargs: Any,
) -> tuple:
    """``curve_fit`` for data of any size, within a memory budget.

    Fits ``ydata ≈ f(xdata, *p)`` exactly as :func:`curvax.curve_fit` does — same
    parameters and covariance — but plans the memory first: if the data and the fit's
    working memory fit ``memory_limit_gb`` the fit runs in memory, otherwise chunk by
    chunk with the largest chunk that fits (see :mod:`curvax.scale.memory`).

    Parameters
    ----------
    f, model : callable
        The model (``model=`` is an alias).
    xdata, x : array_like, memmap, ChunkSource, callable, Dask array or DataFrame
        Independent variable(s), or an out-of-core source (then no ``ydata``).  Dask
        arrays (with Dask ``ydata`` and ``sigma``) are fitted on the Dask workers
        where their blocks live (:mod:`curvax.scale.dask_backend`).  With a Dask
        DataFrame as ``xdata``, ``x=`` names the x column(s), ``y=`` (or ``ydata``)
        and ``sigma=`` the observation and uncertainty columns:
        ``curve_fit_large(f, frame, x='t', y='signal', p0=p0)``.
    ydata, y : array_like
        Observations (``y=`` is an alias).
    p0, sigma, bounds, method, loss, absolute_sigma
        As in :func:`curvax.curve_fit`; a 2-D ``sigma`` (covariance) only in memory
        (a chunked fit refuses it: it couples points of different chunks).
    memory_limit_gb : float, optional
        Budget in GiB (default: ``LDMemoryConfig().max_memory_gb``).
    chunk_size : int, optional
        Force a chunked fit with this chunk size.
    show_progress : bool
        A tqdm progress bar over passes and chunks.
    full_output : bool
        Also return ``infodict, mesg, ier`` as :func:`curvax.curve_fit`.
    **kwargs
        Solver options of :func:`curvax.fit_curve` (``ftol``, ``x_scale``, ``f_scale``,
        ``max_nfev``, ``jac``, ``dtype``, ...) and chunked-fit options of
        :func:`~curvax.scale.chunked.fit_chunked` (``nan_policy``, ``on_chunk_error``,
        ``max_retries``, ``retry_backoff``, ``prefetch``).  ``fixed`` works on both
        paths; an in-memory-only option (``callbacks``, ``timeout``, ...) is refused
        with a ``ValueError`` when the fit runs chunk by chunk, an unknown one with a
        ``TypeError``.

    Returns
    -------
    popt, pcov[, infodict, mesg, ier]

    Raises
    ------
    RuntimeError
        If the fit does not converge.
    """
    if is_dask_dataframe(xdata):  # columns named by x=, y= (or ydata), sigma=
        xdata = DaskDataFrameSource(
            xdata,
            x=x if x is not None else "x",
            y=y if y is not None else (ydata if ydata is not None else "y"),
            sigma=sigma,
        )
        x = y = ydata = sigma = None
    for alias, val, name in (("model", model, "f"), ("x", x, "xdata"), ("y", y, "ydata")):
        given = {"f": f, "xdata": xdata, "ydata": ydata}[name]
        if val is not None and given is not None:
            raise TypeError(f"curve_fit_large: give {name} or {alias}=, not both")
    f = f if f is not None else model
    xdata = xdata if xdata is not None else x
    ydata = ydata if ydata is not None else y
    if f is None:
        raise TypeError("curve_fit_large: the model (f or model=) is required")
    if xdata is None:
        raise TypeError("curve_fit_large: the data (xdata or x=) are required")
    res, _ = _fit(
        f,
        xdata,
        ydata,
        p0,
        sigma,
        memory_limit_gb=memory_limit_gb,
        chunk_size=chunk_size,
        show_progress=show_progress,
        cfg=LDMemoryConfig()
        if memory_limit_gb is None
        else LDMemoryConfig(max_memory_gb=float(memory_limit_gb)),
        options=dict(
            bounds=bounds, method=method, loss=loss, absolute_sigma=absolute_sigma, **kwargs
        ),
    )
    return scipy_return(res, full_output, stacklevel=3)


class LargeDatasetFitter:
    """A fit of a large data set within a memory budget.

    Parameters
    ----------
    model : callable
        The model.
    x, y : array_like, memmap, Dask arrays, or a ChunkSource as ``x`` (then ``y=None``)
        Dask arrays, or a :class:`~curvax.scale.dask_backend.DaskDataFrameSource`
        for the columns of a Dask DataFrame, are fitted on the Dask workers.
    p0 : array_like, optional
    memory_config : LDMemoryConfig
        Budget and chunk-size bounds.
    bounds, loss, method, sigma, **options
        As in :func:`curve_fit_large`.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        x: Any,
        y: Any = None,
        p0: Any = None,
        memory_config: LDMemoryConfig | None = None,
        *,
        bounds: Any = (-np.inf, np.inf),
        loss: str | Callable[..., Any] = "linear",
        method: str | None = None,
        sigma: Any = None,
        **options: Any,
    ) -> None:
        if memory_config is None:
            memory_config = LDMemoryConfig()
        if not isinstance(memory_config, LDMemoryConfig):
            raise TypeError(
                f"memory_config: expected an LDMemoryConfig, got {type(memory_config).__name__}"
            )
        if not callable(model):
            raise TypeError(f"model: expected a callable, got {type(model).__name__}")
        self.model = model
        self.x, self.y, self.p0, self.sigma = x, y, p0, sigma
        self.memory_config = memory_config
        self.options = dict(bounds=bounds, loss=loss, method=method, **options)
        self.result: FitResult | None = None
        self._src = as_source(x, y, sigma)

    def _arrays(self) -> bool:
        """Whether the data are arrays held here (not a source, memmap or Dask data)."""
        return (
            not isinstance(self.x, (ChunkSource, np.memmap))
            and not callable(self.x)
            and not isinstance(self._src, DaskSource)
        )

    def estimate_memory(self) -> dict[str, Any]:
        """The memory plan: ``total_gb``, ``n_chunks``, ``chunk_size``, ``strategy``, …

        ``strategy`` is ``'dask'`` for Dask data (reduced on the workers).
        """
        in_mem = self._arrays()
        n_params = np.size(self.p0) if self.p0 is not None else 1
        plan = _plan(
            self._src,
            self.x,
            int(n_params),
            None,
            self.memory_config,
            self.options.get("dtype"),
            self.sigma is not None,
            in_mem,
        )
        if isinstance(self._src, DaskSource):
            plan["strategy"] = "dask"
        return plan

    def fit(self, show_progress: bool = False) -> FitResult:
        """Fit and return the :class:`~curvax.core.result.FitResult` (kept as ``.result``)."""
        arrays = self._arrays()
        res, _ = _fit(
            self.model,
            self.x if arrays else self._src,
            self.y if arrays else None,
            self.p0,
            self.sigma if arrays else None,
            memory_limit_gb=None,
            chunk_size=None,
            show_progress=show_progress,
            cfg=self.memory_config,
            options=dict(self.options),
            names=("x", "y"),
        )
        self.result = res
        return res

    def fit_with_progress(self, show_progress: bool = True) -> FitResult:
        """:meth:`fit` with a progress bar over passes and chunks."""
        return self.fit(show_progress=show_progress)
