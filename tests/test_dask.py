"""Dask back end (issue 7, "Dask"): fits of Dask data on a two-process LocalCluster.

References are independent of the Dask path: the in-memory fits of the same numbers
(``curvax.fit_curve`` / ``curve_fit_batch`` on NumPy arrays).  Traffic is read from
the workers' own transfer logs (what each worker sent, to whom, which keys).
"""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

import dask
import dask.array as da
import dask.dataframe as dd
import jax
import jax.numpy as jnp
import pandas as pd
from distributed import Client, LocalCluster, wait

import curvax
from curvax.scale import (
    DaskArraySource,
    DaskDataFrameSource,
    LargeDatasetFitter,
    curve_fit_large,
    fit_chunked,
)
from curvax.scale.dask_backend import DaskReducer, pack_width

N_BLOCK = 40_000
N_BLOCKS = 4
P0 = np.array([2.0, 1.0, 0.0])


def exp_decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def _gen_block(seed: int, n: int, block_id=None) -> np.ndarray:
    """Rows x, y, sigma of one block, from a seed fixed per block (recomputable)."""
    rng = np.random.default_rng([seed, block_id[1]])
    x = rng.uniform(0.0, 5.0, n)
    s = 0.02 + 0.03 * rng.uniform(size=n)
    y = 3.0 * np.exp(-1.3 * x) + 0.5 + s * rng.standard_normal(n)
    return np.stack([x, y, s])


def make_data(seed: int = 0, n_block: int = N_BLOCK, n_blocks: int = N_BLOCKS):
    """Stacked (3, n) Dask array generated and persisted on the workers."""
    data = da.map_blocks(
        _gen_block,
        seed,
        n_block,
        chunks=((3,), (n_block,) * n_blocks),
        dtype=np.float64,
        meta=np.empty((0, 0)),
        name=f"gen-{seed}-{n_block}-{n_blocks}",
    )
    (data,) = dask.persist(data)
    wait(data)
    return data


@pytest.fixture(scope="module")
def client():
    # Work stealing may move a block to an idle worker (a Dask balancing policy,
    # never through the client); it is off so that the traffic measured below is the
    # reduction's own.
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        cluster = LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            worker_dashboard_address=None,
        )
        cl = Client(cluster)
        try:
            yield cl
        finally:
            cl.close()
            cluster.close()


@pytest.fixture(scope="module")
def data(client):
    d = make_data()
    return d, np.asarray(d.compute())


def _outgoing(client):
    """Per worker: the transfer log entries (who asked, keys and bytes)."""
    return client.run(lambda dask_worker: list(dask_worker.transfer_outgoing_log))


def _new_entries(before, after):
    out = []
    for w, entries in after.items():
        out.extend(entries[len(before.get(w, [])) :])
    return out


def _assert_same_fit(popt, pcov, ref):
    np.testing.assert_allclose(popt, ref.x, rtol=1e-8, atol=0)
    np.testing.assert_allclose(pcov, ref.pcov, rtol=1e-6, atol=0)


# --- exactness and traffic -----------------------------------------------------------------


def test_dask_arrays_equal_in_memory_and_data_stay_on_workers(client, data, monkeypatch):
    d, (xn, yn, sn) = data
    x, y, s = d[0], d[1], d[2]
    ref = curvax.fit_curve(exp_decay, xn, yn, P0, sigma=sn)
    # warm-up: each worker compiles its per-chunk kernel once
    curve_fit_large(exp_decay, x, y, P0, sigma=s)

    seen = []
    orig = DaskReducer.pass_collection

    def spy(self, q):
        coll = orig(self, q)
        seen.append(coll)
        return coll

    monkeypatch.setattr(DaskReducer, "pass_collection", spy)
    workers = set(client.scheduler_info()["workers"])
    before = _outgoing(client)
    popt, pcov, info, _, _ = curve_fit_large(exp_decay, x, y, P0, sigma=s, full_output=True)
    after = _outgoing(client)
    _assert_same_fit(popt, pcov, ref)

    name = lambda k: k[0] if isinstance(k, tuple) else k  # noqa: E731
    # What left the workers: to the client only the merged partial of each pass and
    # the 1024-point sample that probes the model; between workers only partials.
    entries = _new_entries(before, after)
    data_keys = {k for k in dict(d.__dask_graph__()) if isinstance(k, tuple)}
    width = pack_width(3)
    n_pass = len(seen)
    assert n_pass >= 3
    to_client = [e for e in entries if e["who"] not in workers]
    between = [e for e in entries if e["who"] in workers]
    sent = [k for e in entries for k in e["keys"]]
    assert len(data_keys) == N_BLOCKS and to_client
    assert not data_keys.intersection(sent)
    for e in between:
        for k in e["keys"]:
            assert str(k[0] if isinstance(k, tuple) else k).startswith("curvax-merge")
            assert e["keys"][k] == 8 * width
    sample_bytes = 3 * 1024 * 8
    assert sum(e["total"] for e in to_client) <= sample_bytes + n_pass * 8 * width + 4096
    assert sum(e["total"] for e in between) <= n_pass * N_BLOCKS * 8 * width
    assert sum(e["total"] for e in entries) < 0.01 * d.nbytes

    # Graph of one pass: one map task per block touching that block only, a merge
    # tree, one small output.
    coll = seen[-1]
    graph = dict(coll.__dask_graph__())
    deps = {k: dask.core.get_dependencies(graph, k) for k in graph}

    def ancestors(k):
        out, todo = set(), [k]
        while todo:
            for dep in deps.get(todo.pop(), ()):
                if dep not in out:
                    out.add(dep)
                    todo.append(dep)
        return out

    partial = [k for k in graph if name(k).startswith("curvax-partial")]
    assert sorted(k[-1] for k in partial) == list(range(N_BLOCKS))
    for k in partial:
        blocks = {a[-1] for a in ancestors(k) if isinstance(a, tuple) and a in data_keys}
        assert blocks == {k[-1]}
    merges = [k for k in graph if name(k).startswith("curvax-merge")]
    for k in merges:
        assert all(name(a).startswith(("curvax-partial", "curvax-merge")) for a in deps[k])
    assert coll.shape == (width, 1) and len(list(dask.core.flatten(coll.__dask_keys__()))) == 1
    assert info["nfev"] >= 1
    res = fit_chunked(exp_decay, DaskArraySource(x, y, s), P0)
    assert res.extra["backend"] == "dask" and res.extra["n_blocks"] == N_BLOCKS
    assert res.extra["bytes_fetched"] == res.extra["n_passes"] * 8 * width


