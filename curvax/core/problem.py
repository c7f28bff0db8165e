"""Problem definition: model adapter, Jacobian strategy and the data reduction.

A *model* is called in one canonical form inside curvax, ``f(x, params)`` with
``params`` a 1-D array; :func:`adapt_model` wraps the forms users write
(``f(x, a, b, c)`` as in SciPy, or ``f(x, params)``).

The residual of point i is ``r_i = w_i · (f(x_i, p) − y_i)`` with ``w_i = 1/σ_i``
(``w_i = 1`` without ``sigma``).  Its Jacobian is obtained, per block of points, by

* ``'fwd'`` — forward-mode automatic differentiation (``jax.linearize`` + one
  batched tangent pass: one fused evaluation of values and all p columns);
* ``'rev'`` — reverse mode (preferable only when a block has fewer rows than p);
* a user callable returning the (n, p) Jacobian of the *model*;
* ``'2-point'`` / ``'3-point'`` — finite differences inside JAX (SciPy's step rules);
* ``'host'`` — for models that JAX cannot trace (written with plain NumPy): values and
  central finite differences are computed in Python through ``jax.pure_callback``.
  This is the documented slow path.

With a declared sparsity pattern, ``'fwd'`` and the finite differences evaluate the
Jacobian with one pass per group of structurally orthogonal columns instead of one per
parameter (:mod:`curvax.core.sparsity`).

:func:`pointwise_reducer` returns the reduction function ``p ↦ Reduction`` for data
whose points are independent (the normal curve-fitting case): the data are visited in
blocks of ``block_size`` points inside one compiled loop, so the N×p Jacobian
never exists in memory.  With several blocks, the Gram matrix of ``[J̃ | r̃]`` is
accumulated first (one small matrix product per block) and its Cholesky factor used
when the column-scaled condition number of ``J̃`` is below 10⁴ (relative error of the
factor ≲ 10⁻⁸); otherwise — or when it is not finite — the reduction is redone with
block QR, which keeps full accuracy at any conditioning and counts non-finite entries.
Each block's Jacobian is taken transposed, (p, k), the layout in which forward mode
produces it, so that the block's Gram matrix is one cache-resident product.
:func:`dense_reducer` does the same for a residual function of the whole parameter
vector (``least_squares``, or a 2-D ``sigma`` that couples points), in a single block.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.materialize import linearize
from curvax.core.reduction import (
    GRAM_MAX_CONDITION,
    GRAM_REJECTED,
    Reduction,
    block_gram,
    block_rows,
    factor_from_gram,
    merge,
    reduce_block,
    reduce_blocks,
    reduce_blocks_gram,
    scaled_condition,
    triangularize,
    used_blocks,
)
from curvax.core.select import where
from curvax.core.separate_rows import jacobian_rows, uses_separate_rows
from curvax.core.sparsity import compressed_value_and_jacobian
from curvax.core.wire import from_host, from_wire, host_out, to_wire, wire_shape

Array = jax.Array

JAC_MODES = ("fwd", "rev", "2-point", "3-point", "host")


# --- model signature ------------------------------------------------------------------


def _positional_names(f: Callable[..., Any]) -> tuple[str, ...] | None:
    """Names of the positional parameters of ``f``'s signature; None when it has
    ``*args`` or cannot be inspected."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    names = []
    for prm in sig.parameters.values():
        if prm.kind == prm.VAR_POSITIONAL:
            return None
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD):
            names.append(prm.name)
    return tuple(names)


_cached_positional_names = functools.lru_cache(maxsize=512)(_positional_names)


def _model_positional_names(f: Callable[..., Any]) -> tuple[str, ...] | None:
    """:func:`_positional_names`, memoised per function (a signature does not change;
    inspecting one costs more than the rest of a warm small fit's checks)."""
    try:
        return _cached_positional_names(f)
    except TypeError:  # unhashable callable
        return _positional_names(f)


def count_model_params(f: Callable[..., Any]) -> int | None:
    """Number of fit parameters implied by ``f(x, a, b, ...)``'s signature, or None.

    Returns None when the signature has ``*args`` or cannot be inspected.
    """
    names = _model_positional_names(f)
    return len(names) - 1 if names else None


