"""Compile and run one fit: the bridge from a problem definition to a solver.

A :class:`Kernel` names everything that changes the *program* (model, Jacobian
strategy, loss, method, scaling mode, block size, kind of weighting); the data,
starting point, bounds and tolerances are run-time arguments.  Compiled programs are
kept in a bounded least-recently-used cache keyed by the kernel (and, inside
``jax.jit``, by array shapes and dtypes), so fitting new data of the same shape with
the same model reuses the compiled program.  The cache size is read once from the
environment variable ``CURVAX_COMPILE_CACHE_SIZE`` (default 64 kernels).

Kinds of problem:

``'pointwise'``
    independent points, ``r_i = w_i (f(x_i, p) − y_i)``; reduced block by block.
``'cov'``
    curve fitting with a full covariance ``Σ = L Lᵀ`` of the data (2-D ``sigma``):
    ``r = L⁻¹ (f(x, p) − y)`` couples all points and is reduced as one block.
``'ls'``
    a general residual function ``fun(p, *args, **kwargs)`` (``least_squares``).

With ``Kernel.jac_colours`` (column groups of a declared sparsity pattern, carried in
the data as the (m, n_free) boolean ``sparsity``) the Jacobian of the pointwise and
``'ls'`` kinds is evaluated with one pass per group (:mod:`curvax.core.sparsity`).

Data travel as one dict: ``x``, ``y``, ``w`` (1/σ), ``mask``, ``L`` (Cholesky factor of
a 2-D sigma), ``args``/``kwargs`` (``least_squares``) and ``p_full`` (the values of
fixed parameters, when ``Kernel.fixed`` marks some).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from curvax.core.fast_math import enabled_kinds, replaced_names, with_fast_math
from curvax.core.gc_pause import gc_paused
from curvax.core.gram_kernel import use_for as use_gram_kernel
from curvax.core.host_buffers import aligned_empty
from curvax.core.lm import lm
from curvax.core.locks import ForkSafeLock
from curvax.core.loss import get_loss, loss_terms, scale_residuals_and_jacobian
from curvax.core.materialize import held_primitives
from curvax.core.monitor import make_hook
from curvax.core.problem import (
    PointwiseData,
    adapt_model,
    dense_reducer,
    host_model,
    pointwise_gram,
    pointwise_reducer,
    value_and_jacobian,
)
from curvax.core.reduction import Reduction
from curvax.core.select import where
from curvax.core.separate_rows import rows_mode
from curvax.core.sharding import sharded_reducer
from curvax.core.threaded import (
    PartedGram,
    compile_in_background,
    custom_call_free,
    host_gram,
    split_data,
)
from curvax.core.trf import SolverOutput, trf
from curvax.core.xla_options import cpu_compiler_options, kernels_stay_whole

Array = jax.Array

#: Points per block of the reduction on a CPU: the block's Jacobian stays in cache.
DEFAULT_BLOCK_SIZE = 4096
#: Points per block on an accelerator, where each block is one fused pass over the
#: data (Gram style ``'fused'``, :func:`curvax.core.reduction.block_gram`): large blocks
#: mean few sequential steps; the QR fallback materialises one block's rows.
ACCELERATOR_BLOCK_SIZE = 1 << 22


def platform(mesh: Any = None) -> str:
    """The platform a fit runs on: that of ``mesh``'s devices, else JAX's default backend."""
    return mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()


def reduction_defaults(mesh: Any = None) -> tuple[int, str]:
    """``(block_size, gram style)`` for the platform a fit runs on.

    The platform is that of ``mesh``'s devices, else JAX's default backend: a CPU gets
    cache-sized blocks reduced by a matrix product, a GPU or TPU large blocks reduced in
    one fused pass each.
    """
    if platform(mesh) == "cpu":
        return DEFAULT_BLOCK_SIZE, "dot"
    return ACCELERATOR_BLOCK_SIZE, "fused"


def gram_style(gram: str, n_points: int, dtype: Any, mesh: Any, eligible: bool) -> str:
    """The Gram style a fit compiles: ``gram`` (:func:`reduction_defaults`), with
    ``'dot'`` upgraded to ``'kernel'`` — curvax's compiled product — where the fit is
    ``eligible`` (a traceable model of independent points, no 2-D sigma) and
    :func:`curvax.core.gram_kernel.use_for` accepts ``n_points`` (padded) in ``dtype``
    on ``mesh``."""
    if gram == "dot" and eligible and use_gram_kernel(n_points, dtype, mesh):
        return "kernel"
    return gram


@dataclass(frozen=True)
class Kernel:
    """Static description of a fit program (hashable; functions compare by identity)."""

    kind: str  # 'pointwise' | 'cov' | 'ls'
    fn: Callable[..., Any]  # user model f (pointwise/cov) or residual fun (ls)
    param_style: str  # 'args' | 'array' (pointwise/cov); ignored for 'ls'
    jac: str | Callable[..., Any]  # 'fwd' | 'rev' | '2-point' | '3-point' | 'host' | callable
    loss: str | Callable[..., Any]
    method: str  # 'trf' | 'lm'
    jac_scale: bool
    block_size: int = DEFAULT_BLOCK_SIZE
    fixed: tuple[bool, ...] | None = None  # True where a parameter is held fixed
    monitored: bool = False  # compile the per-iteration host hook (callbacks, timeout)
    x_axis: int = -1  # axis of x along which the points lie (pointwise kind)
    jac_style: str | None = None  # 'args' | 'array' for a user Jacobian (default: as f)
    mesh: Any = None  # jax.sharding.Mesh: points sharded over its devices (pointwise kind)
    jac_colours: tuple[int, ...] | None = None  # column groups of a sparse Jacobian
    gram: str = "dot"  # Gram style of the pointwise reduction (curvax.core.reduction)
    workers: int = 1  # CPU threads of the pointwise reduction (curvax.core.threaded)
    # False: the fit program's blocked reduction has no QR fallback (solve.speculative_kernel)
    gram_fallback: bool = True


class Packing(NamedTuple):
    """Where the leaves of a pytree lie in the vectors of :func:`pack`."""

    treedef: Any
    slots: tuple[tuple[int, int, int, tuple[int, ...]], ...]  # (vector, start, stop, shape)


def pack(tree: Any) -> tuple[tuple[Array, ...], Packing]:
    """The leaves of ``tree`` raveled and concatenated, one vector per dtype (in a trace).

    A solver's output is a dozen small arrays; bringing them to the host one by one
    costs more than the whole fit of a small data set, while two vectors cost little.
    """
    leaves, treedef = jax.tree.flatten(tree)
    groups: dict[Any, list[Array]] = {}
    sizes: dict[Any, int] = {}
    slots = []
    for leaf in leaves:
        dtype = leaf.dtype
        if dtype not in groups:
            groups[dtype], sizes[dtype] = [], 0
        start = sizes[dtype]
        sizes[dtype] += leaf.size
        groups[dtype].append(jnp.ravel(leaf))
        slots.append((list(groups).index(dtype), start, sizes[dtype], tuple(leaf.shape)))
    vectors = tuple(jnp.concatenate(parts) for parts in groups.values())
    return vectors, Packing(treedef, tuple(slots))


def unpack(vectors: Sequence[np.ndarray], packing: Packing) -> Any:
    """The pytree packed by :func:`pack`, from host copies of its vectors (as views)."""
    return packing.treedef.unflatten(
        [vectors[v][start:stop].reshape(shape) for v, start, stop, shape in packing.slots]
    )


def _packed_key(vectors: Sequence[Any]) -> tuple[tuple[Any, int], ...]:
    """Dtypes and lengths of packed vectors: the key of their :class:`Packing`."""
    return tuple((v.dtype, v.shape[0]) for v in vectors)


class RunOutput(NamedTuple):
    """A dispatched fit program (:func:`run_kernel`): device arrays, not awaited.

    ``packed`` holds the :class:`~curvax.core.trf.SolverOutput` and the number of
    residuals, one vector per dtype (:func:`pack`); :meth:`solver` waits for them and
    unpacks host copies.
    ``residuals`` are the residuals at the solution for a multi-device kernel (whose
    χ² is summed over processes); otherwise None — :func:`residuals_at` computes them
    when asked for, so a fit does not spend a pass over the data and an N-sized output
    on them.
    """

    packed: tuple[Array, ...]
    residuals: Array | None
    packing: Packing

    def solver(
        self, fetch: Callable[[Array], np.ndarray] = np.asarray
    ) -> tuple[SolverOutput, np.ndarray]:
        """``(solver output, number of residuals)`` as NumPy values; ``fetch`` copies
        one replicated vector."""
        return unpack([fetch(v) for v in self.packed], self.packing)


class RunArgs(NamedTuple):
    """The arguments of a fit program besides its data (:func:`run_args`).

    ``vectors`` (4, n_free) holds the start, lower and upper bounds and scales;
    ``reals`` (4,) ``f_scale, ftol, xtol, gtol``; ``ints`` (2,) int32 ``max_nfev`` and
    the monitor's token; ``reduce_token`` the threaded reduction's token
    (:mod:`curvax.core.threaded`, 0 without threads).  Each argument of a ``jax.jit``
    call costs its dispatch about 2 µs (more as a NumPy scalar), and eleven separate
    ones were a fifth of the dispatch of a 100-point fit.  The reduction's token stays an
    argument of its own: read from ``ints`` inside the program, it sent the program to one
    of XLA's threads in about half the threaded fits, whose parts then shared the other
    (three-peak model, 10⁶ points: 200 ms instead of 120 ms;
    :mod:`curvax.core.threaded`, ``benchmarks/README.md`` session 17).
    """

    vectors: np.ndarray
    reals: np.ndarray
    ints: np.ndarray
    reduce_token: np.int32


def run_args(
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    x_scale: np.ndarray,
    *,
    f_scale: float,
    ftol: float,
    xtol: float,
    gtol: float,
    max_nfev: int,
    token: int,
    dtype: np.dtype,
) -> RunArgs:
    """:class:`RunArgs` in ``dtype``, the vectors in one 64-byte aligned (4, n) array
    (so that results do not depend on where they lie, :mod:`curvax.core.host_buffers`);
    the reduction token is 0 until :func:`with_reduce_token` sets it."""
    vectors = aligned_empty((4, x0.shape[0]), dtype)
    for row, v in zip(vectors, (x0, lb, ub, x_scale), strict=True):
        row[...] = v
    reals = np.array([f_scale, ftol, xtol, gtol], dtype=dtype)
    ints = np.array([max_nfev, token], dtype=np.int32)
    return RunArgs(vectors, reals, ints, np.int32(0))


def with_reduce_token(args: RunArgs, token: Any) -> RunArgs:
    """``args`` with the threaded reduction's token (:mod:`curvax.core.threaded`)."""
    return args._replace(reduce_token=np.int32(token))


