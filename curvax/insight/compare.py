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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
        ``F(k_c − k_s, m − k_c)``.

    Raises
    ------
    ValueError
        If the fits have different numbers of points, the complex model does not have
        more fitted parameters, or ``m ≤ k_c``.
    """
    m = int(result_simple.n_points)
    if int(result_complex.n_points) != m:
        raise ValueError(
            f"f_test: the fits have different numbers of points ({m} and "
            f"{result_complex.n_points}); both models must be fitted to the same data"
        )
    ks, kc = _k(result_simple), _k(result_complex)
    if kc <= ks:
        raise ValueError(
            f"f_test: the complex model must have more fitted parameters than the simple "
            f"one (got {kc} and {ks})"
        )
    if m <= kc:
        raise ValueError(f"f_test: {m} points leave no degrees of freedom for {kc} parameters")
    cs, cc = float(result_simple.chisqr), float(result_complex.chisqr)
    df1, df2 = kc - ks, m - kc
    if cc == 0.0:
        F = math.inf if cs > 0 else math.nan
    else:
        F = ((cs - cc) / df1) / (cc / df2)
    p = float(f_sf(F, df1, df2)) if math.isfinite(F) else (0.0 if F > 0 else math.nan)
    if math.isfinite(F) and F < 0:
        p = 1.0  # the complex fit is worse (not converged to its minimum)
    return FTestResult(F=float(F), df1=df1, df2=df2, p_value=p, chisqr_simple=cs, chisqr_complex=cc)


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
    ValueError
        If fewer than one result is given, the fits have different numbers of points,
        or some used ``absolute_sigma=True`` and others not.
    """
    if criterion not in ("aic", "aicc", "bic"):
        raise ValueError(f"criterion: expected 'aic', 'aicc' or 'bic', got {criterion!r}")
    if not results:
        raise ValueError("results: give at least one fit")
    names = list(results)
    ms = {int(results[n].n_points) for n in names}
    if len(ms) != 1:
        raise ValueError(
            f"results: the fits have different numbers of points {sorted(ms)}; information "
            "criteria only compare models fitted to the same data"
        )
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
        t = f_test(results[s], results[c])
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
