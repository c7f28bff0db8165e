r"""Compare models fitted to the same data: information criteria and the F-test.

Information criteria (see :mod:`curvax.insight.diagnostics` for the exact forms):
``AIC = m ln(RSS/m) + 2k``, ``AICc = AIC + 2k(k+1)/(m−k−1)``, ``BIC = m ln(RSS/m) + k ln m``
(``χ² + …`` instead of ``m ln(RSS/m)`` when ``sigma`` is absolute).  With
``Δ_i = IC_i − min_j IC_j`` the Akaike weights are

    w_i = exp(−Δ_i / 2) / Σ_j exp(−Δ_j / 2),

the relative likelihood of model ``i`` among those compared.

F-test for nested models (the simple model is the complex one with ``k_c − k_s``
parameters held at fixed values):

    F = [(RSS_s − RSS_c) / (k_c − k_s)] / [RSS_c / (m − k_c)]  ~  F(k_c − k_s, m − k_c)

under the simple model; the p-value is ``P(F' > F)``.  The test is exact for linear
models with normal errors and approximate otherwise; it is invalid when the extra
parameters sit on a boundary of their range under the simple model (e.g. the
amplitude of an additional peak being 0).

Both comparisons need fits of the same observations with the same weights: χ² of fits
with different ``sigma`` are on different scales.  Fits made in this process carry
their ``ydata`` and ``sigma``, which are compared value by value (no ``sigma`` counts
as ``sigma = 1``); for results that do not (loaded from JSON, or made by
``least_squares``) only the kind of weighting recorded in
``result.extra['metadata']['options']['sigma']`` (``'none'``, ``'1-D'``,
``'covariance'``) can be compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curvax.insight.checks import check_fit_result
from curvax.insight.diagnostics import free_mask, information_criteria
from curvax.insight.stats import f_sf

__all__ = ["FTestResult", "ModelComparison", "compare_models", "f_test"]


@dataclass
class FTestResult:
    """Outcome of :func:`f_test`.

    Attributes
    ----------
    F : float
        The statistic.
    df1, df2 : int
        ``k_c − k_s`` and ``m − k_c``.
    p_value : float
        ``P(F(df1, df2) > F)``; small values favour the complex model.
    chisqr_simple, chisqr_complex : float
    simple, complex : str
        Names (when called from :func:`compare_models`).
    """

    F: float
    df1: int
    df2: int
    p_value: float
    chisqr_simple: float
    chisqr_complex: float
    simple: str = "simple"
    complex: str = "complex"

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the complex model is significantly better at level ``alpha``."""
        return self.p_value < alpha

    def text(self) -> str:
        return (
            f"F-test {self.simple} vs {self.complex}: F({self.df1}, {self.df2}) = "
            f"{self.F:.4g}, p = {self.p_value:.4g}"
        )

    def __str__(self) -> str:
        return self.text()


def _k(result: Any) -> int:
    return int(np.sum(free_mask(result, None)))


#: Relative excess of the complex model's χ² over the simple one's still read as
#: rounding (both fits at their minima, the extra parameters not improving the fit).
CHISQR_ROUNDING = 1e-8

_SIGMA_KINDS = ("none", "1-D", "covariance")


def _given_data(result: Any) -> tuple[Any, Any] | None:
    """``(ydata, sigma)`` a fit made in this process was given, else None."""
    ctx = getattr(result, "_context", None)
    try:
        _, _, (_, y, sigma) = ctx  # type: ignore[misc]
    except (TypeError, ValueError):
        return None
    return y, sigma


def _recorded(result: Any, key: str) -> str | None:
    """A string entry of the fit's metadata (e.g. ``'data_fingerprint'``), else None."""
    meta = (getattr(result, "extra", None) or {}).get("metadata") or {}
    value = meta.get(key) if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) else None


def _recorded_sigma_kind(result: Any) -> str | None:
    """The kind of weighting in the fit's metadata (``'none'``, ``'1-D'``, ``'covariance'``)."""
    meta = (getattr(result, "extra", None) or {}).get("metadata") or {}
    kind = (meta.get("options") or {}).get("sigma") if isinstance(meta, Mapping) else None
    return kind if kind in _SIGMA_KINDS else None


def _sigma_values(sigma: Any, m: int) -> tuple[np.ndarray, str]:
    """The weights of a fit as an array to compare (``ones`` for none) and their kind."""
    if sigma is None:
        return np.ones(m), "none"
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 0:
        return np.full(m, float(s)), f"scalar {float(s):g}"
    return s, ("covariance" if s.ndim == 2 else "1-D")


