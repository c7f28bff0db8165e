"""Checks shared by the tests of :mod:`curvax.core.fast_math`'s replacements
(``test_fast_pow.py``, ``test_fast_trig.py``, ``test_fast_div.py``) and of
``test_separate_rows.py``: that a fit goes through a replacement, and which operations
a rewritten model's jaxpr holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from scipy.optimize import curve_fit as scipy_curve_fit

import curvax
import curvax.core.fast_math as fm


def assert_fit_goes_through(
    monkeypatch: Any,
    module: Any,
    name: str,
    fresh: Callable[[], Callable[..., Any]],
    reference: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    p0: list[float],
    switch_off: Callable[[], None] | None = None,
) -> None:
    """A fit of ``fresh()`` calls ``module.name`` on a CPU (counted), agrees with SciPy's
    fit of the NumPy model ``reference`` (parameters to 1e-6, standard errors to 1e-4),
    and equals the fit after ``switch_off()`` (default: ``module.ENV_VAR`` switched off
    in :mod:`curvax.core.fast_math`), which does not call it, to 1e-10 (covariance to
    1e-8).

    ``fresh`` makes a new model function at each call, so that no compiled program is
    reused between the two fits.
    """
    calls = []
    original = getattr(module, name)

    def counted(*args: Any) -> Any:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(module, name, counted)
    popt, pcov = curvax.curve_fit(fresh(), x, y, p0=p0)
    if jax.default_backend() == "cpu":
        assert calls
    ref, ref_cov = scipy_curve_fit(reference, x, y, p0=p0)
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(pcov)), np.sqrt(np.diag(ref_cov)), rtol=1e-4)

    if switch_off is None:
        monkeypatch.setattr(fm, "switched_off", lambda var: var == module.ENV_VAR)
    else:
        switch_off()
    n_calls = len(calls)
    native, native_cov = curvax.curve_fit(fresh(), x, y, p0=p0)
    assert len(calls) == n_calls
    np.testing.assert_allclose(popt, native, rtol=1e-10)
    np.testing.assert_allclose(pcov, native_cov, rtol=1e-8)


def all_equations(jaxpr: Any) -> Iterator[Any]:
    """The equations of ``jaxpr`` and of every jaxpr nested in their parameters
    (``jit`` calls, ``custom_jvp`` functions, ...), depth first."""
    for eqn in jaxpr.eqns:
        yield eqn
        for v in eqn.params.values():
            inner = getattr(v, "jaxpr", None)
            if inner is not None:
                yield from all_equations(getattr(inner, "jaxpr", inner))


def ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|got − ref|`` in units in the last place of ``ref``."""
    return np.abs(got - ref) / np.spacing(np.abs(ref))
