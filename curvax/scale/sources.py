"""Data sources for chunked and out-of-core fits.

A *source* hands out the data points ``(x, y[, sigma])`` in chunks, as NumPy arrays,
and can do so again on every pass (each trust-region trial point is one pass over the
data).  Two kinds exist:

* **random access** (:class:`ArraySource` for NumPy arrays and memmaps,
  :class:`HDF5Source`, :class:`ZarrSource`, :class:`ParquetSource`): the source lists
  its chunks as keys (``plan(chunk_size)``) and reads any one of them on demand
  (``read(key)``), so a failed read is simply repeated;
* **sequential** (:class:`SQLSource`, :class:`CallableSource`): the source opens a
  fresh iterator of chunks per pass (``open(chunk_size)``); a failed read re-opens the
  iterator and skips the chunks already delivered.

:func:`iter_chunks` reads a pass with retries (exponential back-off) in a background
thread that keeps one chunk ready ahead of the consumer, so reading the next chunk
overlaps with computing on the current one.  After the retries a chunk is reported
as a :class:`ChunkFailure`; the caller applies the ``on_chunk_error`` policy.

In a chunk, ``x`` has the points on its last axis — shape ``(n,)`` for one
independent variable or ``(k, n)`` for k of them — and ``y``, ``sigma`` are ``(n,)``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curvax.core.validation import refuse_complex


class ChunkReadError(RuntimeError):
    """A chunk could not be read (after the retries) and the policy is ``'raise'``."""


class ChunkDataError(ValueError):
    """A chunk's data are invalid (complex, non-numeric, mismatched lengths).

    Raised at once by a pass: unlike a failed read, re-reading cannot fix it.
    """


@dataclass
class Chunk:
    """One chunk of data points (``x`` with points on its last axis)."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass
class ChunkFailure:
    """A chunk that failed to read after ``attempts`` tries."""

    index: int
    error: BaseException
    attempts: int


def check_real(value: Any, name: str) -> None:
    """Refuse complex data (casting to float64 would silently drop the imaginary part).

    Raises
    ------
    ValueError
        If ``value`` has a complex dtype; the message starts with ``name``.
    """
    refuse_complex(value, name, ChunkDataError)


