"""The result of a fit: parameters, covariance, convergence record and a report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from curvax.core.trust_region import STATUS_MESSAGES


@dataclass(frozen=True)
class Parameter:
    """One fitted parameter, by name.

    ``stderr`` is ``sqrt(pcov[i, i])`` (inf when the covariance could not be
    estimated; 0 for a fixed parameter); ``rel_error`` is ``stderr / |value|``.
    """

    name: str
    value: float
    stderr: float
    fixed: bool
    at_bound: int  # -1 lower, +1 upper, 0 free

    @property
    def rel_error(self) -> float:
        return abs(self.stderr / self.value) if self.value != 0 else float("inf")


class Parameters(Mapping[str, Parameter]):
    """Read-only, ordered mapping of parameter name to :class:`Parameter`."""

    def __init__(self, items: list[Parameter]) -> None:
        self._items = {p.name: p for p in items}

    def __getitem__(self, key: str) -> Parameter:
        try:
            return self._items[key]
        except KeyError:
            raise KeyError(f"no parameter named {key!r}; names: {list(self._items)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def valuesdict(self) -> dict[str, float]:
        """``{name: value}``."""
        return {k: p.value for k, p in self._items.items()}

    def __repr__(self) -> str:
        inner = ", ".join(f"{p.name}={p.value:.6g}±{p.stderr:.2g}" for p in self._items.values())
        return f"Parameters({inner})"


def _enc(a: Any) -> Any:
    """JSON-safe encoding of floats/arrays (inf and nan as strings, exact round trip)."""
    if isinstance(a, np.ndarray):
        return {
            "__array__": [_enc(v) for v in a.ravel().tolist()],
            "shape": list(a.shape),
            "dtype": a.dtype.name,
        }
    if isinstance(a, float):
        if np.isfinite(a):
            return a
        return {"__float__": repr(a)}
    if isinstance(a, (np.floating, np.integer)):
        return _enc(a.item())
    if isinstance(a, dict):
        return {str(k): _enc(v) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return [_enc(v) for v in a]
    return a


def _dec(a: Any) -> Any:
    if isinstance(a, dict):
        if "__array__" in a:
            flat = [_dec(v) for v in a["__array__"]]
            return np.array(flat, dtype=a["dtype"]).reshape(a["shape"])
        if "__float__" in a:
            return float(a["__float__"])
        return {k: _dec(v) for k, v in a.items()}
    if isinstance(a, list):
        return [_dec(v) for v in a]
    return a


class FitResult:
    """Outcome of a least-squares fit.

    Attributes
    ----------
    x, popt : ndarray (n,)
        Estimated parameters.
    pcov, cov : ndarray (n, n)
        Covariance of the estimates (see :mod:`curvax.core.covariance`); all ``inf``
        when it could not be estimated.
    perr : ndarray (n,)
        Standard errors, ``sqrt(diag(pcov))``.
    success : bool
        True when a convergence criterion was met (status 1–4).
    status : int
        1 ``gtol``, 2 ``ftol``, 3 ``xtol``, 4 ``ftol`` and ``xtol``, 0 evaluation budget
        spent, -1 improper input (e.g. residuals not finite at the start), -2 stopped
        by a callback, -3 wall-clock limit, -4 a convergence test passed far from a
        minimum (a Gauss–Newton step would remove most of the cost, and a point along it
        costs less), -5 the iteration ran to parameters where the squares of the
        Jacobian leave the floating-point range.
    message : str
        The status in words.
    cost, initial_cost : float
        ``½ Σ ρ(r_i²)`` at the solution and at the start.
    fun : ndarray (m,)
        Residuals at the solution (weighted by 1/sigma, before robust rescaling);
        computed on first access (it is m long, and the fit itself does not need it)
        from the data the fit was given, which the result keeps instead of the padded
        copies the fit ran on (:mod:`curvax.core.data_source`).  Arrays of more than
        64 KiB are not copied: if the caller changes them in place before ``fun`` or
        ``jac`` is first read, reading it raises ``RuntimeError`` naming the array
        (smaller ones are copied).
    jac : ndarray (m, n)
        Jacobian of the residuals at the solution, rescaled for the robust loss as in
        SciPy; computed on first access (it is m × n), as ``fun``.
    grad : ndarray (n,)
        Gradient of the cost at the solution.
    optimality : float
        First-order optimality: max-norm of the (Coleman–Li scaled) gradient.
    active_mask : ndarray of int (n,)
        -1 / +1 where a lower / upper bound is active, 0 otherwise.
    nfev, njev, nit : int
        Residual evaluations, Jacobian evaluations (each trial point evaluates both in
        one fused pass, so they are equal) and accepted iterations.  A fit redone with
        the QR fallback of its reduction (:func:`curvax.core.solve.speculative_kernel`)
        counts the evaluations of its discarded first attempt apart, in
        ``extra['discarded_nfev']``.
    dtype : numpy dtype
        Floating-point precision the fit ran in.
    param_names : tuple of str
        Names of the parameters.
    """

    def __init__(
        self,
        *,
        x: np.ndarray,
        pcov: np.ndarray | None,
        status: int,
        cost: float,
        initial_cost: float,
        fun: np.ndarray | Callable[[], np.ndarray],
        grad: np.ndarray,
        nfev: int,
        njev: int,
        nit: int,
        optimality: float,
        active_mask: np.ndarray,
        dtype: Any,
        method: str,
        loss: str,
        param_names: tuple[str, ...] | None = None,
        jac_fn: Callable[[], np.ndarray] | None = None,
        n_points: int | None = None,
        absolute_sigma: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.x = np.asarray(x)
        n = self.x.size
        self.pcov = np.full((n, n), np.inf) if pcov is None else np.asarray(pcov, dtype=np.float64)
        self.status = int(status)
        self.cost = float(cost)
        self.initial_cost = float(initial_cost)
        self._fun_fn = fun if callable(fun) else None
        self._fun = None if callable(fun) else np.asarray(fun)
        self.grad = np.asarray(grad)
        self.nfev = int(nfev)
        self.njev = int(njev)
        self.nit = int(nit)
        self.optimality = float(optimality)
        self.active_mask = np.asarray(active_mask, dtype=int)
        self.dtype = np.dtype(dtype)
        self.method = method
        self.loss = loss
        self.param_names = tuple(param_names) if param_names else tuple(f"p{i}" for i in range(n))
        self._jac_fn = jac_fn
        self._jac: np.ndarray | None = None
        self.n_points = int(n_points if n_points is not None else self.fun.size)
        self.absolute_sigma = absolute_sigma
        self.extra = dict(extra or {})

    # -- aliases and derived quantities -------------------------------------------------
    @property
    def popt(self) -> np.ndarray:
        return self.x

    @property
    def cov(self) -> np.ndarray:
        return self.pcov

    @property
    def perr(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.diag(self.pcov))

    @property
    def success(self) -> bool:
        return self.status in (1, 2, 3, 4)

    @property
    def message(self) -> str:
        return STATUS_MESSAGES.get(self.status, f"Unknown status {self.status}.")

    @property
    def fun(self) -> np.ndarray:
        if self._fun is None:
            assert self._fun_fn is not None
            self._fun = np.asarray(self._fun_fn())
            self._fun_fn = None
        return self._fun

    @fun.setter
    def fun(self, value: np.ndarray) -> None:
        self._fun, self._fun_fn = np.asarray(value), None

    @property
    def jac(self) -> np.ndarray | None:
        if self._jac is None and self._jac_fn is not None:
            self._jac = np.asarray(self._jac_fn())
        return self._jac

    @property
    def dof(self) -> int:
        """Degrees of freedom, m − n."""
        return self.n_points - self.x.size

    @property
    def chisqr(self) -> float:
        """Sum of squared (weighted) residuals, ``Σ r_i²``.

        In a multi-process fit ``fun`` holds this process's residuals only; the sum over
        all processes is then kept in ``extra['chisqr']``.
        """
        if "chisqr" in self.extra:
            return float(self.extra["chisqr"])
        return float(np.sum(np.asarray(self.fun, dtype=np.float64) ** 2))

    @property
    def redchi(self) -> float:
        """Reduced χ², ``Σ r_i² / (m − n)`` (nan when m ≤ n)."""
        return self.chisqr / self.dof if self.dof > 0 else float("nan")

    @property
    def params(self) -> Parameters:
        """Parameters by name: ``result.params['rate'].value``, ``.stderr``."""
        fixed = self.extra.get("fixed_mask")
        perr = self.perr
        return Parameters(
            [
                Parameter(
                    name=n,
                    value=float(self.x[i]),
                    stderr=float(perr[i]),
                    fixed=bool(fixed[i]) if fixed is not None else False,
                    at_bound=int(self.active_mask[i]),
                )
                for i, n in enumerate(self.param_names)
            ]
        )

    def diagnose(self, x: Any = None, y: Any = None, **kwargs: Any) -> Any:
        """Diagnostics of this fit (see :func:`curvax.insight.diagnose_result`)."""
        from curvax.insight import diagnose_result

        return diagnose_result(self, x=x, y=y, **kwargs)

    def _fit_context(self) -> tuple[Any, str, tuple[Any, Any, Any]]:
        ctx = getattr(self, "_context", None)
        if ctx is None:
            raise ValueError(
                "this result does not know its model and data (it was loaded from JSON or "
                "made by least_squares); use curvax.predict(result, model, x) instead"
            )
        return ctx

    def predict(self, x: Any, level: float | None = None, band: str = "confidence") -> Any:
        """Model values at ``x``; with ``level``, also the band: ``(y, lower, upper)``.

        ``band`` is ``'confidence'`` (where the true curve lies) or ``'prediction'``
        (where a new observation falls); see :func:`curvax.insight.predict`.
        """
        from curvax.insight import predict

        model, style, _ = self._fit_context()
        out = predict(self, model, x, 0.95 if level is None else level, band, param_style=style)
        return out.y if level is None else out

    def plot(self, path: str | None = None, **kwargs: Any) -> Any:
        """Data, fit, confidence band and residual panel (see :mod:`curvax.insight.plot`)."""
        from curvax.insight.plot import plot_fit

        return plot_fit(self, path, **kwargs)

    def conf_int(self, level: float = 0.95) -> Any:
        """Student-t confidence intervals (see :func:`curvax.insight.confidence_intervals`)."""
        from curvax.insight import confidence_intervals

        return confidence_intervals(self, level)

    @property
    def precision_upgraded(self) -> bool:
        """True when a mixed-precision fit moved from float32 to float64."""
        return bool(self.extra.get("precision_upgraded", False))

    @property
    def metadata(self) -> dict[str, Any]:
        """Versions, device, dtype, options and data fingerprint of the fit."""
        return dict(self.extra.get("metadata", {}))

    # -- persistence -------------------------------------------------------------------
    _FIELDS = (
        "x",
        "pcov",
        "status",
        "cost",
        "initial_cost",
        "fun",
        "grad",
        "nfev",
        "njev",
        "nit",
        "optimality",
        "active_mask",
        "method",
        "loss",
        "param_names",
        "n_points",
        "absolute_sigma",
    )

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the result (the Jacobian is not stored)."""
        d = {k: getattr(self, k) for k in self._FIELDS}
        d["dtype"] = self.dtype.name
        d["param_names"] = list(self.param_names)
        d["extra"] = self.extra
        return d

    def to_json(self, path: str | None = None, **json_kwargs: Any) -> str:
        """JSON text of :meth:`to_dict` (written to ``path`` when given); exact round trip."""
        text = json.dumps(_enc(self.to_dict()), **json_kwargs)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FitResult:
        kw = {k: d[k] for k in cls._FIELDS}
        kw["param_names"] = tuple(kw["param_names"])
        return cls(dtype=d["dtype"], extra=dict(d.get("extra") or {}), **kw)

    @classmethod
    def from_json(cls, text_or_path: str) -> FitResult:
        """Rebuild a result from :meth:`to_json` output (JSON text or a file path)."""
        text = text_or_path
        if not text_or_path.lstrip().startswith("{"):
            with open(text_or_path, encoding="utf-8") as fh:
                text = fh.read()
        return cls.from_dict(_dec(json.loads(text)))

    def __getitem__(self, key: str) -> Any:  # dict-style access, as scipy's OptimizeResult
        return getattr(self, key)

    # -- report ---------------------------------------------------------------------------
    def summary(self) -> str:
        """A one-page readable report of the fit."""
        lines = []
        ok = "converged" if self.success else "NOT converged"
        lines.append(f"curvax fit ({self.method}, loss={self.loss}, {self.dtype.name}): {ok}")
        lines.append(f"  {self.message}")
        lines.append(
            f"  points={self.n_points}  parameters={self.x.size}  dof={self.dof}  "
            f"nfev={self.nfev}  iterations={self.nit}"
        )
        lines.append(
            f"  cost={self.cost:.6g} (initial {self.initial_cost:.6g})  "
            f"chi2={self.chisqr:.6g}  reduced chi2={self.redchi:.6g}  "
            f"optimality={self.optimality:.3g}"
        )
        w = max(9, *(len(s) for s in self.param_names))
        lines.append("")
        lines.append(f"  {'parameter':<{w}} {'value':>16} {'std error':>13} {'rel. err':>9}  bound")
        perr = self.perr
        for i, name in enumerate(self.param_names):
            v = float(self.x[i])
            e = float(perr[i])
            rel = f"{abs(e / v):9.2%}" if v != 0 and np.isfinite(e) else f"{'-':>9}"
            bound = {-1: "lower", 1: "upper"}.get(int(self.active_mask[i]), "")
            lines.append(f"  {name:<{w}} {v:>16.9g} {e:>13.4g} {rel}  {bound}")
        if not np.all(np.isfinite(self.pcov)):
            lines.append("  (covariance could not be estimated)")
        else:
            d = np.sqrt(np.diag(self.pcov))
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = self.pcov / np.outer(d, d)
            pairs = [
                (self.param_names[i], self.param_names[j], corr[i, j])
                for i in range(len(d))
                for j in range(i + 1, len(d))
                if abs(corr[i, j]) > 0.9
            ]
            if pairs:
                lines.append("")
                lines.append("  strong correlations (|r| > 0.9):")
                for a, b, c in pairs:
                    lines.append(f"    {a} ~ {b}: {c:+.4f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        vals = ", ".join(f"{n}={v:.6g}" for n, v in zip(self.param_names, self.x))
        return f"FitResult({vals}; success={self.success}, status={self.status})"

    def __str__(self) -> str:
        return self.summary()
