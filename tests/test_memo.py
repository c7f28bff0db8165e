"""curvax.core.memo.BoundedCache: the process-wide memo structure (LRU, thread-safe)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from curvax.core.memo import BoundedCache, hashable


def test_least_recently_used_entries_are_dropped_beyond_the_size() -> None:
    cache: BoundedCache[int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2


def test_first_value_stored_wins_and_unhashable_keys_are_not_stored() -> None:
    cache: BoundedCache[object] = BoundedCache(4)
    first, second = object(), object()
    assert cache.put("k", first) is first
    assert cache.put("k", second) is first  # a racing second maker gets the first value
    key = hashable(("model", np.zeros(3)))  # arrays do not hash
    assert key is None
    assert cache.put(key, second) is second and cache.get(key) is None
    assert len(cache) == 1
    with pytest.raises(ValueError, match="size"):
        BoundedCache(0)


def test_get_or_make_makes_once_per_key_across_threads() -> None:
    cache: BoundedCache[object] = BoundedCache(8)
    made: list[int] = []
    barrier = threading.Barrier(8)
    got: list[object] = []

    def make() -> object:
        made.append(1)
        return object()

    def worker() -> None:
        barrier.wait()
        got.append(cache.get_or_make("key", make))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(g is got[0] for g in got)  # one shared object
    assert 1 <= len(made) <= 8  # makers may race; only one result is kept


# --- canonical_function: one function object per computation ---------------------------

K_GLOBAL = 1.3


def test_lambdas_made_anew_share_one_function_and_one_compiled_fit() -> None:
    """A lambda written in the call, in a loop, used to compile the whole fit each time
    (0.7-0.9 s against ~1 ms)."""
    import jax.numpy as jnp

    import curvax
    from curvax.core import engine
    from curvax.core.memo import canonical_function

    made = [lambda x, a, b: a * jnp.exp(-b * x) for _ in range(3)]
    assert made[0] is not made[1]
    assert canonical_function(made[0]) is canonical_function(made[1]) is canonical_function(made[2])
    x = np.linspace(0.0, 4.0, 50)
    sizes = []
    for rate in (1.3, 0.7, 1.1, 1.9):  # the same source line each time: one code object
        popt, _ = curvax.curve_fit(lambda x, a, b: a * jnp.exp(-b * x), x,
                                   2.0 * np.exp(-rate * x), p0=[1, 1])
        np.testing.assert_allclose(popt, [2.0, rate], rtol=1e-8)
        sizes.append(frozenset(id(k) for k in engine.COMPILE_CACHE._entries))
    assert sizes[1:] == sizes[:1] * 3  # compiled for the first fit only (the same kernels)


def test_changed_closure_or_global_values_give_another_function() -> None:
    """What a function computes with its closure and the globals it reads: a compiled fit
    of the old values must not be reused for new ones (it used to be, for a changed
    global: the same function object refitted after `K_GLOBAL = 2.0` kept 1.3)."""
    global K_GLOBAL
    import jax.numpy as jnp

    import curvax
    from curvax.core.memo import canonical_function

    def with_rate(k):
        return lambda x, a: a * jnp.exp(-k * x)

    assert canonical_function(with_rate(1.0)) is canonical_function(with_rate(1.0))
    assert canonical_function(with_rate(1.0)) is not canonical_function(with_rate(2.0))
    assert canonical_function(with_rate(1)) is not canonical_function(with_rate(1.0))  # types
    arr = np.ones(3)
    closing_over_array = lambda x, a: a * arr  # noqa: E731
    assert canonical_function(closing_over_array) is closing_over_array  # left alone

    model = lambda x, a: a * jnp.exp(-K_GLOBAL * x)  # noqa: E731
    x = np.linspace(0.0, 4.0, 50)
    try:
        for k in (1.3, 2.0, 1.3):
            K_GLOBAL = k
            popt, _ = curvax.curve_fit(model, x, 3.0 * np.exp(-k * x), p0=[1.0])
            np.testing.assert_allclose(popt, [3.0], rtol=1e-10)
    finally:
        K_GLOBAL = 1.3
    copy = canonical_function(model)
    assert copy(np.float64(0.0), 2.0) == model(np.float64(0.0), 2.0)
    assert copy.__name__ == model.__name__ and copy.__qualname__ == model.__qualname__


def test_chunked_and_streaming_fits_see_a_changed_global_and_reuse_kernels() -> None:
    """The chunked and streaming entry points key their chunk kernels by the model too:
    refitting after `K_GLOBAL = 2.0` returned the amplitude for the old rate there, and
    a lambda written anew per call compiled a new chunk kernel each time."""
    global K_GLOBAL
    import jax.numpy as jnp

    import curvax
    from curvax.scale import host_reduce

    x = np.linspace(0.0, 4.0, 300)
    model = lambda x, a: a * jnp.exp(-K_GLOBAL * x)  # noqa: E731
    try:
        for k in (1.3, 2.0):
            K_GLOBAL = k
            y = 3.0 * np.exp(-k * x)
            res = curvax.fit_chunked(model, x, y=y, p0=[1.0], chunk_size=128)
            np.testing.assert_allclose(res.popt, [3.0], rtol=1e-10)
            popt, _ = curvax.curve_fit_large(model, x, y, p0=[1.0], chunk_size=128)
            np.testing.assert_allclose(popt, [3.0], rtol=1e-10)
            opt = curvax.StreamingOptimizer(model, [1.0])
            np.testing.assert_allclose(opt.fit(x, y).popt, [3.0], rtol=1e-10)
        # online mode: one optimizer, the global changed between batches; at the exact
        # amplitude the cost is zero for whichever rate is current (it was 9.6)
        online = curvax.StreamingOptimizer(model, [3.0], curvax.StreamingConfig(optimizer="adam"))
        for k in (1.3, 2.0):
            K_GLOBAL = k
            state = online.update(x, 3.0 * np.exp(-k * x))
            assert state.cost < 1e-20
            np.testing.assert_allclose(state.params, [3.0], rtol=1e-6)
    finally:
        K_GLOBAL = 1.3

    kernels = []
    for rate in (1.3, 0.7, 1.1):
        res = curvax.fit_chunked(lambda x, a, b: a * jnp.exp(-b * x), x,
                                 y=2.0 * np.exp(-rate * x), p0=[1, 1], chunk_size=128)
        np.testing.assert_allclose(res.popt, [2.0, rate], rtol=1e-8)
        kernels.append(len(host_reduce._KERNEL_CACHE))
    assert kernels[1:] == kernels[:1] * 2  # chunk kernels compiled for the first fit only