def test_pass_graph_bytes_do_not_grow_with_n(client):
    # The per-pass graph the client submits names the blocks; it carries no data.
    sizes = []
    for n_block in (10_000, 80_000):
        d = make_data(seed=1, n_block=n_block, n_blocks=2)
        coll = _reducer_for(d).pass_collection(P0)
        sizes.append(len(pickle.dumps(dict(coll.__dask_graph__()))))
    assert abs(sizes[1] - sizes[0]) < 64
    assert sizes[0] < 20_000


def _reducer_for(d):
    """A DaskReducer over the rows of ``d`` (for inspecting a pass's graph)."""
    from curvax.core.engine import Kernel

    k = Kernel("pointwise", exp_decay, "args", "fwd", "linear", "lm", True, 4096)
    return DaskReducer(k, DaskArraySource(d[0], d[1], d[2]), 3, np.float64, 1.0, 65536)


def test_dask_dataframe_columns_equal_in_memory(client):
    rng = np.random.default_rng(5)
    n = 3 * N_BLOCK  # partitions of N_BLOCK rows: the kernels compiled above serve
    t = rng.uniform(0.0, 5.0, n)
    err = 0.02 + 0.03 * rng.uniform(size=n)
    sig = 3.0 * np.exp(-1.3 * t) + 0.5 + err * rng.standard_normal(n)
    frame = pd.DataFrame({"t": t, "signal": sig, "err": err, "other": np.arange(n)})
    ddf = dd.from_pandas(frame, npartitions=3).persist()
    ref = curvax.fit_curve(exp_decay, t, sig, P0, sigma=err, absolute_sigma=True)
    popt, pcov = curve_fit_large(
        exp_decay, ddf, x="t", y="signal", sigma="err", p0=P0, absolute_sigma=True
    )
    _assert_same_fit(popt, pcov, ref)
    # the same through the source class and LargeDatasetFitter, robust loss + bounds
    bounds = ([0.0, 0.0, -1.0], [10.0, 1.29, 1.0])  # b's upper bound is active
    ref2 = curvax.fit_curve(exp_decay, t, sig, P0, sigma=err, loss="soft_l1", bounds=bounds)
    src = DaskDataFrameSource(ddf, x="t", y="signal", sigma="err")
    res = LargeDatasetFitter(exp_decay, src, p0=P0, loss="soft_l1", bounds=bounds).fit()
    _assert_same_fit(res.x, res.pcov, ref2)
    np.testing.assert_allclose(res.chisqr, ref2.chisqr, rtol=1e-9)
    assert res.extra["strategy"] == "dask" and res.extra["n_blocks"] == 3
    assert res.active_mask[1] == 1


def test_nan_rows_omitted_on_workers(client):
    x = np.linspace(0.0, 5.0, 3000)
    y = 3.0 * np.exp(-1.3 * x) + 0.5 + 0.01 * np.sin(7 * x)
    y[[1200, 1700]] = np.nan  # both in block 1
    keep = np.isfinite(y)
    ref = curvax.fit_curve(exp_decay, x[keep], y[keep], P0)
    xd, yd = da.from_array(x, chunks=1000), da.from_array(y, chunks=1000)
    res = fit_chunked(exp_decay, xd, P0, y=yd, nan_policy="omit")
    _assert_same_fit(res.x, res.pcov, ref)
    assert res.extra["n_omitted"] == 2 and res.extra["n_points"] == 2998
    with pytest.raises(ValueError, match=r"NaN or Inf.*\[in Dask block 1\]"):
        fit_chunked(exp_decay, xd, P0, y=yd)