class Program(NamedTuple):
    """The compiled functions of a kernel (:func:`_compile`).

    ``run`` returns ``(packed solver output, residuals or None)`` (see
    :class:`RunOutput`); the :class:`Packing` of the solver output is recorded in
    ``packings`` when ``run`` is traced, under :func:`_packed_key` of the vectors it
    produces (they differ in length for every number of parameters, the only thing that
    shapes a kernel's solver output).  ``part_programs`` holds, per argument shapes, the
    compiled ``gram_part`` (a future: :func:`parted_gram`), or None where it may not run
    on threads.  ``notes`` records what running the program taught (e.g. that its
    reduction without QR fallback was rejected, :func:`curvax.core.solve.solve`).
    """

    run: Callable[..., tuple[tuple[Array, ...], Array | None]]
    residuals: Callable[..., Array]
    jacobian: Callable[..., Array]
    packings: dict[tuple[tuple[Any, int], ...], Packing]
    gram_part: Callable[..., tuple[Array, Array]]  # pointwise kernels (curvax.core.threaded)
    part_programs: dict[Any, Future | None]
    notes: dict[str, Any]


def _free_index(k: Kernel) -> np.ndarray | None:
    return None if k.fixed is None else np.nonzero(~np.asarray(k.fixed))[0]


def _embed(k: Kernel, data: dict, q: Array) -> Array:
    """Full parameter vector from the free ones (fixed values come from the data)."""
    idx = _free_index(k)
    if idx is None:
        return q
    return data["p_full"].astype(q.dtype).at[idx].set(q)


