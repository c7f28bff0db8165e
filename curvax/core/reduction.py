"""The reduction: the only thing a trust-region iteration needs from the data.

For parameters ``p``, a *reduction* condenses the whole data set into p-sized
quantities (see ``DESIGN.md``):

* ``cost``   — ``C = ½ Σ_i ρ(r_i²)`` (``½ Σ r_i²`` for the linear loss);
* ``factor`` — the (p+1)×(p+1) upper-triangular matrix ``T`` of the QR
  factorisation ``[J̃ | r̃] = Q T`` of the loss-rescaled Jacobian and residuals
  (:mod:`curvax.core.loss`).  Its leading p×p block ``R`` satisfies
  ``J̃ = Q₁R``, its last column holds ``Q₁ᵀ r̃`` and ``|T[p, p]|`` is the norm of the
  part of ``r̃`` outside the range of ``J̃``.  The gradient is ``g = Rᵀ (Q₁ᵀ r̃)``.
* ``n_nonfinite`` — how many residual or Jacobian entries of real (unmasked) points
  were NaN or ±Inf; negative (:data:`GRAM_REJECTED`) from a reduction compiled without
  its QR fallback whose Gram factor could not be used (:func:`gram_rejected`).

Why a triangular factor: it is *mergeable*.  If the rows of ``[J̃ | r̃]`` are split in
blocks A and B with factors T_A and T_B, the factor of the whole is the triangular
factor of the stacked 2(p+1)×(p+1) matrix ``[T_A; T_B]`` (Householder QR, which is
backward stable).  So an in-memory fit, a chunked fit, an out-of-core fit and a
multi-device fit differ only in how the blocks are visited; the trust-region solver
above sees the same ``T`` up to rounding and reaches the same answer — without the
squared condition number that accumulating ``JᵀJ`` would bring.

Every function here is pure and traceable by JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from curvax.core.gram_kernel import block_gram_product, xla_gram_product
from curvax.core.gram_kernel import takes as gram_kernel_takes
from curvax.core.loss import loss_terms, scale_residuals
from curvax.core.select import where

Array = jax.Array


class Reduction(NamedTuple):
    """Result of reducing the data at one parameter vector (see module docstring)."""

    cost: Array
    factor: Array
    n_nonfinite: Array

    @property
    def R(self) -> Array:
        """Upper-triangular ``R`` with ``J̃ᵀJ̃ = RᵀR``."""
        return self.factor[:-1, :-1]

    @property
    def qtf(self) -> Array:
        """``Q₁ᵀ r̃``: the residuals projected on the range of the Jacobian."""
        return self.factor[:-1, -1]

    @property
    def grad(self) -> Array:
        """Gradient of the cost, ``J̃ᵀ r̃ = Rᵀ Q₁ᵀ r̃``."""
        return self.R.T @ self.qtf


def empty_factor(n_params: int, dtype: jnp.dtype) -> Array:
    """The factor of an empty block: a (p+1)×(p+1) matrix of zeros."""
    return jnp.zeros((n_params + 1, n_params + 1), dtype)


def triangularize(rows: Array) -> Array:
    """Upper-triangular factor of ``rows`` (k, p+1), padded with zero rows when k < p+1."""
    k, n = rows.shape
    if k < n:
        rows = jnp.concatenate([rows, jnp.zeros((n - k, n), rows.dtype)])
    return jnp.linalg.qr(rows, mode="r")


def merge_factors(a: Array, b: Array) -> Array:
    """Factor of the union of two row blocks, from their two factors."""
    return triangularize(jnp.concatenate([a, b]))


def merge(a: Reduction, b: Reduction) -> Reduction:
    """Combine the reductions of two disjoint sets of data points."""
    return Reduction(
        a.cost + b.cost, merge_factors(a.factor, b.factor), a.n_nonfinite + b.n_nonfinite
    )


def block_rows(
    r: Array,
    jac: Array,
    mask: Array | None,
    rho_fn: Callable[[Array], Array] | None,
    f_scale: Array,
) -> tuple[Array, Array, Array]:
    """Cost, rows ``[J̃ | r̃]`` and non-finite count for one block of points.

    ``r`` (k,) are the weighted residuals, ``jac`` (k, p) their Jacobian, ``mask`` (k,)
    marks real points (padding rows are replaced by exact zeros, so they change
    nothing, even if the model is NaN there).  ``rho_fn`` is ``None`` for the linear
    loss.
    """
    bad = ~jnp.isfinite(r) | ~jnp.all(jnp.isfinite(jac), axis=1)
    if mask is not None:
        bad = bad & mask
    cost, r, jac = _masked_loss_rows(r, jac, mask, rho_fn, f_scale, transposed=False)
    if cost is None:
        cost = 0.5 * jnp.sum(r * r)
    rows = jnp.concatenate([jac, r[:, None]], axis=1)
    return cost, rows, jnp.sum(bad).astype(jnp.int32)


def _masked_loss_rows(
    r: Array,
    jac: Array | list[Array],
    mask: Array | None,
    rho_fn: Callable[[Array], Array] | None,
    f_scale: Array,
    transposed: bool,
) -> tuple[Array | None, Array, Any]:
    """Masked rows zeroed and, for a robust loss, the cost ``½ Σ ρ`` and rescaled ``(r̃, J̃)``.

    ``jac`` is (k, p), or with ``transposed`` (p, k) or a list of rows (k,) and stacks
    of rows (·, k), each treated alike.  Returns ``(cost, r̃, J̃)`` (J̃ as ``jac`` came);
    the cost is None for the linear loss (``½ Σ r²``, left to the caller).
    """
    parts = jac if isinstance(jac, list) else [jac]

    def per_point(v: Array) -> Array:  # a per-point vector against the Jacobian's layout
        return v if transposed else v[:, None]

    if mask is not None:
        r = where(mask, r, 0.0)
        parts = [where(per_point(mask), a, 0.0) for a in parts]
    cost = None
    if rho_fn is not None:
        rho = loss_terms(rho_fn, r, f_scale)
        cost = 0.5 * jnp.sum(rho[0] if mask is None else where(mask, rho[0], 0.0))
        r, scale = scale_residuals(r, rho)
        parts = [a * per_point(scale) for a in parts]
    return cost, r, (parts if isinstance(jac, list) else parts[0])


def block_cost(
    r: Array, mask: Array | None, rho_fn: Callable[[Array], Array] | None, f_scale: Array
) -> Array:
    """Cost ``½ Σ ρ`` of one block from its residuals alone (no Jacobian)."""
    if mask is not None:
        r = where(mask, r, 0.0)
    if rho_fn is None:
        return 0.5 * jnp.sum(r * r)
    rho0 = loss_terms(rho_fn, r, f_scale)[0]
    return 0.5 * jnp.sum(rho0 if mask is None else where(mask, rho0, 0.0))


def reduce_block(
    r: Array,
    jac: Array,
    mask: Array | None,
    rho_fn: Callable[[Array], Array] | None,
    f_scale: Array,
) -> Reduction:
    """Reduction of a single block of points (see :func:`block_rows`)."""
    cost, rows, bad = block_rows(r, jac, mask, rho_fn, f_scale)
    return Reduction(cost, triangularize(rows), bad)


def factor_from_gram(G: Array) -> Array:
    """Triangular factor ``T`` (``TᵀT = G``) of a Gram matrix ``G = [J̃ r̃]ᵀ[J̃ r̃]``.

    ``R`` is the Cholesky factor of ``J̃ᵀJ̃``, ``Qᵀr̃ = R⁻ᵀ J̃ᵀr̃``, and the last
    diagonal entry is ``√max(r̃ᵀr̃ − ‖Qᵀr̃‖², 0)``; non-finite entries signal failure.
    """
    p = G.shape[0] - 1
    L = jnp.linalg.cholesky(G[:p, :p])
    qtf = jax.scipy.linalg.solve_triangular(L, G[:p, p], lower=True)
    last = jnp.sqrt(jnp.maximum(G[p, p] - jnp.dot(qtf, qtf), 0.0))
    top = jnp.concatenate([L.T, qtf[:, None]], axis=1)
    bottom = jnp.concatenate([jnp.zeros((1, p), G.dtype), last[None, None]], axis=1)
    return jnp.concatenate([top, bottom])


def scaled_condition(R: Array) -> Array:
    """Condition number of ``R`` after scaling its columns to unit norm (∞ if singular)."""
    cn = jnp.sqrt(jnp.sum(R * R, axis=0))
    s = jnp.linalg.svd(R / where(cn > 0, cn, 1.0), compute_uv=False)
    return where(s[-1] > 0, s[0] / where(s[-1] > 0, s[-1], 1.0), jnp.inf)


GRAM_MAX_CONDITION = 1e4

#: ``n_nonfinite`` of a reduction compiled without the QR fallback
#: (``pointwise_reducer(..., fallback=False)``) whose Gram factor failed the tests that
#: would have sent it to QR.  Large and negative, so that adding the counts of other
#: blocks keeps it negative; the solvers stop at once on it (:func:`gram_rejected`) and
#: the fit is redone with the fallback compiled in (``curvax.core.solve``).
GRAM_REJECTED = -(2**30)


def gram_rejected(n_nonfinite: Array | int) -> Array | bool:
    """Whether a reduction's ``n_nonfinite`` marks it as a rejected Gram reduction
    (:data:`GRAM_REJECTED`), not a result; a traced count or a host integer."""
    return n_nonfinite < 0


#: How a block's Gram matrix is formed: ``'dot'``, one matrix product of the block's
#: materialised rows (CPU: a cache-sized block, BLAS-like kernel); ``'kernel'``, the
#: same product by curvax's compiled loop (CPU, float64 or float32, up to 64 rows:
#: :mod:`curvax.core.gram_kernel`; otherwise as ``'dot'``); ``'fused'``, a sum of
#: element-wise products that XLA fuses with the model and Jacobian evaluation into one
#: reduction pass over the data (GPU/TPU: no Jacobian in memory, one kernel per block).
GRAM_STYLES = ("dot", "kernel", "fused")


def block_gram(
    r: Array,
    jac_t: Array,
    mask: Array | None,
    rho_fn: Callable[[Array], Array] | None,
    f_scale: Array,
    style: str = "dot",
    split_rows: bool = False,
) -> tuple[Array, Array]:
    """Cost and Gram matrix ``G = AᵀA`` of the rows ``A = [J̃ | r̃]`` of one block.

    As :func:`block_rows`, but the Jacobian comes transposed, ``jac_t`` (p, k): the
    (p+1)×k matrix ``Aᵀ`` is then contiguous along the points.  ``style`` (see
    :data:`GRAM_STYLES`) picks ``G`` as one small matrix product (``'dot'``, or
    ``'kernel'`` for curvax's compiled loop) or as ``G_ij = Σ_n A_ni A_nj`` written as a
    broadcast product and a sum (``'fused'``); all are the same sums, in a different
    order.  Non-finite entries are not counted here: they make ``G`` non-finite, and the
    caller then redoes the reduction with :func:`reduce_blocks`, which counts them.

    With ``split_rows`` (the rows of ``jac_t`` formed one by one,
    :mod:`curvax.core.separate_rows`) the compiled loop takes every row as an operand
    of its own, so that XLA writes each row once, from its own loop, instead of also
    copying it into a concatenation (:func:`curvax.core.gram_kernel.block_gram_product`).
    """
    kernel = style == "kernel" and gram_kernel_takes(r.dtype, jac_t.shape[0] + 1)
    if kernel and split_rows:
        # split before masking: a row masked on its own stays in its own loop
        rows = [jac_t[i] for i in range(jac_t.shape[0])]
        cost, r, rows = _masked_loss_rows(r, rows, mask, rho_fn, f_scale, transposed=True)
        # XLA's product of the stacked rows where the kernel is unavailable
        G = block_gram_product(*rows, r)
    else:
        cost, r, jac_t = _masked_loss_rows(r, jac_t, mask, rho_fn, f_scale, transposed=True)
        a_t = jnp.concatenate([jac_t, r[None, :]], axis=0)
        if style == "fused":
            G = jnp.sum(a_t[:, None, :] * a_t[None, :, :], axis=-1)
        elif kernel:
            G = block_gram_product(a_t)  # XLA's product where the kernel is unavailable
        else:
            G = xla_gram_product(a_t)
    return (0.5 * G[-1, -1] if cost is None else cost), G


def reduce_blocks_gram(
    gram_fn: Callable[[Array, Array], tuple[Array, Array]],
    params: Array,
    n_blocks: int | Array,
    n_params: int,
) -> tuple[Array, Array]:
    """Cost and Gram matrix ``AᵀA`` of all rows, accumulated block by block.

    ``gram_fn(params, i) -> (cost, G)`` gives block ``i``'s contribution
    (:func:`block_gram`) for ``i = 0 … n_blocks−1``; ``n_blocks`` may be a traced
    scalar (the blocks that hold real points, :func:`used_blocks`), so that padding
    beyond them is never visited.  Cheaper per block than a QR (one small matrix
    product), but the Cholesky factor of a Gram matrix (:func:`factor_from_gram`) loses
    accuracy as ``ε·κ²`` with κ the column-scaled condition number of ``J̃``; callers
    must check :func:`scaled_condition` of the factor against
    :data:`GRAM_MAX_CONDITION` (error ≲ 1e-8 below it) and that it is finite, and fall
    back to :func:`reduce_blocks` (QR, which also counts non-finite entries) otherwise.
    """

    def step(i: Array, carry: tuple) -> tuple:
        cost, G = carry
        c, g = gram_fn(params, i)
        return cost + c, G + g

    k = n_params + 1
    init = (jnp.zeros((), params.dtype), jnp.zeros((k, k), params.dtype))
    return jax.lax.fori_loop(0, n_blocks, step, init)


def reduce_blocks(
    block_fn: Callable[[Array, Array], tuple[Array, Array, Array]],
    params: Array,
    n_blocks: int | Array,
    n_params: int,
) -> Reduction:
    """Reduce blocks ``i = 0 … n_blocks−1`` by QR, one after another.

    ``block_fn(params, i) -> (cost, rows, n_nonfinite)`` gives block ``i``'s
    contribution; the running factor absorbs each block's rows in turn, so memory stays
    O(block × p) whatever the number of blocks.  ``n_blocks`` may be traced, as in
    :func:`reduce_blocks_gram`.
    """

    def step(i: Array, carry: Reduction) -> Reduction:
        cost, rows, bad = block_fn(params, i)
        factor = triangularize(jnp.concatenate([carry.factor, rows]))
        return Reduction(carry.cost + cost, factor, carry.n_nonfinite + bad)

    init = Reduction(
        jnp.zeros((), params.dtype),
        empty_factor(n_params, params.dtype),
        jnp.zeros((), jnp.int32),
    )
    return jax.lax.fori_loop(0, n_blocks, step, init)


def used_blocks(
    mask: Array | None, n_blocks: int, block_size: int, n_real: Array | None = None
) -> int | Array:
    """How many of the leading ``n_blocks`` blocks hold a real point.

    The blocks after the last real point hold only padding (size buckets, a device's
    share), contribute exact zeros and need not be visited.  ``n_real``, when known,
    is one past the index of the last real point; otherwise ``mask``
    (≥ n_blocks·block_size,) flags the real points.  With neither, every block is used.
    """
    if n_real is not None:
        return jnp.minimum((n_real + block_size - 1) // block_size, n_blocks)
    if mask is None:
        return n_blocks
    used = jnp.any(mask[: n_blocks * block_size].reshape(n_blocks, block_size), axis=1)
    return jnp.max(where(used, jnp.arange(1, n_blocks + 1, dtype=jnp.int32), 0))