def signature_param_names(f: Callable[..., Any]) -> tuple[str, ...] | None:
    """Names of the fit parameters in ``f(x, a, b, ...)``'s signature, or None."""
    names = _model_positional_names(f)
    return names[1:] if names is not None and len(names) > 1 else None


def detect_param_style(f: Callable[..., Any], n_params: int, style: str = "auto") -> str:
    """Decide whether ``f`` takes parameters as separate arguments or as one array.

    ``'args'``: ``f(x, a, b, c)`` (SciPy's form); ``'array'``: ``f(x, params)``.
    With ``'auto'``: a model whose signature has exactly two positional parameters is
    read as ``f(x, params)`` when more than one parameter is fitted; everything else
    as ``'args'``.
    """
    if style in ("args", "array"):
        return style
    if style != "auto":
        raise ValueError(f"param_style: expected 'auto', 'args' or 'array', got {style!r}")
    n_sig = count_model_params(f)
    if n_sig == 1 and n_params > 1:
        return "array"
    return "args"


def adapt_model(f: Callable[..., Any], style: str) -> Callable[[Any, Array], Array]:
    """Canonical ``g(x, params)`` calling ``f`` in its own form."""
    if style == "array":
        return f

    def g(x: Any, params: Array) -> Array:
        return f(x, *[params[i] for i in range(params.shape[0])])

    return g


# --- Jacobians -------------------------------------------------------------------------


def fd_steps(p: Array, method: str) -> Array:
    """Finite-difference steps as SciPy chooses them: ε^(1/2) or ε^(1/3) times max(1,|p|)."""
    eps = jnp.finfo(p.dtype).eps
    rel = eps**0.5 if method == "2-point" else eps ** (1.0 / 3.0)
    sign = where(p >= 0, 1.0, -1.0)
    h = rel * sign * jnp.maximum(1.0, jnp.abs(p))
    return (p + h) - p  # exactly representable step


def value_and_jacobian(
    resid: Callable[[Array], Array],
    p: Array,
    mode: str,
    colours: tuple[int, ...] | None = None,
    pattern: Array | None = None,
    transposed: bool = False,
    materialize: frozenset[str] = frozenset(),
    rows: str = "batched",
) -> tuple[Array, Array]:
    """Residuals ``r(p)`` (n,) and Jacobian (n, p) by the JAX-side ``mode``.

    With ``colours`` (column groups) and the (n, p) boolean ``pattern`` the Jacobian is
    evaluated with one pass per group (:mod:`curvax.core.sparsity`).  With
    ``transposed=True`` the Jacobian is returned as its (p, n) transpose, the layout in
    which forward mode and finite differences produce it.  ``materialize`` names the
    primitives whose values forward mode holds in memory rather than recomputing them
    for each Jacobian row (:mod:`curvax.core.materialize`).  ``rows`` is how forward
    mode forms the rows of ``Jᵀ``: ``'batched'`` (one batched tangent), ``'separate'``
    (one evaluation per parameter without structural zeros) or ``'auto'`` (separate
    where that pays; :mod:`curvax.core.separate_rows`).
    """

    def out(r: Array, J: Array) -> tuple[Array, Array]:
        return r, (J.T if transposed else J)

    if colours is not None:
        return out(*compressed_value_and_jacobian(resid, p, mode, colours, pattern, fd_steps))
    n_p = p.shape[0]
    eye = jnp.eye(n_p, dtype=p.dtype)
    if mode == "fwd":
        r, push = linearize(resid, p, materialize)
        if uses_separate_rows(rows, n_p):
            Jt = jacobian_rows(push, n_p, r.shape, p.dtype)
            return r, (Jt if transposed else Jt.T)
        return r, jax.vmap(push, out_axes=0 if transposed else 1)(eye)
    if mode == "rev":
        r, pull = jax.vjp(resid, p)
        n = r.shape[0]
        (J,) = jax.vmap(pull)(jnp.eye(n, dtype=r.dtype))
        return out(r, J)
    if mode in ("2-point", "3-point"):
        r = resid(p)
        h = fd_steps(p, mode)
        fp = jax.vmap(lambda e: resid(p + e))(eye * h)
        if mode == "2-point":
            Jt = (fp - r) / h[:, None]
        else:
            fm = jax.vmap(lambda e: resid(p - e))(eye * h)
            Jt = (fp - fm) / (2.0 * h[:, None])
        return r, (Jt if transposed else Jt.T)
    raise ValueError(f"jac: unknown Jacobian mode {mode!r}")


