"""Dask back end: the reduction of a chunked fit, computed where the Dask blocks live.

A trust-region iteration needs from the data only the reduction at the trial
parameters ``q`` (:mod:`curvax.core.reduction`): the cost ``½ Σ ρ(r_i²)``, the
(p+1)×(p+1) triangular factor ``T`` of ``[J̃ | r̃]`` and the count of non-finite
entries.  With the points split into Dask blocks ``B_1 … B_m`` (a Dask array, or the
partitions of a Dask DataFrame), one pass is

    P_j = reduce(B_j, q)                     one map task per block (``map_blocks``),
                                             on the worker that holds ``B_j``
    P   = merge(P_1, …, P_m)                 a tree reduction (``dask.array.reduction``)

``reduce`` is the host reduction of a chunked fit (:class:`~curvax.scale.host_reduce.
HostReducer`, the same compiled per-chunk kernel) run on the block; ``merge`` adds
costs and counts and merges factors by QR of the stacked factors
(:func:`curvax.core.reduction.triangularize`), exactly as chunks merge on one machine.
A partial travels *packed*, as ``5 + (p+1)²`` numbers (:data:`PACK_HEAD` counts,
then the factor), so per pass each block ships ``8 (5 + (p+1)²)`` bytes whatever its
size, and the client receives one packed partial; the blocks never leave their
workers.  :class:`DaskReducer` plugs this pass into the chunked solver
(:func:`~curvax.scale.chunked.fit_chunked`): the solver above the reduction is
the in-memory ``trf``/``lm``, so the answer equals the in-memory fit up to rounding.

Workers receive the fit program (:class:`~curvax.core.engine.Kernel`, with the user's
model) pickled once on the client by ``cloudpickle``; each worker unpickles it once per
content digest into a small bounded cache (:func:`shipped`), so the compiled kernels
are reused from pass to pass instead of being rebuilt for every task.

:func:`curve_fit_batch_dask` does the same for many independent fits: the blocks of a
Dask array of curves (batch axis chunked) are fitted on the workers by
:func:`curvax.curve_fit_batch`, and only the per-fit results come back.

Dask is an optional dependency (``pip install 'curvax[dask]'``); nothing here imports
it until a Dask object is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.memo import BoundedCache
from curvax.core.reduction import triangularize
from curvax.core.validation import COMPLEX_HINT, real_array
from curvax.scale.host_reduce import HostReducer, PassStats
from curvax.scale.sources import (
    ArraySource,
    Chunk,
    ChunkSource,
    check_real,
    make_chunk,
)

#: Counts that lead a packed partial: cost, non-finite entries, points used, points
#: omitted (NaN/Inf under ``nan_policy='omit'``), points in the block.
PACK_HEAD = ("cost", "n_nonfinite", "n_used", "n_omitted", "n_points")
_H = len(PACK_HEAD)
#: Default number of partials merged by one task of the tree reduction.
SPLIT_EVERY = 8
#: Objects (fit programs, models) kept unpickled per worker process.
WORKER_CACHE_SIZE = 16


def require_dask() -> Any:
    """Import ``dask.array`` or raise an ImportError that says how to install it."""
    try:
        import dask
        import dask.array as da
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Dask inputs need dask: pip install 'curvax[dask]' "
            "(or pip install 'dask[array,dataframe,distributed]')"
        ) from err
    del dask
    return da


def _from_dask(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "dask" and hasattr(obj, "__dask_graph__")


def is_dask_array(obj: Any) -> bool:
    """Whether ``obj`` is a ``dask.array.Array`` (without importing Dask otherwise)."""
    return _from_dask(obj) and hasattr(obj, "chunks") and hasattr(obj, "ndim")


def is_dask_dataframe(obj: Any) -> bool:
    """Whether ``obj`` is a Dask DataFrame (a Dask collection with columns)."""
    return _from_dask(obj) and hasattr(obj, "columns") and hasattr(obj, "map_partitions")


def is_dask(obj: Any) -> bool:
    """Whether ``obj`` is a Dask array or DataFrame."""
    return is_dask_array(obj) or is_dask_dataframe(obj)


# --- shipping the fit program to the workers ------------------------------------------


class Shipped(NamedTuple):
    """An object pickled once by ``cloudpickle`` (``blob``) with its content digest."""

    digest: str
    blob: bytes

    @classmethod
    def of(cls, obj: Any) -> Shipped:
        import cloudpickle

        blob = cloudpickle.dumps(obj)
        return cls(hashlib.sha256(blob).hexdigest(), blob)


_SHIPPED: BoundedCache[Any] = BoundedCache(WORKER_CACHE_SIZE)


def shipped(item: Shipped) -> Any:
    """The unpickled object of ``item``, unpickled once per digest in this process.

    A bounded LRU cache (:data:`WORKER_CACHE_SIZE` entries): every task of a fit gets
    the *same* object, so caches keyed by it (the compiled per-chunk kernel,
    :func:`~curvax.scale.host_reduce.chunk_kernel`; the batch program) hit from the
    second task on.
    """
    import pickle

    return _SHIPPED.get_or_make(item.digest, lambda: pickle.loads(item.blob))


# --- sources -----------------------------------------------------------------------------


class DaskSource(ChunkSource):
    """Data held in Dask blocks, reduced on the workers (see module docstring).

    The points are the columns of ``parts``: either one stacked Dask array of shape
    (k + 1 [+ 1], n) — rows ``x_1 … x_k``, ``y`` and, when sigma is an array,
    ``sigma`` — or the separate arrays ``x`` (k, n), ``y`` (n,) [, ``sigma`` (n,)] with
    the same chunks along the points.  Block ``j`` of every part forms data block
    ``j``; its map task depends on those keys only and runs where they live (a
    stacked, persisted block is one key on one worker, so a pass moves no data at
    all).  ``x``, ``y``, ``sigma`` are lazy views (``sigma`` may also be a float or
    None).  A fit with such a source runs :class:`DaskReducer`: per pass, one map task
    per block plus a tree reduction.

    ``plan``/``read`` exist for other consumers of a :class:`ChunkSource` (``read(j)``
    brings block ``j`` to the caller); the fits of :mod:`curvax.scale` never call them.
    """

    random_access = True

    def _setup(
        self,
        parts: list[Any],
        k: int,
        x_1d: bool,
        sigma_row: bool,
        sigma_value: float | None,
        persist: bool,
    ) -> None:
        """Keep ``parts`` (stacked, or x (k, n), y, [sigma]) and their views."""
        if persist:
            import dask

            if len(parts) > 1:  # stack block by block: each block one key, one worker
                da = require_dask()
                parts = [da.concatenate([p if p.ndim == 2 else p[None] for p in parts])]
                parts = [parts[0].rechunk({0: -1})]
            parts = list(dask.persist(*parts))
        self.parts = tuple(parts)
        self.k = k
        self.x_1d = x_1d
        self.sigma_row = sigma_row
        if len(parts) == 1:
            data = parts[0]
            self.x = data[0] if x_1d else data[:k]
            self.y = data[k]
            self.sigma = data[k + 1] if sigma_row else sigma_value
        else:
            self.x = parts[0][0] if x_1d else parts[0]
            self.y = parts[1]
            self.sigma = parts[2] if sigma_row else sigma_value
        self.n_points = int(self.y.shape[0])
        self.block_sizes = tuple(int(c) for c in self.y.chunks[0])

    @property
    def n_blocks(self) -> int:
        return len(self.block_sizes)

    def _chunk(self, blocks: tuple[np.ndarray, ...], index: int | None = None) -> Chunk:
        block = stack_block(blocks)
        k = self.k
        x = block[0] if self.x_1d else block[:k]
        if self.sigma_row:
            s = block[k + 1]
        elif self.sigma is not None:
            s = np.full(block.shape[1], self.sigma)
        else:
            s = None
        return make_chunk(x, block[k], s, index=index)

    def plan(self, chunk_size: int) -> list[Any]:
        return list(range(self.n_blocks))

    def read(self, key: Any) -> Chunk:
        import dask

        j = int(key)
        got = dask.compute(*(p.blocks[..., j] for p in self.parts))
        return self._chunk(got, index=j)

    def sample(self, n: int = 1024) -> Chunk:
        """The first (up to) ``n`` points; only those travel to the caller."""
        import dask

        k = min(n, self.n_points)
        return self._chunk(dask.compute(*(p[..., :k] for p in self.parts)))

    def fingerprint(self) -> str:
        from dask.base import tokenize

        return "dask-" + tokenize(*self.parts, None if self.sigma_row else self.sigma)[:32]


def stack_block(blocks: tuple[np.ndarray, ...]) -> np.ndarray:
    """Rows (x…, y[, sigma]) of one data block from the blocks of its parts."""
    rows = [np.asarray(b) if np.ndim(b) == 2 else np.asarray(b)[None] for b in blocks]
    return rows[0] if len(rows) == 1 else np.concatenate(rows)


def _points(arr: Any, name: str) -> int:
    n = arr.shape[-1]
    if n != n:  # NaN: unknown chunk sizes
        raise ValueError(
            f"{name}: the Dask array has unknown chunk sizes; call .compute_chunk_sizes() "
            "first (or to_dask_array(lengths=True) for a DataFrame)"
        )
    return int(n)


def _scalar_sigma(sigma: Any) -> float:
    s = float(sigma)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"sigma: must be positive and finite, got {sigma!r}")
    return s


class DaskArraySource(DaskSource):
    """Dask arrays ``x`` (n,) or (k, n), ``y`` (n,) and optional ``sigma``.

    Parameters
    ----------
    x : dask.array.Array (n,) or (k, n)
        Independent variable(s), points on the last axis.
    y : dask.array.Array (n,)
        Observations.  Chunks along the points define the blocks; ``x`` and ``sigma``
        are rechunked to match (a lazy step on the workers).
    sigma : None, float or dask.array.Array (n,)
        Standard deviations of ``y``.
    persist : bool
        Compute the blocks once and keep them in the workers' memory
        (``dask.persist``), x, y and sigma stacked block by block so that each block is
        one key on one worker.  Without it every pass re-runs the arrays' graphs (reads
        from storage, for instance), like an out-of-core fit.
    """

    def __init__(self, x: Any, y: Any, sigma: Any = None, *, persist: bool = False) -> None:
        require_dask()
        if not is_dask_array(x):
            raise TypeError(f"x: expected a Dask array, got {type(x).__name__}")
        if not is_dask_array(y):
            raise TypeError(
                f"y: expected a Dask array like x, got {type(y).__name__} "
                "(wrap it with dask.array.from_array(y, chunks=x.chunks[-1]))"
            )
        for name, v in (("x", x), ("y", y), ("sigma", sigma)):
            check_real(v, name)  # dtype only: nothing is computed
        if y.ndim != 1:
            raise ValueError(f"y: must be 1-D, got shape {y.shape}")
        n = _points(y, "y")
        if n == 0:
            raise ValueError("y: the data are empty")
        if x.ndim not in (1, 2) or _points(x, "x") != n:
            raise ValueError(
                f"x: shape {x.shape} does not match y's {n} points (x must be (n,) or (k, n))"
            )
        pts = y.chunks[0]
        x2 = (x[None, :] if x.ndim == 1 else x).astype(np.float64).rechunk({0: -1, 1: pts})
        parts = [x2, y.astype(np.float64)]
        sig: Any = None
        if sigma is not None:
            if is_dask_array(sigma):
                if sigma.shape != y.shape:
                    raise ValueError(f"sigma: shape {sigma.shape} does not match y {y.shape}")
                sig = sigma
                parts.append(sigma.astype(np.float64).rechunk(pts))
            elif np.ndim(sigma) == 0:
                sig = _scalar_sigma(sigma)
            else:
                raise TypeError(
                    f"sigma: expected a scalar or a Dask array like y, got {type(sigma).__name__}"
                )
        row = is_dask_array(sig)
        self._setup(parts, x2.shape[0], x.ndim == 1, row, None if row else sig, persist)


class DaskDataFrameSource(DaskSource):
    """Columns of a Dask DataFrame; each partition is a block.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame
    x : str or sequence of str
        Column name(s) of the independent variable(s) (several give x of shape (k, n)).
    y, sigma : str
        Column names of the observations and (optionally) their uncertainties.
    persist : bool
        As in :class:`DaskArraySource`.

    Notes
    -----
    The partition lengths are computed once (``to_dask_array(lengths=True)``; only
    the lengths travel).
    """

    def __init__(
        self,
        frame: Any,
        x: str | list[str] | tuple[str, ...] = "x",
        y: str = "y",
        sigma: str | None = None,
        *,
        persist: bool = False,
    ) -> None:
        require_dask()
        from pandas.api.types import is_numeric_dtype

        if not is_dask_dataframe(frame):
            raise TypeError(f"frame: expected a Dask DataFrame, got {type(frame).__name__}")
        x_names = [x] if isinstance(x, str) else list(x)
        if not x_names:
            raise ValueError("x: name at least one column")
        for what, name in [("x", c) for c in x_names] + [("y", y), ("sigma", sigma)]:
            if name is None:
                continue
            if not isinstance(name, str):
                raise TypeError(f"{what}: expected a column name, got {type(name).__name__}")
            if name not in frame.columns:
                raise ValueError(
                    f"{what}: column {name!r} not in the DataFrame (columns: {list(frame.columns)})"
                )
            if not is_numeric_dtype(frame.dtypes[name]):
                raise ValueError(f"{what}: column {name!r} is not numeric ({frame.dtypes[name]})")
            if getattr(frame.dtypes[name], "kind", "") == "c":
                raise ValueError(f"{what}: column {name!r}: {COMPLEX_HINT}")
        self.x_names, self.y_name, self.sigma_name = x_names, y, sigma
        cols = [*x_names, y] + ([sigma] if sigma else [])
        arr = frame[cols].to_dask_array(lengths=True).astype(np.float64)
        if _points(arr.T, "frame") == 0:
            raise ValueError("frame: the DataFrame has no rows")
        self._setup([arr.T], len(x_names), len(x_names) == 1, sigma is not None, None, persist)


def dask_source(data: Any, y: Any = None, sigma: Any = None) -> DaskSource:
    """A :class:`DaskSource` for Dask inputs given the way array inputs are given."""
    if is_dask_dataframe(data):
        raise TypeError(
            "x: a Dask DataFrame needs its column names: "
            "curve_fit_large(f, frame, x='t', y='signal') or "
            "DaskDataFrameSource(frame, x='t', y='signal')"
        )
    return DaskArraySource(data, y, sigma)


# --- one pass on the workers ---------------------------------------------------------------


class BlockSpec(NamedTuple):
    """What a map task needs besides its block (small, the same for every block)."""

    kernel: Shipped
    n_free: int
    dtype: str
    f_scale: float
    chunk_size: int
    nan_policy: str | None
    p_full: np.ndarray | None
    k: int  # rows of x in a stacked block
    x_1d: bool
    sigma_row: bool  # sigma is the block's last row
    sigma: float | None  # a scalar sigma (else None)


def pack_width(n_free: int) -> int:
    """Numbers in one packed partial: the counts of :data:`PACK_HEAD` and ``(p+1)²``."""
    return _H + (n_free + 1) ** 2


def block_partial(
    *blocks: np.ndarray,
    spec: BlockSpec,
    q: np.ndarray,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Packed reduction (column of :func:`pack_width` numbers) of one block at ``q``.

    ``blocks`` are block ``j`` of the parts of a :class:`DaskSource` (rows x, y
    [, sigma]).  Runs on the worker holding them: the block's points go through the host
    reduction of a chunked fit (pieces of ``spec.chunk_size`` points, the compiled
    per-chunk kernel, NaN/Inf policy and sigma checks included).
    """
    j = -1 if block_id is None else int(block_id[-1])
    out = np.zeros((pack_width(spec.n_free), 1))
    block = stack_block(blocks)
    n = int(block.shape[1])
    out[4, 0] = n
    if n == 0:
        return out
    kernel = shipped(spec.kernel)
    k = spec.k
    x = block[0] if spec.x_1d else block[:k]
    s = block[k + 1] if spec.sigma_row else spec.sigma
    red = HostReducer(
        kernel,
        ArraySource(x, block[k], s),
        spec.n_free,
        spec.dtype,
        spec.f_scale,
        spec.chunk_size,
        nan_policy=spec.nan_policy,
        prefetch=False,
        p_full=spec.p_full,
    )
    try:
        cost, factor, n_bad, stats = red._one_pass(np.asarray(q, dtype=np.float64))
    except ValueError as err:
        raise ValueError(f"{err} [in Dask block {j}]") from err
    out[:_H, 0] = (cost, n_bad, stats.n_used, stats.n_omitted, n)
    out[_H:, 0] = np.asarray(factor, dtype=np.float64).ravel()
    return out


