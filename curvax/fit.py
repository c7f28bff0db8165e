"""``CurveFit``: the class interface — configure once, fit many data sets.

One by one (:meth:`CurveFit.fit`) or as a batch (:meth:`CurveFit.fit_batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from curvax.batch import BatchResult, curve_fit_batch
from curvax.core.least_squares import DEFAULT_TOL
from curvax.core.result import FitResult
from curvax.curve_fit import fit_curve


class CurveFit:
    """A configured curve fit: ``CurveFit(model, x, y, p0).fit() -> FitResult``.

    The problem is ``y ≈ model(x, params)`` minimised as in :func:`curvax.curve_fit`.
    The model may be written ``f(x, a, b, c)`` or ``f(x, params)``; ``param_style``
    ('auto', 'args', 'array') says which when the signature is ambiguous.

    Calling :meth:`fit` again with new ``x``/``y`` of the same shapes reuses the
    compiled program (no new trace or compilation).  :meth:`fit_batch` fits every row
    of a (B, N) ``y`` independently with the same configuration
    (:func:`curvax.curve_fit_batch`).

    Parameters
    ----------
    model : callable
        The model function (``jax.numpy``), or a :mod:`curvax.models` model.
    x, y : array_like
        Data (see :func:`curvax.curve_fit`).
    p0 : array_like, optional
        Initial parameters (default: the model's ``guess``, else ones).
    sigma, absolute_sigma, bounds, method, loss, f_scale, ftol, xtol, gtol, max_nfev, \
jac, x_scale, nan_policy, dtype
        As in :func:`curvax.curve_fit`; ``method`` defaults to ``'trf'`` here, and the
        tolerances to 1e-12 (the founding specification's 1e-8 stops short of the
        certified NIST answers on ill-conditioned problems).
    callbacks : callable, Callback or list of them, optional
        Called after every iteration (see :mod:`curvax.callbacks`); may stop the fit.
    timeout : float, optional
        Wall-clock limit in seconds; the fit stops with status -3 and the best point.
    fixed : dict, optional
        ``{name: value}`` of parameters held fixed.
    param_names : sequence of str, optional
        Names of the parameters (default: from the model).  ``p0`` and ``bounds`` may
        be dicts keyed by name.
    devices : None, 'all', int, list of devices or Mesh, optional
        Split the points over several devices (:mod:`curvax.core.sharding`); the
        answer equals the one-device fit up to rounding.
    jac_sparsity : array_like, sequence of slices or 'auto', optional
        Sparsity pattern of the Jacobian (see :func:`curvax.fit_curve`).
    verbose : int
        ``1`` prints the fit summary after each fit.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        x: Any,
        y: Any,
        p0: Any = None,
        *,
        sigma: Any = None,
        absolute_sigma: bool = False,
        bounds: Any = None,
        method: str = "trf",
        loss: str | Callable[..., Any] = "linear",
        f_scale: float = 1.0,
        ftol: float = DEFAULT_TOL,
        xtol: float = DEFAULT_TOL,
        gtol: float = DEFAULT_TOL,
        max_nfev: int | None = None,
        jac: Any = None,
        x_scale: Any = "jac",
        callbacks: Any = None,
        verbose: int = 0,
        param_style: str = "auto",
        nan_policy: str | None = None,
        dtype: Any = None,
        timeout: float | None = None,
        fixed: Any = None,
        param_names: Any = None,
        devices: Any = None,
        jac_sparsity: Any = None,
    ) -> None:
        self.model = model
        self.x = x
        self.y = y
        self.p0 = p0
        self.sigma = sigma
        self.verbose = int(verbose)
        self.options: dict[str, Any] = dict(
            absolute_sigma=absolute_sigma,
            bounds=(-np.inf, np.inf) if bounds is None else bounds,
            method=method,
            jac=jac,
            nan_policy=nan_policy,
            loss=loss,
            f_scale=f_scale,
            ftol=ftol,
            xtol=xtol,
            gtol=gtol,
            max_nfev=max_nfev,
            x_scale=x_scale,
            param_style=param_style,
            dtype=dtype,
            callbacks=callbacks,
            timeout=timeout,
            fixed=fixed,
            param_names=param_names,
            devices=devices,
            jac_sparsity=jac_sparsity,
        )
        self.result: FitResult | None = None
        self.batch_result: BatchResult | None = None

    def fit(self, x: Any = None, y: Any = None, *, sigma: Any = None, p0: Any = None) -> FitResult:
        """Fit (new data when ``x``/``y`` are given) and return the :class:`FitResult`.

        The result is also kept as ``self.result``.
        """
        res = fit_curve(self.model, *self._data(x, y, p0, sigma), **self.options)
        self.result = res
        if self.verbose >= 1:
            print(res.summary())
        return res

    def _data(self, x: Any, y: Any, p0: Any, sigma: Any) -> tuple[Any, Any, Any, Any]:
        """``(x, y, p0, sigma)``: the arguments given, else those of the constructor."""
        return (
            self.x if x is None else x,
            self.y if y is None else y,
            self.p0 if p0 is None else p0,
            self.sigma if sigma is None else sigma,
        )

    #: Options of a single fit that a batch cannot honour, with the reason.
    _NOT_IN_BATCH: ClassVar[dict[str, str]] = {
        "callbacks": "callbacks follow one fit's iterations",
        "timeout": "a batch has no per-fit clock",
        "fixed": "fix a parameter through equal lower and upper bounds per fit",
        "jac_sparsity": "batch fits are small and dense",
    }

    def fit_batch(
        self,
        x: Any = None,
        y: Any = None,
        *,
        sigma: Any = None,
        p0: Any = None,
        **batch_options: Any,
    ) -> BatchResult:
        """Fit each row of a (B, N) ``y`` independently; return the :class:`BatchResult`.

        The model and options are this object's (tolerances, bounds, loss, method,
        ``jac``, ``x_scale``, ``nan_policy``, ``dtype``, ``devices``...), passed to
        :func:`curvax.curve_fit_batch`, which minimises each fit's own cost exactly as
        :meth:`fit` would on that row alone.  ``x`` is shared (N,) / (k, N) or per fit;
        ``p0`` (P,) or (B, P).  Extra keyword arguments go to ``curve_fit_batch``
        (``mask``, ``chunk_size``, ``workers``, ``linalg``...).  The result is kept as
        ``self.batch_result``.

        Raises
        ------
        ValueError
            If the object was configured with an option a batch cannot honour
            (``callbacks``, ``timeout``, ``fixed``, ``jac_sparsity``); the message names it.
        """
        for name, why in self._NOT_IN_BATCH.items():
            if self.options[name] is not None:
                raise ValueError(f"{name}: not supported by fit_batch ({why})")
        kw = {k: v for k, v in self.options.items() if k not in self._NOT_IN_BATCH}
        kw.update(batch_options)
        res = curve_fit_batch(self.model, *self._data(x, y, p0, sigma), **kw)
        self.batch_result = res
        if self.verbose >= 1:
            print(res.summary())
        return res
