r"""Parameter intervals, confidence/prediction bands and the bootstrap.

Confidence intervals
--------------------
``p̂_i ± q · SE_i`` with ``SE_i = √C_ii`` (``C = result.pcov``) and ``q`` the
``(1 + level)/2`` quantile of Student's t with ``ν = m − k`` degrees of freedom when
the error scale is estimated from the residuals (``absolute_sigma=False``), or of the
standard normal when ``sigma`` is absolute (the scale is then known).

Bands (delta method)
--------------------
For new abscissae ``x*`` with ``G = ∂f(x*, p)/∂p`` at ``p̂`` (forward-mode automatic
differentiation, ``jax.jacfwd``, in float64):

* confidence band of the curve:  ``ŷ ± q √diag(G C Gᵀ)``;
* prediction band of a new observation:  ``ŷ ± q √(diag(G C Gᵀ) + s² σ*²)``, where
  ``s² = χ²/ν`` (``absolute_sigma=False``) or ``1`` (absolute sigma) and ``σ*`` is the
  ``sigma`` of the new observation (``sigma_new``; default 1, i.e. an unweighted fit).

Both are first-order (local linearisation) approximations; they are exact for models
linear in the parameters with normal errors.

Bootstrap
---------
``residual``: ``y* = ŷ + σ e*`` with ``e*`` drawn with replacement from the centred,
leverage-corrected residuals ``e_i = r_i / √(1 − h_ii) − mean`` (Davison & Hinkley,
1997, Alg. 6.3; ``r`` the weighted residuals, ``h`` the hat-matrix diagonal), so that
the resampled errors have the residual variance of the true errors; ``x`` is kept.
``pairs``: the points ``(x_i, y_i, σ_i)`` are drawn with replacement (robust to a wrong
error model, heteroscedasticity).  Each replicate is fitted from ``p̂``; the standard
errors are the sample standard deviations of the replicate estimates, and the
percentile intervals their ``(1 ∓ level)/2`` quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.problem import adapt_model, count_model_params, traced_output_shape
from curvax.core.validation import check_level, check_seed, real_array
from curvax.insight.checks import check_fit_result
from curvax.insight.diagnostics import free_mask, leverage_and_cooks
from curvax.insight.stats import norm_ppf, t_ppf

__all__ = [
    "BootstrapResult",
    "ParameterIntervals",
    "Prediction",
    "bootstrap",
    "confidence_intervals",
    "coverage_quantile",
    "predict",
]


def coverage_quantile(result: Any, level: float, dist: str = "auto") -> float:
    """The two-sided critical value ``q`` used for intervals at ``level``.

    ``dist='auto'``: Student's t with ``m − k`` degrees of freedom unless the fit used
    ``absolute_sigma=True`` (then the standard normal); ``'t'`` or ``'normal'`` force
    one.

    Raises
    ------
    TypeError
        If ``result`` is not a :class:`~curvax.FitResult`.
    ValueError
        If ``level`` is not a number strictly between 0 and 1, or ``dist`` is unknown.
    """
    check_fit_result(result)
    level = check_level(level)
    if dist not in ("auto", "t", "normal"):
        raise ValueError(f"dist: expected 'auto', 't' or 'normal', got {dist!r}")
    use_normal = dist == "normal" or (dist == "auto" and getattr(result, "absolute_sigma", False))
    q = 0.5 + 0.5 * level
    if use_normal:
        return float(norm_ppf(q))
    dof = _dof(result)
    if dof <= 0:
        return math.nan
    return float(t_ppf(q, dof))


def _dof(result: Any) -> int:
    """``m − k`` with ``k`` the fitted (not fixed) parameters; no Jacobian needed."""
    return int(result.n_points) - int(np.sum(free_mask(result, None)))


@dataclass
class ParameterIntervals:
    """Confidence intervals of the parameters (see :func:`confidence_intervals`).

    Attributes
    ----------
    names : tuple of str
    value, stderr, lower, upper : ndarray (n,)
    level : float
    quantile : float
        The critical value ``q`` (``lower = value − q·stderr``).
    dof : int
    distribution : str
        ``'t'`` or ``'normal'``.
    """

    names: tuple[str, ...]
    value: np.ndarray
    stderr: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    quantile: float
    dof: int
    distribution: str

    def __getitem__(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        return float(self.lower[i]), float(self.upper[i])

    def __iter__(self) -> Iterator[tuple[str, float, float]]:
        """``(name, lower, upper)`` per parameter."""
        return iter(zip(self.names, self.lower.tolist(), self.upper.tolist()))

    def __len__(self) -> int:
        return len(self.names)

    def as_array(self) -> np.ndarray:
        """``(n, 2)`` array of ``[lower, upper]`` rows."""
        return np.stack([self.lower, self.upper], axis=1)

    def as_dict(self) -> dict[str, tuple[float, float]]:
        """``{name: (lower, upper)}``."""
        return {n: (float(lo), float(hi)) for n, lo, hi in self}

    def covers(self, truth: Any) -> np.ndarray:
        """Boolean (n,): whether each interval contains ``truth[i]``."""
        t = np.asarray(truth, dtype=np.float64)
        return (self.lower <= t) & (t <= self.upper)

    def text(self) -> str:
        """Table of value, standard error and interval per parameter."""
        w = max(9, *(len(s) for s in self.names))
        pct = (
            f"{self.level:.0%}" if 100 * self.level == round(100 * self.level) else str(self.level)
        )
        head = f"{'parameter':<{w}} {'value':>14} {'std error':>12} {pct + ' lower':>14} "
        head += f"{pct + ' upper':>14}"
        lines = [head]
        for i, n in enumerate(self.names):
            lines.append(
                f"{n:<{w}} {self.value[i]:>14.7g} {self.stderr[i]:>12.4g} "
                f"{self.lower[i]:>14.7g} {self.upper[i]:>14.7g}"
            )
        lines.append(f"({self.distribution} quantile {self.quantile:.6g}, dof {self.dof})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def confidence_intervals(
    result: Any, level: float = 0.95, *, dist: str = "auto"
) -> ParameterIntervals:
    """Confidence intervals ``p̂_i ± q·SE_i`` of the fitted parameters.

    Parameters
    ----------
    result : FitResult
        A finished fit.
    level : float
        Coverage probability (default 0.95).
    dist : {'auto', 't', 'normal'}
        Distribution of ``(p̂_i − p_i)/SE_i``: Student's t with ``ν = m − k`` degrees of
        freedom when ``sigma`` is relative (``absolute_sigma=False``), the standard
        normal when it is absolute (``'auto'``, the default).

    Returns
    -------
    ParameterIntervals
        ``lower = p̂ − q·SE``, ``upper = p̂ + q·SE`` with ``q`` the ``(1 + level)/2``
        quantile; ``nan``/``inf`` where the covariance could not be estimated.  Fixed
        parameters have zero width.

    Notes
    -----
    The intervals inherit the assumptions of the covariance (local linearity,
    independent errors with zero mean, an interior minimum): check
    :func:`~curvax.insight.diagnose_result` for warnings first.

    Raises
    ------
    TypeError
        If ``result`` is not a :class:`~curvax.FitResult`.
    ValueError
        If ``level`` is not a number strictly between 0 and 1, or ``dist`` is unknown.
    """
    q = coverage_quantile(result, level, dist)
    p = np.asarray(result.x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(np.asarray(result.pcov, dtype=np.float64)))
    normal = dist == "normal" or (dist == "auto" and getattr(result, "absolute_sigma", False))
    return ParameterIntervals(
        names=tuple(result.param_names),
        value=p,
        stderr=se,
        lower=p - q * se,
        upper=p + q * se,
        level=float(level),
        quantile=q,
        dof=_dof(result),
        distribution="normal" if normal else "t",
    )


class Prediction(NamedTuple):
    """Model values at new points with a band: unpacks as ``y, lower, upper``."""

    y: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _model_and_gradient(
    model: Callable[..., Any], x_new: Any, p_hat: np.ndarray, param_style: str
) -> tuple[np.ndarray, np.ndarray]:
    """``f(x_new, p̂)`` and ``G = ∂f/∂p`` (reshaped to (size, n)), both float64.

    Forward-mode automatic differentiation when JAX can trace the model; otherwise
    (a NumPy model) the model is evaluated on the host and ``G`` is formed by central
    differences with the steps of SciPy's ``'3-point'`` scheme,
    ``h_j = ε^(1/3) max(1, |p̂_j|)``.
    """
    g = adapt_model(model, param_style)
    n = p_hat.size
    with jax.enable_x64(True):
        try:
            xn = jnp.asarray(x_new, dtype=jnp.float64)
        except (TypeError, ValueError):
            xn = x_new
        if traced_output_shape(g, xn, p_hat) is not None:

            def fp(pp: jax.Array) -> jax.Array:
                return jnp.asarray(g(xn, pp), dtype=jnp.float64)

            p = jnp.asarray(p_hat)
            y = np.asarray(fp(p))
            G = np.asarray(jax.jacfwd(fp)(p)).reshape(y.size, n)  # y.shape + (n,)
            return y, G

    xh = x_new
    if not isinstance(x_new, np.ndarray):
        try:
            xh = np.asarray(x_new, dtype=np.float64)
        except (TypeError, ValueError):
            xh = x_new

    def host(pp: np.ndarray) -> np.ndarray:
        try:
            out = g(xh, pp)
        except Exception as err:
            raise ValueError(
                f"model: raised {type(err).__name__} at x_new and the fitted parameters: {err}"
            ) from err
        kind = np.asarray(out).dtype.kind if out is not None else "O"
        if kind not in "biuf":
            what = "complex values" if kind == "c" else type(out).__name__
            raise ValueError(f"model: must return real numbers, got {what}")
        return np.asarray(out, dtype=np.float64)

    y = host(p_hat)
    G = np.empty((y.size, n))
    h = np.finfo(np.float64).eps ** (1.0 / 3.0) * np.maximum(1.0, np.abs(p_hat))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h[j]
        up, down = host(p_hat + e), host(p_hat - e)
        if up.shape != y.shape or down.shape != y.shape:
            raise ValueError("model: its output shape changes with the parameters")
        G[:, j] = ((up - down) / ((p_hat[j] + h[j]) - (p_hat[j] - h[j]))).ravel()
    return y, G


def predict(
    result: Any,
    model: Callable[..., Any],
    x_new: Any,
    level: float = 0.95,
    band: str = "confidence",
    *,
    sigma_new: Any = None,
    param_style: str = "args",
    dist: str = "auto",
) -> Prediction:
    """Model values at ``x_new`` with a confidence or prediction band (delta method).

    Parameters
    ----------
    result : FitResult
        The fit (its ``x`` and ``pcov`` are used).
    model : callable
        The fitted model ``f(x, *p)`` (``param_style='args'``) or ``f(x, p)``
        (``'array'``).  Written with ``jax.numpy`` it is differentiated exactly
        (forward mode); a model JAX cannot trace (NumPy) is differentiated by central
        differences (steps ``ε^(1/3) max(1, |p̂_j|)``).
    x_new : array_like
        Where to evaluate.
    level : float
        Coverage of the band (default 0.95).
    band : {'confidence', 'prediction'}
        ``'confidence'``: where the true curve lies; ``'prediction'``: where a new
        observation falls (adds the error variance ``s²σ*²``).
    sigma_new : float or array_like, optional
        ``sigma`` of the new observations (prediction band only), in the units of the
        fit's ``sigma``: a non-negative scalar or one value per predicted point;
        default 1 (right for an unweighted fit).  Required for a prediction band when
        the fit used ``absolute_sigma=True``.
    param_style : {'args', 'array'}
    dist : {'auto', 't', 'normal'}
        As in :func:`confidence_intervals`.

    Returns
    -------
    Prediction
        ``(y, lower, upper)`` NumPy arrays of the shape of the model output:
        ``y ± q √(diag(G C Gᵀ) [+ s² σ*²])`` with ``G = ∂f(x_new, p)/∂p`` at ``p̂``.

    Raises
    ------
    TypeError
        If ``result`` is not a :class:`~curvax.FitResult` or ``model`` not callable.
    ValueError
        On a bad ``level``, ``band``, ``param_style`` or ``dist``; a ``model`` whose
        number of parameters differs from the fit's, that raises or returns
        non-real values; a ``sigma_new`` that is negative, not finite, of the wrong
        shape, or given for a confidence band.
    """
    check_fit_result(result)
    if not callable(model):
        raise TypeError(
            f"model: expected the fitted model (a callable), got {type(model).__name__}"
        )
    if band not in ("confidence", "prediction"):
        raise ValueError(f"band: expected 'confidence' or 'prediction', got {band!r}")
    if param_style not in ("args", "array"):
        raise ValueError(f"param_style: expected 'args' or 'array', got {param_style!r}")
    absolute = bool(getattr(result, "absolute_sigma", False))
    if band == "prediction" and absolute and sigma_new is None:
        raise ValueError(
            "sigma_new: a prediction band of a fit with absolute_sigma=True needs the "
            "sigma of the new observations"
        )
    sn = None
    if sigma_new is not None:
        if band != "prediction":
            raise ValueError(
                "sigma_new: only a prediction band uses it (band='prediction'); a "
                "confidence band is about the curve, not about new observations"
            )
        sn = real_array(sigma_new, "sigma_new")
        if not np.all(np.isfinite(sn)) or np.any(sn < 0):
            raise ValueError(
                f"sigma_new: every uncertainty must be non-negative and finite, got {sigma_new!r}"
            )
    q = coverage_quantile(result, level, dist)
    pcov = np.asarray(result.pcov, dtype=np.float64)
    p_hat = np.asarray(result.x, dtype=np.float64)
    if param_style == "args":
        n_sig = count_model_params(model)
        if n_sig is not None and n_sig != p_hat.size:
            raise ValueError(
                f"model: takes {n_sig} parameter(s) but the fit has {p_hat.size}; pass the "
                "model that was fitted (or param_style='array' for a model f(x, params))"
            )
    y, G = _model_and_gradient(model, x_new, p_hat, param_style)
    if np.all(np.isfinite(pcov)):
        var = np.einsum("ij,jk,ik->i", G, pcov, G)
        var = np.clip(var, 0.0, None)
    else:
        var = np.full(y.size, np.inf)
    if band == "prediction":
        s2 = 1.0 if absolute else float(result.chisqr) / max(_dof(result), 1)
        if sn is None:
            sn = np.ones(())
        try:
            sn2 = np.broadcast_to(sn**2, y.shape)
        except ValueError as err:
            raise ValueError(
                f"sigma_new: has shape {sn.shape} but the model gives shape {y.shape} at "
                "x_new; give a scalar or one value per predicted point"
            ) from err
        var = var + s2 * sn2.ravel()
    half = (q * np.sqrt(var)).reshape(y.shape)
    return Prediction(y, y - half, y + half)


@dataclass
class BootstrapResult:
    """Outcome of :func:`bootstrap`.

    Attributes
    ----------
    samples : ndarray (n_ok, n)
        Parameter estimates of the replicates that converged.
    stderr : ndarray (n,)
        Bootstrap standard errors (sample standard deviation, ``ddof=1``).
    mean, bias : ndarray (n,)
        Mean of the replicates and ``mean − p̂``.
    lower, upper : ndarray (n,)
        Percentile interval at ``level``.
    level : float
    estimate : ndarray (n,)
        ``p̂`` of the fit to the original data.
    fit : FitResult
        The fit to the original data.
    kind : str
        ``'residual'`` or ``'pairs'``.
    n_boot, n_failed : int
        Replicates drawn, replicates that failed (not converged or not finite).
    engine : str
        ``'batch'`` (one batched program, :func:`curvax.batch.curve_fit_batch`) or
        ``'loop'`` (one compiled program reused for every replicate).
    param_names : tuple of str
    """

    samples: np.ndarray
    stderr: np.ndarray
    mean: np.ndarray
    bias: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    estimate: np.ndarray
    fit: Any
    kind: str
    n_boot: int
    n_failed: int
    engine: str
    param_names: tuple[str, ...]

    @property
    def cov(self) -> np.ndarray:
        """Sample covariance of the replicate estimates."""
        return np.atleast_2d(np.cov(self.samples, rowvar=False))

    def text(self) -> str:
        """Table of estimate, bootstrap standard error, bias and percentile interval."""
        w = max(9, *(len(s) for s in self.param_names))
        lines = [
            f"bootstrap ({self.kind}, {self.n_boot - self.n_failed}/{self.n_boot} "
            f"replicates, {self.engine})",
            f"{'parameter':<{w}} {'estimate':>14} {'boot. SE':>12} {'bias':>12} "
            f"{'lower':>14} {'upper':>14}",
        ]
        for i, n in enumerate(self.param_names):
            lines.append(
                f"{n:<{w}} {self.estimate[i]:>14.7g} {self.stderr[i]:>12.4g} "
                f"{self.bias[i]:>12.3g} {self.lower[i]:>14.7g} {self.upper[i]:>14.7g}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def _take(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take(x, idx, axis=-1)


def _unpack_batch(out: Any, n_rep: int, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Parameters (B, n) and success mask (B,) from whatever the batch API returns."""
    popt = None
    ok = None
    for attr in ("x", "popt", "params"):
        if hasattr(out, attr):
            popt = getattr(out, attr)
            break
    if popt is None and isinstance(out, tuple) and out:
        popt = out[0]
    if popt is None:
        return None
    try:
        popt = np.asarray(popt, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if popt.shape != (n_rep, n):
        return None
    for attr in ("success", "converged"):
        if hasattr(out, attr):
            try:
                ok = np.asarray(getattr(out, attr), dtype=bool).reshape(n_rep)
            except (TypeError, ValueError):
                ok = None
            break
    if ok is None and hasattr(out, "status"):
        try:
            st = np.asarray(out.status).reshape(n_rep)
            ok = (st >= 1) & (st <= 4)
        except (TypeError, ValueError):
            ok = None
    if ok is None:
        ok = np.ones(n_rep, dtype=bool)
    return popt, ok & np.all(np.isfinite(popt), axis=1)


def _fit_batched(
    model: Callable[..., Any],
    X: np.ndarray,
    Y: np.ndarray,
    S: np.ndarray | None,
    p0: np.ndarray,
    shared_x: bool,
    fit_kwargs: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray] | None:
    """All replicates as one batched program, when :mod:`curvax.batch` offers it."""
    try:
        from curvax.batch import curve_fit_batch  # type: ignore[attr-defined]
    except Exception:
        return None
    kw = dict(fit_kwargs)
    if S is not None:
        kw["sigma"] = S
    try:
        out = curve_fit_batch(model, X[0] if shared_x else X, Y, p0=p0, **kw)
    except Exception:
        return None
    return _unpack_batch(out, Y.shape[0], p0.size)


def bootstrap(
    model: Callable[..., Any],
    x: Any,
    y: Any,
    p0: Any = None,
    n_boot: int = 1000,
    kind: str = "residual",
    seed: int | None = 0,
    *,
    sigma: Any = None,
    level: float = 0.95,
    use_batch: bool = True,
    **fit_kwargs: Any,
) -> BootstrapResult:
    """Bootstrap the parameter estimates of a curve fit.

    Parameters
    ----------
    model : callable
        The model ``f(x, *p)`` (as for :func:`curvax.fit_curve`).
    x : array_like
        Independent variable, shape (m,) or (k, m) (points along the last axis).
    y : array_like (m,)
        Observations.
    p0 : array_like, optional
        Starting point of the fit to the original data (replicates start from its
        solution).
    n_boot : int
        Number of replicates (default 1000).
    kind : {'residual', 'pairs'}
        Resampling scheme (see the module docstring).
    seed : int, numpy.random.Generator or None
        Seed of the NumPy random generator (reproducible by default).
    sigma : array_like (m,), optional
        1-D uncertainties of ``y`` (resampled with the points for ``'pairs'``;
        scaling the resampled standardized residuals for ``'residual'``).
    level : float
        Level of the percentile intervals (default 0.95).
    use_batch : bool
        Run the replicates as one batched program through
        ``curvax.batch.curve_fit_batch`` when that exists (else, or when it fails, one
        compiled fit program is reused replicate by replicate).
    **fit_kwargs
        Passed to every fit (``bounds``, ``method``, ``loss``, ``absolute_sigma``, ...).

    Returns
    -------
    BootstrapResult
        Replicate estimates, standard errors ``SE_j = sd(p*_j)``, bias and percentile
        intervals.

    Raises
    ------
    TypeError
        On a ``seed`` that is not None, an integer or a ``numpy.random.Generator``.
    ValueError
        On an unknown ``kind``, ``n_boot < 2``, a ``level`` not strictly between 0 and
        1 (the check of :func:`confidence_intervals`), complex or non-numeric ``x``,
        ``y`` or ``sigma``, a 2-D ``sigma`` or one whose length differs from ``y``'s, or
        when the fit to the original data fails.  With ``nan_policy='omit'`` the points
        with NaN are dropped before resampling.
    """
    from curvax.curve_fit import fit_curve

    if kind not in ("residual", "pairs"):
        raise ValueError(f"kind: expected 'residual' or 'pairs', got {kind!r}")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot: expected an integer ≥ 2, got {n_boot!r}")
    level = check_level(level)
    check_seed(seed)
    xa = real_array(x, "x")
    ya = real_array(y, "y")
    if ya.ndim != 1 or ya.size == 0:
        raise ValueError(f"y: expected a non-empty 1-D array of observations, got shape {ya.shape}")
    m = ya.size
    if xa.ndim == 0 or xa.shape[-1] != m:
        raise ValueError(
            f"x: the points must lie along the last axis (length {m}), got shape {xa.shape}"
        )
    sg = None
    if sigma is not None:
        sg = real_array(sigma, "sigma")
        if sg.ndim > 1:
            raise ValueError("sigma: the bootstrap takes a scalar or 1-D sigma")
        if sg.ndim == 1 and sg.size != m:
            raise ValueError(f"sigma: has length {sg.size} but y has length {m}")
        sg = np.broadcast_to(sg, (m,)).copy()
    if fit_kwargs.get("nan_policy") == "omit":  # resample only the points the fit uses
        keep = ~(np.isnan(ya) | np.isnan(xa).reshape(-1, m).any(axis=0))
        if not keep.all():
            ya, xa = ya[keep], xa[..., keep]
            sg = None if sg is None else sg[keep]
            m = ya.size
    fit0 = fit_curve(model, xa, ya, p0, sigma=sg, **fit_kwargs)
    if not fit0.success or not np.all(np.isfinite(fit0.x)):
        raise ValueError(f"the fit to the original data failed: {fit0.message}")
    p_hat = np.asarray(fit0.x, dtype=np.float64)
    n = p_hat.size
    rng = np.random.default_rng(seed)
    scale = np.ones(m) if sg is None else sg
    r = np.asarray(fit0.fun, dtype=np.float64)
    if r.size != m:
        raise ValueError(
            "y: the fit omitted points (nan_policy); remove them before bootstrapping"
        )

    if kind == "residual":
        yhat = ya + scale * r  # r = (f − y)/σ
        J = fit0.jac
        if J is not None:
            free = free_mask(fit0, np.asarray(J))
            h, _, _ = leverage_and_cooks(np.asarray(J)[:, free], r)
            e = r / np.sqrt(np.clip(1.0 - h, 1e-12, None))
        else:  # pragma: no cover - every FitResult from fit_curve has a Jacobian
            e = r * math.sqrt(m / max(fit0.dof, 1))
        e = e - e.mean()
        idx = rng.integers(0, m, size=(n_boot, m))
        Y = yhat[None, :] + scale[None, :] * e[idx]
        X = np.broadcast_to(xa, (n_boot, *xa.shape))
        S = None if sg is None else np.broadcast_to(sg, (n_boot, m))
        shared_x = True
    else:
        idx = rng.integers(0, m, size=(n_boot, m))
        Y = ya[idx]
        X = np.stack([_take(xa, i) for i in idx])
        S = None if sg is None else sg[idx]
        shared_x = False

    batched = _fit_batched(model, X, Y, S, p_hat, shared_x, fit_kwargs) if use_batch else None
    if batched is not None:
        P, ok = batched
        engine = "batch"
    else:
        P = np.full((n_boot, n), np.nan)
        ok = np.zeros(n_boot, dtype=bool)
        for b in range(n_boot):
            try:
                rb = fit_curve(
                    model,
                    X[b],
                    Y[b],
                    p_hat,
                    sigma=None if S is None else S[b],
                    **fit_kwargs,
                )
            except (ValueError, RuntimeError):
                continue
            P[b] = rb.x
            ok[b] = rb.success and bool(np.all(np.isfinite(rb.x)))
        engine = "loop"
    samples = P[ok]
    if samples.shape[0] < 2:
        raise ValueError(f"bootstrap: only {samples.shape[0]} of {n_boot} replicates converged")
    mean = samples.mean(axis=0)
    a = 0.5 * (1.0 - level)
    return BootstrapResult(
        samples=samples,
        stderr=samples.std(axis=0, ddof=1),
        mean=mean,
        bias=mean - p_hat,
        lower=np.quantile(samples, a, axis=0),
        upper=np.quantile(samples, 1.0 - a, axis=0),
        level=float(level),
        estimate=p_hat,
        fit=fit0,
        kind=kind,
        n_boot=int(n_boot),
        n_failed=int(n_boot - samples.shape[0]),
        engine=engine,
        param_names=tuple(fit0.param_names),
    )
