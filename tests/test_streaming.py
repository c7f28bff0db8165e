"""Streaming, checkpoints, crash-and-resume, fault injection and OOM halving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import curvax
from curvax.config import StreamingConfig
from curvax.scale import (
    ArraySource,
    CheckpointError,
    ChunkReadError,
    StreamingOptimizer,
    fit_chunked,
    host_reduce,
)
from tests._large_models import exp_decay, make_data

N_S = 20_000


@pytest.fixture(scope="module")
def data():
    f, x, y, _, p0 = make_data("exp", n=N_S, seed=5)
    return x, y, p0, curvax.fit_curve(f, x, y, p0)


def test_exact_streaming_within_20_passes(data, tmp_path):
    x, y, p0, ref = data
    cfg = StreamingConfig(
        batch_size=4096, n_epochs=20, enable_checkpointing=True, checkpoint_dir=str(tmp_path)
    )
    opt = StreamingOptimizer(exp_decay, p0, cfg)
    res = opt.fit(ArraySource(x, y))
    assert res.success and res.extra["n_passes"] <= 20
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)
    assert os.path.exists(tmp_path / "curvax_checkpoint.npz")


def test_checkpoint_roundtrip_and_refusals(data, tmp_path):
    x, y, p0, _ = data
    cfg = StreamingConfig(optimizer="adam", batch_size=5000, n_epochs=1, learning_rate=1e-2)
    opt = StreamingOptimizer(exp_decay, p0, cfg)
    for a in range(0, 10000, 5000):
        opt.update(x[a : a + 5000], y[a : a + 5000])
    path = str(tmp_path / "c.npz")
    opt.save_checkpoint(path)
    back = StreamingOptimizer.load_checkpoint(path, exp_decay)
    np.testing.assert_array_equal(back.params, opt.params)
    np.testing.assert_array_equal(back.m, opt.m)
    assert back.t == opt.t == 2

    def other(x, a, b, c):
        return a * np.exp(-b * x) - c

    with pytest.raises(CheckpointError, match="different model"):
        StreamingOptimizer.load_checkpoint(path, other)
    # truncated
    raw = open(path, "rb").read()
    open(tmp_path / "t.npz", "wb").write(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        StreamingOptimizer.load_checkpoint(str(tmp_path / "t.npz"), exp_decay)
    # one flipped byte in the payload
    bad = bytearray(raw)
    i = raw.index(np.asarray(opt.params).tobytes()[:8])
    bad[i] ^= 0xFF
    open(tmp_path / "b.npz", "wb").write(bytes(bad))
    with pytest.raises(CheckpointError, match="corrupted"):
        StreamingOptimizer.load_checkpoint(str(tmp_path / "b.npz"), exp_decay)
    # the good checkpoint is untouched
    StreamingOptimizer.load_checkpoint(path, exp_decay)


def test_resume_refuses_other_source(data, tmp_path):
    x, y, p0, _ = data
    cfg = StreamingConfig(
        batch_size=4096, n_epochs=3, enable_checkpointing=True, checkpoint_dir=str(tmp_path)
    )
    StreamingOptimizer(exp_decay, p0, cfg).fit(ArraySource(x, y))
    with pytest.raises(CheckpointError, match="different data source"):
        StreamingOptimizer(exp_decay, p0, cfg).fit(ArraySource(x, y + 1.0))


def test_online_adam_and_sgd_approach_answer():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 40_000)
    y = 2.0 * x + 1.0 + 0.01 * rng.standard_normal(x.size)

    def line(x, a, b):
        return a * x + b

    ref = curvax.fit_curve(line, x, y, [0.0, 0.0])

    def chunks():
        for a in range(0, x.size, 500):
            yield x[a : a + 500], y[a : a + 500]

    for opt_name, lr in (("adam", 0.05), ("sgd", 0.5)):
        cfg = StreamingConfig(
            optimizer=opt_name,
            batch_size=500,
            n_epochs=8,
            learning_rate=lr,
            momentum=0.5 if opt_name == "sgd" else 0.0,
        )
        res = StreamingOptimizer(line, [0.0, 0.0], cfg).fit(chunks)
        np.testing.assert_allclose(res.x, ref.x, rtol=2e-2)
        assert res.extra["approximate"]


def test_update_in_exact_mode_is_refused(data):
    x, y, p0, _ = data
    with pytest.raises(ValueError, match="exact mode"):
        StreamingOptimizer(exp_decay, p0).update(x[:10], y[:10])


# --- fault injection ---------------------------------------------------------------


class Flaky(ArraySource):
    """Fails on chosen chunk keys: ``transient`` times each, or forever."""

    def __init__(self, x, y, fail_starts, transient=None):
        super().__init__(x, y)
        self.fail_starts = set(fail_starts)
        self.transient = transient
        self.failures: dict[int, int] = {}

    def read(self, key):
        a, _ = key
        if a in self.fail_starts:
            k = self.failures.get(a, 0)
            if self.transient is None or k < self.transient:
                self.failures[a] = k + 1
                raise OSError(f"injected read failure at {a}")
        return super().read(key)


def test_transient_failures_give_exact_answer(data):
    x, y, p0, ref = data
    src = Flaky(x, y, fail_starts=[0, 8000], transient=2)
    res = fit_chunked(exp_decay, src, p0, chunk_size=4000, max_retries=3, retry_backoff=0.001)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)
    assert res.extra["chunks_skipped"] == [] and src.failures[8000] == 2


def test_permanent_failure_skip_or_raise(data):
    x, y, p0, _ = data
    src = Flaky(x, y, fail_starts=[8000])
    with pytest.raises(ChunkReadError, match="chunk 2 could not be read"):
        fit_chunked(exp_decay, src, p0, chunk_size=4000, max_retries=1, retry_backoff=0.001)
    res = fit_chunked(
        exp_decay,
        src,
        p0,
        chunk_size=4000,
        max_retries=1,
        retry_backoff=0.001,
        on_chunk_error="skip",
    )
    keep = np.ones(N_S, bool)
    keep[8000:12000] = False
    ref = curvax.fit_curve(exp_decay, x[keep], y[keep], p0)
    assert res.extra["chunks_skipped"] == [2]
    assert res.extra["points_skipped"] == 4000 and res.extra["n_points"] == N_S - 4000
    assert "injected read failure" in res.extra["skip_reasons"][2]
    assert "chunk 2 skipped" in res.summary()
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)


def test_device_oom_halves_chunk(data, monkeypatch):
    x, y, p0, ref = data
    real = host_reduce.chunk_kernel

    def fake_kernel(kernel):
        fn = real(kernel)

        def run(q, factor, d, fs):
            if d["y"].shape[0] > 2048:
                raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
            return fn(q, factor, d, fs)

        return run

    monkeypatch.setattr(host_reduce, "chunk_kernel", fake_kernel)
    res = fit_chunked(exp_decay, x, p0, y=y, chunk_size=8192)
    assert res.extra["oom_halvings"] == 2 and res.extra["chunk_size"] == 2048
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)


# --- crash and resume ----------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from curvax.config import StreamingConfig
    from curvax.scale import ArraySource, StreamingOptimizer
    from tests._large_models import exp_decay, make_data

    f, x, y, s, p0 = make_data("exp", n={n}, seed=5)

    class Slow(ArraySource):
        def read(self, key):
            time.sleep({delay})
            return super().read(key)

    cfg = StreamingConfig(batch_size=4000, n_epochs=60, enable_checkpointing=True,
                          checkpoint_dir={ckdir!r})
    res = StreamingOptimizer(exp_decay, p0, cfg).fit(Slow(x, y))
    np.save({out!r}, res.x)
    """
)


def test_sigkill_and_resume(data, tmp_path):
    x, y, p0, ref = data
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ckdir = str(tmp_path / "ck")
    code = _CHILD.format(root=root, n=N_S, delay=0.05, ckdir=ckdir, out=str(tmp_path / "x.npy"))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root)
    ck = os.path.join(ckdir, "curvax_checkpoint.npz")
    t0 = time.time()
    while not os.path.exists(ck) and time.time() - t0 < 120:
        time.sleep(0.1)
    assert os.path.exists(ck), "the child never wrote a checkpoint"
    time.sleep(0.6)  # a few more passes, then kill mid-pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(tmp_path / "x.npy")
    cfg = StreamingConfig(
        batch_size=4000, n_epochs=60, enable_checkpointing=True, checkpoint_dir=ckdir
    )
    opt = StreamingOptimizer(exp_decay, p0, cfg)
    res = opt.fit(ArraySource(x, y))  # resumes from the checkpoint
    done_before = opt.n_passes - res.extra["n_passes"]
    assert done_before >= 1
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)
    assert [f for f in os.listdir(ckdir) if f.endswith(".tmp")] == []