def _model_parts(k: Kernel) -> tuple[Callable, Callable | str]:
    """Canonical model ``g(x, p)`` and Jacobian (mode or canonical callable).

    On a CPU their float64 ``pow``, ``sin``, ``cos`` and ``log`` operations are computed
    by vectorised versions, and its divisions with fewer divide instructions
    (:mod:`curvax.core.fast_math`); the values of the logarithm are held in memory,
    in a threaded reduction (``k.workers > 1``) only where XLA keeps each kernel on one
    thread (:func:`curvax.core.xla_options.kernels_stay_whole`).
    """
    g = adapt_model(k.fn, k.param_style)
    if k.jac == "host":
        return host_model(g, k.x_axis)
    kinds = enabled_kinds(platform(k.mesh))
    # hold values in memory (materialize.holding) unless XLA may split the holding
    # conditional's kernels over the threads a threaded reduction's parts run on
    hold = k.workers <= 1 or kernels_stay_whole()
    if kinds:
        g = with_fast_math(g, kinds, hold)
    if callable(k.jac):
        jac = adapt_model(k.jac, k.jac_style or k.param_style)
        return g, (with_fast_math(jac, kinds, hold) if kinds else jac)
    return g, k.jac


def pointwise_data(k: Kernel, data: dict, f_scale: Array) -> PointwiseData:
    """What :func:`~curvax.core.problem.pointwise_reducer` and
    :func:`~curvax.core.problem.pointwise_gram` need for kernel ``k`` (kind
    ``'pointwise'``) on ``data``: model and Jacobian of the free parameters, data, loss,
    blocks."""
    rho_fn = None if (isinstance(k.loss, str) and k.loss == "linear") else get_loss(k.loss)
    idx = _free_index(k)
    g0, jac0 = _model_parts(k)
    if idx is None:
        gm, jm = g0, jac0
    else:

        def gm(x: Any, q: Array) -> Array:
            return g0(x, _embed(k, data, q))

        def jfree(x: Any, q: Array) -> Array:
            return jac0(x, _embed(k, data, q))[:, idx]  # type: ignore[operator]

        jm = jfree if callable(jac0) else jac0
    return PointwiseData(
        gm, jm, data["x"], data["y"], data.get("w"), data.get("mask"), rho_fn, f_scale,
        k.block_size, k.x_axis, data.get("sparsity"), k.jac_colours, k.gram,
        data.get("n_real"),
        materialize=held_primitives(
            platform(k.mesh), replaced_names(enabled_kinds(platform(k.mesh)))
        ),
        rows=rows_mode(platform(k.mesh)),
    )