def merge_packed(
    parts: np.ndarray, axis: Any = None, keepdims: bool = True, **_: Any
) -> np.ndarray:
    """Merge packed partials (columns of ``parts``) into one packed column.

    Counts and costs add; the factors, stacked, are triangularised by Householder QR
    (:func:`curvax.core.reduction.triangularize`), the merge of disjoint row blocks.
    Used as ``combine`` and ``aggregate`` of :func:`dask.array.reduction`.
    """
    parts = np.asarray(parts, dtype=np.float64)
    width, m = parts.shape
    p1 = round(float(np.sqrt(width - _H)))
    out = np.empty((width, 1))
    out[:_H, 0] = parts[:_H].sum(axis=1)
    if m == 1:
        out[_H:, 0] = parts[_H:, 0]
        return out
    stacked = parts[_H:].T.reshape(m * p1, p1)
    with jax.enable_x64(True):
        out[_H:, 0] = np.asarray(triangularize(jnp.asarray(stacked))).ravel()
    return out


def _identity(a: np.ndarray, axis: Any = None, keepdims: bool = True, **_: Any) -> np.ndarray:
    return a


def unpack(packed: np.ndarray, n_free: int) -> tuple[float, np.ndarray, int, PassStats]:
    """``(cost, factor, n_nonfinite, stats)`` of a packed partial."""
    v = np.asarray(packed, dtype=np.float64).reshape(-1)
    p1 = n_free + 1
    stats = PassStats(n_used=int(v[2]), n_omitted=int(v[3]), chunk_points=[int(v[4])])
    return float(v[0]), v[_H:].reshape(p1, p1).copy(), int(v[1]), stats


