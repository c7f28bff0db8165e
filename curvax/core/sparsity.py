"""Sparse Jacobians: column grouping (Curtis–Powell–Reid) and pattern detection.

When most entries of the Jacobian ``J`` (m × n) are known to be zero, fewer than n
directional derivatives determine it.  Let ``P`` be the boolean *sparsity pattern*:
``P[i, j]`` is True where ``∂r_i/∂p_j`` may be non-zero, False where it is declared
to be zero.  Two columns j and k are *structurally orthogonal* when no row has both
``P[i, j]`` and ``P[i, k]``.  Partition the columns into groups ``G_1 … G_c`` of
mutually orthogonal columns (a colouring of the column-intersection graph, whose
edges are the non-zero off-diagonal entries of ``PᵀP``).  For each group the seed
``s_g = Σ_{j ∈ G_g} e_j`` gives, with one forward-mode pass,

    b_g = J s_g = Σ_{j ∈ G_g} J[:, j],

and in each row i at most one column j of ``G_g`` has ``P[i, j]`` True, so

    J[i, j] = b_{c(j)}[i]   if P[i, j],     0 otherwise,

where ``c(j)`` is the group of column j.  The Jacobian costs c passes instead of n
(Curtis, Powell & Reid 1974).  Finite differences group the same way: with steps
``h_j`` and ``s_g = Σ_{j ∈ G_g} h_j e_j``, ``J[i, j] = (r(p + s_g) − r(p))[i] / h_j``.

The pattern is a *declaration*: entries outside it are taken as zero.  If a column
of the group has a non-zero derivative where the pattern says False, that value is
added to the entry of the column the pattern assigns to that row — the Jacobian is
exact only when the declaration is true.

Colouring is greedy, largest degree first (Welsh & Powell): columns are visited in
order of decreasing number of neighbours and each gets the smallest group not used by
a neighbour already placed.  The number of groups is at least the largest number of
columns sharing one row.

:func:`detect_pattern` finds a pattern numerically: the union of the non-zero entries
of the dense Jacobian at several parameter points.  An entry that is zero at every
point tried but not elsewhere (a derivative zero by accident, or a support that moves
with the parameters) is missed, which is why several random points are used; models
whose pattern depends on the parameter values need a pattern given by hand.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.locks import ForkSafeLock

Array = jax.Array

AUTO_POINTS = 4  # parameter points used by the automatic detection (p0 and 3 random)
#: Detected patterns kept per model function (the least recently used is dropped first).
DETECTED_PER_MODEL = 8


def greedy_colouring(pattern: np.ndarray) -> tuple[int, ...]:
    """Group index of each column of ``pattern`` (m, n): structurally orthogonal groups.

    Largest-degree-first greedy colouring of the column-intersection graph.  Returns a
    tuple of n ints in ``0 … c−1``; columns in the same group share no row.
    """
    P = np.asarray(pattern, dtype=bool)
    n = P.shape[1]
    Pf = P.astype(np.float32)
    conflict = (Pf.T @ Pf) > 0
    np.fill_diagonal(conflict, False)
    degree = conflict.sum(axis=1)
    order = np.argsort(-degree, kind="stable")
    colour = np.full(n, -1, dtype=np.int64)
    for j in order:
        used = set(colour[conflict[j]].tolist())
        c = 0
        while c in used:
            c += 1
        colour[j] = c
    return tuple(int(c) for c in colour)


def n_groups(colours: tuple[int, ...]) -> int:
    """Number of column groups (forward passes per Jacobian)."""
    return max(colours) + 1


def seed_matrix(colours: tuple[int, ...], dtype: jnp.dtype) -> Array:
    """(c, n) seeds: row g is the sum of the unit vectors of the columns of group g."""
    col = np.asarray(colours)
    return jnp.asarray(np.arange(n_groups(colours))[:, None] == col[None, :], dtype=dtype)


def compressed_value_and_jacobian(
    resid: Callable[[Array], Array],
    p: Array,
    mode: str,
    colours: tuple[int, ...],
    pattern: Array,
    fd_steps: Callable[[Array, str], Array] | None = None,
) -> tuple[Array, Array]:
    """Residuals and Jacobian (m, n) from c grouped passes (see module docstring).

    ``mode`` is ``'fwd'`` (forward-mode AD, one linearisation and c tangent passes) or
    ``'2-point'`` / ``'3-point'`` (grouped finite differences with the steps of
    ``fd_steps``); ``pattern`` is the (m, n) boolean pattern of these rows.
    """
    seeds = seed_matrix(colours, p.dtype)
    col = np.asarray(colours)
    if mode == "fwd":
        r, push = jax.linearize(resid, p)
        B = jax.vmap(push, out_axes=1)(seeds)  # (m, c)
        return r, jnp.where(pattern, B[:, col], 0.0)
    if mode in ("2-point", "3-point"):
        assert fd_steps is not None
        r = resid(p)
        h = fd_steps(p, mode)
        steps = seeds * h[None, :]
        fp = jax.vmap(lambda e: resid(p + e))(steps)  # (c, m)
        if mode == "2-point":
            D = (fp - r[None, :]).T
        else:
            fm = jax.vmap(lambda e: resid(p - e))(steps)
            D = (0.5 * (fp - fm)).T
        return r, jnp.where(pattern, D[:, col] / h[None, :], 0.0)
    raise ValueError(
        f"jac_sparsity: column grouping works with jac='fwd' (automatic differentiation) "
        f"or '2-point'/'3-point' finite differences, not {mode!r}"
    )


def sample_points(p0: np.ndarray, lb: np.ndarray, ub: np.ndarray, k: int = AUTO_POINTS):
    """``p0`` and ``k − 1`` random points around it, inside the bounds (fixed seed).

    Each parameter is moved by up to 10 % of ``|p0_j| + 0.1`` (uniformly at random), then
    clipped into ``[lb, ub]``; the draws are reproducible (seed 0).
    """
    rng = np.random.default_rng(0)
    pts = [np.asarray(p0, dtype=np.float64)]
    for _ in range(k - 1):
        u = rng.uniform(-1.0, 1.0, size=p0.shape)
        pts.append(np.clip(p0 + 0.1 * (np.abs(p0) + 0.1) * u, lb, ub))
    return np.stack(pts)


def detect_pattern(
    block_pattern: Callable[[int, int], Array], n_rows: int, block: int
) -> np.ndarray:
    """Union over the sample points of the non-zero (or non-finite) Jacobian entries.

    ``block_pattern(start, size)`` returns the (size, n) pattern of rows
    ``start … start+size−1`` (one compiled program per block size, reused by later fits
    of the same model: :func:`_pointwise_block_pattern`); rows are visited ``block`` at
    a time, so the full dense Jacobian is never held.  Returns the (n_rows, n) boolean
    pattern.
    """
    out = [
        np.asarray(block_pattern(start, min(block, n_rows - start)))
        for start in range(0, n_rows, block)
    ]
    return np.concatenate(out, axis=0)


class _Same:
    """A callable as a static argument of ``jax.jit``, equal only to itself (identity).

    Works for callables that cannot be hashed; JAX's cache keeps the object alive while
    its entry exists, so an identity cannot be reused by another object meanwhile.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __hash__(self) -> int:
        return id(self.fn)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.fn is self.fn