def _build(k: Kernel) -> tuple[Callable, Callable, Callable]:
    """``(residuals(data, q), jacobian(data, q), reducer(data, f_scale))`` of a kernel.

    ``q`` are the free parameters; ``jacobian`` is a mode name or a callable giving the
    (m, n_free) Jacobian of the residuals.
    """
    rho_fn = None if (isinstance(k.loss, str) and k.loss == "linear") else get_loss(k.loss)
    idx = _free_index(k)

    def cols(J: Array) -> Array:
        return J if idx is None else J[:, idx]

    if k.kind == "ls":

        def resid(data: dict, q: Array) -> Array:
            p = _embed(k, data, q)
            return jnp.atleast_1d(k.fn(p, *data["args"], **data["kwargs"]))

        def user_jac(data: dict, q: Array) -> Array:
            p = _embed(k, data, q)
            return cols(jnp.atleast_2d(k.jac(p, *data["args"], **data["kwargs"])))

    else:
        g0, jac0 = _model_parts(k)

        def g(x: Any, q: Array, data: dict) -> Array:
            return g0(x, _embed(k, data, q))

        if k.kind == "cov":

            def resid(data: dict, q: Array) -> Array:
                return jsl.solve_triangular(
                    data["L"], g(data["x"], q, data) - data["y"], lower=True
                )

            def user_jac(data: dict, q: Array) -> Array:
                J = cols(jac0(data["x"], _embed(k, data, q)))
                return jsl.solve_triangular(data["L"], J, lower=True)

        else:

            def resid(data: dict, q: Array) -> Array:
                r = g(data["x"], q, data) - data["y"]
                if data.get("w") is not None:
                    r = r * data["w"]
                if data.get("mask") is not None:
                    r = where(data["mask"], r, 0.0)
                return r

            def user_jac(data: dict, q: Array) -> Array:
                J = cols(jac0(data["x"], _embed(k, data, q)))
                if data.get("w") is not None:
                    J = J * data["w"][:, None]
                return J

    has_callable_jac = callable(k.jac) or k.jac == "host"
    mode = "fwd" if has_callable_jac else k.jac

    def jacobian(data: dict, q: Array) -> tuple[Array, Array]:
        if has_callable_jac:
            return resid(data, q), user_jac(data, q)
        return value_and_jacobian(
            lambda t: resid(data, t), q, mode, k.jac_colours, data.get("sparsity")
        )

    def reducer(data: dict, f_scale: Array) -> Callable[[Array], Reduction]:
        if k.kind == "pointwise" and k.mesh is not None:
            return sharded_reducer(local_reducer, k.mesh, data, f_scale, k.x_axis)
        return local_reducer(data, f_scale)

    def local_reducer(data: dict, f_scale: Array) -> Callable[[Array], Reduction]:
        if k.kind == "pointwise":
            return pointwise_reducer(pointwise_data(k, data, f_scale), fallback=k.gram_fallback)
        jfun: Any = (lambda q: user_jac(data, q)) if has_callable_jac else mode
        return dense_reducer(
            lambda q: resid(data, q), jfun, rho_fn, f_scale, data.get("sparsity"), k.jac_colours
        )

    return resid, jacobian, reducer