def host_model(
    f_canon: Callable[[Any, Any], Any],
    x_axis: int = -1,
) -> tuple[Callable[[Array, Array], Array], Callable[[Array, Array], Array]]:
    """Value and central-difference Jacobian of a NumPy-only model, via ``pure_callback``.

    Returns JAX-callable ``(value(x, p), jacobian(x, p))``; the work runs in Python.
    XLA may run the callback on a thread where JAX's 64-bit mode is off, and would then
    hand over float64 operands converted to float32; float64 values therefore cross the
    boundary as their raw bits (pairs of uint32), which no conversion touches.
    """

    def value_np(x: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
        out = np.asarray(f_canon(x, p), dtype=p.dtype)
        return np.broadcast_to(out, (n,)) if out.size == 1 else out.reshape(-1)

    def value_host(xw: Any, pw: Any, *, dtype: np.dtype, n: int) -> np.ndarray:
        x, p = from_wire(xw, dtype), from_wire(pw, dtype)
        return host_out(value_np(x, p, n), dtype)

    def jac_host(xw: Any, pw: Any, *, dtype: np.dtype, n: int) -> np.ndarray:
        x, p = from_wire(xw, dtype), from_wire(pw, dtype)
        eps = np.finfo(dtype).eps
        h = eps ** (1.0 / 3.0) * np.where(p >= 0, 1.0, -1.0) * np.maximum(1.0, np.abs(p))
        h = (p + h) - p
        cols = []
        for j in range(p.size):
            e = np.zeros_like(p)
            e[j] = h[j]
            cols.append((value_np(x, p + e, n) - value_np(x, p - e, n)) / (2.0 * h[j]))
        return host_out(np.stack(cols, axis=1), dtype)

    def value(x: Array, p: Array) -> Array:
        dt, n = np.dtype(p.dtype), x.shape[x_axis]
        out = jax.pure_callback(
            functools.partial(value_host, dtype=dt, n=n),
            wire_shape((n,), dt),
            to_wire(x),
            to_wire(p),
            vmap_method="sequential",
        )
        return from_host(out, dt)

    def jacobian(x: Array, p: Array) -> Array:
        dt, n = np.dtype(p.dtype), x.shape[x_axis]
        out = jax.pure_callback(
            functools.partial(jac_host, dtype=dt, n=n),
            wire_shape((n, p.shape[0]), dt),
            to_wire(x),
            to_wire(p),
            vmap_method="sequential",
        )
        return from_host(out, dt)

    return value, jacobian


def traced_output_shape(
    f_canon: Callable[[Any, Array], Array], x: Any, p0: np.ndarray
) -> tuple[int, ...] | None:
    """Shape of ``f_canon(x, p)`` if JAX can trace it, else None.

    Checked abstractly (nothing is computed).  An array ``x`` enters as an abstract
    argument, as it does in the compiled fit — never as a constant baked into a trace,
    which would keep a copy of the data alive in JAX's caches.
    """
    wide = np.dtype(p0.dtype).itemsize == 8 or np.dtype(getattr(x, "dtype", p0.dtype)).itemsize == 8
    try:
        # 64-bit structs only exist with x64 on (JAX ≥ 0.11 warns and truncates them).
        with jax.enable_x64(True) if wide else contextlib.nullcontext():
            p_abs = jax.ShapeDtypeStruct(p0.shape, p0.dtype)
            if isinstance(x, (np.ndarray, jax.ShapeDtypeStruct)):
                x_abs = jax.ShapeDtypeStruct(x.shape, x.dtype)
                out = jax.eval_shape(f_canon, x_abs, p_abs)
            else:
                out = jax.eval_shape(lambda p: f_canon(x, p), p_abs)
    except Exception:
        return None
    dtype = getattr(out, "dtype", None)
    if dtype is None or np.dtype(dtype).kind not in "biuf":
        return None  # not a real array (None, complex, ...): the eager probe says why
    return tuple(out.shape)


def is_traceable(f_canon: Callable[[Any, Array], Array], x: Any, p0: np.ndarray) -> bool:
    """True if JAX can trace ``f_canon(x, p)`` (see :func:`traced_output_shape`)."""
    return traced_output_shape(f_canon, x, p0) is not None


# --- reductions ----------------------------------------------------------------------


def weighted_value_and_jacobian(
    model: Callable[[Any, Array], Array],
    jac: Callable[[Any, Array], Array] | str,
    x: Any,
    y: Array,
    w: Array | None,
    p: Array,
    colours: tuple[int, ...] | None = None,
    pattern: Array | None = None,
    transposed: bool = False,
    materialize: frozenset[str] = frozenset(),
    rows: str = "batched",
) -> tuple[Array, Array]:
    """Weighted residuals ``w (f(x, p) − y)`` and their Jacobian, for independent points.

    ``jac`` is a callable returning the model's (n, p) Jacobian, or a JAX mode name for
    :func:`value_and_jacobian` (with the optional column groups ``colours`` and (n, p)
    ``pattern`` of a sparse Jacobian).  ``w`` (= 1/σ) may be None.  With
    ``transposed=True`` the Jacobian is returned as its (p, n) transpose; ``rows``
    as for :func:`value_and_jacobian`.
    """
    if callable(jac):
        r = model(x, p) - y
        J = jac(x, p)
        if w is not None:
            r = r * w
            J = J * w[:, None]
        return r, (J.T if transposed else J)

    def resid(q: Array) -> Array:
        r = model(x, q) - y
        return r if w is None else r * w

    return value_and_jacobian(
        resid, p, jac, colours, pattern, transposed, materialize, rows
    )


def _slicer(
    x: Array, y: Array, w: Array | None, mask: Array | None, sparsity: Array | None,
    colours: tuple[int, ...] | None, x_axis: int,
) -> Callable[[Array | int, int], tuple]:
    """``(start, size) ↦`` the data of points ``start … start+size-1`` (``dynamic_slice``)."""

    def sliced(start: Array | int, size: int) -> tuple:
        xb = jax.lax.dynamic_slice_in_dim(x, start, size, axis=x_axis)
        yb = jax.lax.dynamic_slice_in_dim(y, start, size)
        wb = None if w is None else jax.lax.dynamic_slice_in_dim(w, start, size)
        mb = None if mask is None else jax.lax.dynamic_slice_in_dim(mask, start, size)
        pb = None if colours is None else jax.lax.dynamic_slice_in_dim(sparsity, start, size)
        return xb, yb, wb, mb, pb

    return sliced


def _blocks(d: PointwiseData) -> tuple[int, int, int, Callable[[Array | int, int], tuple]]:
    """``(block size, number of full blocks, size of the ragged last one, slicer)``."""
    n = d.y.shape[0]
    bs = min(d.block_size, n)
    n_full = n // bs
    sliced = _slicer(d.x, d.y, d.w, d.mask, d.sparsity, d.colours, d.x_axis)
    return bs, n_full, n - n_full * bs, sliced


def _blocks_to_visit(
    mask: Array | None, n_real: Array | None, n_full: int, bs: int, gram: str
) -> int | Array:
    """The full blocks a reduction visits: on a CPU (``'dot'``) those up to the last
    real point (:func:`~curvax.core.reduction.used_blocks`); with ``'fused'``
    (accelerators) all of them — a loop whose trip count is known when compiling runs
    without copying its condition to the host on every pass, and there the blocks are
    large, so padding rarely fills one."""
    return n_full if gram == "fused" else used_blocks(mask, n_full, bs, n_real)


class PointwiseData(NamedTuple):
    """What the reduction of independent points needs (:func:`pointwise_reducer`,
    :func:`pointwise_gram`).

    ``model(x, p)`` and ``jac`` (a JAX mode name, or a callable returning the model's
    (n, p) Jacobian); ``x`` with the points on axis ``x_axis`` (the last by default);
    ``y``, ``w`` (= 1/σ, or None) and ``mask`` (or None), all (N,); the loss ``rho_fn``
    (None: linear) and ``f_scale``; the points per block ``block_size``; the (N, p)
    boolean ``sparsity`` pattern and its column groups ``colours`` (or None: dense); the
    Gram style ``gram`` of :func:`curvax.core.reduction.block_gram`; ``n_real``,
    one past the index of the last real point when padding follows it (or None); and
    ``factorize``, the upper-triangular factor of a single block's rows (None: LAPACK's
    QR, :func:`~curvax.core.reduction.triangularize`; batches of small fits pass
    :func:`~curvax.core.small_linalg.gram_schmidt_r`, which vectorises without a custom
    call); ``materialize``, the primitives whose values forward mode holds in memory
    (:func:`curvax.core.materialize.held_primitives`; empty for batched programs);
    ``rows``, how forward mode forms the rows of ``Jᵀ`` (:func:`value_and_jacobian`).
    """

    model: Callable[[Any, Array], Array]
    jac: Callable[[Any, Array], Array] | str
    x: Array
    y: Array
    w: Array | None
    mask: Array | None
    rho_fn: Callable[[Array], Array] | None
    f_scale: Array
    block_size: int
    x_axis: int = -1
    sparsity: Array | None = None
    colours: tuple[int, ...] | None = None
    gram: str = "dot"
    n_real: Array | None = None
    factorize: Callable[[Array], Array] | None = None
    materialize: frozenset[str] = frozenset()
    rows: str = "batched"


def pointwise_gram(
    d: PointwiseData, with_tail: bool = True
) -> Callable[[Array], tuple[Array, Array]]:
    """``p ↦ (cost, G)``: the cost and Gram matrix ``[J̃ r̃]ᵀ[J̃ r̃]`` of all points.

    The full blocks are summed in a loop, the ragged last one added (unless
    ``with_tail`` is False).  Nothing is checked here (a non-finite entry makes ``G``
    non-finite): :func:`pointwise_reducer` tests the factor and falls back to QR.
    """
    bs, n_full, tail, sliced = _blocks(d)

    def gram_block(p: Array, start: Array | int, size: int) -> tuple[Array, Array]:
        xb, yb, wb, mb, pb = sliced(start, size)
        r, Jt = weighted_value_and_jacobian(
            d.model, d.jac, xb, yb, wb, p, d.colours, pb, True, d.materialize, d.rows
        )
        split = d.jac == "fwd" and d.colours is None and uses_separate_rows(d.rows, p.shape[0])
        return block_gram(r, Jt, mb, d.rho_fn, d.f_scale, d.gram, split)

    def gram_fn(p: Array, i: Array) -> tuple[Array, Array]:
        return gram_block(p, i * bs, bs)

    def total(p: Array) -> tuple[Array, Array]:
        if n_full == 1:
            cost, G = gram_block(p, 0, bs)
        else:
            visit = _blocks_to_visit(d.mask, d.n_real, n_full, bs, d.gram)
            cost, G = reduce_blocks_gram(gram_fn, p, visit, p.shape[0])
        if tail and with_tail:
            cost_t, G_t = gram_block(p, n_full * bs, tail)
            cost, G = cost + cost_t, G + G_t
        return cost, G

    return total


def pointwise_reducer(
    d: PointwiseData,
    gram_total: Callable[[Array], tuple[Array, Array]] | None = None,
    fallback: bool = True,
) -> Callable[[Array], Reduction]:
    """Reduction function for independent points (:class:`PointwiseData` ``d``), visited
    in blocks of ``d.block_size``.

    With ``colours`` and the (N, p) boolean ``sparsity`` pattern, each block's Jacobian
    comes from one pass per column group (:mod:`curvax.core.sparsity`).
    The blocks are taken by ``dynamic_slice`` inside a loop (no copy of the data); a
    ragged last block is reduced separately and merged.  On a CPU, blocks after the last
    real point are not visited (:func:`_blocks_to_visit`): ``n_real``, when given, is
    one past the index of the last real point (padding follows it); otherwise the count
    is read from ``mask``.

    ``gram`` is the Gram style of :func:`curvax.core.reduction.block_gram`.  With
    ``'dot'`` (CPU) a data set of one block is reduced by QR directly.  With
    ``'fused'`` (accelerators) every block, the ragged one too, goes through the Gram
    matrix first — one fused pass over the data per block — and QR is the fallback
    under the same conditioning test as for several blocks.

    ``gram_total``, when given, supplies ``p ↦ (cost, G)`` of all points computed
    elsewhere — by several CPU threads (:mod:`curvax.core.threaded`) — in place of
    :func:`pointwise_gram`; the conditioning test and the QR fallback stay here.

    ``fallback=False`` leaves the QR fallback out of the program: where the Gram factor
    fails its tests, the reduction comes back with ``n_nonfinite`` =
    :data:`~curvax.core.reduction.GRAM_REJECTED` instead.  Half the code of a blocked
    reduction is its fallback, and a fit program holds three copies of the reduction
    (start, steps, refinement), so a program without it compiles in about two thirds of
    the time (exponential, XLA's compilation on the 2-core CI-class VM: 0.86–1.07 →
    0.66–0.74 s at 10⁴ points, 0.70–0.88 → 0.47–0.54 s at 10⁶);
    :func:`curvax.core.solve.solve` runs such a program first and redoes the fit with
    the fallback only when a reduction was rejected.
    """
    bs, n_full, tail, sliced = _blocks(d)

    def block_fn(p: Array, start: Array | int, size: int) -> tuple[Array, Array, Array]:
        xb, yb, wb, mb, pb = sliced(start, size)
        r, J = weighted_value_and_jacobian(
            d.model, d.jac, xb, yb, wb, p, d.colours, pb,
            materialize=d.materialize, rows=d.rows,
        )
        return block_rows(r, J, mb, d.rho_fn, d.f_scale)

    def indexed_block(q: Array, i: Array) -> tuple[Array, Array, Array]:
        return block_fn(q, i * bs, bs)

    def qr_reduce(p: Array, with_tail: bool) -> Reduction:
        """Block QR of the full blocks (and of the ragged one, merged, ``with_tail``)."""
        visit = _blocks_to_visit(d.mask, d.n_real, n_full, bs, d.gram)
        red = reduce_blocks(indexed_block, p, visit, p.shape[0])
        if with_tail and tail:
            cost, rows, bad = block_fn(p, n_full * bs, tail)
            red = merge(red, Reduction(cost, triangularize(rows), bad))
        return red

    def gram_or_qr(p: Array, cost: Array, G: Array, with_tail: bool) -> Reduction:
        """The Cholesky factor of ``G`` if finite and well conditioned, else block QR
        (which also counts non-finite entries)."""
        factor = factor_from_gram(G)
        good = (
            jnp.isfinite(cost)
            & jnp.all(jnp.isfinite(factor))
            & (scaled_condition(factor[:-1, :-1]) < GRAM_MAX_CONDITION)
        )
        if not fallback:
            return Reduction(cost, factor, where(good, 0, GRAM_REJECTED).astype(jnp.int32))
        return jax.lax.cond(
            good,
            lambda: Reduction(cost, factor, jnp.zeros((), jnp.int32)),
            lambda: qr_reduce(p, with_tail),
        )

    def reduce_fn(p: Array) -> Reduction:
        if gram_total is not None:
            cost, G = gram_total(p)
            return gram_or_qr(p, cost, G, with_tail=True)
        if d.gram == "fused":  # every block through the Gram matrix, the ragged one too
            cost, G = pointwise_gram(d)(p)
            return gram_or_qr(p, cost, G, with_tail=True)
        if n_full == 1 and tail == 0:
            cost, rows, bad = block_fn(p, 0, bs)
            return Reduction(cost, (d.factorize or triangularize)(rows), bad)
        if n_full == 1:
            red = qr_reduce(p, with_tail=False)
        else:  # Gram of the full blocks; the ragged one by QR, merged below
            cost, G = pointwise_gram(d, with_tail=False)(p)
            red = gram_or_qr(p, cost, G, with_tail=False)
        if tail:
            cost, rows, bad = block_fn(p, n_full * bs, tail)
            red = merge(red, Reduction(cost, triangularize(rows), bad))
        return red

    return reduce_fn


def dense_reducer(
    resid: Callable[[Array], Array],
    jac: Callable[[Array], Array] | str,
    rho_fn: Callable[[Array], Array] | None,
    f_scale: Array,
    sparsity: Array | None = None,
    colours: tuple[int, ...] | None = None,
) -> Callable[[Array], Reduction]:
    """Reduction for a residual function of the whole parameter vector (one block).

    ``jac`` is a JAX mode name or a callable ``p ↦ (m, p)`` Jacobian of ``resid``;
    ``colours`` and the (m, p) ``sparsity`` pattern group its columns as in
    :func:`pointwise_reducer`.
    """

    def reduce_fn(p: Array) -> Reduction:
        if callable(jac):
            r, J = resid(p), jac(p)
        else:
            r, J = value_and_jacobian(resid, p, jac, colours, sparsity)
        return reduce_block(r, J, None, rho_fn, f_scale)

    return reduce_fn
