"""Whether a model is point-by-point: its value at a point depends on that point alone.

curvax pads the points of a fit to a size bucket (copies of the last point), reduces
them in blocks and may split them over threads or devices.  All of that assumes a model
``f(x, p)`` that maps each point to its value independently, ``f(x)[i] = φ(x_i)``.  A
model that uses the other points (``x - mean(x)``, a normalisation by ``sum``, a
cumulative sum, ``len(x)``) or that returns a fixed array whatever its input (a
closed-over template) would be fitted to something else, silently.  Such models are
therefore recognised before the fit and given all the points at once, unpadded, in one
block, as SciPy does (:func:`curvax.curve_fit.fit_curve`).

Two tests, the first free and the second only when the first cannot decide:

1. **Structure** (:func:`jaxpr_verdict`): the model's jaxpr at the fit's shape is
   walked, following which values carry the points axis.  Elementwise primitives, and
   slices, squeezes, broadcasts and reductions that leave the points axis whole and in
   place, keep a model point-by-point.  A reduction, cumulative sum or sort *along*
   the points axis means it is not, and so does a literal that changes when the model
   is traced for one point more (``len(x)`` or ``x.size`` used in arithmetic).  An
   array of the data's length that does not come from ``x`` (a closed-over template,
   ``iota``), or any other primitive touching ``x``, leaves the question open.
   Tracing only (twice, ~1-4 ms): nothing is compiled or run.
2. **Evaluation** (:func:`evaluated_verdict`): the model is run at ``p0`` on two small
   sets of the real points, ``U = (x₀, x₁)`` and ``V = (x_hi, x₀, x₁, x_lo, x_mid,
   x_hi)`` (the extremes of the first coordinate and a middle point); a point-by-point
   model gives ``f(V)[1:3] = f(U)`` to rounding.  A model that fails on so few points,
   or returns another length, is not point-by-point.  This runs JAX operations one by
   one, ~0.2 s the first time in a process (each primitive compiles once), so it is
   kept for what the structure leaves open (e.g. ``jnp.polyval``, which scans).

Verdicts are memoised per (model, style, shape of a point, points axis, number of
parameters, dtype), in a bounded cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.memo import BoundedCache, hashable
from curvax.core.problem import adapt_model

#: Primitives that act value by value (operands of one shape, or scalars).
ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh bessel_i0e bessel_i1e cbrt ceil
    clamp convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp
    exp2 expm1 floor ge gt igamma igammac integer_pow is_finite le lgamma log log1p
    logistic lt max min mul ne neg nextafter not or pow reduce_precision rem round rsqrt
    select_n sign sin sinh sqrt square stop_gradient sub tan tanh xor""".split()
)
#: Primitives that call a jaxpr once with their operands (followed into).
CALLS = frozenset(
    "jit pjit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr "
    "remat checkpoint".split()
)
#: Reductions: point-by-point when they leave the points axis alone.
REDUCTIONS = frozenset("reduce_sum reduce_max reduce_min reduce_prod argmax argmin".split())

_CACHE: BoundedCache[bool] = BoundedCache(256)


class _Open(Exception):
    """The structure cannot settle the question."""


def _sub_jaxprs(eqn: Any) -> list[Any]:
    """The jaxprs an equation calls (``jit``, ``custom_jvp_call``, ...), as ``Jaxpr``."""
    out = []
    for v in eqn.params.values():
        inner = getattr(v, "jaxpr", v)
        if hasattr(inner, "eqns") and len(inner.invars) == len(eqn.invars):
            out.append(inner)
    return out


def _walk(jaxpr: Any, axes_in: list[int | None], n: int) -> list[int | None]:
    """The points axis of each output (None: no dependence on x); raise ``_Open`` or
    return ``[-1]`` ("mixes points") as soon as that is known.

    ``axes_in[i]`` is the points axis of input ``i`` or None.  Values that do not
    depend on ``x`` may be anything, except an array with an axis of length ``n`` that
    did not come from ``x`` (a template the padding would not extend).
    """
    axis: dict[Any, int | None] = {}
    for v, a in zip(jaxpr.invars, axes_in, strict=True):
        axis[v] = a
    for v in jaxpr.constvars:
        if n in getattr(v.aval, "shape", ()):
            raise _Open
        axis[v] = None

    def of(v: Any) -> int | None:
        return None if hasattr(v, "val") else axis.get(v)

    for eqn in jaxpr.eqns:
        ins = [of(v) for v in eqn.invars]
        name = eqn.primitive.name
        shapes = [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars]
        outs = [tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars]
        if all(a is None for a in ins):
            # An axis of the data's length may only come from a broadcast (of something
            # without one) or elementwise from such: not from iota, concatenation, ...
            spans = any(n in s for s in outs)
            if spans and not (
                name in ELEMENTWISE or (name == "broadcast_in_dim" and n not in shapes[0])
            ):
                raise _Open
            for v in eqn.outvars:
                axis[v] = None
            continue
        tainted = [(a, s) for a, s in zip(ins, shapes, strict=True) if a is not None]
        a0, s0 = tainted[0]
        if name in ELEMENTWISE:  # operands broadcast against each other (size-1 axes)
            if any(a != a0 or len(s) != len(s0) for a, s in tainted):
                raise _Open
            if any(len(s) not in (0, len(s0)) for s in shapes):
                raise _Open
            res: list[int | None] = [a0] * len(eqn.outvars)
        elif name == "slice" and len(ins) == 1:
            p = eqn.params
            stride = (p.get("strides") or (1,) * len(s0))[a0]
            if p["start_indices"][a0] != 0 or p["limit_indices"][a0] != s0[a0] or stride != 1:
                raise _Open
            res = [a0]
        elif name == "squeeze" and len(ins) == 1:
            dims = eqn.params["dimensions"]
            if a0 in dims:
                raise _Open
            res = [a0 - sum(d < a0 for d in dims)]
        elif name == "broadcast_in_dim" and len(ins) == 1:
            res = [eqn.params["broadcast_dimensions"][a0]]
        elif name in REDUCTIONS and len(ins) == 1:
            dims = eqn.params["axes"]
            if a0 in dims:
                return [-1]  # sums, maxima, ... over the points
            res = [a0 - sum(d < a0 for d in dims)]
        elif name in ("cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp", "sort"):
            if eqn.params.get("axis", eqn.params.get("dimension")) == a0:
                return [-1]
            raise _Open
        elif name in CALLS:
            subs = _sub_jaxprs(eqn)
            if len(subs) != 1 or len(subs[0].outvars) != len(eqn.outvars):
                raise _Open
            res = _walk(subs[0], ins, n)
            if res == [-1]:
                return res
        else:
            raise _Open
        for v, a, s in zip(eqn.outvars, res, outs, strict=True):
            if a is not None and (a >= len(s) or s[a] != n):
                raise _Open
            axis[v] = a
    return [of(v) for v in jaxpr.outvars]