def kernel_functions(k: Kernel) -> tuple[Callable, Callable, Callable]:
    """Public access to :func:`_build`: ``(residuals, jacobian, reducer)`` of a kernel.

    Used by the chunked and out-of-core fits (:mod:`curvax.scale`), which compile the
    reducer per chunk instead of over the whole data set.
    """
    return _build(k)


def _compile(k: Kernel) -> Program:
    resid, jacobian, reducer = _build(k)
    options = cpu_compiler_options()
    packings: dict[tuple[tuple[Any, int], ...], Packing] = {}
    rho_fn = None if (isinstance(k.loss, str) and k.loss == "linear") else get_loss(k.loss)

    def run(
        data: dict, vectors: Array, reals: Array, ints: Array, reduce_token: Array
    ) -> tuple[tuple[Array, ...], Array]:
        # the arguments of RunArgs
        x0, lb, ub, x_scale = vectors[0], vectors[1], vectors[2], vectors[3]
        f_scale, ftol, xtol, gtol = reals[0], reals[1], reals[2], reals[3]
        max_nfev, token = ints[0], ints[1]
        # One nested program for the reduction: the solver's call sites (start, loop,
        # refinement) share one traced and lowered copy, which makes the trace that a
        # fresh process needs even with the persistent cache ~0.1 s shorter (measured at
        # N = 10⁴ by benchmarks/bench_cold.py; XLA inlines it, the compiled code is
        # unchanged).
        reduce_at = jax.jit(lambda d, fs, tok, q: local(d, fs, tok)(q))

        def reduce_fn(q: Array) -> Any:
            return reduce_at(data, f_scale, reduce_token, q)

        m = jax.eval_shape(lambda q: resid(data, q), x0).shape[0]
        xs = None if k.jac_scale else x_scale
        hook = make_hook(token) if k.monitored else None
        if k.method == "lm":
            out = lm(reduce_fn, x0, xs, ftol, xtol, gtol, max_nfev, m, hook=hook)
        else:
            out = trf(reduce_fn, x0, lb, ub, xs, ftol, xtol, gtol, max_nfev, m, hook=hook)
        packed, packing = pack((out, jnp.asarray(m, jnp.int32)))
        if packings.setdefault(_packed_key(packed), packing) != packing:
            raise RuntimeError("curvax: two solver output layouts pack to the same lengths")
        return packed, (resid(data, out.x) if k.mesh is not None else None)

    def local(data: dict, f_scale: Array, tok: Array) -> Callable[[Array], Reduction]:
        """The reducer; with ``k.workers > 1`` the Gram matrix comes from host threads."""
        if k.workers > 1 and k.kind == "pointwise" and k.mesh is None:
            return pointwise_reducer(
                pointwise_data(k, data, f_scale),
                gram_total=lambda q: host_gram(tok, q),
                fallback=k.gram_fallback,
            )
        return reducer(data, f_scale)

    def gram_part(data: dict, f_scale: Array, q: Array) -> tuple[Array, Array]:
        """``(cost, G)`` of the points of ``data``: one thread's part (curvax.core.threaded)."""
        return pointwise_gram(pointwise_data(k, data, f_scale))(q)

    def final_jacobian(data: dict, q: Array, f_scale: Array) -> Array:
        """Loss-rescaled Jacobian at ``q`` (m, n_free), materialised on request only."""
        r, J = jacobian(data, q)
        if k.kind == "pointwise" and data.get("mask") is not None:
            J = where(data["mask"][:, None], J, 0.0)
        if rho_fn is None:
            return J
        return scale_residuals_and_jacobian(r, J, loss_terms(rho_fn, r, f_scale))[1]

    return Program(
        jax.jit(run, compiler_options=options),
        jax.jit(resid, compiler_options=options),
        jax.jit(final_jacobian, compiler_options=options),
        packings,
        jax.jit(gram_part, compiler_options=options),
        {},
        {},
    )


