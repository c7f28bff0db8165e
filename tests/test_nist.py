"""NIST StRD nonlinear regression: certified values from both official starts.

All 27 problems, both starting points, curvax's ``curve_fit`` with its default
settings (no per-problem tuning): every parameter must reach at least 6 correct
significant digits (log relative error, LRE) and every standard error at least 3,
against the values NIST certified in 128-bit arithmetic.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import curvax
from curvax.datasets import NIST_NAMES, load_nist, lre


@pytest.mark.parametrize("name", NIST_NAMES)
def test_nist_certified_values_default_settings(name: str) -> None:
    prob = load_nist(name)
    for start in (prob.start1, prob.start2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a clean fit must not warn
            popt, pcov = curvax.curve_fit(prob.model, prob.x, prob.y, p0=start)
        digits = lre(popt, prob.certified_values)
        se_digits = lre(np.sqrt(np.diag(pcov)), prob.certified_std_dev)
        assert digits.min() >= 6.0, (name, start, popt, digits)
        assert se_digits.min() >= 3.0, (name, start, np.sqrt(np.diag(pcov)), se_digits)


@pytest.mark.parametrize("name", ["Misra1a", "MGH09", "Thurber", "Bennett5"])
def test_nist_trf_method_also_certified(name: str) -> None:
    """The bounded-capable solver reaches the same digits (spot check of hard cases)."""
    prob = load_nist(name)
    for start in (prob.start1, prob.start2):
        res = curvax.fit_curve(prob.model, prob.x, prob.y, p0=start, method="trf")
        assert res.success
        assert lre(res.x, prob.certified_values).min() >= 6.0
        assert lre(res.perr, prob.certified_std_dev).min() >= 3.0


def test_nist_residual_sum_of_squares() -> None:
    """The cost reported equals half the certified residual sum of squares."""
    for name in ("Misra1a", "Chwirut2", "Eckerle4", "Rat43"):
        prob = load_nist(name)
        res = curvax.fit_curve(prob.model, prob.x, prob.y, p0=prob.start2)
        np.testing.assert_allclose(2 * res.cost, prob.certified_rss, rtol=1e-7)
        np.testing.assert_allclose(res.chisqr, prob.certified_rss, rtol=1e-7)
