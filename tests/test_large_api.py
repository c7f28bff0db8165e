"""estimate_memory_requirements, curve_fit_large, LargeDatasetFitter, configs, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import curvax
from curvax.config import LDMemoryConfig, StreamingConfig
from curvax.scale import LargeDatasetFitter, curve_fit_large, estimate_memory_requirements
from tests._large_models import exp_decay, make_data

GIB = 1024.0**3


def test_estimate_components_closed_form():
    est = estimate_memory_requirements(
        20_000_000, 4, "float64", memory_limit_gb=0.25, max_chunk_size=10**8
    )
    assert est["data_gb"] == pytest.approx(20_000_000 * 2 * 8 / GIB)
    assert est["solver_state_gb"] == pytest.approx(64 * 25 * 8 / GIB)
    assert est["strategy"] == "chunked"
    c = est["chunk_size"]
    work = 3 * c * 4 * 8 + 4 * 4096 * 5 * 8 + 64 * 25 * 8
    assert work <= 0.8 * 0.25 * GIB < work + 2 * 3 * 1024 * 4 * 8  # the largest that fits
    assert est["n_chunks"] == -(-20_000_000 // c)
    small = estimate_memory_requirements(1000, 3, memory_limit_gb=1.0)
    assert small["strategy"] == "in_memory" and small["n_chunks"] == 1
    est32 = estimate_memory_requirements(
        20_000_000, 4, "float32", memory_limit_gb=0.25, max_chunk_size=10**8
    )
    assert est32["data_gb"] == pytest.approx(est["data_gb"] / 2)
    assert (
        estimate_memory_requirements(10**9, 4, data_in_memory=False, memory_limit_gb=1.0)[
            "strategy"
        ]
        == "streaming"
    )


def test_estimate_bad_input():
    with pytest.raises(ValueError, match=r"memory_limit_gb.*too small"):
        estimate_memory_requirements(10**8, 10, memory_limit_gb=1e-5)
    with pytest.raises(ValueError, match="n_params"):
        estimate_memory_requirements(100, 0)
    with pytest.raises(ValueError, match="dtype"):
        estimate_memory_requirements(100, 2, dtype="int8")


def test_configs_importable_and_validated():
    assert curvax.config.LDMemoryConfig is LDMemoryConfig
    with pytest.raises(ValueError, match="min_chunk_size"):
        LDMemoryConfig(min_chunk_size=10, max_chunk_size=5)
    with pytest.raises(ValueError, match="optimizer"):
        StreamingConfig(optimizer="bfgs")
    with pytest.raises(ValueError, match="checkpoint_dir"):
        StreamingConfig(enable_checkpointing=True)


def test_curve_fit_large_matches_curve_fit_and_aliases(capsys):
    f, x, y, s, p0 = make_data("exp", n=30_000, seed=2)
    popt_ref, pcov_ref = curvax.curve_fit(f, x, y, p0, sigma=s)
    popt, pcov = curve_fit_large(f, x, y, p0, sigma=s, memory_limit_gb=0.0005, show_progress=True)
    np.testing.assert_allclose(popt, popt_ref, rtol=1e-8)
    np.testing.assert_allclose(pcov, pcov_ref, rtol=1e-6)
    assert "pass" in capsys.readouterr().err  # the tqdm bar
    popt2, _, info, _, ier = curve_fit_large(
        model=f, x=x, y=y, p0=p0, sigma=s, memory_limit_gb=0.0005, full_output=True
    )
    np.testing.assert_allclose(popt2, popt_ref, rtol=1e-8)
    assert info["result"].extra["strategy"] == "chunked" and ier in (1, 2, 3, 4)
    # a generous budget fits in memory, through curve_fit's own path
    popt3, _, info3, _, _ = curve_fit_large(
        f, x, y, p0, sigma=s, memory_limit_gb=4, full_output=True
    )
    assert info3["result"].extra["strategy"] == "in_memory"
    np.testing.assert_allclose(popt3, popt_ref, rtol=1e-12)
    with pytest.raises(TypeError, match="not both"):
        curve_fit_large(f, x, y, p0, x=x)
    with pytest.raises(ValueError, match="too small"):
        curve_fit_large(f, x, y, p0, memory_limit_gb=1e-7)


def test_large_dataset_fitter():
    f, x, y, _, p0 = make_data("exp", n=30_000, seed=2)
    ref = curvax.fit_curve(f, x, y, p0)
    cfg = LDMemoryConfig(max_memory_gb=0.0005, min_chunk_size=1000, max_chunk_size=8000)
    fitter = LargeDatasetFitter(exp_decay, x, y, p0, memory_config=cfg)
    est = fitter.estimate_memory()
    assert est["strategy"] == "chunked" and 1000 <= est["chunk_size"] <= 8000
    assert est["n_chunks"] == -(-30_000 // est["chunk_size"])
    res = fitter.fit_with_progress(show_progress=False)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-6)
    assert res.extra["chunk_size"] == est["chunk_size"]
    with pytest.raises(TypeError, match="memory_config"):
        LargeDatasetFitter(exp_decay, x, y, p0, memory_config={"max_memory_gb": 1})


_MEM_CHILD = textwrap.dedent(
    """
    import json, sys, resource
    import numpy as np
    sys.path.insert(0, {root!r})
    import jax.numpy as jnp
    from curvax.scale import HDF5Source, curve_fit_large
    import h5py

    def f(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    n = {n}
    with h5py.File({path!r}, "w") as fh:
        dx = fh.create_dataset("x", (n,), "f8")
        dy = fh.create_dataset("y", (n,), "f8")
        rng = np.random.default_rng(0)
        for a in range(0, n, 1_000_000):
            b = min(n, a + 1_000_000)
            x = rng.uniform(0, 5, b - a)
            dx[a:b] = x
            dy[a:b] = 3 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(b - a)
    del x
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    popt, pcov = curve_fit_large(f, HDF5Source({path!r}), p0=[2.0, 1.0, 0.0],
                                 memory_limit_gb=0.05)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(base_kb=base, peak_kb=peak, popt=list(map(float, popt)))))
    """
)


def test_out_of_core_memory_small(tmp_path):
    """4e6 points (64 MB on disk) fitted with peak RSS growing far less than the data."""
    pytest.importorskip("h5py")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    n = 4_000_000
    code = _MEM_CHILD.format(root=root, n=n, path=str(tmp_path / "d.h5"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    growth_mb = (rec["peak_kb"] - rec["base_kb"]) / 1024
    data_mb = n * 16 / 2**20
    assert growth_mb < data_mb, rec  # the data were never held whole
    np.testing.assert_allclose(rec["popt"], [3.0, 1.3, 0.5], rtol=1e-2)
