"""The result of many independent fits: one row per fit."""

from __future__ import annotations

from typing import Any

import numpy as np

from curvax.core.trust_region import STATUS_MESSAGES

#: Extra status of a fit that could not start (bad data, bad p0, too few points).
STATUS_INVALID = -1


class BatchResult:
    """Outcome of ``B`` independent fits of the same model.

    Attributes
    ----------
    popt : ndarray (B, P)
        Estimated parameters of each fit (NaN for fits that could not start).
    pcov : ndarray (B, P, P)
        Covariance of each fit's estimates (Gauss–Newton, as for single fits:
        :mod:`curvax.core.covariance`); all ``inf`` where it cannot be estimated.
    perr : ndarray (B, P)
        Standard errors, ``sqrt(diag(pcov))`` per fit.
    status : ndarray of int (B,)
        Solver status per fit, with the codes of single fits: 1–4 converged, 0
        evaluation budget spent, -1 the fit could not start (non-finite data or
        model at ``p0``, ``p0`` outside its bounds, fewer real points than
        parameters), -4 a convergence test passed far from a minimum.
    success : ndarray of bool (B,)
        ``status`` in 1–4.
    cost, initial_cost : ndarray (B,)
        ``½ Σ ρ(r_i²)`` at the solution and at the start.
    nfev, nit : ndarray of int (B,)
        Model evaluations (value and Jacobian, one fused pass) and accepted steps.
    optimality : ndarray (B,)
        First-order optimality (max-norm of the scaled gradient) at the solution.
    n_points : ndarray of int (B,)
        Real (unmasked) data points of each fit.
    param_names : tuple of str
    method : str
    dtype : numpy dtype
    """

    def __init__(
        self,
        *,
        popt: np.ndarray,
        pcov: np.ndarray,
        status: np.ndarray,
        cost: np.ndarray,
        initial_cost: np.ndarray,
        nfev: np.ndarray,
        nit: np.ndarray,
        optimality: np.ndarray,
        n_points: np.ndarray,
        param_names: tuple[str, ...] | None,
        method: str,
        dtype: Any,
        reasons: dict[int, str] | None = None,
    ) -> None:
        self.popt = np.asarray(popt)
        self.pcov = np.asarray(pcov, dtype=np.float64)
        self.status = np.asarray(status, dtype=np.int32)
        self.cost = np.asarray(cost, dtype=np.float64)
        self.initial_cost = np.asarray(initial_cost, dtype=np.float64)
        self.nfev = np.asarray(nfev, dtype=np.int64)
        self.nit = np.asarray(nit, dtype=np.int64)
        self.optimality = np.asarray(optimality, dtype=np.float64)
        self.n_points = np.asarray(n_points, dtype=np.int64)
        p = self.popt.shape[1]
        self.param_names = tuple(param_names) if param_names else tuple(f"p{i}" for i in range(p))
        self.method = method
        self.dtype = np.dtype(dtype)
        self._reasons = dict(reasons or {})

    @property
    def x(self) -> np.ndarray:
        return self.popt

    @property
    def perr(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.diagonal(self.pcov, axis1=1, axis2=2))

    @property
    def success(self) -> np.ndarray:
        return (self.status >= 1) & (self.status <= 4)

    @property
    def message(self) -> list[str]:
        """The status of each fit in words (with the reason where a fit could not start)."""
        out = []
        for i, s in enumerate(self.status.tolist()):
            msg = STATUS_MESSAGES.get(s, f"Unknown status {s}.")
            if i in self._reasons:
                msg = f"{msg} ({self._reasons[i]})"
            out.append(msg)
        return out

    def __len__(self) -> int:
        return self.popt.shape[0]

    def fit(self, i: int) -> dict[str, Any]:
        """The record of fit ``i`` as a dict of plain values."""
        return {
            "popt": self.popt[i],
            "pcov": self.pcov[i],
            "perr": self.perr[i],
            "status": int(self.status[i]),
            "success": bool(self.success[i]),
            "message": self.message[i],
            "cost": float(self.cost[i]),
            "nfev": int(self.nfev[i]),
            "nit": int(self.nit[i]),
        }

    def summary(self) -> str:
        """A short report: how many fits converged, why the others stopped."""
        n = len(self)
        lines = [
            f"curvax batch fit ({self.method}, {self.dtype.name}): {n} fits, "
            f"{int(self.success.sum())} converged"
        ]
        codes, counts = np.unique(self.status, return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist()):
            lines.append(f"  status {c:>2}: {k:>8}  {STATUS_MESSAGES.get(c, '')}")
        if n:
            lines.append(f"  nfev: mean {float(self.nfev.mean()):.1f}, max {int(self.nfev.max())}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"BatchResult(n_fits={len(self)}, params={self.param_names}, "
            f"converged={int(self.success.sum())})"
        )