def test_batch_of_dask_curves_equals_in_memory(client):
    rng = np.random.default_rng(3)
    B, N = 48, 48
    x = np.linspace(-4.0, 4.0, N)
    truth = np.stack(
        [rng.uniform(2, 4, B), rng.uniform(-1, 1, B), rng.uniform(0.6, 1.2, B)], axis=1
    )
    y = truth[:, :1] * np.exp(-0.5 * ((x - truth[:, 1:2]) / truth[:, 2:3]) ** 2)
    y = y + 0.05 * rng.standard_normal((B, N))
    sigma = 0.05 + 0.02 * rng.uniform(size=(B, N))
    p0 = truth * (1 + rng.uniform(-0.1, 0.1, truth.shape))
    model = curvax.models.gaussian
    ref = curvax.curve_fit_batch(model, x, y, p0, sigma=sigma, chunk_size=16)
    yd = da.from_array(y, chunks=(16, N)).persist()
    sd = da.from_array(sigma, chunks=(12, N)).persist()  # other row chunks: realigned
    res = curvax.curve_fit_batch(model, x, yd, p0, sigma=sd, chunk_size=16)
    np.testing.assert_allclose(res.popt, ref.popt, rtol=1e-8, atol=0)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(res.status, ref.status)
    np.testing.assert_array_equal(res.n_points, ref.n_points)
    assert res.success.all()
    # a fit that cannot start is reported at its global index
    y_bad = y.copy()
    y_bad[37, 3] = np.nan
    ref_bad = curvax.curve_fit_batch(model, x, y_bad, p0, chunk_size=16)
    yd_bad = da.from_array(y_bad, chunks=(16, N))
    res_bad = curvax.curve_fit_batch(model, x, yd_bad, p0, chunk_size=16)
    assert res_bad.status[37] == ref_bad.status[37] == -1
    assert res_bad.message[37] == ref_bad.message[37]
    np.testing.assert_allclose(res_bad.popt[:37], ref_bad.popt[:37], rtol=1e-8)


def test_bad_dask_input_is_named(client):
    xd = da.from_array(np.linspace(0, 1, 100), chunks=50)
    with pytest.raises(TypeError, match="y: expected a Dask array"):
        curve_fit_large(exp_decay, xd, np.ones(100), P0)
    with pytest.raises(ValueError, match="x: shape"):
        DaskArraySource(xd, da.ones(90, chunks=45))
    frame = dd.from_pandas(pd.DataFrame({"t": [1.0, 2.0], "v": [1.0, 2.0]}), npartitions=1)
    with pytest.raises(ValueError, match="y: column 'signal' not in the DataFrame"):
        curve_fit_large(exp_decay, frame, x="t", y="signal", p0=P0)
    with pytest.raises(ValueError, match="on_chunk_error"):
        fit_chunked(exp_decay, xd, P0, y=xd, on_chunk_error="skip")


def test_missing_dask_is_a_clear_import_error(monkeypatch):
    from curvax.scale import dask_backend

    monkeypatch.setitem(sys.modules, "dask.array", None)  # import dask.array fails
    with pytest.raises(ImportError, match=r"pip install 'curvax\[dask\]'"):
        dask_backend.require_dask()
    with pytest.raises(ImportError, match="Dask inputs need dask"):
        DaskArraySource(None, None)


# --- a worker dies mid-fit -----------------------------------------------------------------


def _killer_model(armed: str, killed: str, client_pid: int):
    """exp_decay that kills its worker process once, while evaluating a block, after
    the client armed it; cloudpickled by value (a closure)."""

    def die_once(_):
        if os.getpid() == client_pid or not os.path.exists(armed):
            return
        try:
            fd = os.open(killed, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(17)

    def model(x, a, b, c):
        jax.debug.callback(die_once, a)
        return a * jnp.exp(-b * x) + c

    return model


def test_worker_killed_mid_fit_is_recovered(client, data, tmp_path):
    # Runs last in the module: the nanny replaces the killed worker process.
    d, (xn, yn, sn) = data
    ref = curvax.fit_curve(exp_decay, xn, yn, P0, sigma=sn)
    armed, killed = str(tmp_path / "armed"), str(tmp_path / "killed")
    model = _killer_model(armed, killed, os.getpid())
    pids_before = set(client.run(os.getpid).values())

    def arm(n_passes, q, cost):
        if n_passes == 2:
            open(armed, "w").close()

    res = fit_chunked(model, DaskArraySource(d[0], d[1], d[2]), P0, on_pass=arm)
    assert os.path.exists(killed)
    victim = int(open(killed).read())
    assert victim in pids_before
    _assert_same_fit(res.x, res.pcov, ref)
    client.wait_for_workers(2, timeout=60)
    assert victim not in set(client.run(os.getpid).values())
