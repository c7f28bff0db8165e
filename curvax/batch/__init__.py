"""Many independent small fits as one compiled, vmapped program (see ``docs/batch.md``)."""

from curvax.batch.fit import curve_fit_batch, curve_fit_batch_stream
from curvax.batch.result import BatchResult

__all__ = ["BatchResult", "curve_fit_batch", "curve_fit_batch_stream"]