@dataclass
class DaskReducer(HostReducer):
    """:class:`~curvax.scale.host_reduce.HostReducer` whose pass runs on Dask workers.

    The books (points used and omitted, consistency between passes, the best point,
    the cache of the last pass, errors) are the host reducer's; only the pass differs:
    :meth:`pass_collection` (one ``map_blocks`` plus ``dask.array.reduction``),
    computed with the active Dask scheduler (a ``distributed.Client`` if one is the
    default, else the scheduler set by ``dask.config``).

    Attributes
    ----------
    split_every : int
        Partials merged per task of the tree reduction.
    bytes_fetched : int
        Bytes of packed partials the client received (one per pass).
    """

    split_every: int = SPLIT_EVERY

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.source, DaskSource):
            raise TypeError(f"source: expected a DaskSource, got {type(self.source).__name__}")
        if (
            isinstance(self.split_every, bool)
            or not isinstance(self.split_every, int)
            or self.split_every < 2
        ):
            raise ValueError(f"split_every: expected an integer >= 2, got {self.split_every!r}")
        self._shipped = Shipped.of(self.kernel)
        self.bytes_fetched = 0

    def spec(self) -> BlockSpec:
        src = self.source
        return BlockSpec(
            kernel=self._shipped,
            n_free=self.n_free,
            dtype=self.dtype.name,
            f_scale=float(self.f_scale),
            chunk_size=int(self.chunk_size),
            nan_policy=self.nan_policy,
            p_full=None if self.p_full is None else np.asarray(self.p_full, dtype=np.float64),
            k=src.k,
            x_1d=src.x_1d,
            sigma_row=src.sigma_row,
            sigma=None if src.sigma_row else src.sigma,
        )

    def pass_collection(self, q: np.ndarray) -> Any:
        """The lazy packed reduction at ``q``: a Dask array of shape (width, 1).

        Its graph is the blocks' own graph, one ``block_partial`` task per block and
        a ``merge_packed`` tree of fan-in :attr:`split_every`.
        """
        da = require_dask()
        from dask.base import tokenize

        src = self.source
        spec = self.spec()
        q = np.asarray(q, dtype=np.float64)
        width = pack_width(self.n_free)
        token = tokenize(spec.kernel.digest, spec[1:], q.tobytes(), [p.name for p in src.parts])
        parts = da.map_blocks(
            block_partial,
            *src.parts,
            spec=spec,
            q=q,
            chunks=((width,), (1,) * src.n_blocks),
            dtype=np.float64,
            meta=np.empty((0, 0)),
            name=f"curvax-partial-{token}",
        )
        return da.reduction(
            parts,
            chunk=_identity,
            combine=merge_packed,
            aggregate=merge_packed,
            axis=1,
            keepdims=True,
            dtype=np.float64,
            split_every=self.split_every,
            concatenate=True,
            meta=np.empty((0, 0)),
            name=f"curvax-merge-{token}",
        )

    def _one_pass(self, q: np.ndarray) -> tuple[float, np.ndarray, int, PassStats]:
        packed = np.asarray(self.pass_collection(q).compute())
        self.bytes_fetched += packed.nbytes
        cost, factor, n_bad, stats = unpack(packed, self.n_free)
        if self.on_chunk is not None:
            for j, n in enumerate(self.source.block_sizes):
                self.on_chunk(self.n_passes, j, n)
        return cost, factor, n_bad, stats

    def books(self) -> dict[str, Any]:
        """Dask entries of a fit result's ``extra``."""
        return {
            "backend": "dask",
            "n_blocks": self.source.n_blocks,
            "bytes_fetched": self.bytes_fetched,
            "bytes_per_partial": 8 * pack_width(self.n_free),
        }