def _union_of_nonzeros(J: Array) -> Array:
    """(k, size, n) Jacobians at k points -> (size, n) pattern (non-finite counts)."""
    return jnp.any((J != 0) | ~jnp.isfinite(J), axis=0)


@functools.partial(jax.jit, static_argnames=("model", "style", "x_axis", "size"))
def _pointwise_block_pattern(
    x: Array, start: Array, pts: Array, *, model: _Same, style: str, x_axis: int, size: int
) -> Array:
    """Pattern of rows ``start … start+size−1`` of a curve fit's Jacobian at ``pts``.

    The model enters as a static argument, so the program is compiled once per model,
    parameter style and block size, and reused by later fits ('auto' used to compile
    it anew for every fit: ~0.35 s).
    """
    from curvax.core.problem import adapt_model  # (problem imports this module)

    g = adapt_model(model.fn, style)
    xb = jax.lax.dynamic_slice_in_dim(x, start, size, axis=x_axis)
    J = jax.vmap(jax.jacfwd(lambda t: jnp.broadcast_to(g(xb, t), (size,))))(pts)
    return _union_of_nonzeros(J)


@functools.partial(jax.jit, static_argnames=("fun",))
def _residual_pattern(args: Any, kwargs: Any, pts: Array, *, fun: _Same) -> Array:
    """Pattern of the Jacobian of ``fun(p, *args, **kwargs)`` at ``pts`` (compiled once
    per residual function)."""
    J = jax.vmap(jax.jacfwd(lambda t: jnp.atleast_1d(fun.fn(t, *args, **kwargs))))(pts)
    return _union_of_nonzeros(J)