def _check_least_squares(name: str, r: Any, what: str) -> None:
    """Refuse a fit that did not minimise χ²: a robust loss minimises ``Σ ρ(r_i²)``,
    so its χ² is not at a minimum and neither the F distribution nor the Gaussian
    likelihood behind AIC/BIC describes it."""
    loss = getattr(r, "loss", "linear")
    if loss != "linear":
        raise ValueError(
            f"{name}: was fitted with loss={loss!r}, which does not minimise chi-square; "
            f"{what} assumes least-squares fits with Gaussian errors — refit with "
            "loss='linear' (e.g. after removing the outliers the robust fit points to)"
        )


def _check_same_data(name_a: str, a: Any, name_b: str, b: Any, what: str) -> None:
    """Refuse two fits whose observations or weights (``sigma``) differ."""
    m = int(a.n_points)
    if int(b.n_points) != m:
        raise ValueError(
            f"{name_b}: the fits have different numbers of points ({m} in {name_a}, "
            f"{int(b.n_points)} in {name_b}); {what} needs both fitted to the same data"
        )
    da, db = _given_data(a), _given_data(b)
    if da is not None and db is not None:
        if da[0] is not db[0]:
            ya = np.asarray(da[0], dtype=np.float64)
            yb = np.asarray(db[0], dtype=np.float64)
            if ya.shape != yb.shape or not np.array_equal(ya, yb, equal_nan=True):
                raise ValueError(
                    f"{name_b}: was fitted to other ydata than {name_a}; {what} needs both "
                    "fitted to the same observations"
                )
        if da[1] is db[1]:
            return
        (sa, ka), (sb, kb) = _sigma_values(da[1], m), _sigma_values(db[1], m)
        if sa.shape == sb.shape and np.array_equal(sa, sb):
            return
    else:  # a result loaded from JSON: what its metadata recorded
        fa, fb = _recorded(a, "data_fingerprint"), _recorded(b, "data_fingerprint")
        if fa is not None and fb is not None and fa != fb:
            raise ValueError(
                f"{name_b}: was fitted to other data than {name_a} (their recorded data "
                f"fingerprints differ); {what} needs both fitted to the same observations"
            )
        ka, kb = _recorded_sigma_kind(a), _recorded_sigma_kind(b)
        wa, wb = _recorded(a, "weights_fingerprint"), _recorded(b, "weights_fingerprint")
        if ka is None or kb is None or (ka == kb and (wa is None or wb is None or wa == wb)):
            return  # the same weights, or nothing recorded to tell them apart
        if ka == kb:
            ka, kb = f"{ka} (fingerprint {wa[:8]})", f"{kb} (fingerprint {wb[:8]})"
    raise ValueError(
        f"{name_b}: was fitted with other weights than {name_a} (sigma: {kb} against "
        f"{ka}); chi-squares of differently weighted fits are on different scales, so "
        f"{what} would be meaningless — fit both models with the same sigma"
    )


def _f_test(rs: Any, rc: Any, name_s: str, name_c: str) -> FTestResult:
    """:func:`f_test` with the fits named ``name_s`` and ``name_c`` in messages."""
    check_fit_result(rs, name_s)
    check_fit_result(rc, name_c)
    _check_least_squares(name_s, rs, "the F-test")
    _check_least_squares(name_c, rc, "the F-test")
    _check_same_data(name_s, rs, name_c, rc, "the F-test")
    m = int(rs.n_points)
    ks, kc = _k(rs), _k(rc)
    if kc <= ks:
        raise ValueError(
            f"{name_c}: the complex model must have more fitted parameters than the simple "
            f"one (got {kc} and {ks})"
        )
    if m <= kc:
        raise ValueError(
            f"{name_c}: {m} points leave no degrees of freedom for {kc} parameters"
        )
    cs, cc = float(rs.chisqr), float(rc.chisqr)
    df1, df2 = kc - ks, m - kc
    gain = cs - cc
    if gain < 0:
        if -gain > CHISQR_ROUNDING * cc:
            raise ValueError(
                f"{name_c}: its chi-square ({cc:.6g}) exceeds that of the simple model "
                f"({cs:.6g}), which a model containing the simple one cannot do at its "
                "minimum: the complex fit stopped short of its minimum (refit it from the "
                "simple fit's parameters with the extra ones at their nesting values) or "
                "the models are not nested"
            )
        gain = 0.0  # equal up to rounding: the extra parameters gain nothing
    if cc == 0.0:
        F = math.inf if gain > 0 else math.nan
    else:
        F = (gain / df1) / (cc / df2)
    p = float(f_sf(F, df1, df2)) if math.isfinite(F) else (0.0 if F > 0 else math.nan)
    return FTestResult(F=float(F), df1=df1, df2=df2, p_value=p, chisqr_simple=cs, chisqr_complex=cc)


