"""The reduction of an in-memory fit on several CPU cores.

XLA's CPU back end runs the reduction's loop over blocks (a ``lax.scan``) on one core,
and a fit spends almost all its time there once N is large.  Two compiled programs over
the two halves of the data, called from two threads, run side by side: for 10⁷ points
of the exponential model one pass took 51.6 ms as one program and 27.5 ms as two halves
on two threads (2-core VM, 2026-11-23).

How it works: the fit program's reduction (:func:`curvax.core.problem.pointwise_reducer`
with ``gram_total``) asks the host, through ``jax.pure_callback``, for the cost and
Gram matrix ``[J̃ r̃]ᵀ[J̃ r̃]`` of all points.  The host (:class:`PartedGram`) has split
the data into ``workers`` contiguous parts once per fit (views, cut at 64-byte
boundaries: nothing is copied), computes each part's ``(cost, G)`` with one compiled
part program (:func:`curvax.core.problem.pointwise_gram`) on its own thread, and adds
the parts up in a fixed order, so the answer does not depend on thread timing.  The
conditioning test of the Gram factor and the QR fallback (which also counts non-finite
entries) stay in the fit program, unchanged.

Where the callbacks run matters.  XLA:CPU executes a program on the calling thread when
its cost analysis deems it cheap (under 1000 flops; the fit program, whose work lies in
loops, LAPACK calls and callbacks, is counted so, seen up to 25 parameters) and no
earlier computation is still pending; otherwise on one of its own
threads, of which it keeps one per core.  A callback arriving on one of those keeps it
waiting while the parts run, and the two part programs then share the one thread left:
a threaded fit became slower than one program (three peaks at 10⁶ points: 200 against
120 ms) when a change to the fit program's arguments made it go there in about half the
fits.  ``tests/test_threaded.py`` checks that the callbacks arrive on the calling thread.

Only a part program free of custom calls runs on threads (jaxlib's LAPACK kernels can
deadlock two concurrent calls; :func:`custom_call_free`); the fit then falls back to the
one-program reduction.  float64 crosses the callback as raw bits (:mod:`curvax.core.wire`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from curvax.core.gram_kernel import TARGETS as GRAM_TARGETS
from curvax.core.host_buffers import pooled_empty
from curvax.core.memo import BoundedCache, hashable
from curvax.core.wire import (
    TokenRegistry,
    from_host,
    from_wire,
    host_out,
    to_wire,
    wire_shape,
)

Array = jax.Array

#: Fewest points (after bucket padding) for which a fit is split over threads by
#: default.  Measured on the 2-core VM (exponential model, whole fit, 1 → 2 threads,
#: with the first part on the calling thread and padding blocks skipped): 2·10⁵ points
#: 9.5 → 13 ms, 4·10⁵ 18.8 → 18.4 ms, 7·10⁵ 27.9 → 25.9 ms, 10⁶ 37 → 28–32 ms, 3·10⁶
#: 136 → 87 ms, 10⁷ 470 → 340 ms.  Below ~10⁶ the fixed costs of a threaded fit
#: (callback hand-offs, part setup: a few ms) eat what the second core saves.
MIN_POINTS = 1 << 20

#: Custom calls known not to run work on XLA's thread pool: sharding annotations, and
#: curvax's own Gram product (:mod:`curvax.core.gram_kernel`: a plain loop on the
#: calling thread, no state).
HARMLESS_CUSTOM_CALLS = (
    "Sharding",
    "SPMDFullToShardShape",
    "SPMDShardToFullShape",
    *GRAM_TARGETS.values(),
)
_SAFE: BoundedCache[bool] = BoundedCache(256)


def default_workers() -> int:
    """The cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity call outside Linux
        return max(1, os.cpu_count() or 1)


