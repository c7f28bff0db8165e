"""A model's slow float64 operations replaced by faster ones, for XLA:CPU.

XLA:CPU computes some float64 functions with one C-library call per value, far slower
than its own vectorised ``exp``: ``pow`` (12–18 ns per value), ``sin``, ``cos`` (about
9 ns) and ``log`` wherever it is not fused into a sum (about 2 ns).  Its divisions cost
several products each, and forward differentiation repeats them in every Jacobian row.
:func:`with_fast_math` rewrites a model so that these are computed by
:func:`curvax.core.fast_pow.fast_pow`, :func:`curvax.core.fast_trig.fast_sin`,
:func:`~curvax.core.fast_trig.fast_cos`, :func:`curvax.core.fast_log.fast_log` and
:func:`curvax.core.fast_div.divide` (their modules give the mathematics, the accuracy
and the switches ``CURVAX_FAST_POW=0``, ``CURVAX_FAST_TRIG=0``, ``CURVAX_FAST_LOG=0``,
``CURVAX_FAST_DIV=0``).  A division or a logarithm of scalars only is left alone
(:data:`CONDITIONS`).

How: the jaxpr of the model is traced at the shapes it is called with and evaluated
again with every float64 operation of the chosen kinds replaced, also inside nested
``jit`` calls; not inside a user's ``custom_jvp``/``custom_vjp`` functions, whose rules
are kept, nor inside ``lax.cond``/``scan``/``while_loop`` bodies, which keep XLA's
operations.  A model without such an operation is evaluated unchanged.  float32 is
left alone (XLA vectorises those).  curvax applies it to the models of single fits
compiled for a CPU (:func:`enabled_kinds`); accelerators never get it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import lax

from curvax.core import fast_div, fast_log, fast_pow, fast_trig
from curvax.core.materialize import holding

#: Each replaceable primitive: its kind (the switch that covers it) and the module and
#: name of the function computing it.  The function is looked up at each use, so that
#: a test may wrap it.
REPLACEMENTS: dict[Any, tuple[str, Any, str]] = {
    lax.pow_p: ("pow", fast_pow, "fast_pow"),
    lax.sin_p: ("trig", fast_trig, "fast_sin"),
    lax.cos_p: ("trig", fast_trig, "fast_cos"),
    lax.div_p: ("div", fast_div, "divide"),
    lax.log_p: ("log", fast_log, "fast_log"),
}


def _involves_an_array(eqn: Any) -> bool:
    """An operation with an array operand: a division (:mod:`curvax.core.fast_div`) or a
    logarithm (:mod:`curvax.core.fast_log`) of scalars only, computed once per
    evaluation, is left as it is."""
    return any(len(v.aval.shape) >= 1 for v in eqn.invars)


#: For a primitive listed here, the condition an operation must meet to be replaced
#: (besides float64 operands).
CONDITIONS: dict[Any, Callable[[Any], bool]] = {
    lax.div_p: _involves_an_array,
    lax.log_p: _involves_an_array,
}


#: The environment variable that turns each kind off (value ``0``, read once).
SWITCHES: dict[str, str] = {
    "pow": fast_pow.ENV_VAR,
    "trig": fast_trig.ENV_VAR,
    "div": fast_div.ENV_VAR,
    "log": fast_log.ENV_VAR,
}


@functools.cache
def switched_off(env_var: str) -> bool:
    """Whether the environment variable ``env_var`` is ``0`` (read once per process)."""
    return os.environ.get(env_var, "").strip() == "0"


def enabled_kinds(platform: str) -> frozenset[str]:
    """The kinds of :data:`REPLACEMENTS` used in models compiled for ``platform``: on a
    CPU, those not switched off (:data:`SWITCHES`); on accelerators, whose functions are
    already vectorised, none."""
    if platform != "cpu":
        return frozenset()
    return frozenset(kind for kind, var in SWITCHES.items() if not switched_off(var))


def replaced_names(kinds: frozenset[str]) -> frozenset[str]:
    """Names of the primitives that the kinds ``kinds`` replace."""
    return frozenset(prim.name for prim, entry in REPLACEMENTS.items() if entry[0] in kinds)


def _replacement(eqn: Any, kinds: frozenset[str]) -> Callable[..., Any] | None:
    """The function computing ``eqn`` in its place, or None to keep it."""
    entry = REPLACEMENTS.get(eqn.primitive)
    if entry is None or entry[0] not in kinds:
        return None
    if not all(v.aval.dtype == np.float64 for v in eqn.invars):
        return None
    condition = CONDITIONS.get(eqn.primitive)
    if condition is not None and not condition(eqn):
        return None
    return getattr(entry[1], entry[2])


def _inner(eqn: Any) -> Any:
    """The closed jaxpr of a nested ``jit`` call, else None."""
    if eqn.primitive.name not in ("pjit", "jit"):
        return None
    return eqn.params.get("jaxpr")


def has_replacement(jaxpr: Any, kinds: frozenset[str]) -> bool:
    """Whether ``jaxpr`` (or a ``jit`` inside it) holds an operation to replace."""
    for eqn in jaxpr.eqns:
        if _replacement(eqn, kinds) is not None:
            return True
        inner = _inner(eqn)
        if inner is not None and has_replacement(inner.jaxpr, kinds):
            return True
    return False


def _evaluate(jaxpr: Any, consts: list, args: list, kinds: frozenset[str]) -> list:
    """Evaluate ``jaxpr`` with the operations of ``kinds`` replaced."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if type(v).__name__ == "Literal" else env[v]

    for v, val in zip(jaxpr.constvars, consts, strict=True):
        env[v] = val
    for v, val in zip(jaxpr.invars, args, strict=True):
        env[v] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        inner = _inner(eqn)
        replacement = _replacement(eqn, kinds)
        if replacement is not None:
            outvals = [replacement(*invals)]
        elif inner is not None and has_replacement(inner.jaxpr, kinds):
            outvals = _evaluate(inner.jaxpr, inner.consts, invals, kinds)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            if isinstance(params, tuple):  # (subfuns, params) before jax 0.7
                subfuns, params = params
                invals = [*subfuns, *invals]
            out = eqn.primitive.bind(*invals, **params)
            outvals = out if eqn.primitive.multiple_results else [out]
        for v, val in zip(eqn.outvars, outvals, strict=True):
            env[v] = val
    return [read(v) for v in jaxpr.outvars]


def with_fast_math(
    fn: Callable[..., Any], kinds: frozenset[str], hold: bool = True
) -> Callable[..., Any]:
    """``fn`` with its float64 operations of ``kinds`` (``'pow'``, ``'trig'``, ``'div'``,
    ``'log'``; see :data:`REPLACEMENTS`) replaced (module docstring).

    The jaxpr of ``fn`` is traced at each call's arguments; without such an operation
    in it, ``fn`` itself is called.  ``hold=False`` (the part programs of a threaded
    reduction) keeps the replacements from holding values in memory through a
    conditional (:func:`curvax.core.materialize.holding`).
    """

    @functools.wraps(fn)
    def rewritten(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        if not has_replacement(closed.jaxpr, kinds):
            return fn(*args)
        flat_args = jax.tree_util.tree_leaves(args)
        with holding(hold):
            out = _evaluate(closed.jaxpr, closed.consts, flat_args, kinds)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return rewritten