def f_test(result_simple: Any, result_complex: Any) -> FTestResult:
    """F-test of a simple model against a more complex one that contains it.

    Parameters
    ----------
    result_simple, result_complex : FitResult
        Fits of the nested models to the same data (same points, same weights).
        Nesting is not checked: it is the caller's statement about the models.

    Returns
    -------
    FTestResult
        ``F = [(χ²_s − χ²_c)/(k_c − k_s)] / [χ²_c/(m − k_c)]`` and its p-value under
        ``F(k_c − k_s, m − k_c)``.  ``F ≥ 0`` always: a complex fit whose χ² exceeds
        the simple one's by at most a relative ``1e-8`` (rounding) gives ``F = 0``,
        ``p = 1``; a larger excess raises (see below).  Two perfect fits (``χ² = 0``)
        give ``F = nan``.

    Raises
    ------
    TypeError
        If either argument is not a :class:`~curvax.FitResult`.
    ValueError
        If the fits have different numbers of points, were fitted to different
        ``ydata`` or with different weights (``sigma``; see the module docstring for
        what can be compared), the complex model does not have more fitted parameters,
        ``m ≤ k_c``, either fit used a robust loss (it did not minimise χ²), or the
        complex fit has a larger χ² than the simple one beyond
        rounding — impossible for nested models at their minima, so the complex fit
        did not converge to its minimum (or the models are not nested); a p-value of 1
        there would hide that.
    """
    return _f_test(result_simple, result_complex, "result_simple", "result_complex")