def check_mode(jac_mode: Any, user_jac: Any) -> str:
    """The Jacobian mode to group: 'fwd' (default) or the finite-difference mode."""
    if callable(user_jac) or jac_mode == "host":
        raise ValueError(
            "jac_sparsity: column grouping needs a model JAX can differentiate or a "
            "finite-difference jac ('2-point'/'3-point'); it does not apply to a "
            "callable jac (which already returns the Jacobian) nor to a NumPy-only model"
        )
    if jac_mode == "rev" and user_jac in (None, "auto"):
        return "fwd"  # grouping replaces the reverse-mode choice for few rows
    if jac_mode not in ("fwd", "2-point", "3-point"):
        raise ValueError(
            f"jac_sparsity: column grouping works with jac='fwd' or '2-point'/'3-point', "
            f"not jac={user_jac!r}"
        )
    return jac_mode


def pointwise_pattern(
    spec: Any,
    model: Callable[..., Array],
    style: str,
    x: Any,
    x_axis: int,
    n_rows: int,
    p0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    block: int,
) -> np.ndarray:
    """The (n_rows, n) pattern of a curve fit: validated ``spec``, or detected (``'auto'``).

    Detection differentiates the model (``model`` called in its parameter ``style``,
    :func:`curvax.core.problem.adapt_model`) at :func:`sample_points` on the actual
    ``x`` (rows ``block`` at a time); call it inside the fit's precision scope.  The
    free-parameter check is left to the caller.
    """
    from curvax.core.validation import check_jac_sparsity

    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"jac_sparsity: expected an array, 'auto' or None, got {spec!r}")
        dt = jnp.zeros(()).dtype  # float64 inside an x64 scope, else float32
        key = _detection_key(x, style, x_axis, n_rows, block, dt, p0, lb, ub)
        known = _DETECTED.get(model, key)
        if known is not None:
            return known
        pts = jnp.asarray(sample_points(p0, lb, ub).astype(dt))
        xd = jnp.asarray(x, dtype=dt)
        same = _Same(model)

        def block_pattern(start: int, size: int) -> Array:
            return _pointwise_block_pattern(
                xd, jnp.int32(start), pts, model=same, style=style, x_axis=x_axis, size=size
            )

        pattern = detect_pattern(block_pattern, n_rows, block)
        _DETECTED.put(model, key, pattern)
        return pattern
    return check_jac_sparsity(spec, n_rows, p0.size, np.zeros(p0.size, dtype=bool))


