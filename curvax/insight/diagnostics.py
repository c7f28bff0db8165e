r"""Diagnostics of a finished fit: is the answer trustworthy, and if not, why?

:func:`diagnose_result` inspects a :class:`~curvax.core.result.FitResult` and returns a
:class:`Diagnostics` record: the numbers, a readable report (:meth:`Diagnostics.text`)
and a list of warnings, each a ``(code, message, advice)`` triple.

Notation
--------
``r`` (m,) are the weighted residuals ``result.fun`` (``r = W (f(x, p̂) − y)``, with
``W = diag(1/σ)``), ``J`` (m × n) their Jacobian ``result.jac``, ``k`` the number of
fitted (free) parameters and ``m`` the number of points.  ``RSS = χ² = Σ r_i²``.

Formulas
--------
Jacobian conditioning
    ``J = U diag(s) Vᵀ``; condition number ``κ = s_max / s_min``.  Column scaling
    ``J_s = J D⁻¹``, ``D = diag(‖J_{:,j}‖)``, removes the effect of parameter units;
    ``κ_s`` of ``J_s`` measures genuine (unit-free) ill-conditioning.  A relative
    singular value ``s_j / s_max`` of ``J_s`` below ``degenerate_tol`` means the
    combination ``Σ_i v_{ij} δp_i ‖J_{:,i}‖`` of parameters (``v_j`` the right
    singular vector) leaves the residuals unchanged: the parameters in it are not
    identifiable separately.
Gradient
    ``cos = max_j |g_j| / (‖J_{:,j}‖ √(2C))`` — the largest cosine between a
    Jacobian column and the residual vector (MINPACK's ``gtol`` measure); 0 at an
    exact minimum and unit-free.
Correlation
    ``ρ_ij = C_ij / √(C_ii C_jj)`` from the covariance ``C = result.pcov``.
Residual moments
    mean ``r̄``, ``z = r̄ √m / s_r``; skewness ``g₁ = m₃ / m₂^{3/2}`` with standard
    error ``√(6m(m−1) / ((m−2)(m+1)(m+3)))``; excess kurtosis ``g₂ = m₄ / m₂² − 3`` with
    standard error ``2·SE(g₁)·√((m²−1) / ((m−3)(m+5)))``.
Runs test (Wald–Wolfowitz)
    with the residuals in order of ``x`` (data order without ``x``), ``n₊``/``n₋``
    positive/negative signs (zeros dropped), ``N = n₊ + n₋`` and ``R`` runs:
    ``μ = 2n₊n₋/N + 1``, ``σ² = 2n₊n₋(2n₊n₋ − N) / (N²(N − 1))``, ``z = (R − μ)/σ``,
    two-sided p-value ``2 Φ(−|z|)``.  Too few runs (``z ≪ 0``) means the residuals
    come in long blocks of one sign: the model misses a systematic feature.
Serial correlation
    lag-1 autocorrelation ``ρ₁ = Σ r_i r_{i+1} / Σ r_i²`` and Durbin–Watson
    ``d = Σ (r_{i+1} − r_i)² / Σ r_i² ≈ 2 (1 − ρ₁)`` (same order as the runs test);
    flagged when ``|ρ₁| √m > z_{0.995}``.
Influence
    leverage ``h_ii = Σ_{j<rank} U_ij²`` (the diagonal of the hat matrix
    ``H = J (JᵀJ)⁻¹ Jᵀ``, from the thin SVD); Cook's distance
    ``D_i = r_i² h_ii / (k s² (1 − h_ii)²)`` with ``s² = RSS / (m − k)``.  Points with
    ``D_i`` above the median of ``F(k, m − k)`` (≈ 1) are flagged as influential,
    ``h_ii > 0.5`` as high leverage.
Goodness of fit
    ``χ² = RSS``, ``χ²_ν = RSS / (m − k)``; ``R² = 1 − RSS / TSS`` with
    ``TSS = Σ w_i² (y_i − ȳ_w)²``, ``ȳ_w = Σ w_i² y_i / Σ w_i²`` (``w = 1/σ``; ``w = 1``
    without ``sigma``); adjusted ``R̄² = 1 − (1 − R²)(m − 1)/(m − k)``.
    Information criteria (additive constants dropped; only differences between
    models fitted to the same data mean anything):

    * σ estimated from the residuals (``absolute_sigma=False``, the default):
      ``AIC = m ln(RSS/m) + 2k``, ``BIC = m ln(RSS/m) + k ln m``;
    * σ known (``absolute_sigma=True``): ``AIC = χ² + 2k``, ``BIC = χ² + k ln m``;
    * ``AICc = AIC + 2k(k + 1) / (m − k − 1)``.

    ``k`` counts fitted parameters only (as lmfit; Burnham & Anderson add one for
    the estimated variance, which shifts every model equally in AIC and BIC).
    With ``absolute_sigma=True`` the χ² is also compared with its distribution
    (Wilson–Hilferty normal approximation) and flagged when ``|z| > 3``.

The warnings use two-sided level 1 % per test, so a correct model on pure noise
still draws a spurious residual warning a few per cent of the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from curvax.insight.stats import f_ppf, norm_sf

__all__ = ["DegenerateDirection", "DiagnosticWarning", "Diagnostics", "diagnose_result"]

#: two-sided 1 % normal critical value used by the residual tests
_Z99 = 2.5758293035489004
#: one-sided 1 % normal critical value (runs test: too few / too many runs)
_Z98 = 2.3263478740408408


class DiagnosticWarning(NamedTuple):
    """One finding: a short machine-readable ``code``, what was found, what to do."""

    code: str
    message: str
    advice: str


@dataclass
class DegenerateDirection:
    """A combination of parameters the data barely determine.

    Attributes
    ----------
    relative_singular_value : float
        ``s_j / s_max`` of the column-scaled Jacobian.
    scaled_vector : ndarray (n,)
        Right singular vector ``v_j`` in column-scaled coordinates (unit norm).
    direction : ndarray (n,)
        The same direction in parameter units, ``δp_i ∝ v_ij / ‖J_{:,i}‖``,
        normalised to unit max-norm.
    parameters : tuple of str
        Parameters with ``|v_ij| ≥ 0.1`` (largest first).
    identifiable : bool
        False when the singular value is at rounding level (exact degeneracy).
    """

    relative_singular_value: float
    scaled_vector: np.ndarray
    direction: np.ndarray
    parameters: tuple[str, ...]
    identifiable: bool
    param_names: tuple[str, ...] = ()

    def describe(self) -> str:
        """The combination as text, e.g. ``+0.707·a −0.707·b`` (scaled units)."""
        order = np.argsort(-np.round(np.abs(self.scaled_vector), 6), kind="stable")
        v = self.scaled_vector / np.max(np.abs(self.scaled_vector))
        terms = [f"{v[i]:+.3g}·{self.param_names[i]}" for i in order if abs(v[i]) >= 0.1]
        return " ".join(terms)


@dataclass
class Diagnostics:
    """Numbers and findings of :func:`diagnose_result` (see the module docstring).

    Arrays are float64 NumPy arrays; quantities that could not be computed (no
    Jacobian, no ``y``, too few points) are ``None`` or ``nan``.
    """

    param_names: tuple[str, ...]
    # convergence
    success: bool
    status: int
    message: str
    method: str
    loss: str
    nit: int
    nfev: int
    cost: float
    initial_cost: float
    cost_reduction: float
    grad_norm: float
    grad_max: float
    optimality: float
    gradient_cosine: float
    # Jacobian
    column_norms: np.ndarray | None = None
    singular_values: np.ndarray | None = None
    condition_number: float = math.nan
    scaled_singular_values: np.ndarray | None = None
    scaled_condition_number: float = math.nan
    rank: int | None = None
    degenerate_directions: list[DegenerateDirection] = field(default_factory=list)
    insensitive: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    # bounds
    at_bounds: list[tuple[str, str]] = field(default_factory=list)
    near_bounds: list[tuple[str, str, float]] = field(default_factory=list)
    # correlation
    correlation: np.ndarray | None = None
    strong_correlations: list[tuple[str, str, float]] = field(default_factory=list)
    # residuals
    residual_mean: float = math.nan
    residual_std: float = math.nan
    residual_mean_z: float = math.nan
    skewness: float = math.nan
    skewness_z: float = math.nan
    excess_kurtosis: float = math.nan
    kurtosis_z: float = math.nan
    n_positive: int = 0
    n_negative: int = 0
    runs: int = 0
    runs_expected: float = math.nan
    runs_z: float = math.nan
    runs_p_value: float = math.nan
    lag1_autocorrelation: float = math.nan
    durbin_watson: float = math.nan
    ordered_by_x: bool = False
    # influence
    leverage: np.ndarray | None = None
    cooks_distance: np.ndarray | None = None
    influential_points: np.ndarray | None = None
    high_leverage_points: np.ndarray | None = None
    cooks_threshold: float = math.nan
    # goodness of fit
    n_points: int = 0
    n_params: int = 0
    dof: int = 0
    chisqr: float = math.nan
    redchi: float = math.nan
    chisqr_z: float = math.nan
    r_squared: float | None = None
    adj_r_squared: float | None = None
    aic: float = math.nan
    aicc: float = math.nan
    bic: float = math.nan
    absolute_sigma: bool = False
    warnings: list[DiagnosticWarning] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def codes(self) -> tuple[str, ...]:
        """The warning codes, in order."""
        return tuple(w.code for w in self.warnings)

    @property
    def ok(self) -> bool:
        """True when no warning was raised."""
        return not self.warnings

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (arrays as lists), e.g. for JSON."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if isinstance(v, np.ndarray):
                out[k] = v.tolist()
            elif k == "warnings":
                out[k] = [w._asdict() for w in v]
            elif k == "degenerate_directions":
                out[k] = [
                    {
                        "relative_singular_value": d.relative_singular_value,
                        "parameters": list(d.parameters),
                        "scaled_vector": d.scaled_vector.tolist(),
                        "identifiable": d.identifiable,
                    }
                    for d in v
                ]
            else:
                out[k] = v
        return out

    def text(self) -> str:
        """A readable report: the numbers by section, then each warning with advice."""
        L: list[str] = []
        f = _fmt
        L.append("curvax fit diagnostics")
        L.append("=" * 22)
        L.append("Convergence")
        state = "converged" if self.success else "NOT converged"
        L.append(f"  {state} (status {self.status}): {self.message}")
        L.append(
            f"  method={self.method}  loss={self.loss}  iterations={self.nit}  nfev={self.nfev}"
        )
        L.append(
            f"  cost {f(self.initial_cost)} -> {f(self.cost)}  "
            f"(reduced by {self.cost_reduction:.4%})"
        )
        L.append(
            f"  gradient: |g|={f(self.grad_norm)}  max|g_j|={f(self.grad_max)}  "
            f"cosine={f(self.gradient_cosine)}  optimality={f(self.optimality)}"
        )
        L.append("Jacobian")
        if self.singular_values is None:
            L.append("  (not available)")
        else:
            L.append(f"  singular values: {_arr(self.singular_values)}")
            L.append(f"  condition number: {f(self.condition_number)}")
            L.append(f"  column-scaled singular values: {_arr(self.scaled_singular_values)}")
            L.append(f"  column-scaled condition number: {f(self.scaled_condition_number)}")
            for d in self.degenerate_directions:
                kind = "NOT identifiable" if not d.identifiable else "poorly determined"
                L.append(
                    f"  {kind}: {d.describe()}  (relative singular value "
                    f"{d.relative_singular_value:.2e})"
                )
        if self.at_bounds or self.near_bounds:
            L.append("Bounds")
            for name, side in self.at_bounds:
                L.append(f"  {name}: at {side} bound")
            for name, side, dist in self.near_bounds:
                L.append(f"  {name}: near {side} bound (distance {f(dist)})")
        L.append("Correlations")
        if self.correlation is None:
            L.append("  (covariance not available)")
        elif not self.strong_correlations:
            L.append("  no pair with |r| > 0.95")
        else:
            for a, b, r in self.strong_correlations:
                L.append(f"  {a} ~ {b}: {r:+.4f}")
        L.append("Residuals" + (" (ordered by x)" if self.ordered_by_x else " (data order)"))
        L.append(
            f"  mean={f(self.residual_mean)} (z={f(self.residual_mean_z)})  "
            f"std={f(self.residual_std)}"
        )
        L.append(
            f"  skewness={f(self.skewness)} (z={f(self.skewness_z)})  "
            f"excess kurtosis={f(self.excess_kurtosis)} (z={f(self.kurtosis_z)})"
        )
        L.append(
            f"  runs={self.runs} (expected {f(self.runs_expected)}, n+={self.n_positive}, "
            f"n-={self.n_negative})  z={f(self.runs_z)}  p={f(self.runs_p_value)}"
        )
        L.append(
            f"  lag-1 autocorrelation={f(self.lag1_autocorrelation)}  "
            f"Durbin-Watson={f(self.durbin_watson)}"
        )
        if self.leverage is not None:
            L.append("Influence")
            i_h = int(np.argmax(self.leverage))
            L.append(
                f"  leverage: mean={f(float(np.mean(self.leverage)))} "
                f"max={f(float(self.leverage[i_h]))} (point {i_h})"
            )
            cd = self.cooks_distance
            if cd is not None and np.any(np.isfinite(cd)):
                i_c = int(np.nanargmax(cd))
                L.append(
                    f"  Cook's distance: max={f(float(cd[i_c]))} (point {i_c}); "
                    f"threshold {f(self.cooks_threshold)}"
                )
        L.append("Goodness of fit")
        L.append(f"  points={self.n_points}  fitted parameters={self.n_params}  dof={self.dof}")
        L.append(f"  chi2={f(self.chisqr)}  reduced chi2={f(self.redchi)}")
        if self.r_squared is not None:
            L.append(f"  R2={self.r_squared:.6f}  adjusted R2={self.adj_r_squared:.6f}")
        crit = "known sigma" if self.absolute_sigma else "sigma estimated"
        L.append(f"  AIC={f(self.aic)}  AICc={f(self.aicc)}  BIC={f(self.bic)}  ({crit})")
        for n in self.notes:
            L.append(f"  note: {n}")
        L.append("")
        if not self.warnings:
            L.append("No warnings.")
        else:
            L.append(f"Warnings ({len(self.warnings)})")
            for w in self.warnings:
                L.append(f"  [{w.code}] {w.message}")
                L.append(f"      advice: {w.advice}")
        return "\n".join(L)

    def __str__(self) -> str:
        return self.text()


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def _arr(a: np.ndarray | None) -> str:
    if a is None:
        return "-"
    return "[" + ", ".join(f"{v:.3e}" for v in np.asarray(a)) + "]"


def _bounds_from_extra(result: Any, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    extra = getattr(result, "extra", None) or {}
    b = extra.get("bounds")
    if b is None:  # the fit's recorded options, when it keeps them
        meta = extra.get("metadata")
        opts = meta.get("options") if isinstance(meta, dict) else None
        b = opts.get("bounds") if isinstance(opts, dict) else None
    if b is None:
        return None
    try:
        if hasattr(b, "lb"):
            lb, ub = b.lb, b.ub
        else:
            lb, ub = b
        lb = np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,))
        ub = np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,))
    except (TypeError, ValueError):
        return None
    return lb, ub


def free_mask(result: Any, jac: np.ndarray | None = None) -> np.ndarray:
    """True for the parameters that were fitted (not held fixed).

    ``result.extra['fixed_mask']`` (or ``['fixed']``) when present; otherwise a
    parameter counts as fixed when its Jacobian column is exactly zero and its
    variance is exactly zero (how :func:`curvax.core.solve.solve` reports fixed
    parameters).
    """
    n = np.asarray(result.x).size
    extra = getattr(result, "extra", None) or {}
    for key in ("fixed_mask", "fixed"):
        fx = extra.get(key)
        if fx is None or isinstance(fx, dict):
            continue
        try:
            fx = np.asarray(fx, dtype=bool)
        except (TypeError, ValueError):
            continue
        if fx.shape == (n,):
            return ~fx
    var = np.diag(np.asarray(result.pcov, dtype=np.float64))
    fixed = var == 0.0
    if np.all(fixed):  # a perfect fit has zero covariance everywhere: nothing is fixed
        fixed = np.zeros(n, dtype=bool)
    if jac is not None:
        fixed &= ~np.any(jac != 0, axis=0)
    return ~fixed


def information_criteria(
    chisqr: float, m: int, k: int, absolute_sigma: bool
) -> tuple[float, float, float]:
    """``(AIC, AICc, BIC)`` of a least-squares fit (formulas in the module docstring)."""
    if absolute_sigma:
        base = chisqr
    else:
        base = m * math.log(chisqr / m) if chisqr > 0 else -math.inf
    aic = base + 2.0 * k
    bic = base + k * math.log(m)
    aicc = aic + 2.0 * k * (k + 1) / (m - k - 1) if m - k - 1 > 0 else math.inf
    return aic, aicc, bic


def runs_test(r: np.ndarray) -> tuple[int, int, int, float, float, float]:
    """Wald–Wolfowitz runs test on the signs of ``r`` (zeros dropped).

    Returns ``(runs, n_pos, n_neg, expected, z, p_two_sided)``.
    """
    s = np.sign(np.asarray(r, dtype=np.float64))
    s = s[s != 0]
    n1 = int(np.sum(s > 0))
    n2 = int(np.sum(s < 0))
    N = n1 + n2
    if N == 0:
        return 0, 0, 0, math.nan, math.nan, math.nan
    runs = 1 + int(np.sum(s[1:] != s[:-1]))
    mu = 2.0 * n1 * n2 / N + 1.0
    var = 2.0 * n1 * n2 * (2.0 * n1 * n2 - N) / (N * N * (N - 1.0)) if N > 1 else 0.0
    if var <= 0:
        return runs, n1, n2, mu, math.nan, math.nan
    z = (runs - mu) / math.sqrt(var)
    return runs, n1, n2, mu, z, float(min(1.0, 2.0 * norm_sf(abs(z))))


def leverage_and_cooks(J: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Hat-matrix diagonal and Cook's distances from the thin SVD of ``J``.

    Returns ``(h, D, rank)``; ``D_i`` is ``nan`` where ``h_ii = 1`` (a point fitted
    exactly by construction) or when ``m ≤ rank``.
    """
    J = np.asarray(J, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    m, n = J.shape
    U, s, _ = np.linalg.svd(J, full_matrices=False)
    tol = (s[0] if s.size else 0.0) * max(m, n) * np.finfo(np.float64).eps
    rank = int(np.sum(s > tol))
    h = np.sum(U[:, :rank] ** 2, axis=1)
    h = np.clip(h, 0.0, 1.0)
    dof = m - rank
    D = np.full(m, np.nan)
    if dof > 0 and rank > 0:
        s2 = float(np.sum(r * r)) / dof
        ok = h < 1.0 - 1e-12
        if s2 > 0:
            D[ok] = r[ok] ** 2 * h[ok] / (rank * s2 * (1.0 - h[ok]) ** 2)
        else:
            D[ok] = 0.0
    return h, D, rank


def diagnose_result(
    result: Any,
    x: Any = None,
    y: Any = None,
    *,
    sigma: Any = None,
    degenerate_tol: float | None = None,
    ill_conditioned_tol: float = 1e-4,
    corr_threshold: float = 0.95,
    near_bound_rtol: float = 1e-3,
) -> Diagnostics:
    """Diagnose a fit: convergence, identifiability, residuals, influence, fit quality.

    Parameters
    ----------
    result : FitResult
        The fit to inspect (from :func:`curvax.fit_curve`, ``least_squares``, ...).
    x : array_like, optional
        The independent variable of the data; when 1-D with one value per point, the
        residuals are put in order of ``x`` for the runs test and serial correlation
        (otherwise they are taken in data order).
    y : array_like, optional
        The observations; needed for ``R²`` and adjusted ``R²``.
    sigma : array_like, optional
        The 1-D ``sigma`` the fit used (weights ``1/σ``), so that ``R²`` is weighted
        consistently with the residuals.  Omit for an unweighted fit.
    degenerate_tol : float, optional
        Relative singular value (of the column-scaled Jacobian) below which a
        parameter combination is reported as not identifiable.  Default
        ``max(1e-8, 100·eps)`` of the fit's dtype.
    ill_conditioned_tol : float
        Relative singular value below which a combination is reported as poorly
        determined (default ``1e-4``, i.e. scaled condition number above 10⁴).
    corr_threshold : float
        ``|ρ_ij|`` above which a pair of parameters is flagged (default 0.95).
    near_bound_rtol : float
        A parameter is *near* a bound when within ``near_bound_rtol·(ub − lb)`` of
        it (two finite bounds) or ``near_bound_rtol·max(1, |bound|)`` (one finite
        bound).  Bounds are read from ``result.extra['bounds']`` (or the fit's recorded
        options, ``result.extra['metadata']['options']['bounds']``) when present;
        ``result.active_mask`` always marks parameters *at* a bound.

    Returns
    -------
    Diagnostics
        The numbers, ``.text()`` and ``.warnings`` (``(code, message, advice)``).

    Notes
    -----
    Formulas are given in the module docstring of :mod:`curvax.insight.diagnostics`
    and in ``docs/diagnostics.md``.  With a robust loss the residual checks use the
    residuals before robust down-weighting and the Jacobian is the loss-rescaled one,
    so the least-squares statistics (R², AIC, Cook's distance) are approximate.
    """
    names = tuple(result.param_names)
    p = np.asarray(result.x, dtype=np.float64)
    n = p.size
    r = np.asarray(result.fun, dtype=np.float64).ravel()
    m = r.size
    pcov = np.asarray(result.pcov, dtype=np.float64)
    jac = result.jac
    J = None if jac is None else np.asarray(jac, dtype=np.float64)
    if J is not None and J.shape != (m, n):
        J = None
    dtype = getattr(result, "dtype", np.dtype(np.float64))
    eps = float(np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float64).eps)
    if degenerate_tol is None:
        degenerate_tol = max(1e-8, 100.0 * eps)

    warns: list[DiagnosticWarning] = []
    notes: list[str] = []
    free = free_mask(result, J)
    k = int(np.sum(free))
    fixed_names = tuple(nm for nm, fr in zip(names, free) if not fr)
    if fixed_names:
        notes.append(f"held fixed (not counted as fitted): {', '.join(fixed_names)}")
    loss = str(getattr(result, "loss", "linear"))
    if loss != "linear":
        notes.append(
            f"robust loss {loss!r}: residual statistics use the residuals before robust "
            "down-weighting; R2, AIC and Cook's distance are least-squares approximations"
        )

    # -- convergence ---------------------------------------------------------------------
    grad = np.asarray(result.grad, dtype=np.float64)
    cost = float(result.cost)
    initial_cost = float(result.initial_cost)
    reduction = 1.0 - cost / initial_cost if initial_cost > 0 else 0.0
    colnorm = None if J is None else np.sqrt(np.sum(J * J, axis=0))
    if colnorm is not None and cost > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            cosv = np.abs(grad) / (colnorm * math.sqrt(2.0 * cost))
        cosv = np.where(colnorm > 0, cosv, 0.0)
        gcos = float(np.max(cosv[free])) if k else 0.0
    else:
        gcos = 0.0 if cost == 0 else math.nan
    diag = Diagnostics(
        param_names=names,
        success=bool(result.success),
        status=int(result.status),
        message=str(result.message),
        method=str(getattr(result, "method", "")),
        loss=loss,
        nit=int(result.nit),
        nfev=int(result.nfev),
        cost=cost,
        initial_cost=initial_cost,
        cost_reduction=reduction,
        grad_norm=float(np.linalg.norm(grad)),
        grad_max=float(np.max(np.abs(grad))) if n else 0.0,
        optimality=float(getattr(result, "optimality", math.nan)),
        gradient_cosine=gcos,
        fixed=fixed_names,
        absolute_sigma=bool(getattr(result, "absolute_sigma", False)),
    )
    if not result.success:
        advice = {
            0: "raise max_nfev, start closer to the solution (a better p0 or the model's "
            "guess), or rescale parameters (x_scale='jac')",
            -2: "a callback stopped the fit; rerun without it (or with a looser "
            "criterion) if the final answer is needed",
            -3: "the time limit stopped the fit; raise timeout or start closer",
            -4: "the fit stopped far from a minimum (the cost no longer changed in "
            "float64): start closer, or rescale data and parameters",
        }.get(
            int(result.status),
            "check the model, the data and p0; try method='trf' or another starting point",
        )
        warns.append(
            DiagnosticWarning(
                "not_converged",
                f"the fit did not converge (status {result.status}: {result.message})",
                advice,
            )
        )
    if math.isfinite(gcos) and gcos > 1e-3:
        warns.append(
            DiagnosticWarning(
                "large_gradient",
                f"the gradient is not small at the solution (largest cosine between a "
                f"Jacobian column and the residuals: {gcos:.3g})",
                "the point may not be a minimum: tighten gtol/ftol/xtol, raise max_nfev, "
                "or restart from result.x",
            )
        )

    # -- Jacobian conditioning and identifiability ---------------------------------------
    if J is not None and k > 0:
        Jf = J[:, free]
        cn = colnorm[free]
        s = np.linalg.svd(Jf, compute_uv=False)
        diag.column_norms = colnorm
        diag.singular_values = s
        diag.condition_number = float(s[0] / s[-1]) if s[-1] > 0 else math.inf
        zero_cols = cn == 0
        free_idx = np.nonzero(free)[0]
        if np.any(zero_cols):
            insens = tuple(names[i] for i in free_idx[zero_cols])
            diag.insensitive = insens
            warns.append(
                DiagnosticWarning(
                    "insensitive_parameter",
                    f"the residuals do not depend on {', '.join(insens)} at the solution "
                    "(zero Jacobian column)",
                    "check that the model uses the parameter, that it is not beyond a "
                    "saturating range, or fix it (bounds lb == ub / fixed=...)",
                )
            )
        sc = np.where(zero_cols, 1.0, cn)
        Js = Jf / sc
        _, ss, Vt = np.linalg.svd(Js, full_matrices=False)
        diag.scaled_singular_values = ss
        diag.scaled_condition_number = float(ss[0] / ss[-1]) if ss[-1] > 0 else math.inf
        diag.rank = int(np.sum(ss > ss[0] * max(Js.shape) * np.finfo(np.float64).eps))
        rel = ss / ss[0] if ss[0] > 0 else np.zeros_like(ss)
        for j in range(ss.size):
            if rel[j] >= ill_conditioned_tol:
                continue
            v = Vt[j]
            if np.count_nonzero(np.abs(v) >= 0.1) == 1 and np.any(zero_cols):
                continue  # the insensitive parameter, reported above
            full_v = np.zeros(n)
            full_v[free_idx] = v
            direction = np.zeros(n)
            direction[free_idx] = v / sc
            direction = direction / np.max(np.abs(direction))
            order = np.argsort(-np.round(np.abs(full_v), 6), kind="stable")
            involved = tuple(names[i] for i in order if abs(full_v[i]) >= 0.1)
            d = DegenerateDirection(
                relative_singular_value=float(rel[j]),
                scaled_vector=full_v,
                direction=direction,
                parameters=involved,
                identifiable=bool(rel[j] >= degenerate_tol),
                param_names=names,
            )
            diag.degenerate_directions.append(d)
            if not d.identifiable:
                warns.append(
                    DiagnosticWarning(
                        "degenerate_parameters",
                        f"parameters {', '.join(involved)} are not identifiable "
                        f"separately: the residuals do not change along {d.describe()} "
                        f"(column-scaled units; relative singular value {rel[j]:.1e})",
                        "the model is over-parametrised for these data: fix one of "
                        f"{', '.join(involved)}, reparametrise (e.g. replace a product "
                        "or sum of them by a single parameter), or add data that "
                        "separates their effects",
                    )
                )
            else:
                warns.append(
                    DiagnosticWarning(
                        "ill_conditioned",
                        f"parameters {', '.join(involved)} are poorly determined jointly: "
                        f"the combination {d.describe()} has relative singular value "
                        f"{rel[j]:.1e} (column-scaled condition number "
                        f"{diag.scaled_condition_number:.3g})",
                        "their individual uncertainties are large and strongly "
                        "correlated; reparametrise (e.g. centre x, use orthogonal "
                        "terms), fix one, or collect data over a wider range",
                    )
                )
    elif J is None:
        notes.append("Jacobian not available: conditioning and influence not computed")

    # -- bounds ---------------------------------------------------------------------------
    am = np.asarray(result.active_mask, dtype=int)
    for i in np.nonzero(am)[0]:
        diag.at_bounds.append((names[i], "lower" if am[i] < 0 else "upper"))
    bounds = _bounds_from_extra(result, n)
    if bounds is not None:
        lb, ub = bounds
        for i in range(n):
            if am[i] != 0 or not free[i]:
                continue
            width = ub[i] - lb[i]
            for side, b in (("lower", lb[i]), ("upper", ub[i])):
                if not np.isfinite(b):
                    continue
                tol = near_bound_rtol * (width if np.isfinite(width) else max(1.0, abs(b)))
                dist = abs(p[i] - b)
                if dist <= tol:
                    diag.near_bounds.append((names[i], side, float(dist)))
                    break
    if diag.at_bounds or diag.near_bounds:
        which = [a for a, _ in diag.at_bounds] + [a for a, _, _ in diag.near_bounds]
        warns.append(
            DiagnosticWarning(
                "at_bound",
                f"{', '.join(which)} at or near a bound",
                "the covariance and intervals assume an interior minimum and are not "
                "reliable here; widen the bound if physically allowed, or fix the "
                "parameter at the bound and refit",
            )
        )

    # -- correlation ----------------------------------------------------------------------
    if np.all(np.isfinite(pcov)) and k > 0:
        d = np.sqrt(np.clip(np.diag(pcov), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = pcov / np.outer(d, d)
        corr[~np.isfinite(corr)] = 0.0
        np.fill_diagonal(corr, np.where(d > 0, 1.0, 0.0))
        diag.correlation = corr
        for i in range(n):
            for j in range(i + 1, n):
                if abs(corr[i, j]) > corr_threshold:
                    diag.strong_correlations.append((names[i], names[j], float(corr[i, j])))
        if diag.strong_correlations:
            txt = ", ".join(f"{a}~{b} ({c:+.3f})" for a, b, c in diag.strong_correlations)
            warns.append(
                DiagnosticWarning(
                    "strong_correlation",
                    f"strongly correlated parameters (|r| > {corr_threshold}): {txt}",
                    "each value is uncertain alone but the combination is well "
                    "determined; report the covariance with the values, or "
                    "reparametrise (e.g. centre x before fitting an offset and slope)",
                )
            )
    else:
        warns.append(
            DiagnosticWarning(
                "covariance_unavailable",
                "the parameter covariance could not be estimated (rank-deficient "
                "Jacobian or too few points)",
                "see the identifiability findings; standard errors and intervals are "
                "undefined until the degeneracy is removed",
            )
        )

    # -- residuals -------------------------------------------------------------------------
    order = None
    xa = None
    if x is not None:
        try:
            xa = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            xa = None
    if xa is not None and xa.ndim == 1 and xa.size == m:
        order = np.argsort(xa, kind="stable")
        diag.ordered_by_x = True
    elif xa is not None:
        notes.append("x is not 1-D with one value per point: residuals taken in data order")
    ro = r if order is None else r[order]
    if m >= 3:
        mean = float(np.mean(r))
        sd = float(np.std(r, ddof=1))
        diag.residual_mean, diag.residual_std = mean, sd
        diag.residual_mean_z = mean * math.sqrt(m) / sd if sd > 0 else math.nan
        c = r - mean
        m2 = float(np.mean(c**2))
        if m2 > 0:
            g1 = float(np.mean(c**3)) / m2**1.5
            g2 = float(np.mean(c**4)) / m2**2 - 3.0
            diag.skewness, diag.excess_kurtosis = g1, g2
            if m > 3:
                se1 = math.sqrt(6.0 * m * (m - 1) / ((m - 2) * (m + 1) * (m + 3)))
                se2 = 2.0 * se1 * math.sqrt((m * m - 1.0) / ((m - 3) * (m + 5)))
                diag.skewness_z, diag.kurtosis_z = g1 / se1, g2 / se2
        runs, n1, n2, mu, z, pv = runs_test(ro)
        diag.runs, diag.n_positive, diag.n_negative = runs, n1, n2
        diag.runs_expected, diag.runs_z, diag.runs_p_value = mu, z, pv
        ss_r = float(np.sum(ro * ro))
        if ss_r > 0:
            diag.lag1_autocorrelation = float(np.sum(ro[1:] * ro[:-1]) / ss_r)
            diag.durbin_watson = float(np.sum(np.diff(ro) ** 2) / ss_r)
    if math.isfinite(diag.residual_mean_z) and abs(diag.residual_mean_z) > 3.0:
        warns.append(
            DiagnosticWarning(
                "biased_residuals",
                f"the residuals do not average to zero (mean {diag.residual_mean:.3g}, "
                f"z = {diag.residual_mean_z:.2f})",
                "the model lacks an offset/baseline term or is misspecified; add a "
                "constant or check the model form",
            )
        )
    order_txt = "in order of x" if diag.ordered_by_x else "in data order"
    if math.isfinite(diag.runs_z) and diag.runs_z < -_Z98:
        warns.append(
            DiagnosticWarning(
                "systematic_misfit",
                f"the residuals ({order_txt}) come in long runs of one sign: {diag.runs} "
                f"runs where {diag.runs_expected:.1f} are expected (runs test z = "
                f"{diag.runs_z:.2f}, p = {diag.runs_p_value:.2g})",
                "the model misses a systematic feature of the data: plot the residuals "
                "against x, and try a more flexible model (extra term, baseline, second "
                "component) — the parameter uncertainties are not reliable until then",
            )
        )
    elif math.isfinite(diag.runs_z) and diag.runs_z > _Z98:
        warns.append(
            DiagnosticWarning(
                "too_many_runs",
                f"the residual signs ({order_txt}) alternate more often than chance: "
                f"{diag.runs} runs where {diag.runs_expected:.1f} are expected "
                f"(z = {diag.runs_z:.2f})",
                "negatively correlated errors or an oscillating misfit; check the data "
                "acquisition and the ordering of the points",
            )
        )
    rho = diag.lag1_autocorrelation
    if math.isfinite(rho) and abs(rho) * math.sqrt(m) > _Z99:
        warns.append(
            DiagnosticWarning(
                "autocorrelated_residuals",
                f"neighbouring residuals ({order_txt}) are correlated: lag-1 "
                f"autocorrelation {rho:+.3f}, Durbin-Watson {diag.durbin_watson:.3f}",
                "either the model misses a trend (positive correlation) or the errors are "
                "correlated; fix the model, or pass the error covariance as a 2-D sigma "
                "— otherwise the standard errors are too small",
            )
        )
    if math.isfinite(diag.skewness_z) and abs(diag.skewness_z) > _Z99 and m >= 20:
        warns.append(
            DiagnosticWarning(
                "skewed_residuals",
                f"the residuals are asymmetric (skewness {diag.skewness:.3f}, "
                f"z = {diag.skewness_z:.2f})",
                "outliers on one side or a wrong error model (e.g. Poisson or "
                "multiplicative errors): consider fitting log(y), weighting with sigma, "
                "or a robust loss (loss='soft_l1' or 'huber')",
            )
        )
    if math.isfinite(diag.kurtosis_z) and diag.kurtosis_z > _Z99 and m >= 20:
        warns.append(
            DiagnosticWarning(
                "heavy_tails",
                f"the residuals have heavy tails (excess kurtosis "
                f"{diag.excess_kurtosis:.3f}, z = {diag.kurtosis_z:.2f}): outliers",
                "inspect the largest residuals; a robust loss (loss='soft_l1', 'huber' "
                "or 'cauchy' with a suitable f_scale) limits their influence",
            )
        )

    # -- influence ------------------------------------------------------------------------
    if J is not None and k > 0 and m > k:
        h, D, rank = leverage_and_cooks(J[:, free], r)
        diag.leverage, diag.cooks_distance = h, D
        thr = float(f_ppf(0.5, max(rank, 1), max(m - rank, 1)))
        diag.cooks_threshold = thr
        infl = np.nonzero(np.nan_to_num(D, nan=0.0) > thr)[0]
        infl = infl[np.argsort(-D[infl])]
        diag.influential_points = infl
        hl = np.nonzero(h > 0.5)[0]
        diag.high_leverage_points = hl
        if infl.size:
            shown = ", ".join(f"{i} (D={D[i]:.3g})" for i in infl[:5])
            more = f" and {infl.size - 5} more" if infl.size > 5 else ""
            warns.append(
                DiagnosticWarning(
                    "influential_points",
                    f"point(s) {shown}{more} change the fit strongly (Cook's distance "
                    f"above {thr:.3g})",
                    "check these points for recording errors; refit without them to see "
                    "how much the parameters move, or use a robust loss",
                )
            )
        if hl.size:
            shown = ", ".join(f"{i} (h={h[i]:.3f})" for i in hl[:5])
            warns.append(
                DiagnosticWarning(
                    "high_leverage",
                    f"point(s) {shown} alone determine a large part of the fit (leverage > 0.5)",
                    "the parameters rest on few points: add measurements near them (or "
                    "over the whole range) so that no single point dominates",
                )
            )

    # -- goodness of fit -------------------------------------------------------------------
    chisqr = float(np.sum(r * r))
    dof = m - k
    diag.n_points, diag.n_params, diag.dof = m, k, dof
    diag.chisqr = chisqr
    diag.redchi = chisqr / dof if dof > 0 else math.nan
    diag.aic, diag.aicc, diag.bic = information_criteria(chisqr, m, k, diag.absolute_sigma)
    if diag.absolute_sigma and dof > 0:
        # Wilson–Hilferty: (χ²/ν)^{1/3} ~ N(1 − 2/(9ν), 2/(9ν))
        a = 2.0 / (9.0 * dof)
        diag.chisqr_z = ((chisqr / dof) ** (1.0 / 3.0) - (1.0 - a)) / math.sqrt(a)
        if diag.chisqr_z > 3.0:
            warns.append(
                DiagnosticWarning(
                    "chisqr_high",
                    f"chi2 = {chisqr:.4g} is too large for {dof} degrees of freedom "
                    f"(reduced chi2 {diag.redchi:.3g}, z = {diag.chisqr_z:.1f}) with "
                    "absolute sigma",
                    "either sigma underestimates the errors or the model misfits; check the "
                    "residual tests, or use absolute_sigma=False to rescale the covariance",
                )
            )
        elif diag.chisqr_z < -3.0:
            warns.append(
                DiagnosticWarning(
                    "chisqr_low",
                    f"chi2 = {chisqr:.4g} is too small for {dof} degrees of freedom "
                    f"(reduced chi2 {diag.redchi:.3g}, z = {diag.chisqr_z:.1f})",
                    "sigma overestimates the errors (or the model over-fits); the "
                    "standard errors are then too large",
                )
            )
    if y is not None:
        ya = np.asarray(y, dtype=np.float64).ravel()
        w2 = None
        if sigma is not None:
            sg = np.asarray(sigma, dtype=np.float64)
            if sg.ndim <= 1:
                w2 = np.broadcast_to(1.0 / sg**2, ya.shape)
            else:
                notes.append("2-D sigma: R2 not computed")
                ya = None  # type: ignore[assignment]
        if ya is not None and ya.size == m:
            w2 = np.ones(m) if w2 is None else w2
            ybar = float(np.sum(w2 * ya) / np.sum(w2))
            tss = float(np.sum(w2 * (ya - ybar) ** 2))
            if tss > 0:
                r2 = 1.0 - chisqr / tss
                diag.r_squared = r2
                diag.adj_r_squared = 1.0 - (1.0 - r2) * (m - 1) / dof if dof > 0 else math.nan
        elif ya is not None:
            notes.append(f"y has {ya.size} values but the fit has {m} points: R2 not computed")
    diag.warnings = warns
    diag.notes = notes
    return diag