def make_chunk(
    x: Any,
    y: Any,
    sigma: Any = None,
    index: int | None = None,
    names: tuple[str, str, str] = ("x", "y", "sigma"),
) -> Chunk:
    """Validate raw arrays into a :class:`Chunk` (float64; lengths must agree).

    Parameters
    ----------
    x, y, sigma : array_like
        The chunk's data (``sigma`` optional).
    index : int, optional
        The chunk's index in its pass (named in error messages).
    names : (str, str, str)
        How the caller calls ``x``, ``y`` and ``sigma`` (named in error messages).

    Raises
    ------
    ValueError
        Complex or non-numeric data, or mismatched shapes.
    """
    where = "" if index is None else f" (chunk {index})"
    xn, yn, sn = names
    for name, v in zip(names, (x, y, sigma)):
        check_real(v, name + where)
    if names != ("x", "y", "sigma"):
        label = f"{xn}/{yn}{where}"
    else:
        label = "chunk" if index is None else f"chunk {index}"
    try:
        ya = np.asarray(y, dtype=np.float64)
        xa = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ChunkDataError(f"{label}: {xn} and {yn} must be numeric arrays ({err})") from err
    if ya.ndim != 1:
        raise ChunkDataError(f"{label}: {yn} must be 1-D, got shape {ya.shape}")
    if xa.ndim not in (1, 2) or xa.shape[-1] != ya.shape[0]:
        raise ChunkDataError(
            f"{label}: mismatched lengths — {xn} has shape {xa.shape} but {yn} has "
            f"{ya.shape[0]} points ({xn} must be (n,) or (k, n) with n = len({yn}))"
        )
    sa = None
    if sigma is not None:
        try:
            sa = np.asarray(sigma, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ChunkDataError(f"{label}: {sn} must be a numeric array ({err})") from err
        if sa.shape != ya.shape:
            raise ChunkDataError(
                f"{label}: mismatched lengths — {sn} has shape {sa.shape} but {yn} has "
                f"{ya.shape[0]} points"
            )
    return Chunk(xa, ya, sa)


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def _file_id(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, int(st.st_mtime_ns))


class ChunkSource:
    """Base class of data sources (see module docstring).

    Subclasses set ``random_access`` and implement ``plan``/``read`` (random access)
    or ``open`` (sequential), and ``fingerprint``.
    """

    random_access: bool = True
    #: number of points when known in advance (``None`` otherwise)
    n_points: int | None = None

    def plan(self, chunk_size: int) -> list[Any]:
        """Keys of the chunks of one pass, in order."""
        raise NotImplementedError

    def read(self, key: Any) -> Chunk:
        """Read the chunk named by ``key``."""
        raise NotImplementedError

    def open(self, chunk_size: int) -> Iterator[Chunk]:
        """A fresh iterator over the chunks of one pass (sequential sources)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A short string identifying the data (used to refuse a mismatched resume)."""
        raise NotImplementedError

    def sample(self, n: int = 1024) -> Chunk:
        """The first (up to) ``n`` points, for probing the model and guessing p0."""
        if self.random_access:
            keys = self.plan(n)
            if not keys:
                raise ValueError("source: the data source is empty (no chunks)")
            ch = self.read(keys[0])
        else:
            it = self.open(n)
            try:
                ch = next(iter(it))
            except StopIteration:
                raise ValueError("source: the data source is empty (no chunks)") from None
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        k = min(n, ch.n)
        return Chunk(ch.x[..., :k], ch.y[:k], None if ch.sigma is None else ch.sigma[:k])


def _ranges(n: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]


def _numeric(v: Any, name: str) -> np.ndarray:
    """``v`` as a numeric array: a numeric ndarray (or memmap) as it is, else float64."""
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
        return v  # read by slices later (a memmap stays on disk)
    if isinstance(v, np.ndarray) and v.dtype.kind not in "O":
        raise ValueError(f"{name}: not numeric (dtype {v.dtype})")
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: not numeric ({err})") from err


class ArraySource(ChunkSource):
    """In-memory arrays or NumPy memmaps, read by slicing (no copy of the whole).

    Parameters
    ----------
    x : array_like (n,) or (k, n)
        Independent variable(s), points on the last axis (a memmap stays on disk).
    y : array_like (n,)
    sigma : array_like (n,), optional
    """

    def __init__(
        self, x: Any, y: Any, sigma: Any = None, names: tuple[str, str] = ("x", "y")
    ) -> None:
        nx, ny = names  # as the caller's arguments are called, for messages
        for name, v in ((nx, x), (ny, y), ("sigma", sigma)):
            check_real(v, name)
        self.x = _numeric(x, nx)
        self.y = _numeric(y, ny)
        self.sigma = None
        if sigma is not None:
            s = _numeric(sigma, "sigma")
            if s.ndim == 0:
                s = np.full(self.y.shape, float(s))
            self.sigma = s
        if self.y.ndim != 1:
            raise ValueError(f"{ny}: must be 1-D, got shape {self.y.shape}")
        if self.x.ndim not in (1, 2) or self.x.shape[-1] != self.y.shape[0]:
            raise ValueError(
                f"{nx}: shape {self.x.shape} does not match {ny}'s {self.y.shape[0]} points "
                f"({nx} must be (n,) or (k, n))"
            )
        if self.sigma is not None and self.sigma.ndim == 2:
            raise ValueError(
                f"sigma: a 2-D sigma (covariance matrix, shape {self.sigma.shape}) is not "
                "supported for chunked fits: it couples points of different chunks; give "
                "one uncertainty per point (1-D sigma) or fit in memory with curve_fit"
            )
        if self.sigma is not None and self.sigma.shape != self.y.shape:
            raise ValueError(f"sigma: shape {self.sigma.shape} does not match y {self.y.shape}")
        if self.y.shape[0] == 0:
            raise ValueError("y: the data are empty")
        self.n_points = int(self.y.shape[0])

    def plan(self, chunk_size: int) -> list[Any]:
        return _ranges(self.n_points, chunk_size)

    def read(self, key: Any) -> Chunk:
        a, b = key
        s = None if self.sigma is None else self.sigma[a:b]
        return Chunk(
            np.asarray(self.x[..., a:b], dtype=np.float64),
            np.asarray(self.y[a:b], dtype=np.float64),
            None if s is None else np.asarray(s, dtype=np.float64),
        )

    def fingerprint(self) -> str:
        parts: list[Any] = [self.n_points, self.x.shape, self.sigma is not None]
        for arr in (self.x, self.y):
            fn = getattr(arr, "filename", None)
            if fn:
                parts.append(_file_id(fn))
            # a few sampled values identify in-memory data cheaply
            flat = arr.reshape(-1)
            idx = np.linspace(0, flat.size - 1, 17).astype(np.int64)
            parts.append(np.asarray(flat[idx], dtype=np.float64).tobytes())
        return _hash("array", *parts)


class HDF5Source(ChunkSource):
    """Datasets of an HDF5 file (h5py), read in slices.

    Parameters
    ----------
    path : str
        The HDF5 file.
    x : str or sequence of str
        Dataset name(s) of the independent variable(s); several names (or a 2-D
        dataset of shape (n, k), read by rows when ``columns=True``) give x of shape
        ``(k, n)``.
    y, sigma : str
        Dataset names of the observations and (optionally) their uncertainties.
    """

    def __init__(
        self, path: str, x: str | Sequence[str] = "x", y: str = "y", sigma: str | None = None
    ) -> None:
        try:
            import h5py
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError("HDF5 sources need h5py: pip install 'curvax[hdf5]'") from err
        self._h5py = h5py
        self.path = str(path)
        self.x_names = [x] if isinstance(x, str) else list(x)
        self.y_name = y
        self.sigma_name = sigma
        self._file: Any = None
        self._lock = threading.Lock()
        with h5py.File(self.path, "r") as fh:
            for name in [*self.x_names, y] + ([sigma] if sigma else []):
                if name not in fh:
                    raise ValueError(f"source: dataset {name!r} not found in {self.path}")
            for name in [*self.x_names, y] + ([sigma] if sigma else []):
                check_real(np.empty(0, dtype=fh[name].dtype), f"source: dataset {name!r}")
            n = fh[y].shape[0]
            for name in self.x_names + ([sigma] if sigma else []):
                if fh[name].shape[0] != n:
                    raise ValueError(
                        f"source: dataset {name!r} has {fh[name].shape[0]} rows but {y!r} has {n}"
                    )
        if n == 0:
            raise ValueError(f"source: dataset {y!r} in {self.path} is empty")
        self.n_points = int(n)

    def _fh(self) -> Any:
        if self._file is None:
            self._file = self._h5py.File(self.path, "r")
        return self._file

    def plan(self, chunk_size: int) -> list[Any]:
        return _ranges(self.n_points, chunk_size)

    def read(self, key: Any) -> Chunk:
        a, b = key
        with self._lock:  # h5py serialises access anyway
            fh = self._fh()
            xs = [np.asarray(fh[name][a:b], dtype=np.float64) for name in self.x_names]
            y = np.asarray(fh[self.y_name][a:b], dtype=np.float64)
            s = None if self.sigma_name is None else np.asarray(fh[self.sigma_name][a:b])
        if len(xs) == 1:
            x = xs[0].T if xs[0].ndim == 2 else xs[0]
        else:
            x = np.stack(xs)
        return make_chunk(x, y, s)

    def fingerprint(self) -> str:
        return _hash("hdf5", _file_id(self.path), self.x_names, self.y_name, self.sigma_name)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ZarrSource(ChunkSource):
    """Zarr arrays in a group (or given directly), read in slices.

    Parameters
    ----------
    store : str or zarr group
        Path of a Zarr group (opened read-only) or an opened group.
    x, y, sigma : str or zarr array
        Array names in the group (or arrays).
    """

    def __init__(self, store: Any, x: Any = "x", y: Any = "y", sigma: Any = None) -> None:
        try:
            import zarr
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError("Zarr sources need zarr: pip install 'curvax[zarr]'") from err
        self.path = store if isinstance(store, str) else None
        grp = zarr.open_group(store, mode="r") if isinstance(store, str) else store

        def get(name: Any) -> Any:
            if name is None or not isinstance(name, str):
                return name
            try:
                return grp[name]
            except KeyError as err:
                raise ValueError(f"source: array {name!r} not found in the Zarr store") from err

        self.names = (x, y, sigma)
        self.x, self.y, self.sigma = get(x), get(y), get(sigma)
        n = self.y.shape[0]
        if self.x.shape[-1] != n and self.x.shape[0] != n:
            raise ValueError(f"source: Zarr x has shape {self.x.shape}, y has {n} points")
        if n == 0:
            raise ValueError("source: the Zarr array y is empty")
        self.n_points = int(n)

    def plan(self, chunk_size: int) -> list[Any]:
        return _ranges(self.n_points, chunk_size)

    def read(self, key: Any) -> Chunk:
        a, b = key
        if self.x.ndim == 2 and self.x.shape[-1] != self.n_points:
            x = np.asarray(self.x[a:b]).T
        else:
            x = np.asarray(self.x[..., a:b])
        s = None if self.sigma is None else np.asarray(self.sigma[a:b])
        return make_chunk(x, np.asarray(self.y[a:b]), s)

    def fingerprint(self) -> str:
        ident: Any = self.path if self.path is None else _dir_id(self.path)
        return _hash("zarr", ident, [str(n) for n in self.names], self.n_points)


def _dir_id(path: str) -> tuple:
    total, latest = 0, 0
    for root, _, files in os.walk(path):
        for fn in files:
            st = os.stat(os.path.join(root, fn))
            total += st.st_size
            latest = max(latest, int(st.st_mtime_ns))
    return (os.path.abspath(path), total, latest)


class ParquetSource(ChunkSource):
    """Columns of a Parquet file (pyarrow), read one row group at a time.

    A row group is the chunk read from disk; a row group longer than the chunk size
    is split for computing.

    Parameters
    ----------
    path : str
    x : str or sequence of str
        Column name(s) of the independent variable(s).
    y, sigma : str
        Column names.
    """

    def __init__(
        self, path: str, x: str | Sequence[str] = "x", y: str = "y", sigma: str | None = None
    ) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError(
                "Parquet sources need pyarrow: pip install 'curvax[parquet]'"
            ) from err
        self.path = str(path)
        self.x_names = [x] if isinstance(x, str) else list(x)
        self.y_name, self.sigma_name = y, sigma
        self._pq = pq
        pf = pq.ParquetFile(self.path)
        cols = set(pf.schema_arrow.names)
        for name in [*self.x_names, y] + ([sigma] if sigma else []):
            if name not in cols:
                raise ValueError(
                    f"source: column {name!r} not in {self.path} (columns: {sorted(cols)})"
                )
        self.n_row_groups = pf.num_row_groups
        self.n_points = int(pf.metadata.num_rows)
        if self.n_points == 0:
            raise ValueError(f"source: the Parquet file {self.path} has no rows")
        self._local = threading.local()

    def plan(self, chunk_size: int) -> list[Any]:
        return list(range(self.n_row_groups))

    def read(self, key: Any) -> Chunk:
        pf = getattr(self._local, "pf", None)
        if pf is None:
            pf = self._local.pf = self._pq.ParquetFile(self.path)
        cols = [*self.x_names, self.y_name] + ([self.sigma_name] if self.sigma_name else [])
        tab = pf.read_row_group(int(key), columns=cols)
        get = lambda c: tab.column(c).to_numpy().astype(np.float64, copy=False)  # noqa: E731
        xs = [get(c) for c in self.x_names]
        x = xs[0] if len(xs) == 1 else np.stack(xs)
        s = get(self.sigma_name) if self.sigma_name else None
        return make_chunk(x, get(self.y_name), s)

    def fingerprint(self) -> str:
        return _hash("parquet", _file_id(self.path), self.x_names, self.y_name, self.sigma_name)


class SQLSource(ChunkSource):
    """Rows of a SQL table or query, fetched in chunks (sequential).

    Parameters
    ----------
    database : str, sqlite3.Connection or SQLAlchemy Engine
        A SQLAlchemy URL (``'sqlite:///data.db'``, ``'postgresql://…'``), a path of a
        SQLite file, an open ``sqlite3`` connection, or a SQLAlchemy engine.
    query : str, optional
        A SELECT returning the columns named below (in any order); default: all rows
        of ``table``.
    table : str, optional
        Table name (when no ``query`` is given).
    x : str or sequence of str
        Column name(s) of the independent variable(s).
    y, sigma : str
        Column names.

    Notes
    -----
    The rows must come back in the same order on every pass (add ``ORDER BY`` to a
    query whose order is not otherwise fixed).  Reads happen in background threads: a
    file-backed ``sqlite3`` connection is re-opened there by its file name; an
    in-memory one must be created with ``check_same_thread=False``.
    """

    random_access = False

    def __init__(
        self,
        database: Any,
        query: str | None = None,
        *,
        table: str | None = None,
        x: str | Sequence[str] = "x",
        y: str = "y",
        sigma: str | None = None,
    ) -> None:
        if (query is None) == (table is None):
            raise ValueError("source: give exactly one of query= or table=")
        self.x_names = [x] if isinstance(x, str) else list(x)
        self.y_name, self.sigma_name = y, sigma
        cols = [*self.x_names, y] + ([sigma] if sigma else [])
        for c in cols + ([table] if table else []):
            if not c.replace("_", "").isalnum():
                raise ValueError(f"source: invalid SQL identifier {c!r}")
        select = ", ".join(cols)
        inner = query if query is not None else f"SELECT * FROM {table}"
        self.sql = f"SELECT {select} FROM ({inner}) AS curvax_src"
        self.database = database
        self._kind, self._path = self._classify(database)
        self._ident = str(_file_id(self._path)) if self._kind == "sqlite-path" else self._path

    @staticmethod
    def _classify(db: Any) -> tuple[str, str]:
        if isinstance(db, sqlite3.Connection):
            # Reads run in other threads (prefetch, solver callback): re-open the file.
            rows = db.execute("PRAGMA database_list").fetchall()
            main = [r[2] for r in rows if r[1] == "main"]
            if main and main[0]:
                return "sqlite-path", main[0]
            return "sqlite3", f"sqlite3-connection-{id(db)}"
        if isinstance(db, str):
            if "://" in db:
                return "sqlalchemy-url", db
            if not os.path.exists(db):
                raise ValueError(f"source: SQLite database file {db!r} does not exist")
            return "sqlite-path", db
        if hasattr(db, "connect") and hasattr(db, "url"):
            return "sqlalchemy-engine", str(db.url)
        raise TypeError(
            "source: database must be a SQLAlchemy URL, a SQLite path, a sqlite3 "
            f"connection or a SQLAlchemy engine, got {type(db).__name__}"
        )

    def open(self, chunk_size: int) -> Iterator[Chunk]:
        if self._kind in ("sqlite3", "sqlite-path"):
            own = self._kind == "sqlite-path"
            con = sqlite3.connect(self._path, check_same_thread=False) if own else self.database
            try:
                cur = con.execute(self.sql)
                yield from self._batches(lambda: cur.fetchmany(chunk_size))
            finally:
                if own:
                    con.close()
        else:
            try:
                import sqlalchemy as sa
            except ImportError as err:  # pragma: no cover - optional dependency
                raise ImportError("SQL URLs need SQLAlchemy: pip install 'curvax[sql]'") from err
            engine = (
                sa.create_engine(self.database) if self._kind == "sqlalchemy-url" else self.database
            )
            try:
                with engine.connect() as conn:
                    res = conn.execution_options(stream_results=True).execute(sa.text(self.sql))
                    yield from self._batches(lambda: res.fetchmany(chunk_size))
            finally:
                if self._kind == "sqlalchemy-url":
                    engine.dispose()

    def _batches(self, fetch: Callable[[], list]) -> Iterator[Chunk]:
        kx = len(self.x_names)
        while True:
            rows = fetch()
            if not rows:
                return
            a = np.asarray(rows, dtype=np.float64)
            x = a[:, 0] if kx == 1 else a[:, :kx].T
            s = a[:, kx + 1] if self.sigma_name else None
            yield make_chunk(x, a[:, kx], s)

    def fingerprint(self) -> str:
        return _hash("sql", self._ident, self.sql)


class CallableSource(ChunkSource):
    """Chunks from a callable returning a fresh iterator of ``(x, y[, sigma])`` per pass.

    Parameters
    ----------
    factory : callable
        ``factory()`` returns an iterable of tuples ``(x, y)`` or ``(x, y, sigma)``;
        it must yield the same data, in the same order, each time it is called.
    name : str, optional
        Identifies the data in checkpoint fingerprints (default: the callable's
        qualified name).

    Notes
    -----
    :meth:`sample` starts the first pass (one ``factory()`` call) and the next
    :meth:`open` continues it, so every call of ``factory`` is a pass a fit checks: a
    pass that delivers a different number of points than the first raises
    :class:`~curvax.scale.host_reduce.DataConsistencyError`.
    """

    random_access = False

    def __init__(self, factory: Callable[[], Iterable[Any]], name: str | None = None) -> None:
        if not callable(factory):
            raise TypeError(f"source: expected a callable, got {type(factory).__name__}")
        self.factory = factory
        self.name = name or getattr(factory, "__qualname__", type(factory).__name__)
        # The pass that :meth:`sample` started: its first chunk and the rest of its
        # iterator, handed to the next :meth:`open`, so that the sample is part of the
        # first pass and a later pass that differs from it is detected.
        self._started: tuple[Chunk, Iterator[Chunk]] | None = None
        self._lock = threading.Lock()

    def sample(self, n: int = 1024) -> Chunk:
        """The first (up to) ``n`` points of the first chunk (see :meth:`open`)."""
        with self._lock:
            if self._started is None:
                it = self._fresh()
                try:
                    first = next(it)
                except StopIteration:
                    raise ValueError("source: the data source is empty (no chunks)") from None
                self._started = (first, it)
            first = self._started[0]
        k = min(n, first.n)
        return Chunk(
            first.x[..., :k], first.y[:k], None if first.sigma is None else first.sigma[:k]
        )

    def open(self, chunk_size: int) -> Iterator[Chunk]:
        """The chunks of one pass: the pass :meth:`sample` started, if any, else a new
        one from ``factory()`` (``chunk_size`` is not used: the factory chunks)."""
        with self._lock:
            started, self._started = self._started, None
        if started is None:
            return self._fresh()
        first, rest = started
        return itertools.chain([first], rest)

    def _fresh(self) -> Iterator[Chunk]:
        for i, item in enumerate(self.factory()):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise ChunkDataError(
                    f"source: chunk {i} must be a tuple (x, y) or (x, y, sigma), "
                    f"got {type(item).__name__}"
                )
            yield make_chunk(*item, index=i)

    def fingerprint(self) -> str:
        return _hash("callable", self.name)


def as_source(
    data: Any, y: Any = None, sigma: Any = None, names: tuple[str, str] = ("x", "y")
) -> ChunkSource:
    """Turn what the user passed into a :class:`ChunkSource`.

    ``data`` is a source already, a callable (→ :class:`CallableSource`), Dask arrays
    (with ``y`` and optional ``sigma``) → :class:`~curvax.scale.dask_backend.
    DaskArraySource`, or x data (arrays/memmaps, with ``y`` and optional ``sigma``) →
    :class:`ArraySource`.  ``names`` are the caller's names of x and y, for messages.
    """
    if isinstance(data, ChunkSource):
        if y is not None or sigma is not None:
            raise ValueError("y/sigma: give them to the source, not alongside it")
        return data
    if type(data).__module__.split(".")[0] == "dask":
        from curvax.scale.dask_backend import dask_source

        return dask_source(data, y, sigma)
    if callable(data) and y is None:
        return CallableSource(data)
    if isinstance(data, Iterator):
        raise TypeError(
            f"source: got an iterator ({type(data).__name__}), which can be read only once, "
            "but a fit reads the data on every pass; pass a callable that returns a fresh "
            "iterator of (x, y[, sigma]) chunks (e.g. the generator function itself)"
        )
    if y is None:
        raise ValueError("y: the observations are required when x is an array")
    return ArraySource(data, y, sigma, names)


# --- reading a pass: retries and prefetching --------------------------------------------


@dataclass
class ReadPolicy:
    """How reads are retried: ``max_retries`` extra attempts, back-off doubling from
    ``retry_backoff`` seconds (capped at ``max_backoff``)."""

    max_retries: int = 3
    retry_backoff: float = 0.05
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.retry_backoff * 2.0**attempt)