def _detection_key(data: Any, *inputs: Any) -> tuple | None:
    """What a detected pattern depends on besides the model: the values, shapes and
    dtypes of ``data`` (``x``, or the extra arguments of a residual function: a BLAKE2b
    digest of all their bytes) and ``inputs`` (style, axis, rows, block, dtype and the
    ``p0``/bounds arrays, by value).  None (nothing cached) when a leaf of ``data`` is
    not a NumPy array or a Python/NumPy scalar, e.g. a ``jax.Array``."""
    leaves, treedef = jax.tree.flatten(data)
    digest = hashlib.blake2b(digest_size=16)
    parts: list[Any] = [str(treedef)]
    for leaf in leaves:
        if isinstance(leaf, np.ndarray):
            parts.append((leaf.shape, leaf.dtype.str))
            digest.update(np.ascontiguousarray(leaf).view(np.uint8))
        elif isinstance(leaf, (bool, int, float, complex, str, np.generic)):
            parts.append(repr(leaf))
        else:
            return None
    parts.append(digest.hexdigest())
    for v in inputs:
        parts.append(("array", v.shape, v.tobytes()) if isinstance(v, np.ndarray) else str(v))
    return tuple(parts)


class _DetectedPatterns:
    """Patterns found by ``'auto'``, per model (or residual) function, for later fits of
    the same function, ``x`` (or extra arguments), start and bounds (a new ``y`` does
    not change the pattern).

    Detection costs a dense Jacobian at :data:`AUTO_POINTS` parameter points: measured on
    the 2-core VM for the 20-peak, 60-parameter model, 84 ms per fit at 10³ points and
    1.2 s at 10⁵, 3-4 times the fit itself.  Entries are keyed weakly by the model (they
    go with it) and then by :func:`_detection_key`; at most :data:`DETECTED_PER_MODEL`
    per model, least recently used dropped first.  A model that cannot be weakly
    referenced (e.g. a bound method, made anew at each access) is not cached.  The
    arrays handed out are read-only.
    """

    def __init__(self) -> None:
        self._by_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = ForkSafeLock()

    def get(self, model: Callable, key: tuple | None) -> np.ndarray | None:
        if key is None:
            return None
        with self._lock:
            try:
                entries = self._by_model.get(model)
            except TypeError:  # not weakly referenceable
                return None
            if entries is None or key not in entries:
                return None
            entries.move_to_end(key)
            return entries[key]

    def put(self, model: Callable, key: tuple | None, pattern: np.ndarray) -> None:
        if key is None:
            return
        pattern.flags.writeable = False
        with self._lock:
            try:
                entries = self._by_model.setdefault(model, OrderedDict())
            except TypeError:
                return
            entries[key] = pattern
            while len(entries) > DETECTED_PER_MODEL:
                entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._by_model.clear()


_DETECTED = _DetectedPatterns()


def residual_pattern(
    spec: Any,
    fun: Callable[..., Array],
    data_args: tuple,
    m: int,
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
) -> np.ndarray:
    """The (m, n) pattern for ``least_squares``: validated ``spec`` or detected (``'auto'``).

    Detection differentiates ``fun(p, *args, **kwargs)`` at :func:`sample_points`; call
    it inside the fit's precision scope.  The free-parameter check is left to the caller.
    """
    from curvax.core.validation import check_jac_sparsity

    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"jac_sparsity: expected an array, 'auto' or None, got {spec!r}")
        dt = jnp.zeros(()).dtype
        key = _detection_key(data_args, m, dt, x0, lb, ub)
        known = _DETECTED.get(fun, key)
        if known is not None:
            return known
        pts = jnp.asarray(sample_points(x0, lb, ub).astype(dt))
        same = _Same(fun)

        def block_pattern(start: int, size: int) -> Array:
            return _residual_pattern(data_args[0], data_args[1], pts, fun=same)

        pattern = detect_pattern(block_pattern, m, m)
        _DETECTED.put(fun, key, pattern)
        return pattern
    return check_jac_sparsity(spec, m, x0.size, np.zeros(x0.size, dtype=bool))