def custom_call_free(lowered_text: str) -> bool:
    """Whether a program (its StableHLO text) may run on several threads at once.

    Not when it holds a custom call (e.g. a LAPACK SVD or QR, or one in the user's
    model): jaxlib's batched LAPACK kernels split their batch over XLA's intra-op thread
    pool and wait for it, and two such calls at once can each hold the pool's threads
    the other waits for (seen: a deadlock with two threads on a 2-core CPU, jaxlib
    0.10).  Programs of element-wise code and small matrix products have no such wait.
    """
    targets = re.findall(r'custom_call @([\w.$-]+)|call_target_name = "([^"]+)"', lowered_text)
    return {a or b for a, b in targets} <= set(HARMLESS_CUSTOM_CALLS)


def safe_on_threads(key: Any, lowered_text: Callable[[], str]) -> bool:
    """:func:`custom_call_free` of ``lowered_text()``, memoised under ``key`` (program
    and argument shapes)."""
    return _SAFE.get_or_make(hashable(key), lambda: custom_call_free(lowered_text()))


def compile_in_background(lowered: Any) -> Future:
    """``lowered.compile()`` on a new thread; the :class:`~concurrent.futures.Future`
    of the compiled program.

    A threaded fit compiles two programs, the fit and its part program.  XLA releases
    the GIL while it compiles, so the part program compiles on the second core while
    the calling thread traces and compiles the fit (and no two threads that call it
    first compile it twice).
    """
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(lowered.compile())
        except BaseException as err:  # re-raised where the result is awaited
            future.set_exception(err)

    threading.Thread(target=work, name="curvax-compile", daemon=True).start()
    return future


