"""Every source type fits through the chunked solver to the in-memory answer."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import curvax
from curvax.scale import (
    ArraySource,
    CallableSource,
    DataConsistencyError,
    HDF5Source,
    ParquetSource,
    SQLSource,
    ZarrSource,
    fit_chunked,
)
from tests._large_models import exp_decay, make_data

N_SRC = 20_000
CHUNK = 3001  # ragged last chunk


@pytest.fixture(scope="module")
def data():
    f, x, y, s, p0 = make_data("exp", n=N_SRC, seed=3)
    ref = curvax.fit_curve(f, x, y, p0, sigma=s)
    ref_nosig = curvax.fit_curve(f, x, y, p0)
    return x, y, s, p0, ref, ref_nosig


def _check(res, ref):
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)
    assert res.extra["n_points"] == N_SRC


def test_memmap(tmp_path, data):
    x, y, s, p0, ref, _ = data
    arr = np.lib.format.open_memmap(tmp_path / "d.npy", mode="w+", shape=(3, N_SRC))
    arr[0], arr[1], arr[2] = x, y, s
    arr.flush()
    del arr
    mm = np.load(tmp_path / "d.npy", mmap_mode="r")
    src = ArraySource(mm[0], mm[1], mm[2])
    _check(fit_chunked(exp_decay, src, p0, chunk_size=CHUNK), ref)


def test_hdf5_separate_datasets(tmp_path, data):
    h5py = pytest.importorskip("h5py")
    x, y, s, p0, ref, _ = data
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as fh:
        fh["grp/t"] = x
        fh["grp/counts"] = y
        fh["grp/err"] = s
    src = HDF5Source(str(path), x="grp/t", y="grp/counts", sigma="grp/err")
    _check(fit_chunked(exp_decay, src, p0, chunk_size=CHUNK), ref)
    with pytest.raises(ValueError, match="not found"):
        HDF5Source(str(path), x="nope", y="grp/counts")


def test_hdf5_two_x_columns(tmp_path, data):
    h5py = pytest.importorskip("h5py")
    x, y, _, _, _, _ = data
    rng = np.random.default_rng(1)
    x2 = np.stack([x, rng.uniform(0, 1, x.size)])  # (2, n): second variable
    y2 = y + 0.3 * x2[1]

    def plane(xx, a, b, c, d):
        return a * np.exp(0) * 0 + exp_decay(xx[0], a, b, c) + d * xx[1]

    p0 = np.array([2.0, 1.0, 0.0, 0.1])
    ref = curvax.fit_curve(plane, x2, y2, p0)
    path = tmp_path / "d2.h5"
    with h5py.File(path, "w") as fh:
        fh["x"] = x2.T  # one dataset (n, 2), read by rows
        fh["y"] = y2
    res = fit_chunked(plane, HDF5Source(str(path), x="x", y="y"), p0, chunk_size=CHUNK)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)


def test_zarr(tmp_path, data):
    zarr = pytest.importorskip("zarr")
    x, y, s, p0, ref, _ = data
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    for name, a in (("x", x), ("y", y), ("s", s)):
        g.create_array(name, shape=a.shape, dtype="f8", chunks=(4096,))[:] = a
    src = ZarrSource(str(tmp_path / "d.zarr"), x="x", y="y", sigma="s")
    _check(fit_chunked(exp_decay, src, p0, chunk_size=CHUNK), ref)


def test_parquet_row_groups(tmp_path, data):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x, y, s, p0, ref, _ = data
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"t": x, "v": y, "e": s}), path, row_group_size=2500)
    src = ParquetSource(str(path), x="t", y="v", sigma="e")
    assert src.n_row_groups == 8
    _check(fit_chunked(exp_decay, src, p0, chunk_size=CHUNK), ref)


def _sqlite_file(path, x, y, s):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE obs (id INTEGER PRIMARY KEY, t REAL, v REAL, e REAL)")
    con.executemany(
        "INSERT INTO obs (t, v, e) VALUES (?, ?, ?)", zip(x.tolist(), y.tolist(), s.tolist())
    )
    con.commit()
    return con


def test_sqlite_connection_and_path(tmp_path, data):
    x, y, s, p0, ref, _ = data
    path = str(tmp_path / "d.db")
    con = _sqlite_file(path, x, y, s)
    src = SQLSource(con, "SELECT t, v, e FROM obs ORDER BY id", x="t", y="v", sigma="e")
    _check(fit_chunked(exp_decay, src, p0, chunk_size=CHUNK), ref)
    con.close()
    src2 = SQLSource(path, table="obs", x="t", y="v", sigma="e")
    _check(fit_chunked(exp_decay, src2, p0, chunk_size=CHUNK), ref)


def test_sqlalchemy_url(tmp_path, data):
    pytest.importorskip("sqlalchemy")
    x, y, s, p0, ref, _ = data
    path = tmp_path / "d.db"
    _sqlite_file(str(path), x, y, s).close()
    src = SQLSource(f"sqlite:///{path}", "SELECT * FROM obs ORDER BY id", x="t", y="v", sigma="e")
    _check(fit_chunked(exp_decay, src, p0, chunk_size=CHUNK), ref)


def test_callable_source(data):
    x, y, s, p0, ref, _ = data

    def chunks():
        for a in range(0, N_SRC, 1234):  # its own chunk size, ragged
            yield x[a : a + 1234], y[a : a + 1234], s[a : a + 1234]

    _check(fit_chunked(exp_decay, chunks, p0, chunk_size=CHUNK), ref)
    _check(fit_chunked(exp_decay, CallableSource(chunks), p0, chunk_size=CHUNK), ref)


def test_prefetch_off_same_answer(data):
    x, y, _, p0, _, ref = data
    res = fit_chunked(exp_decay, x, p0, y=y, chunk_size=CHUNK, prefetch=False)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)


# --- bad input --------------------------------------------------------------------


def test_mismatched_chunk_lengths(data):
    x, y, _, p0, _, _ = data

    def chunks():
        yield x[:100], y[:99]

    with pytest.raises(ValueError, match="mismatched lengths"):
        fit_chunked(exp_decay, chunks, p0)


def test_empty_source(data):
    p0 = data[3]
    with pytest.raises(ValueError, match="empty"):
        fit_chunked(exp_decay, lambda: iter(()), p0)


def test_source_changes_between_passes(data):
    x, y, _, p0, _, _ = data
    calls = {"n": 0}

    def chunks():
        calls["n"] += 1
        stop = N_SRC if calls["n"] <= 2 else N_SRC - 10  # sample + first pass, then fewer
        for a in range(0, stop, 5000):
            yield x[a : min(a + 5000, stop)], y[a : min(a + 5000, stop)]

    with pytest.raises(DataConsistencyError, match="same data on every pass"):
        fit_chunked(exp_decay, chunks, p0, chunk_size=5000)


def test_nan_rows_raise_or_omit(data):
    x, y, _, p0, _, _ = data
    y2 = y.copy()
    y2[[5, 17000]] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit_chunked(exp_decay, x, p0, y=y2, chunk_size=CHUNK)
    res = fit_chunked(exp_decay, x, p0, y=y2, chunk_size=CHUNK, nan_policy="omit")
    keep = np.isfinite(y2)
    ref = curvax.fit_curve(exp_decay, x[keep], y2[keep], p0)
    assert res.extra["n_omitted"] == 2 and res.extra["n_points"] == N_SRC - 2
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)
