"""Chunked, out-of-core and streaming fits (see ``docs/large_data.md``).

Every fit here runs the in-memory solver (:mod:`curvax.core.trf`,
:mod:`curvax.core.lm`) over a reduction computed chunk by chunk on the host, so a
chunked fit returns the same parameters and covariance as the in-memory fit.
"""

from curvax.config import LDMemoryConfig, StreamingConfig
from curvax.scale.checkpoint import CheckpointError
from curvax.scale.chunked import LargeFitResult, fit_chunked
from curvax.scale.dask_backend import DaskArraySource, DaskDataFrameSource, DaskSource
from curvax.scale.host_reduce import DataConsistencyError
from curvax.scale.large import LargeDatasetFitter, curve_fit_large
from curvax.scale.memory import estimate_memory_requirements
from curvax.scale.sources import (
    ArraySource,
    CallableSource,
    ChunkDataError,
    ChunkReadError,
    ChunkSource,
    HDF5Source,
    ParquetSource,
    SQLSource,
    ZarrSource,
    as_source,
)
from curvax.scale.streaming import StreamingOptimizer, StreamingState

__all__ = [
    "ArraySource",
    "CallableSource",
    "CheckpointError",
    "ChunkDataError",
    "ChunkReadError",
    "ChunkSource",
    "DaskArraySource",
    "DaskDataFrameSource",
    "DaskSource",
    "DataConsistencyError",
    "HDF5Source",
    "LDMemoryConfig",
    "LargeDatasetFitter",
    "LargeFitResult",
    "ParquetSource",
    "SQLSource",
    "StreamingConfig",
    "StreamingOptimizer",
    "StreamingState",
    "ZarrSource",
    "as_source",
    "curve_fit_large",
    "estimate_memory_requirements",
    "fit_chunked",
]
