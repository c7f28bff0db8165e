"""Where a result finds its fit's data again: rebuilt on demand, guarded by checksums.

A :class:`~curvax.core.result.FitResult` computes ``fun`` (the residuals at the
solution) and ``jac`` only when first asked, since most callers never look at them and
each costs a pass over the data.  The result therefore needs the data later.  Holding
the copies the compiled fit ran on would pin them: padded to a size bucket, aligned and
taken from the host buffer pool (:mod:`curvax.core.host_buffers`), they are about twice
the caller's x and y, so keeping twenty results of 10⁶-point fits held 324 MB and the
pool could not hand those buffers out again.

A :class:`DataSource` instead keeps what the fit was given (the caller's arrays, or
curvax's own converted copies) and a function that builds the fit's data from them
again.  The caller's arrays may have been changed in place since (a buffer reused for
the next measurement, ``x.sort()``), and residuals computed from the new values would
be silently wrong.  So when the fit starts, :meth:`DataSource.seal` takes a
:func:`fingerprint` of each such array (or copies it when small), and
:meth:`DataSource.__call__` compares before it rebuilds: a changed array raises an
error that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: Values per row of the 2-D view :func:`fingerprint` sums over.
ROW = 1024
_COLUMN_WEIGHTS = 1.0 + np.arange(ROW) / ROW


def fingerprint(a: np.ndarray) -> bytes:
    """A weighted sum of the values of ``a`` that moves when any of them changes.

    With the values laid out as rows of :data:`ROW` (the last row short),

    .. math::  s = \\sum_r u_r \\sum_c w_c\\,a_{rc}, \\qquad
               w_c = 1 + c/\\mathrm{ROW},\\quad u_r = 1 + (\\sqrt2 - 1)\\,r/k,

    in float64, and the fingerprint is its bit pattern.  Every value has its own weight,
    so changing one value, or exchanging two different ones (``x.sort()``, a reversal),
    moves ``s``; a change too small to move a sum of this size (relative ~n·ε) does not,
    and would move the residuals no more.  One pass at memory speed (0.4 ms per 10⁶
    values on the 2-core VM, against 1.9 ms for CRC-32 and 4 ms for a BLAS product,
    which starts threads; 1.3 ms for x and y of 10⁶ points, 9.6 ms at 10⁷).  The same
    array gives the same bits: the order of summation depends only on its shape (a
    non-contiguous array is copied, in C order, first).
    """
    v = np.ascontiguousarray(a, dtype=np.float64).reshape(-1)
    k = v.size // ROW
    rows = np.einsum("ij,j->i", v[: k * ROW].reshape(k, ROW), _COLUMN_WEIGHTS)
    tail = np.einsum("i,i->", v[k * ROW :], _COLUMN_WEIGHTS[: v.size - k * ROW])
    row_weights = 1.0 + (np.sqrt(2.0) - 1.0) * np.arange(k + 1) / (k + 1)
    s = np.einsum("i,i->", rows, row_weights[:k]) + tail * row_weights[k]
    return np.float64(s).tobytes()


#: Watched arrays up to this size are copied when sealed rather than fingerprinted: a
#: copy this small costs less than a fingerprint (malloc recycles it without page
#: faults) and leaves nothing to check.
COPY_BYTES = 1 << 16


class DataSource:
    """The data of a fit, as a function that builds them, with a guard on its inputs.

    Parameters
    ----------
    build : callable
        ``build(**inputs)`` returns the data dict the compiled fit takes (as in
        :func:`curvax.core.solve.solve`).  Apart from ``inputs`` it may only close over
        what curvax made itself and nobody changes (weights, masks, patterns), not over
        the copies of the run, so that those can be released.
    inputs : mapping of str to array
        The arrays ``build`` reads that a caller could change in place, by the name of
        the argument they came from (``'xdata'``, ``'ydata'``).  When the fit is sealed,
        a NumPy array of at most :data:`COPY_BYTES` is copied and a larger one is
        fingerprinted; anything else (a ``jax.Array`` cannot change, an opaque object
        cannot be checked) is passed as it is.
    """

    def __init__(self, build: Callable[..., dict], inputs: Mapping[str, Any]) -> None:
        self._build = build
        self._inputs = dict(inputs)
        self._sums: dict[str, bytes] = {}

    def seal(self) -> None:
        """Copy the small NumPy inputs and fingerprint the large ones.

        Called just before the fit is dispatched: taken while the compiled fit runs, the
        fingerprints competed with it for the two cores of the CI machine and cost 3-4×
        their own time (exponential, 10⁶ points: +4.5 ms per ~30 ms fit, against
        +0.5-2.4 ms before it; 10⁷: +31 ms against +18 ms, in 260-300 ms).
        """
        for k, v in self._inputs.items():
            if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf" or k in self._sums:
                continue
            if v.nbytes <= COPY_BYTES:
                self._inputs[k] = v.copy()
                self._sums[k] = b""  # a private copy: nothing to check
            else:
                self._sums[k] = fingerprint(v)

    def __call__(self) -> dict:
        """The fit's data, after checking that no fingerprinted input has changed.

        Raises
        ------
        RuntimeError
            If an input has changed since :meth:`seal`.
        """
        changed = [
            k
            for k, d in self._sums.items()
            if d and fingerprint(self._inputs[k]) != d
        ]
        if changed:
            raise RuntimeError(
                f"{'/'.join(changed)}: changed in place after the fit; the result computes "
                "fun and jac from the data it was given when they are first read, so read "
                "them before changing the arrays, or pass copies"
            )
        return self._build(**self._inputs)


def not_kept(reason: str) -> DataSource:
    """A source for a result that was told not to keep its data: reading ``fun`` or
    ``jac`` raises ``ValueError(reason)``.  Nothing is copied or fingerprinted when it is
    sealed, which is the point: :func:`curvax.curve_fit` returns only ``popt`` and
    ``pcov``, so its result never needs the data again."""

    def refuse() -> dict:
        raise ValueError(reason)

    return DataSource(refuse, {})
