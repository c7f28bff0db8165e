"""Forward-mode Jacobian rows that skip the terms a parameter does not reach.

Forward mode (:func:`curvax.core.problem.value_and_jacobian`) pushes the p unit
tangents through the model's linearisation together, as one batched tangent of p rows:
``Jᵀ = vmap(push)(I)`` with ``r, push = jax.linearize(resid, p)``.  Every tangent
operation then runs on all p rows, also where a row is zero by construction: in a sum
of three peaks the centre of the first peak moves nothing in the other two, yet the
batched tangent multiplies, divides and adds zeros for them.  XLA cannot drop those
operations, since in floating point ``0 · x`` is not 0 for every ``x``.

:func:`jacobian_rows` evaluates ``push`` once per parameter j on the unit vector
``e_j``, with an interpreter over its jaxpr that keeps track of the values known before
run time:

* a value computed from ``e_j`` and literals only is *known*, and is evaluated at trace
  time;
* a product, a ``dot_general``, or a quotient whose dividend is a known zero is a known
  zero: no operation is emitted;
* a sum with a known-zero term is the other term, a product with a known one the other
  factor, ``0 − a`` is ``−a``;
* anything else is emitted as in ``push``, with known operands as constants.

Row j is then ``∂r/∂p_j`` computed from the terms that depend on ``p_j`` only.  The
terms left out are exact zeros and ``a + 0 = a``, ``a · 1 = a``, so the rows equal those
of the batched tangent up to how XLA contracts products and sums into fused
multiply-adds (differences of an ulp or two were seen).  One difference is by design:
where a term that a parameter does not reach is not finite, the batched tangent forms
``0 · ∞``, ``0 · NaN`` or ``0 / 0`` = NaN in that parameter's row; here the row keeps
its (finite) partial derivative.

When it is used (:func:`uses_separate_rows`): on a CPU, for single fits of at least
:data:`MIN_PARAMETERS` free parameters by forward mode.  With fewer, XLA:CPU fuses the
concatenation of the p + 1 rows of ``[Jᵀ; r]`` (eight or fewer operands) into one
element-wise loop that evaluates, per element, the expression of its row, recomputing
the model's shared values in every row and selecting among them per element; the
batched tangent is then faster (a two-peak model, p = 7: 15 against 61 ns per point).
From nine rows on, XLA computes each shared value (a peak's ``exp``) once per point and
each row in its own loop.  Measured on the 2-core CI-class VM, jaxlib 0.10.2 (value,
Jacobian and Gram product of 2²⁰ points in blocks of 2048, one core, ns per point,
batched → separate)::

    model                                      p    batched  separate
    two Gaussian peaks + linear baseline       8      20       16
    two Gaussian peaks + quadratic baseline    9      22       18
    three Gaussian peaks + offset             10      28       21
    three Lorentzian peaks + offset           10      41       18
    four Gaussian peaks + offset              13      40–43    26–27
    exp of a polynomial of degree 9 / 11   10 / 12  21 / 27   20 / 27   (no zeros)

Whole fits of 10⁶ points on both cores (``benchmarks/README.md``, session 19): three
peaks 112 → 83 ms, four peaks 149 → 109 ms, five peaks 226 → 157 ms.  Two threads
sharing the cores' caches want smaller blocks for the separate rows (three peaks at
blocks of 4096 points: 112 → 120 ms), so :data:`BLOCK_SIZE` points per block is the CPU
default with them.

With curvax's compiled Gram product (:mod:`curvax.core.gram_kernel`) the rows formed
here are not stacked at all: each goes to the product as an operand of its own
(:func:`curvax.core.reduction.block_gram`), which spares the copy into the stack (three
peaks, one pass at 10⁶ points on one core: 5.9 → 5.3 ns per point).  For fewer
parameters that did not pay: there XLA already computes each shared value once and the
stacking loop reads it, so separate operands only add loops (``benchmarks/README.md``,
session 23).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

Array = jax.Array

#: Fewest free parameters for which a CPU fit forms the Jacobian's rows separately
#: (module docstring).
MIN_PARAMETERS = 9
#: Default points per block on a CPU when the rows are formed separately.
BLOCK_SIZE = 2048
#: ``0`` keeps the batched tangent everywhere, ``1`` forms the rows separately wherever
#: forward mode is used by a single fit (read once, at import).
ENV_VAR = "CURVAX_SEPARATE_ROWS"

#: Linear in each operand on its own: a known-zero operand gives a known-zero result.
_ZERO_IF_ANY = frozenset({"mul", "dot_general"})
#: Sums: a known-zero term drops out.
_SUMS = frozenset({"add", "add_any"})
#: Nested calls the interpreter enters.
_CALLS = frozenset({"pjit", "closed_call", "core_call"})


def _setting() -> str | None:
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ("0", "1"):
        return raw
    raise ValueError(f"{ENV_VAR} must be 0, 1 or auto, got {raw!r}")


_SETTING = _setting()


def rows_mode(platform: str) -> str:
    """How a single fit compiled for ``platform`` forms forward-mode Jacobian rows:
    ``'auto'`` (separate from :data:`MIN_PARAMETERS` parameters on) on a CPU,
    ``'batched'`` elsewhere; ``CURVAX_SEPARATE_ROWS`` = 0 or 1 overrides it."""
    if _SETTING == "0":
        return "batched"
    if _SETTING == "1":
        return "separate"
    return "auto" if platform == "cpu" else "batched"


def uses_separate_rows(mode: str, n_params: int) -> bool:
    """Whether ``mode`` (:func:`rows_mode`) forms the rows of ``n_params`` parameters
    separately."""
    return mode == "separate" or (mode == "auto" and n_params >= MIN_PARAMETERS)


def rows_block_size(block_size: int, platform: str, n_free: int) -> int:
    """Default points per block of a forward-mode fit of ``n_free`` parameters compiled
    for ``platform``: :data:`BLOCK_SIZE` where a CPU fit forms the rows separately (and
    the default was larger), else ``block_size`` (an accelerator's blocks are its whole
    data, reduced in one fused pass)."""
    if platform == "cpu" and uses_separate_rows(rows_mode(platform), n_free):
        return min(block_size, BLOCK_SIZE)
    return block_size


class _Known:
    """A value fixed at trace time (a NumPy array)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = np.asarray(value)

    def is_zero(self) -> bool:
        return not self.value.any()

    def is_one(self) -> bool:
        return bool((self.value == 1).all())


