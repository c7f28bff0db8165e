"""Host memory for the copies a fit makes of its data: 64-byte aligned, and reused.

**Alignment** (:func:`aligned`, :func:`aligned_empty`).  ``jax.jit`` on a CPU may read
NumPy arguments in place, and vectorised kernels can sum in an order that depends on
where the data start (unaligned leading elements are peeled off).  NumPy only
guarantees 16-byte alignment; aligning every argument makes results independent of
where the caller's arrays happen to lie.

**Reuse** (:class:`BufferPool`, :func:`pooled_empty`).  A fit copies its data into new
arrays: padded to a size bucket (:func:`curvax.curve_fit.pad_points`), aligned, or cut
into per-thread parts.  Memory of a megabyte or more comes fresh from the operating
system at every fit (glibc maps it when allocated and unmaps it when released), and the
first write to each page then costs a page fault.  Measured on the 2-core VM
(exponential model, warm fits, 2026-11-23): 217 faults and 0.5 ms of a 5.7 ms fit at
10⁵ points, 583 faults and 3.6 ms of a 34 ms fit at 10⁶.  The pool keeps such buffers
and hands one out again only once nothing refers to it any more: its CPython reference
count is back to the pool's own.  A buffer still in use, by a view the caller kept, a
device array that shares its memory (``jax.device_put`` and ``jax.jit`` read aligned
NumPy arrays in place and hold a reference while they do) or a pending computation, is
never handed out twice; it only makes the pool allocate another.

JAX lets go of a program's NumPy arguments on one of its own threads, where no Python
object may be released; jaxlib queues those references and drops them at the next
garbage collection (JAX registers a ``gc`` callback for it).  Until then the previous
fit's copies look in use, and successive fits alternated between two sets of buffers,
the second fit after a cold one paying fresh page faults for all of it.  So before
allocating a buffer of at least :data:`COLLECT_BYTES` while one of that size is still
referenced, the pool runs ``gc.collect(0)`` (the youngest generation: 0.05-0.2 ms here)
and looks again.  A buffer the caller really holds (a kept view, a result) stays
untouched.

The pool holds at most ``CURVAX_HOST_BUFFER_MB`` MiB (read once, at import; default
512, enough for two sets of a 10⁷-point fit, 2 × 189 MB, as when the caller keeps the
previous fit's arrays alive; ``0`` turns reuse off).  Free buffers are dropped, least
recently used first, to make room; a request larger than the limit gets an unpooled
array.
Buffers under 64 KiB are not pooled (malloc recycles those without faults).
:func:`release_host_buffers` (``curvax.release_host_buffers``) drops the free ones.
"""

from __future__ import annotations

import gc
import math
import os
import sys

import numpy as np

from curvax.core.locks import ForkSafeLock

ALIGNMENT = 64
MIN_POOLED_BYTES = 1 << 16
#: Smallest buffer for which a miss runs a garbage collection first (BufferPool.empty).
#: Measured on the 2-core VM (exponential model, curve_fit, the first warm fit after the
#: cold one, without → with): 3·10⁵ points (2.6 MB copies) 15-16 → 12.6-12.9 ms, 10⁶
#: 41-69 → 29-30 ms, 10⁷ 507 → 252 ms; a youngest-generation collection costs
#: 0.05-0.2 ms, a fresh MiB ~256 page faults.
COLLECT_BYTES = 1 << 20
DEFAULT_LIMIT_MB = 512


def _address(a: np.ndarray) -> int:
    """Address of the first element of ``a`` (cheaper to read than ``a.ctypes.data``)."""
    return a.__array_interface__["data"][0]