def _constants(jaxpr: Any) -> list[Any]:
    """The primitives and literal operands of ``jaxpr`` in order, calls followed."""
    found: list[Any] = []
    for eqn in jaxpr.eqns:
        found.append(eqn.primitive.name)
        found.extend(repr(v.val) for v in eqn.invars if hasattr(v, "val"))
        for sub in _sub_jaxprs(eqn):
            found.extend(_constants(sub))
    return found


def jaxpr_verdict(
    g: Callable[[Any, Any], Any], x_shape: tuple[int, ...], x_axis: int, n_params: int,
    dt: np.dtype,
) -> bool | None:
    """True / False when the structure of ``g(x, p)`` shows the model is / is not
    point-by-point along ``x_axis`` of an ``x`` of ``x_shape``; None when it cannot."""
    n = x_shape[x_axis]
    other = list(x_shape)
    other[x_axis] = n + 1
    try:
        with jax.enable_x64(dt == np.float64):
            closed, closed_other = (
                jax.make_jaxpr(g)(
                    jax.ShapeDtypeStruct(tuple(s), dt), jax.ShapeDtypeStruct((n_params,), dt)
                )
                for s in (x_shape, other)
            )
        out = _walk(closed.jaxpr, [x_axis % len(x_shape), None], n)
        # a constant that moves with the number of points (len(x), x.size): not pointwise
        same_constants = _constants(closed.jaxpr) == _constants(closed_other.jaxpr)
    except _Open:
        return None
    except Exception:  # tracing failed: let the evaluation (or the fit) say why
        return None
    if out == [-1] or not same_constants:
        return False
    if len(out) != 1:
        return None
    shape = tuple(closed.out_avals[0].shape)
    if out[0] is None:  # does not depend on x: a constant (broadcast, as vetted above)
        return True if shape in ((), (1,), (n,)) else None
    return shape == (n,) and out[0] == 0


def evaluated_verdict(
    g: Callable[[Any, Any], Any], x: np.ndarray | jax.Array, x_axis: int, p0: np.ndarray,
    dt: np.dtype,
) -> tuple[bool, bool]:
    """Run ``g`` on two small sets of the real points (module docstring, test 2).

    Returns the verdict and whether it is general: False when all points share their
    first coordinate, so that a dependence on the other points could not show.
    """
    n = x.shape[x_axis]
    xp = jnp if isinstance(x, jax.Array) else np  # device data stay where they are
    first = xp.moveaxis(x, x_axis, -1).reshape(-1, n)[0]
    hi, lo = int(xp.argmax(first)), int(xp.argmin(first))
    general = bool(first[hi] != first[lo])
    with jax.enable_x64(dt == np.float64):
        try:
            outs = []
            for idx in ([0, 1], [hi, 0, 1, lo, n // 2, hi]):
                pts = xp.take(x, xp.asarray(idx), axis=x_axis).astype(dt)
                out = np.asarray(g(pts, p0.astype(dt)))
                outs.append(np.broadcast_to(out, (len(idx),)) if out.size == 1 else out)
            u, v = outs
            if u.shape != (2,) or v.shape != (6,):
                return False, True
            eps = float(np.finfo(dt).eps)
            scale = float(np.nanmax(np.abs(u), initial=0.0))
            same = np.allclose(v[1:3], u, rtol=64 * eps, atol=64 * eps * scale, equal_nan=True)
            return bool(same), general
        except Exception:  # a model that fails on a few points is not point-by-point
            return False, True


def is_pointwise(
    model: Callable[..., Any],
    style: str,
    x: np.ndarray | jax.Array,
    x_axis: int,
    p0: np.ndarray,
    dt: np.dtype,
    x_shape: tuple[int, ...] | None = None,
) -> bool:
    """Whether ``model`` (called in ``style``) is point-by-point along ``x_axis`` of
    ``x`` (module docstring).  ``x_shape`` is the (bucket-padded) shape the fit will
    trace, so that tracing here shares JAX's cache with the fit; default ``x.shape``.
    """
    x_shape = tuple(x.shape if x_shape is None else x_shape)
    point_shape = tuple(d for i, d in enumerate(x.shape) if i != x_axis % x.ndim)
    key = hashable((model, style, point_shape, x_axis, p0.size, dt))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    g = adapt_model(model, style)
    verdict = jaxpr_verdict(g, x_shape, x_axis, p0.size, dt)
    keep = True
    if verdict is None:
        verdict, keep = evaluated_verdict(g, x, x_axis, p0, dt)
    if keep:
        _CACHE.put(key, verdict)
    return verdict