def part_length(n: int, parts: int, step: int) -> int:
    """``⌈n / parts⌉`` rounded up to a multiple of ``step``: the points of one part."""
    size = -(-n // parts)
    return -(-size // step) * step


def split_points(n: int, parts: int, itemsize: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``0 … n-1``, cut at 64-byte boundaries."""
    size = part_length(n, parts, max(1, 64 // itemsize))
    bounds = [min(n, i * size) for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def _part(data: dict, lo: int, hi: int, x_axis: int) -> dict:
    """Points ``lo … hi-1`` of ``data`` (views); ``p_full`` is shared, not split, and
    ``n_real`` (the leading real points) becomes the part's own count."""
    out = {}
    for key, value in data.items():
        if key == "p_full" or value is None:
            out[key] = value
        elif key == "n_real":  # real points come first: this part's share of them
            out[key] = np.int32(min(max(int(value) - lo, 0), hi - lo))
        elif key == "x":
            index = [slice(None)] * value.ndim
            index[x_axis] = slice(lo, hi)
            out[key] = value[tuple(index)]
        else:
            out[key] = value[lo:hi]
    return out


def balanced_windows(n: int, n_real: int, parts: int, step: int) -> list[tuple[int, int]] | None:
    """``(start, real)`` of ``parts`` equal-length windows of ``n`` padded points that
    share the ``n_real`` leading real points evenly, or None when they do not fit.

    With size buckets the real points fill only the front of the data (up to 25 % is
    padding above 2¹⁷ points).  Cutting the padded length in equal parts would give the
    first thread all real points and the last one most of the padding, which it skips:
    the pass then takes as long as the first part (1 048 577 points in a bucket of
    1 310 720, two parts: 655 360 real points against 393 217).  Instead window ``i``
    starts at ``i·n_real/parts`` (rounded down to ``step`` points, a 64-byte boundary)
    and counts its first ``real`` points, up to the next window's start.  Every window
    has the length of an equal split, so one compiled part program serves them all.  The
    windows overlap; each point is counted once.
    """
    length = part_length(n, parts, step)
    starts = [(i * n_real // parts) // step * step for i in range(parts)]
    ends = [*starts[1:], n_real]
    if starts[-1] + length > n or any(e - a > length for a, e in zip(starts, ends, strict=True)):
        return None
    return [(a, e - a) for a, e in zip(starts, ends, strict=True)]


def split_data(data: dict, workers: int, x_axis: int) -> list[dict]:
    """``data`` cut into ``workers`` parts, each on the device once per fit (a NumPy
    view would be handed over on every call): :func:`balanced_windows` over the real
    points when ``data`` says how many lead (``n_real``, with its ``mask``), otherwise
    contiguous ranges (:func:`split_points`)."""
    n = data["y"].shape[0]
    n_real, mask = data.get("n_real"), data.get("mask")
    windows = None
    if n_real is not None and mask is not None:
        windows = balanced_windows(n, int(n_real), workers, 8)
    if windows is None:
        return [
            jax.device_put(_part(data, lo, hi, x_axis)) for lo, hi in split_points(n, workers, 8)
        ]
    length = part_length(n, workers, 8)
    parts = []
    for start, real in windows:
        part = _part(data, start, start + length, x_axis)
        own = pooled_empty(part["mask"].shape, np.dtype(bool))
        own[:real] = part["mask"][:real]
        own[real:] = False  # the next window's points are not ours
        part["mask"], part["n_real"] = own, np.int32(real)
        parts.append(jax.device_put(part))
    return parts


class PartedGram:
    """``q ↦ (cost, G)`` of all points, its ``parts`` (:func:`split_data`) reduced on
    threads.

    ``programs[i](parts[i], f_scale, q) -> (cost, G)`` runs the compiled part program
    (the last part of an uneven split has its own).
    """

    def __init__(
        self,
        programs: list[Callable[..., tuple[Array, Array]]],
        parts: list[dict],
        f_scale: Any,
        dtype: np.dtype,
    ) -> None:
        self.parts = parts
        self.programs = programs
        self.f_scale = f_scale
        self.dtype = np.dtype(dtype)
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.parts) - 1))
        self.error: BaseException | None = None

    def _one(self, i: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with jax.enable_x64(self.dtype == np.float64):
            cost, G = self.programs[i](self.parts[i], self.f_scale, q)
        # np.asarray waits for each output (1.4 µs for both against 14 µs for
        # jax.device_get, which walks them as a pytree)
        return np.asarray(cost), np.asarray(G)

    def __call__(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The first part runs on the calling thread, the others on the pool's threads
        # (measured: one hand-off fewer per pass, and the calling thread would only wait).
        futures = [self.pool.submit(self._one, i, q) for i in range(1, len(self.parts))]
        results = [self._one(0, q)] + [f.result() for f in futures]
        cost = results[0][0].copy()
        G = results[0][1].copy()
        for c, g in results[1:]:
            cost += c
            G += g
        return cost, G

    def callback(self, q_wire: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry point for ``jax.pure_callback``; an error is kept to re-raise later."""
        try:
            cost, G = self(from_wire(q_wire, self.dtype))
        except BaseException as err:
            self.error = err
            cost = np.full(1, np.nan)
            G = np.full((q_wire.shape[0] + 1,) * 2, np.nan)
        return host_out(np.reshape(cost, (1,)), self.dtype), host_out(G, self.dtype)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


_ACTIVE = TokenRegistry()


@contextlib.contextmanager
def active(reducer: PartedGram) -> Iterator[np.int32]:
    """Make ``reducer`` reachable from fit programs under the token this yields; its
    threads are shut down at the end."""
    try:
        with _ACTIVE.registered(reducer) as token:
            yield token
    finally:
        reducer.close()


def _dispatch(token: np.ndarray, q_wire: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _ACTIVE.get(token).callback(q_wire)


def host_gram(token: Array, q: Array) -> tuple[Array, Array]:
    """In a fit program: ``(cost, G)`` of all points from the registered :class:`PartedGram`."""
    dtype = np.dtype(q.dtype)
    k = q.shape[0] + 1
    shapes = (wire_shape((1,), dtype), wire_shape((k, k), dtype))
    c, G = jax.pure_callback(_dispatch, shapes, token, to_wire(q))
    return from_host(c, dtype)[0], from_host(G, dtype).astype(q.dtype)


def zero_token() -> np.int32:
    """The token of a fit that reduces in one program (no :class:`PartedGram`)."""
    return np.int32(0)