def _view(raw: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``shape``/``dtype`` view of the first aligned bytes of the uint8 buffer ``raw``."""
    nbytes = math.prod(shape) * dtype.itemsize
    off = (-_address(raw)) % ALIGNMENT
    return raw[off : off + nbytes].view(dtype).reshape(shape)


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new uninitialised C-contiguous array whose data start on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.empty(math.prod(shape) * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    return _view(raw, shape, dtype)


class BufferPool:
    """Aligned host buffers handed out again once no array refers to them.

    Parameters
    ----------
    max_bytes : int
        Most bytes the pool keeps (0: it keeps none, and :meth:`empty` is
        :func:`aligned_empty`).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._buffers: list[np.ndarray] = []  # uint8 buffers, least recently used first
        self._lock = ForkSafeLock()  # a forked child gets it back unlocked

    @property
    def nbytes(self) -> int:
        """Bytes the pool holds (free buffers and those in use)."""
        return sum(b.nbytes for b in self._buffers)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised, C-contiguous, 64-byte aligned array of ``shape``/``dtype``.

        Its memory is a pooled buffer no array refers to any more when there is one of
        the right size (the most recently used: likeliest still in cache), else a new
        one (kept in the pool when the limit allows).  Before allocating a buffer of at
        least :data:`COLLECT_BYTES` while one of that size is still referenced, it runs
        a youngest-generation garbage collection and looks again (module docstring:
        references JAX dropped on its own threads are released there).
        """
        dtype = np.dtype(dtype)
        size = math.prod(shape) * dtype.itemsize + ALIGNMENT
        if size < MIN_POOLED_BYTES or size > self.max_bytes:
            return aligned_empty(shape, dtype)
        with self._lock:
            raw = self._reuse(size)
            held = raw is None and size >= COLLECT_BYTES and self._has_size(size)
        if held:
            gc.collect(0)  # outside the lock: collection may run arbitrary finalizers
            with self._lock:
                raw = self._reuse(size)
        if raw is None:
            with self._lock:
                self._make_room(size)
                raw = np.empty(size, dtype=np.uint8)
                if self.nbytes + size <= self.max_bytes:
                    self._buffers.append(raw)
        return _view(raw, shape, dtype)

    def _reuse(self, size: int) -> np.ndarray | None:
        """The most recently used free buffer of ``size`` bytes, marked used again; None
        if there is none (call with the lock held)."""
        for i in reversed(range(len(self._buffers))):
            if self._buffers[i].nbytes == size and self._free(i):
                raw = self._buffers.pop(i)
                self._buffers.append(raw)  # now the most recently used
                return raw
        return None

    def _has_size(self, size: int) -> bool:
        return any(b.nbytes == size for b in self._buffers)

    def _make_room(self, size: int) -> None:
        """Drop free buffers, least recently used first, until ``size`` more bytes fit."""
        total = self.nbytes
        i = 0
        while total + size > self.max_bytes and i < len(self._buffers):
            if self._free(i):
                total -= self._buffers.pop(i).nbytes
            else:
                i += 1

    def _free(self, i: int) -> bool:
        """Whether no array refers to buffer ``i``: its only references are the pool's
        list and getrefcount's argument (a view of it anywhere adds one)."""
        return sys.getrefcount(self._buffers[i]) == 2

    def clear(self) -> int:
        """Drop every buffer (those still in use live on with their arrays); the bytes
        of the free ones, now returned to the allocator."""
        with self._lock:
            freed = sum(self._buffers[i].nbytes for i in range(len(self._buffers)) if self._free(i))
            self._buffers.clear()
        return freed


def _limit_from_environment() -> int:
    raw = os.environ.get("CURVAX_HOST_BUFFER_MB", str(DEFAULT_LIMIT_MB))
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not (mb >= 0 and math.isfinite(mb)):
        raise ValueError(f"CURVAX_HOST_BUFFER_MB must be a number of MiB ≥ 0, got {raw!r}")
    return int(mb * 2**20)


POOL = BufferPool(_limit_from_environment())


def pooled_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """:meth:`BufferPool.empty` of the process's pool (see the module docstring)."""
    return POOL.empty(shape, dtype)


def release_host_buffers() -> int:
    """Give back the host memory curvax keeps for reuse by later fits.

    Fits copy their data into padded, aligned buffers, which curvax keeps (up to
    ``CURVAX_HOST_BUFFER_MB``, default 512 MiB) so that the next fit does not pay a page
    fault per 4 KiB of new memory.  This drops them; the next fit allocates anew.

    Returns
    -------
    int
        Bytes released (buffers still used by a live array are dropped from the pool
        but freed only with that array).
    """
    return POOL.clear()


def aligned(a: np.ndarray) -> np.ndarray:
    """``a`` if its data start on a 64-byte boundary and are C-contiguous, else such a
    copy (in pooled memory)."""
    if a.flags.c_contiguous and _address(a) % ALIGNMENT == 0:
        return a
    out = pooled_empty(a.shape, a.dtype)
    out[...] = a
    return out