def _weights(ic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(ic)
    if not np.any(finite):
        return np.full(ic.shape, np.nan), np.full(ic.shape, np.nan)
    d = ic - np.min(ic[finite])
    w = np.where(finite, np.exp(-0.5 * np.where(finite, d, 0.0)), 0.0)
    return d, w / np.sum(w)


@dataclass
class ModelComparison:
    """Table of :func:`compare_models`: one row per model, best first by ``criterion``.

    Attributes (all aligned with ``names``)
    ----------------------------------------
    names : list of str
    n_params : ndarray of int
        Fitted parameters ``k``.
    chisqr, redchi, aic, aicc, bic : ndarray
    delta_aic, delta_aicc, delta_bic : ndarray
        Difference to the best model by each criterion.
    aic_weights, aicc_weights, bic_weights : ndarray
        Akaike (Schwarz) weights.
    criterion : str
        ``'aic'``, ``'aicc'`` or ``'bic'`` — the sort key.
    n_points : int
    f_tests : list of FTestResult
    """

    names: list[str]
    n_params: np.ndarray
    chisqr: np.ndarray
    redchi: np.ndarray
    aic: np.ndarray
    aicc: np.ndarray
    bic: np.ndarray
    delta_aic: np.ndarray
    delta_aicc: np.ndarray
    delta_bic: np.ndarray
    aic_weights: np.ndarray
    aicc_weights: np.ndarray
    bic_weights: np.ndarray
    criterion: str
    n_points: int
    f_tests: list[FTestResult] = field(default_factory=list)

    @property
    def best(self) -> str:
        """Name of the preferred model (lowest ``criterion``)."""
        return self.names[0]

    @property
    def weights(self) -> np.ndarray:
        """Weights of the sort criterion."""
        return getattr(self, f"{self.criterion}_weights")

    def rows(self) -> list[dict[str, Any]]:
        """The table as a list of dicts (one per model, in table order)."""
        cols = (
            "n_params",
            "chisqr",
            "redchi",
            "aic",
            "aicc",
            "bic",
            "delta_aic",
            "delta_aicc",
            "delta_bic",
            "aic_weights",
            "aicc_weights",
            "bic_weights",
        )
        out = []
        for i, n in enumerate(self.names):
            row: dict[str, Any] = {"name": n}
            for c in cols:
                v = getattr(self, c)[i]
                row[c] = int(v) if c == "n_params" else float(v)
            out.append(row)
        return out

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.rows()[self.names.index(name)]

    def text(self) -> str:
        """Readable table, best model first, then the F-tests."""
        c = self.criterion
        w = max(5, *(len(s) for s in self.names))
        lines = [
            f"model comparison on {self.n_points} points (sorted by {c.upper()})",
            f"{'model':<{w}} {'k':>3} {'chi2':>12} {'red.chi2':>10} {'AIC':>11} "
            f"{'AICc':>11} {'BIC':>11} {'d' + c.upper():>9} {'weight':>8}",
        ]
        d = getattr(self, f"delta_{c}")
        wt = self.weights
        for i, n in enumerate(self.names):
            lines.append(
                f"{n:<{w}} {int(self.n_params[i]):>3} {self.chisqr[i]:>12.5g} "
                f"{self.redchi[i]:>10.4g} {self.aic[i]:>11.5g} {self.aicc[i]:>11.5g} "
                f"{self.bic[i]:>11.5g} {d[i]:>9.3f} {wt[i]:>8.4f}"
            )
        for t in self.f_tests:
            lines.append(t.text())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def compare_models(
    results: dict[str, Any],
    *,
    criterion: str = "aicc",
    nested: bool | list[tuple[str, str]] = False,
) -> ModelComparison:
    """Compare fits of several models to the same data.

    Parameters
    ----------
    results : dict of name -> FitResult
        The fits (same data: same number of points and the same ``sigma``).
    criterion : {'aicc', 'aic', 'bic'}
        Sort key (default AICc, which tends to AIC for ``m ≫ k``).
    nested : bool or list of (simple, complex)
        F-tests to run: a list of name pairs, or True for every pair of models with
        different numbers of parameters (simple = fewer) — only meaningful when those
        models are really nested.

    Returns
    -------
    ModelComparison
        AIC, AICc, BIC, their differences to the best model and the Akaike weights
        ``w_i = exp(−Δ_i/2) / Σ_j exp(−Δ_j/2)``; the F-tests asked for.

    Raises
    ------
    TypeError
        If ``results`` is not a dict of :class:`~curvax.FitResult`.
    ValueError
        If fewer than one result is given, the fits have different numbers of points,
        different ``ydata`` or different weights (``sigma``; see the module
        docstring), some used ``absolute_sigma=True`` and others not, or an F-test
        asked for fails (see :func:`f_test`).
    """
    if criterion not in ("aic", "aicc", "bic"):
        raise ValueError(f"criterion: expected 'aic', 'aicc' or 'bic', got {criterion!r}")
    if not isinstance(results, Mapping):
        raise TypeError(
            f"results: expected a dict of name -> FitResult, got {type(results).__name__}"
        )
    if not results:
        raise ValueError("results: give at least one fit")
    names = list(results)
    for n in names:
        check_fit_result(results[n], f"results[{n!r}]")
        _check_least_squares(f"results[{n!r}]", results[n], "comparing by information criteria")
    ms = {int(results[n].n_points) for n in names}
    if len(ms) != 1:
        raise ValueError(
            f"results: the fits have different numbers of points {sorted(ms)}; information "
            "criteria only compare models fitted to the same data"
        )
    first = f"results[{names[0]!r}]"
    for n in names[1:]:
        _check_same_data(first, results[names[0]], f"results[{n!r}]", results[n], "comparing them")
    m = ms.pop()
    absolute = {bool(getattr(results[n], "absolute_sigma", False)) for n in names}
    if len(absolute) != 1:
        raise ValueError(
            "results: some fits used absolute_sigma=True and others not; their criteria "
            "are on different scales"
        )
    abs_sigma = absolute.pop()
    k = np.array([_k(results[n]) for n in names])
    chi = np.array([float(results[n].chisqr) for n in names])
    ics = np.array([information_criteria(c, m, kk, abs_sigma) for c, kk in zip(chi, k)])
    aic, aicc, bic = ics[:, 0], ics[:, 1], ics[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        redchi = np.where(m - k > 0, chi / np.maximum(m - k, 1), np.nan)
    d_aic, w_aic = _weights(aic)
    d_aicc, w_aicc = _weights(aicc)
    d_bic, w_bic = _weights(bic)
    key = {"aic": aic, "aicc": aicc, "bic": bic}[criterion]
    order = np.argsort(np.where(np.isfinite(key), key, np.inf), kind="stable")

    tests: list[FTestResult] = []
    pairs: list[tuple[str, str]] = []
    if nested is True:
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                ka, kb = _k(results[a]), _k(results[b])
                if ka < kb:
                    pairs.append((a, b))
                elif kb < ka:
                    pairs.append((b, a))
    elif nested:
        pairs = list(nested)
    for s, c in pairs:
        if s not in results or c not in results:
            raise ValueError(f"nested: unknown model name in ({s!r}, {c!r})")
        t = _f_test(results[s], results[c], f"results[{s!r}]", f"results[{c!r}]")
        t.simple, t.complex = s, c
        tests.append(t)

    def o(a: np.ndarray) -> np.ndarray:
        return np.asarray(a)[order]

    return ModelComparison(
        names=[names[i] for i in order],
        n_params=o(k),
        chisqr=o(chi),
        redchi=o(redchi),
        aic=o(aic),
        aicc=o(aicc),
        bic=o(bic),
        delta_aic=o(d_aic),
        delta_aicc=o(d_aicc),
        delta_bic=o(d_bic),
        aic_weights=o(w_aic),
        aicc_weights=o(w_aicc),
        bic_weights=o(w_bic),
        criterion=criterion,
        n_points=m,
        f_tests=tests,
    )