def _like(v: Any, outvar: Any) -> Any:
    """``v`` (known or traced) with the shape and dtype of ``outvar``."""
    shape, dtype = tuple(outvar.aval.shape), outvar.aval.dtype
    if isinstance(v, _Known):
        return _Known(np.broadcast_to(v.value, shape).astype(dtype))
    v = v.astype(dtype) if v.dtype != dtype else v
    return v if tuple(v.shape) == shape else jnp.broadcast_to(v, shape)


def _zero(outvar: Any) -> _Known:
    return _Known(np.zeros(tuple(outvar.aval.shape), outvar.aval.dtype))


def _traced(v: Any) -> Any:
    return jnp.asarray(v.value) if isinstance(v, _Known) else v


def _numpy_value(name: str, params: dict, vals: list[np.ndarray]) -> np.ndarray | None:
    """The result of the primitive ``name`` on NumPy ``vals``, for the primitives that
    handle the unit tangent in a linearisation; None for others."""
    if name == "slice":
        strides = params["strides"] or (1,) * vals[0].ndim
        return vals[0][
            tuple(
                slice(a, b, c)
                for a, b, c in zip(params["start_indices"], params["limit_indices"], strides)
            )
        ]
    if name == "squeeze":
        return np.squeeze(vals[0], axis=tuple(params["dimensions"]))
    if name == "reshape":
        return np.reshape(vals[0], params["new_sizes"])
    if name == "broadcast_in_dim":
        shape, dims = tuple(params["shape"]), tuple(params["broadcast_dimensions"])
        expanded = [1] * len(shape)
        for d, size in zip(dims, vals[0].shape):
            expanded[d] = size
        return np.broadcast_to(np.reshape(vals[0], expanded), shape)
    if name == "convert_element_type":
        return vals[0].astype(params["new_dtype"])
    if name == "copy":
        return vals[0]
    if name == "neg":
        return -vals[0]
    if name in _SUMS:
        return vals[0] + vals[1]
    if name in ("sub", "mul", "div"):
        op = {"sub": np.subtract, "mul": np.multiply, "div": np.divide}[name]
        with np.errstate(all="ignore"):
            return op(vals[0], vals[1])
    return None