def _cache_size() -> int:
    raw = os.environ.get("CURVAX_COMPILE_CACHE_SIZE", "64")
    try:
        size = int(raw)
    except ValueError as err:
        raise ValueError(
            f"CURVAX_COMPILE_CACHE_SIZE must be a positive integer, got {raw!r}"
        ) from err
    if size < 1:
        raise ValueError(f"CURVAX_COMPILE_CACHE_SIZE must be a positive integer, got {raw!r}")
    return size


class CompileCache:
    """Bounded LRU cache of compiled programs, keyed by :class:`Kernel`.

    Evicting an entry drops the ``jax.jit`` wrapper and with it its compiled
    executables.  Unhashable kernels (e.g. a callable object without ``__hash__``) are
    compiled without caching.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[Kernel, Program] = OrderedDict()
        self._lock = ForkSafeLock()

    def get(self, k: Kernel) -> Program:
        try:
            hash(k)
        except TypeError:
            return _compile(k)
        with self._lock:
            hit = self._entries.get(k)
            if hit is not None:
                self._entries.move_to_end(k)
                return hit
            hit = self._entries[k] = _compile(k)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
            return hit

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


COMPILE_CACHE = CompileCache(_cache_size())


def run_kernel(k: Kernel, data: Any, args: RunArgs) -> RunOutput:
    """Start the compiled program of ``k`` on ``data`` (see :func:`_compile`).

    JAX dispatches it asynchronously: the host may work on while it runs, until it
    fetches the outputs (:meth:`RunOutput.solver`, ``np.asarray(out.residuals)``).
    """
    program = COMPILE_CACHE.get(k)
    with gc_paused():  # a first call traces and compiles: see curvax.core.gc_pause
        packed, residuals = program.run(data, *args)
    return RunOutput(packed, residuals, program.packings[_packed_key(packed)])


def parted_gram(
    k: Kernel, data: dict, f_scale: Any, n_free: int, dtype: Any
) -> tuple[Kernel, PartedGram | None]:
    """The kernel to run and, for ``k.workers > 1``, the host side of its threaded
    reduction over ``data`` (:mod:`curvax.core.threaded`).

    When the part program holds a custom call it is not safe on threads: the kernel
    comes back with ``workers=1`` (one-program reduction) and no :class:`PartedGram`.
    """
    if k.workers <= 1:
        return k, None
    program = COMPILE_CACHE.get(k)
    dt = np.dtype(dtype)
    with jax.enable_x64(dt == np.float64):
        parts = split_data(data, k.workers, k.x_axis)
    q = np.zeros(n_free, dt)
    compiled = [_part_program(program, part, f_scale, q) for part in parts]
    if any(c is None for c in compiled):
        return replace(k, workers=1), None
    return k, PartedGram([_awaiting(c) for c in compiled], parts, f_scale, dt)


def _part_program(program: Program, part: dict, f_scale: Any, q: np.ndarray) -> Future | None:
    """The compiled part program for arguments shaped as ``part``, ``q`` (a future: it
    compiles in the background, :func:`compile_in_background`), or None when it may not
    run on threads (:func:`custom_call_free`); memoised in ``program.part_programs``."""
    key = (
        tuple(
            (name, getattr(v, "shape", None), str(getattr(v, "dtype", None)))
            for name, v in sorted(part.items())
        ),
        q.dtype.name,
        q.shape,  # one variadic model f(x, *p) may be fitted with several counts
    )
    if key not in program.part_programs:
        with jax.enable_x64(q.dtype == np.float64):
            lowered = program.gram_part.lower(part, f_scale, q)
        program.part_programs[key] = (
            compile_in_background(lowered) if custom_call_free(lowered.as_text()) else None
        )
    return program.part_programs[key]


def _awaiting(compiled: Future) -> Callable[..., tuple[Array, Array]]:
    def run_part(*args: Any) -> tuple[Array, Array]:
        return compiled.result()(*args)

    return run_part


def lower_program(k: Kernel, data: dict, n_free: int, dtype: Any) -> Any:
    """The fit program of ``k`` lowered for ``data`` in ``dtype`` (a ``jax.stages.Lowered``).

    The starting point, bounds and tolerances are placeholders: only shapes and dtypes
    matter for the compiled program.  ``.compile().as_text()`` shows its HLO (e.g. the
    collectives of a multi-device fit), ``.compile().memory_analysis()`` its memory.
    Floating NumPy arrays of ``data`` are cast to ``dtype``; arrays already on devices
    (e.g. sharded) are used as they are.
    """
    dt = np.dtype(dtype)
    run = COMPILE_CACHE.get(k).run
    with jax.enable_x64(dt == np.float64):
        conv = jax.tree.map(
            lambda a: a.astype(dt) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a,
            data,
        )
        vec = np.ones(n_free, dt)
        args = run_args(
            vec, -np.inf * vec, np.inf * vec, vec,
            f_scale=1.0, ftol=1e-8, xtol=1e-8, gtol=1e-8, max_nfev=100, token=0, dtype=dt,
        )
        return run.lower(conv, *args)


def program_memory(k: Kernel, data: dict, n_free: int, dtype: Any) -> dict[str, int]:
    """Device memory XLA plans for the compiled fit program of ``k`` (bytes).

    Compiles the program for ``data`` in ``dtype`` (``float32`` or ``float64``) and
    returns XLA's memory analysis: ``argument``, ``output`` and ``temp`` bytes and their
    ``total``.  The data themselves dominate for large N, so a float32 program needs
    about half of a float64 one — the saving of the float32 phase of a mixed-precision
    fit.
    """
    dt = np.dtype(dtype)
    with jax.enable_x64(dt == np.float64):
        stats = lower_program(k, data, n_free, dt).compile().memory_analysis()
    out = {
        "argument": int(stats.argument_size_in_bytes),
        "output": int(stats.output_size_in_bytes),
        "temp": int(stats.temp_size_in_bytes),
    }
    out["total"] = sum(out.values())
    return out


def residuals_at(k: Kernel, data: Any, p: Array) -> Array:
    """The weighted residuals at ``p`` (m,; padding rows are zero)."""
    return COMPILE_CACHE.get(k).residuals(data, p)


def jacobian_at(k: Kernel, data: Any, p: Array, f_scale: Array) -> Array:
    """The loss-rescaled Jacobian at ``p`` (materialised: m × n)."""
    return COMPILE_CACHE.get(k).jacobian(data, p, f_scale)
