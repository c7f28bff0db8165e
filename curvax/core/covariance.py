"""Parameter covariance from the triangular factor of the final Jacobian.

At the solution, with ``J̃ = Q₁R`` the (loss-rescaled, sigma-weighted) Jacobian, the
Gauss–Newton approximation of the covariance of the estimates is

    pcov = s² (J̃ᵀJ̃)⁻¹ = s² V diag(1/σ_k²) Vᵀ,     R = U diag(σ_k) Vᵀ,

computed from the SVD of ``R`` (the singular values of ``R`` are those of ``J̃``, so no
``JᵀJ`` is ever formed and its squared condition number is avoided).

* ``absolute_sigma=False`` (default): ``s² = 2C / (m − n)``, the residual variance —
  the covariance is rescaled so that the reduced χ² is 1, i.e. ``sigma`` is taken as
  relative weights only.  Requires ``m > n``.
* ``absolute_sigma=True``: ``s² = 1`` — ``sigma`` are the true standard deviations.

What it assumes: the model is locally linear over the uncertainty region, the errors
are independent (or correlated exactly as a 2-D ``sigma`` says) with zero mean, and
the Jacobian has full column rank.  When a singular value is below
``eps · max(m, n) · σ_max`` (rank deficiency: some combination of parameters is not
determined by the data), or when ``m ≤ n`` with ``absolute_sigma=False``, the
covariance cannot be estimated: every entry is ``inf`` and the caller warns.
"""

from __future__ import annotations

import numpy as np


def covariance_from_factor(
    R: np.ndarray,
    n_residuals: int,
    cost: float,
    absolute_sigma: bool,
) -> tuple[np.ndarray, bool]:
    """Return ``(pcov, ok)``; ``ok`` is False when pcov is all-inf (see module docstring)."""
    R = np.asarray(R, dtype=np.float64)
    n = R.shape[1]
    if not np.all(np.isfinite(R)):
        return np.full((n, n), np.inf), False
    _, s, Vt = np.linalg.svd(R, full_matrices=False)
    threshold = np.finfo(np.float64).eps * max(n_residuals, n) * (s[0] if s.size else 0.0)
    if s.size == 0 or s[0] == 0 or np.any(s <= threshold):
        return np.full((n, n), np.inf), False
    pcov = (Vt.T / s**2) @ Vt
    pcov = 0.5 * (pcov + pcov.T)
    if not absolute_sigma:
        if n_residuals <= n:
            return np.full((n, n), np.inf), False
        pcov = pcov * (2.0 * cost / (n_residuals - n))
    return pcov, True