def _known_values(eqn: Any, vals: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of ``eqn`` on known inputs: by NumPy where :func:`_numpy_value` knows
    the primitive (an eager JAX operation compiles a small program of its own, ~25 ms
    each on a first fit), else by JAX at trace time."""
    out = None if eqn.primitive.multiple_results else _numpy_value(
        eqn.primitive.name, eqn.params, vals
    )
    if out is not None:
        dtype = eqn.outvars[0].aval.dtype
        return [np.asarray(out).astype(dtype, copy=False)]
    with jax.ensure_compile_time_eval():  # not staged, even inside jit
        res = eqn.primitive.bind(*vals, **eqn.params)
    return [np.asarray(r) for r in (res if eqn.primitive.multiple_results else [res])]


def _evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    """Evaluate ``jaxpr`` on ``args`` (known or traced), emitting only what is not
    known (module docstring)."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return _Known(v.val) if isinstance(v, jex_core.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        zero = [isinstance(v, _Known) and v.is_zero() for v in ins]
        one = [isinstance(v, _Known) and v.is_one() for v in ins]
        out: list[Any]
        if all(isinstance(v, _Known) for v in ins):
            out = [_Known(r) for r in _known_values(eqn, [v.value for v in ins])]
        elif name in _CALLS and "jaxpr" in eqn.params:
            closed = eqn.params["jaxpr"]
            out = _evaluate(getattr(closed, "jaxpr", closed), getattr(closed, "consts", ()), ins)
        elif (name in _ZERO_IF_ANY and any(zero)) or (name == "div" and zero[0]):
            out = [_zero(eqn.outvars[0])]
        elif name == "mul" and any(one):
            out = [_like(ins[1] if one[0] else ins[0], eqn.outvars[0])]
        elif (name in _SUMS and any(zero)) or (name == "sub" and zero[1]):
            out = [_like(ins[1] if zero[0] else ins[0], eqn.outvars[0])]
        elif name == "sub" and zero[0]:
            out = [_like(jnp.negative(ins[1]), eqn.outvars[0])]
        else:
            res = eqn.primitive.bind(*[_traced(v) for v in ins], **eqn.params)
            out = list(res) if eqn.primitive.multiple_results else [res]
        env.update(zip(eqn.outvars, out))
    return [read(v) for v in jaxpr.outvars]


def jacobian_rows(
    push: Callable[[Array], Array], n: int, shape: tuple[int, ...], dtype: Any
) -> Array:
    """``Jᵀ`` (n, *shape): ``push(e_j)`` for each parameter j, without the operations on
    structural zeros (module docstring).

    ``push`` is the linear map of ``jax.linearize`` at a point of ``n`` parameters of
    ``dtype``; ``shape`` is the shape of its output (the residuals).
    """
    closed = jax.make_jaxpr(push)(jax.ShapeDtypeStruct((n,), dtype))
    rows = []
    for j in range(n):
        e = np.zeros((n,), dtype)
        e[j] = 1
        (row,) = _evaluate(closed.jaxpr, closed.consts, [_Known(e)])
        rows.append(jnp.broadcast_to(_traced(row).astype(dtype), shape))
    return jnp.stack(rows)