# --- many independent fits ---------------------------------------------------------------


def _batch_block(
    model: Shipped,
    x: np.ndarray,
    y: np.ndarray,
    per_fit: dict[str, Any],
    options: dict[str, Any],
) -> Any:
    """Fit one block of curves on the worker with the in-memory batch fit.

    One thread per block (``workers=1``): Dask already runs blocks side by side.
    """
    from curvax.batch.fit import curve_fit_batch

    f = shipped(model)
    kw = {k: v for k, v in options.items() if k != "bounds"}
    args = {k: v for k, v in per_fit.items() if k not in ("lb", "ub")}
    return curve_fit_batch(
        f, x, y, bounds=(per_fit["lb"], per_fit["ub"]), workers=1, **args, **kw
    )


def _rows(a: Any, B: int, lead: int) -> bool:
    """Whether ``a`` has a leading batch axis (``ndim == lead + 1`` and length B)."""
    return a is not None and np.ndim(a) == lead + 1 and np.shape(a)[0] == B


def curve_fit_batch_dask(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any = None,
    sigma: Any = None,
    bounds: Any = (-np.inf, np.inf),
    mask: Any = None,
    **options: Any,
) -> Any:
    """:func:`curvax.curve_fit_batch` of a Dask array of curves, block by block.

    ``ydata`` is a Dask array (B, N), chunked along the batch axis (the N axis is
    made one chunk).  Each block of rows is fitted on a worker by the in-memory
    :func:`~curvax.curve_fit_batch` (the same compiled program); per-fit inputs
    (``xdata`` (B, N) or (B, k, N), ``p0`` (B, P), ``sigma``/``mask`` (B, N), bounds
    (B, P)) are cut along the same rows — Dask arrays by their blocks, NumPy arrays by
    slicing.  Shared inputs go to every block as they are.  The per-fit results come
    back and are joined into one :class:`~curvax.batch.result.BatchResult`, equal to
    the in-memory batch fit.
    """
    require_dask()
    import dask

    from curvax.batch.result import BatchResult

    if not callable(f):
        raise TypeError(f"f: expected a callable model, got {type(f).__name__}")
    if not is_dask_array(ydata):
        raise TypeError(f"ydata: expected a Dask array, got {type(ydata).__name__}")
    if ydata.ndim != 2:
        raise ValueError(
            f"ydata: expected shape (B, N) — one row of N observations per fit — got {ydata.shape}"
        )
    B, N = ydata.shape
    if B != B or N != N:
        raise ValueError("ydata: the Dask array has unknown chunk sizes; compute them first")
    if B == 0 or N == 0:
        raise ValueError(f"ydata: must not be empty, got shape {ydata.shape}")
    y = ydata.rechunk({1: -1})
    rows = y.chunks[0]
    starts = np.concatenate([[0], np.cumsum(rows)]).astype(int)

    # xdata: per fit when its leading axis is B, read as in memory (a 2-D x with B rows
    # is asked of the model, batch.fit.resolve_x_layout, unless x_per_fit says); a
    # shared 2-D x is passed as (1, k, N) so a block of k rows cannot mistake it for
    # per-fit x, and every block is told the verdict.
    if not is_dask_array(xdata):
        xdata = real_array(xdata, "xdata")
    x_per_fit = options.pop("x_per_fit", None)
    if x_per_fit is None:
        x_per_fit = xdata.ndim in (2, 3) and xdata.shape[0] == B
        if x_per_fit and xdata.ndim == 2:
            from curvax.batch.fit import resolve_x_layout

            x_per_fit = resolve_x_layout(
                f, tuple(xdata.shape), xdata.dtype, p0, options.get("param_style", "auto")
            )
    if not x_per_fit and is_dask_array(xdata):
        xdata = np.asarray(xdata.compute())  # shared x: one curve's worth of points
    if not x_per_fit and np.ndim(xdata) == 2:
        xdata = np.asarray(xdata)[None]
    options["x_per_fit"] = bool(x_per_fit)

    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lb, ub = bounds.lb, bounds.ub
    elif bounds is None:
        lb, ub = -np.inf, np.inf
    else:
        try:
            lb, ub = bounds
        except (TypeError, ValueError) as err:
            raise ValueError("bounds: expected a (lower, upper) pair or a Bounds object") from err
    lead = {"p0": 1, "sigma": 1, "mask": 1, "lb": 1, "ub": 1}
    per_fit_in = {"p0": p0, "sigma": sigma, "mask": mask, "lb": lb, "ub": ub}

    def cut(a: Any, name: str) -> list[Any]:
        """One piece per block of rows (or the shared value for every block)."""
        if is_dask_array(a):
            if not _rows(a, B, lead.get(name, 1)):
                a = np.asarray(a.compute())  # shared: small
            else:
                a = a.rechunk({0: rows, **{i: -1 for i in range(1, a.ndim)}})
                return [a.blocks[i] for i in range(len(rows))]
        if a is not None and _rows(a, B, lead.get(name, 1)):
            arr = np.asarray(a)
            return [arr[starts[i] : starts[i + 1]] for i in range(len(rows))]
        return [a] * len(rows)

    xs = cut(xdata, "x") if x_per_fit else [xdata] * len(rows)
    pieces = {k: cut(v, k) for k, v in per_fit_in.items()}
    model = Shipped.of(f)
    opts = dict(options, bounds=None)
    tasks = [
        dask.delayed(_batch_block, pure=True)(
            model,
            xs[i],
            y.blocks[i],
            {k: v[i] for k, v in pieces.items()},
            opts,
        )
        for i in range(len(rows))
    ]
    results = dask.compute(*tasks)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in results])

    reasons: dict[int, str] = {}
    for i, r in enumerate(results):
        for b, why in r._reasons.items():
            reasons[int(starts[i]) + b] = why
    first = results[0]
    return BatchResult(
        popt=cat("popt"),
        pcov=cat("pcov"),
        status=cat("status"),
        cost=cat("cost"),
        initial_cost=cat("initial_cost"),
        nfev=cat("nfev"),
        nit=cat("nit"),
        optimality=cat("optimality"),
        n_points=cat("n_points"),
        param_names=first.param_names,
        method=first.method,
        dtype=first.dtype,
        reasons=reasons,
    )
