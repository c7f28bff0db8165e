"""Forward-mode linearisation that computes a model's slow operations once per point.

The fit reduces each block of points from ``r`` and the transposed Jacobian
``Jᵀ = vmap(push)(I)``, where ``r, push = jax.linearize(resid, p)``
(:func:`curvax.core.problem.value_and_jacobian`).  ``push`` keeps the values of the
linearisation (for ``a·sin(ω·x + φ)`` these are ``sin z`` and ``cos z`` of every point);
each row of ``Jᵀ`` combines them with one tangent.  XLA:CPU fuses all rows, with ``r``,
into one element-wise loop over the (p + 1, k) output and recomputes those values for
every output element: p + 1 times per point instead of once.  That costs little for an
``exp`` (about 1 ns per value) and a lot for the trigonometric functions, whose float64
versions cost about 9 ns per value on the CI-class CPU.

:func:`linearize` therefore computes ``r`` and the values of ``push`` inside
``lax.cond``, whose result XLA must hold in memory before anything else reads it (a
fusion does not cross the conditional).  Both branches are the same computation, so
the answer does not depend on the predicate; it equals that of ``jax.linearize`` up to
rounding (the loops are fused differently: relative differences of 1e-16 seen).  The
conditional itself costs about 0.5–1 ns per point, so it is used only when the model
holds one of :data:`SLOW_TO_REPEAT`.

Measured on the 2-core CI-class VM (AMD EPYC, jaxlib 0.10.2, one core), value,
Jacobian and Gram matrix of blocks of 4096 points, float64, ns per point, plain →
materialised::

    a·sin(ω x + φ) + c                       64 → 33
    a·exp(−x/τ)·sin(ω x + φ) + c             83 → 38
    Fourier series, 5 harmonics (11 params)  812 → 219
    a·erfinv(tanh(b x + c)) + d              38 → 18
    a·exp(−b x) + c                          4.6 → 5.1   (not used)
    Gaussian peak                            6.7 → 7.4   (not used)
    a·lgamma(b x + c) + d, a·sinh(…), erf,
    arctan, log, tanh                        no gain      (not used)

float32 shows the same pattern (sine 19.8 → 10.5, Fourier 304 → 79 ns).  With the
vectorised ``sin`` and ``cos`` of :mod:`curvax.core.fast_trig` (1.7–2 ns per value, the
default on a CPU) holding their values gained nothing measurable in whole fits (damped
oscillation, sine, Fourier series at 10⁵ and 10⁶ points: within the run-to-run noise)
and made a first fit compile 0.15–0.4 s longer, so primitives that
:mod:`curvax.core.fast_math` replaces are not held (:func:`held_primitives`).

Only fits compiled for a CPU ask for it (:class:`curvax.core.problem.PointwiseData`
``materialize``); batch fits do not, since under ``vmap`` the conditional becomes a
select that computes both branches.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import jax

Array = jax.Array

#: Primitives whose values, repeated in every Jacobian row, cost more than holding
#: them in memory (module docstring).
SLOW_TO_REPEAT = frozenset({"sin", "cos", "tan", "erf_inv"})


def _sub_jaxprs(params: dict) -> Iterator[Any]:
    """The jaxprs inside an equation's parameters (``jit``, ``cond`` branches, loop
    bodies, ``custom_jvp``/``custom_vjp`` functions)."""
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            inner = getattr(item, "jaxpr", item)
            if hasattr(inner, "eqns"):
                yield inner


def holds_primitive(jaxpr: Any, names: frozenset[str]) -> bool:
    """Whether ``jaxpr`` or a jaxpr nested in it holds a primitive named in ``names``."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in names:
            return True
        if any(holds_primitive(inner, names) for inner in _sub_jaxprs(eqn.params)):
            return True
    return False


def held_primitives(platform: str, replaced: frozenset[str]) -> frozenset[str]:
    """The primitives whose values a fit compiled for ``platform`` holds in memory:
    :data:`SLOW_TO_REPEAT` on a CPU, less those computed by vectorised replacements
    (``replaced``, primitive names; :func:`curvax.core.fast_math.replaced_names`)."""
    return SLOW_TO_REPEAT - replaced if platform == "cpu" else frozenset()


def linearize(
    resid: Callable[[Array], Array], p: Array, held: frozenset[str]
) -> tuple[Array, Callable[[Array], Array]]:
    """``jax.linearize(resid, p)``; when the model holds one of the primitives named in
    ``held``, computed inside ``lax.cond`` so that its values are held in memory rather
    than recomputed for each Jacobian row (module docstring)."""
    if not held or p.shape[0] == 0:
        return jax.linearize(resid, p)
    if not holds_primitive(jax.make_jaxpr(resid)(p).jaxpr, held):
        return jax.linearize(resid, p)
    structure: list[Any] = []

    def values() -> tuple[Array, list[Array]]:
        r, push = jax.linearize(resid, p)
        leaves, tree = jax.tree.flatten(push)
        structure[:] = [tree]
        return r, leaves

    r, leaves = hold(values, p[0])
    return r, jax.tree.unflatten(structure[0], leaves)


_HOLDING = contextvars.ContextVar("curvax_holding", default=True)


@contextlib.contextmanager
def holding(enabled: bool) -> Iterator[None]:
    """Within the block (while a model is traced), :func:`holding_enabled` answers
    ``enabled``.

    :func:`curvax.core.fast_math.with_fast_math` sets it for the model it rewrites:
    off for the part programs of a threaded reduction (:mod:`curvax.core.threaded`)
    where XLA may split a fused kernel over its own worker threads
    (:func:`curvax.core.xla_options.kernels_stay_whole`).  There the kernels inside the
    conditional of :func:`hold` were split, and XLA's workers competed with the two part
    programs for the two cores: a 4PL fit at 10⁷ points took 293–310 ms instead of
    241–266 (``benchmarks/README.md``, session 24).
    """
    token = _HOLDING.set(enabled)
    try:
        yield
    finally:
        _HOLDING.reset(token)


def holding_enabled() -> bool:
    """Whether values may be held by :func:`hold` in the program being traced
    (:func:`holding`; yes by default)."""
    return _HOLDING.get()


def hold(fn: Callable[[], Any], witness: Array) -> Any:
    """``fn()``, computed inside ``lax.cond`` so that XLA holds its result in memory
    instead of fusing the computation into (and repeating it in) every kernel that reads
    the result.

    Both branches are ``fn``; the predicate ``witness == witness`` (a scalar of the
    traced computation) only has to be unknown until run time, so that XLA keeps the
    conditional.  The answer does not depend on it (a NaN ``witness`` takes the other,
    identical branch).  Under ``vmap`` with a batched ``witness`` the conditional becomes
    a select and both branches are computed: the same answer at twice the cost.
    """
    return jax.lax.cond(witness == witness, fn, fn)
