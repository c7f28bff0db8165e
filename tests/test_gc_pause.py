"""The garbage collector is paused while a fit program is dispatched (core/gc_pause),
and left as it was found: on, off, with threads overlapping, after an error."""

from __future__ import annotations

import gc
import threading

import jax.numpy as jnp
import numpy as np
import pytest

import curvax
from curvax.core.gc_pause import gc_paused


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_fit_program_is_traced_with_the_collector_off(collector_on):
    seen = []

    def traced_decay(x, a, b, c):
        seen.append(gc.isenabled())  # runs when JAX traces the model
        return a * jnp.exp(-b * x) + c

    x = np.linspace(0, 4, 200)
    y = 2.0 * np.exp(-0.7 * x) + 0.3
    popt, _ = curvax.curve_fit(traced_decay, x, y, p0=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(popt, [2.0, 0.7, 0.3], rtol=1e-8)
    assert False in seen  # the program's trace
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off(collector_on):
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
    x = np.linspace(0, 4, 200)
    curvax.curve_fit(lambda x, a, b: a * jnp.exp(-b * x), x, 2 * np.exp(-x), p0=[1.0, 2.0])
    assert not gc.isenabled()


def test_overlapping_threads_switch_it_back_on_when_the_last_leaves(collector_on):
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread is still inside
    leave.set()
    t.join(10)
    assert gc.isenabled()


def test_an_error_inside_switches_it_back_on(collector_on):
    with pytest.raises(RuntimeError, match="boom"), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
