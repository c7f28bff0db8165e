"""Callbacks and the wall-clock limit really observe and stop the compiled loop."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

import curvax
from curvax.callbacks import Callback, EarlyStopping, IterationLogger, ProgressBar
from curvax.datasets import load_nist

PROB = load_nist("Bennett5")  # needs >1000 evaluations from its first start


def fit(**kw):
    return curvax.fit_curve(PROB.model, PROB.x, PROB.y, p0=PROB.start1, **kw)


def test_logger_sees_every_iteration_and_final_cost(tmp_path) -> None:
    path = tmp_path / "log.jsonl"
    log = IterationLogger(str(path))
    res = fit(callbacks=[log])
    ref = fit()
    np.testing.assert_array_equal(res.x, ref.x)  # observing changes nothing
    assert res.success
    lines = [json.loads(s) for s in path.read_text().splitlines()]
    assert len(lines) == len(log.records) >= res.nfev - 25  # polish steps are not hooked
    costs = [r["cost"] for r in lines]
    assert all(b <= a for a, b in itertools.pairwise(costs))  # cost never increases
    np.testing.assert_allclose(costs[-1], res.cost, rtol=1e-6)
    assert lines[-1]["iteration"] <= res.nit


def test_function_callback_stops_the_fit() -> None:
    res = fit(callbacks=lambda state, it: it >= 5)
    assert res.status == -2 and not res.success
    assert res.nit == 5
    assert res.cost < res.initial_cost
    with pytest.raises(RuntimeError, match="stopped by a callback"):
        curvax.curve_fit(PROB.model, PROB.x, PROB.y, p0=PROB.start1,
                         callbacks=lambda state, it: it >= 5)


def test_early_stopping_and_on_complete() -> None:
    seen = {}

    class Done(Callback):
        def on_complete(self, result):
            seen["status"] = result.status

    es = EarlyStopping(min_delta=1e-3, patience=3)
    res = fit(callbacks=[es, Done()])
    assert res.status == -2 and es.stopped_at is not None
    assert seen["status"] == -2
    assert res.nfev < fit().nfev


def test_timeout_stops_cleanly_with_best_point() -> None:
    def slow(state, it):
        time.sleep(0.005)
        return False

    t0 = time.monotonic()
    res = fit(callbacks=slow, timeout=0.2)
    elapsed = time.monotonic() - t0
    assert res.status == -3
    assert "time limit" in res.message
    assert elapsed < 5.0
    assert np.all(np.isfinite(res.x)) and res.cost <= res.initial_cost


def test_callback_exception_propagates() -> None:
    def boom(state, it):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        fit(callbacks=boom)


def test_progress_bar_counts_evaluations(capsys) -> None:
    bar = ProgressBar(disable=False)
    res = curvax.fit_curve(PROB.model, PROB.x, PROB.y, p0=PROB.start2, callbacks=bar)
    assert res.success
    assert bar.bar.n >= res.nfev - 25


@pytest.mark.parametrize("bad", [0, -1.0, "soon"])
def test_bad_timeout(bad) -> None:
    with pytest.raises(ValueError, match="timeout"):
        fit(timeout=bad)


def test_bad_callback_type() -> None:
    with pytest.raises(TypeError, match="callbacks"):
        fit(callbacks=[42])