def with_retries(fn: Callable[[], Any], policy: ReadPolicy) -> Any:
    """Call ``fn()``; on an exception retry up to ``policy.max_retries`` times with
    back-off (a ``ValueError`` about the data itself is not retried)."""
    attempt = 0
    while True:
        try:
            return fn()
        except ValueError:
            raise
        except Exception:
            if attempt >= policy.max_retries:
                raise
            time.sleep(policy.delay(attempt))
            attempt += 1


def _read_pass(
    source: ChunkSource,
    chunk_size: int,
    policy: ReadPolicy,
    skip: set[int],
) -> Iterator[tuple[int, Chunk | ChunkFailure | None]]:
    """Yield ``(index, chunk)`` for one pass; ``None`` for skipped indices."""
    if source.random_access:
        for i, key in enumerate(source.plan(chunk_size)):
            if i in skip:
                yield i, None
                continue
            attempt = 0
            while True:
                try:
                    yield i, source.read(key)
                    break
                except ChunkDataError:  # bad data: re-reading cannot help
                    raise
                except Exception as err:
                    if attempt >= policy.max_retries:
                        yield i, ChunkFailure(i, err, attempt + 1)
                        break
                    time.sleep(policy.delay(attempt))
                    attempt += 1
        return
    # sequential: a failure re-opens the iterator and skips what was delivered
    delivered = 0
    attempt = 0
    it = iter(source.open(chunk_size))
    while True:
        try:
            ch = next(it)
        except StopIteration:
            return
        except ChunkDataError:  # bad data: re-reading cannot help
            raise
        except Exception as err:
            if attempt >= policy.max_retries:
                yield delivered, ChunkFailure(delivered, err, attempt + 1)
                return  # a sequential stream cannot be continued past a dead chunk
            time.sleep(policy.delay(attempt))
            attempt += 1
            try:
                it = iter(source.open(chunk_size))
                for _ in range(delivered):
                    next(it)
            except Exception:
                continue  # count as a failed attempt on the next loop
            continue
        attempt = 0
        i = delivered
        delivered += 1
        yield i, (None if i in skip else ch)


_END = object()


def iter_chunks(
    source: ChunkSource,
    chunk_size: int,
    policy: ReadPolicy | None = None,
    skip: set[int] | None = None,
    prefetch: bool = True,
) -> Iterator[tuple[int, Chunk | ChunkFailure | None]]:
    """Read one pass, with retries, one chunk ahead in a background thread.

    A :class:`ChunkDataError` (bad data: complex values, mismatched lengths) is raised
    at once; other errors are retried and, after the retries, reported as a
    :class:`ChunkFailure`.
    """
    policy = policy or ReadPolicy()
    gen = _read_pass(source, chunk_size, policy, set(skip or ()))
    if not prefetch:
        yield from gen
        return
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as err:  # surfaced in the consumer
            q.put(("__error__", err))

    t = threading.Thread(target=worker, name="curvax-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "__error__":
                raise item[1]
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(timeout=0.05)
