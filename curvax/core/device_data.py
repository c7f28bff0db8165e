"""Data that already lie on a device: checked, padded and masked where they are.

A fit of NumPy arrays checks them on the host (finite values, magnitude), pads them to
a size bucket there and hands them to the compiled program, which copies them to the
device.  When ``ydata`` is a ``jax.Array`` (e.g. a detector stream already on a GPU),
bringing it to the host and back costs more than the fit itself: 10⁷ float64 points
are 160 MB each way, and the host-side copies and checks took ~90 % of a 10⁷-point fit
on an H100 (measured, 2026-11-23).  Here the same steps run on the device, each one a
small compiled program, and only a handful of scalars come back:

* :func:`data_stats` — per data set, in one pass: how many points have a non-finite
  ``y``, a non-finite ``x`` coordinate, a NaN in either, and ``max |y|`` (for
  :func:`curvax.core.validation.check_magnitude_value`);
* :func:`pad_device` — the points padded to ``size`` by repeating the last one, as
  :func:`curvax.curve_fit.pad_points` does on the host;
* :func:`mask_device` — ``size`` flags, True for the first ``n`` points.

The padded copies and the mask are compiled per (length, size) and per size; a stream
of data sets of differing length on a device therefore compiles one small padding
program per length (the fit program itself still only per size bucket).
"""

from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class DataStats(NamedTuple):
    """Counts and extreme of a data set, computed on its device (see :func:`data_stats`)."""

    nonfinite_y: int  # points whose y is NaN or ±Inf
    nonfinite_x: int  # points with a NaN or ±Inf x coordinate
    nan_points: int  # points with a NaN in y or in any x coordinate
    max_abs_y: float  # max |y| (NaN when y holds a NaN)


@functools.partial(jax.jit, static_argnames=("x_axis",))
def _stats(x: Array, y: Array, x_axis: int) -> tuple[Array, ...]:
    pts = jnp.moveaxis(x, x_axis, -1).reshape(-1, y.shape[0])
    bad_x = ~jnp.all(jnp.isfinite(pts), axis=0)
    nan_x = jnp.any(jnp.isnan(pts), axis=0)
    return (
        jnp.sum(~jnp.isfinite(y)),
        jnp.sum(bad_x),
        jnp.sum(jnp.isnan(y) | nan_x),
        jnp.maximum(jnp.abs(jnp.max(y)), jnp.abs(jnp.min(y))),
    )


def _x64(*arrays: Array) -> contextlib.AbstractContextManager:
    """Scope in which 64-bit ``arrays`` keep their precision (as :func:`solve.precision`)."""
    wide = any(a.dtype.itemsize == 8 for a in arrays)
    return jax.enable_x64(True) if wide else contextlib.nullcontext()


def data_stats(x: Array, y: Array, x_axis: int) -> DataStats:
    """:class:`DataStats` of ``y`` (N,) and ``x`` (points along ``x_axis``), one transfer."""
    with _x64(x, y):
        counts = jax.device_get(_stats(x, y, x_axis))
    return DataStats(int(counts[0]), int(counts[1]), int(counts[2]), float(counts[3]))


def pad_device(a: Array, size: int, axis: int) -> Array:
    """``a`` padded along ``axis`` to ``size`` by repeating its last point (on its device)."""
    with _x64(a):
        return _pad(a, size, axis)


@functools.partial(jax.jit, static_argnames=("size", "axis"))
def _pad(a: Array, size: int, axis: int) -> Array:
    n = a.shape[axis]
    last = jax.lax.slice_in_dim(a, n - 1, n, axis=axis)
    reps = [1] * a.ndim
    reps[axis] = size - n
    return jnp.concatenate([a, jnp.tile(last, reps)], axis=axis)


@functools.partial(jax.jit, static_argnames=("size",))
def _mask(n: Array, size: int) -> Array:
    return jnp.arange(size) < n


def mask_device(n: int, size: int, like: Array | None = None) -> Array:
    """``size`` flags, True for the first ``n`` (the real points), on ``like``'s device
    (default: JAX's default device)."""
    count = np.int32(n) if like is None else jax.device_put(np.int32(n), like.sharding)
    return _mask(count, size)


def is_device_data(a: object) -> bool:
    """True for a ``jax.Array`` held whole by this process (one device, not sharded)."""
    return isinstance(a, jax.Array) and a.is_fully_addressable and len(a.devices()) == 1
