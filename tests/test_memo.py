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
