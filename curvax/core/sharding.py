"""The reduction over several devices: data sharded on a mesh, only factors travel.

A multi-device fit splits the N data points into D equal shards, one per device of a
one-axis :class:`jax.sharding.Mesh`.  Inside the compiled solver every reduction (see
:mod:`curvax.core.reduction`) runs as a ``shard_map``:

1. each device reduces its own shard to ``(cost_d, T_d, n_nonfinite_d)``, where
   ``T_d`` is the (p+1)×(p+1) triangular factor of its rows of ``[J̃ | r̃]``;
2. the costs and counts are summed (``psum``) and the D factors are gathered
   (``all_gather``: D·(p+1)² numbers, whatever N is);
3. every device forms the factor of the stacked ``[T_1; …; T_D]`` by one Householder
   QR — the exact factor of the whole data set up to rounding (the same merge rule as
   the chunked fit) — so the solver state stays replicated and identical everywhere.

The trust-region iteration above the reduction is unchanged, so the multi-device fit
reaches the single-device answer.  Data whose length is not a multiple of D are padded
with masked (zero-weight) points by the callers.

Devices are chosen by the ``devices`` argument of the fitting functions, resolved here
by :func:`resolve_mesh`: ``None`` (one device: the default), ``'all'``
(``jax.devices()``, i.e. every device of every process under
``jax.distributed.initialize``), a positive integer k (the first k devices), a sequence
of :class:`jax.Device`, or a one-axis :class:`jax.sharding.Mesh`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from curvax.core.reduction import Reduction, triangularize

Array = jax.Array

AXIS = "points"


def resolve_mesh(devices: Any) -> Mesh | None:
    """A one-axis :class:`Mesh` from the ``devices`` argument (``None`` → no sharding).

    Raises
    ------
    ValueError
        For an unknown string, a non-positive or too large count, an empty or
        duplicated device list, or a mesh with more than one axis.
    TypeError
        For anything else.
    """
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1:
            raise ValueError(
                f"devices: expected a mesh with one axis, got axes {devices.axis_names}"
            )
        return devices
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices: expected 'all', an integer or devices, got {devices!r}")
        chosen = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices: asked for {int(devices)} devices but {len(available)} are "
                f"available ({available[0].platform}); set XLA_FLAGS="
                "--xla_force_host_platform_device_count=K to simulate K CPU devices"
            )
        chosen = list(available[: int(devices)])
    elif isinstance(devices, Sequence) and not isinstance(devices, (str, bytes)):
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices: the list of devices is empty")
        if not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError("devices: a list must hold jax.Device objects (from jax.devices())")
        if len({d.id for d in chosen}) != len(chosen):
            raise ValueError("devices: the list holds the same device twice")
    else:
        raise TypeError(
            "devices: expected None, 'all', a positive integer, a list of jax devices or a "
            f"jax.sharding.Mesh, got {type(devices).__name__}"
        )
    return Mesh(np.array(chosen), (AXIS,))


def mesh_size(mesh: Mesh | None) -> int:
    """Number of devices of ``mesh`` (1 when there is none)."""
    return 1 if mesh is None else int(mesh.devices.size)


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ≥ ``n``."""
    return -(-n // multiple) * multiple


def point_specs(data: dict, x_axis: int, axis: str = AXIS) -> dict:
    """PartitionSpecs of a pointwise data dict: points split over the mesh axis ``axis``.

    ``x`` is split along its points axis (``x_axis``: 0 or -1), ``y``, ``w``, ``mask``
    and the per-point Jacobian pattern ``sparsity`` along their first axis; everything
    else (``p_full``) is replicated.
    """

    def x_spec(a: Any) -> P:
        nd = np.ndim(a)
        if nd <= 1:
            return P(axis)
        spec: list[Any] = [None] * nd
        spec[x_axis] = axis
        return P(*spec)

    specs: dict[str, Any] = {}
    for key, val in data.items():
        if val is None:
            specs[key] = None
        elif key == "x":
            specs[key] = jax.tree.map(x_spec, val)
        elif key in ("y", "w", "mask", "sparsity"):  # one entry (or row) per point
            specs[key] = P(axis)
        else:
            specs[key] = jax.tree.map(lambda _: P(), val)
    return specs


def is_multi_process(mesh: Mesh | None) -> bool:
    """True when ``mesh`` holds devices of more than one process (multi-host)."""
    return mesh is not None and len({d.process_index for d in mesh.devices.flat}) > 1


def local_device_count(mesh: Mesh) -> int:
    """Number of devices of ``mesh`` that belong to this process."""
    me = jax.process_index()
    return sum(d.process_index == me for d in mesh.devices.flat)


def agree_on_counts(n_local: int) -> tuple[int, int]:
    """``(largest, total)`` point count over all processes (a collective: all must call)."""
    from jax.experimental import multihost_utils

    counts = np.asarray(multihost_utils.process_allgather(np.array([n_local], np.int64)))
    return int(counts.max()), int(counts.sum())


def broadcast_from_first(a: np.ndarray) -> np.ndarray:
    """Process 0's value of ``a`` on every process (a collective: all must call)."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(a)))


def place(data: dict, mesh: Mesh, x_axis: int) -> dict:
    """Put a pointwise data dict on the mesh, each device holding its shard of points.

    On a mesh spanning several processes (``jax.distributed``) each process passes its
    own points (padded to the same length on every process) and the global arrays are
    assembled from the local parts.  Call inside the precision scope of the fit
    (float64 arrays stay float64).
    """
    specs = point_specs(data, x_axis, mesh.axis_names[0])
    multi = is_multi_process(mesh)

    def put(a: Any, spec: P) -> Array:
        sharding = NamedSharding(mesh, spec)
        if multi:
            return jax.make_array_from_process_local_data(sharding, np.asarray(a))
        return jax.device_put(a, sharding)

    out = {}
    for key, val in data.items():
        out[key] = None if val is None else jax.tree.map(put, val, specs[key])
    return out


def fetch_replicated(tree: Any) -> Any:
    """Host copy of a tree of replicated arrays (also when they span several processes)."""

    def get(a: Any) -> Any:
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(a.addressable_data(0))
        return np.asarray(a)

    return jax.tree.map(get, tree)


def local_rows(a: Array) -> np.ndarray:
    """This process's rows of a global array split along its first axis, in order."""
    if a.is_fully_addressable:
        return np.asarray(a)
    shards = sorted(a.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen: set = set()
    parts = []
    for sh in shards:
        start = sh.index[0].start or 0
        if start not in seen:  # replicated copies of the same rows appear once
            seen.add(start)
            parts.append(np.asarray(sh.data))
    return np.concatenate(parts)


def sharded_reducer(
    make_local: Callable[[dict, Array], Callable[[Array], Reduction]],
    mesh: Mesh,
    data: dict,
    f_scale: Array,
    x_axis: int,
) -> Callable[[Array], Reduction]:
    """Reduction over data sharded on ``mesh`` (see the module docstring).

    ``make_local(local_data, f_scale)`` builds the single-device reduction of one shard
    (e.g. :func:`curvax.core.problem.pointwise_reducer` over the shard's points).  The
    result is replicated: the same :class:`Reduction` on every device.
    """
    axis = mesh.axis_names[0]
    specs = point_specs(data, x_axis, axis)

    def body(local: dict, fs: Array, p: Array) -> Reduction:
        red = make_local(local, fs)(p)
        k = red.factor.shape[0]
        factors = jax.lax.all_gather(red.factor, axis)  # (D, p+1, p+1)
        return Reduction(
            jax.lax.psum(red.cost, axis),
            triangularize(factors.reshape(-1, k)),
            jax.lax.psum(red.n_nonfinite, axis),
        )

    mapped = jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(specs, P(), P()),
        out_specs=Reduction(P(), P(), P()),
        # The outputs are replicated by construction (psum, and the same QR of the same
        # gathered factors on every device); JAX cannot infer that through the QR.
        check_vma=False,
    )
    return lambda p: mapped(data, f_scale, p)
