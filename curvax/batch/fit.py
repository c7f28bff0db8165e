"""``curve_fit_batch``: many independent small fits as one compiled, vmapped program.

For fits ``b = 1..B`` of the same model ``f`` each minimises its own cost

    C_b(p_b) = ½ Σ_i m_bi ρ(r_bi²),    r_bi = (f(x_bi, p_b) − y_bi) / σ_bi,

with ``m_bi ∈ {0, 1}`` the mask of real points (padding, omitted NaN).  The fits share
nothing but the program: a one-fit solver (see the two families below) is
``jax.vmap``-ed over the batch axis and compiled once per (model, options, chunk shape,
dtype).

Why one fit cannot disturb another: under ``vmap`` every operation acts on each fit's
own slice, and the batched ``while_loop`` keeps iterating while *any* fit runs but
selects, fit by fit, the new state only where that fit's own loop condition holds — a
converged (or failed) fit's state is frozen bit for bit.  A fit whose data or start
are not finite stops at once with status -1; NaN can only reach its own slice.

The batch is cut into sub-chunks (sized to a memory budget) that run one after the
other, several per compiled call, so memory stays O(call × N + chunk × N × P)
per call in flight whatever ``B``.  On a CPU the calls run side by side on one thread
per core (``workers``): XLA runs each call's loops on one core.  A sub-chunk computes
the same bits whichever call or thread runs it, so results do not depend on how the
batch is cut.

Two solver families (the ``linalg`` option):

* ``'cholesky'`` (the default for ``method='lm'``): Levenberg–Marquardt on the damped
  normal equations with an unrolled Cholesky solve (:mod:`curvax.core.lm_normal`), the
  Gpufit approach — a few dozen vector operations per iteration across the batch.
* ``'jacobi'`` (the default for ``method='trf'``) and ``'lapack'``: the single-fit
  solvers themselves, with the trust-region subproblem's SVD and each fit's data
  factor done by the vectorised Jacobi SVD and modified Gram–Schmidt of
  :mod:`curvax.core.small_linalg` (no LAPACK call, so the program may run on threads)
  or by LAPACK: the iterates of :func:`curvax.curve_fit`, up to rounding.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from curvax.batch.guess import guess_loop, vectorised_guesser
from curvax.batch.result import STATUS_INVALID, BatchResult
from curvax.core.covariance import covariance_from_factors, covariance_from_triangular
from curvax.core.least_squares import DEFAULT_TOL, default_max_nfev, jac_mode
from curvax.core.lm import lm
from curvax.core.lm_normal import finish_normal_fits, lm_normal
from curvax.core.loss import get_loss
from curvax.core.memo import BoundedCache, canonical_function, hashable
from curvax.core.pointwise import is_pointwise
from curvax.core.problem import (
    PointwiseData,
    adapt_model,
    count_model_params,
    detect_param_style,
    pointwise_reducer,
    signature_param_names,
    traced_output_shape,
    weighted_value_and_jacobian,
)
from curvax.core.refusal import refusal_probe_points
from curvax.core.sharding import mesh_size, resolve_mesh, round_up
from curvax.core.small_linalg import gram_schmidt_r, jacobi_svd
from curvax.core.solve import precision, strictly_feasible
from curvax.core.start import initial_feasible
from curvax.core.threaded import default_workers, safe_on_threads
from curvax.core.trf import trf
from curvax.core.trust_region import FAR_FROM_MINIMUM_STATUS, PROBE_TIE
from curvax.core.validation import (
    MAGNITUDE_LIMIT,
    SIGMA_MIN,
    check_max_nfev,
    check_method,
    check_solver_options,
    check_x_scale,
    default_method,
    real_array,
)

#: Default memory budget for one chunk's intermediates, in bytes.
DEFAULT_MEMORY_BUDGET = 256 * 2**20
#: Largest default chunk on CPU (measured: small chunks stay in cache) and elsewhere.
CPU_CHUNK = 256
ACCEL_CHUNK = 65536
#: Most fits handed to one compiled call (as several sub-chunks on a CPU).
CALL_FITS = 16384

NAN_POLICIES = (None, "raise", "omit")
LINALG = ("auto", "cholesky", "jacobi", "lapack")


# --- compiled program ------------------------------------------------------------------


def _build_program(
    f: Callable[..., Any],
    style: str,
    jac: Any,
    loss: Any,
    method: str,
    jac_scale: bool,
    x_per_fit: bool,
    linalg: str,
    absolute_sigma: bool,
    mesh: Any = None,
) -> Callable[..., Any]:
    """The compiled program for arrays of shape (S, C, ...): S sub-chunks of C fits.

    The C fits of a sub-chunk run as one ``vmap``-ed solver (they iterate together until
    the last of them stops); the S sub-chunks run one after the other inside the
    program (``lax.map``), so a call does many small, cache-sized sub-chunks for one
    dispatch.  Each fit's covariance is computed in the program as well
    (:func:`curvax.core.covariance.covariance_from_triangular`, which flags the rare
    fits whose rank test it cannot decide without an SVD).
    """
    g = adapt_model(f, style)
    jm = adapt_model(jac, style) if callable(jac) else jac
    rho_fn = None if (isinstance(loss, str) and loss == "linear") else get_loss(loss)
    svd = jacobi_svd if linalg == "jacobi" else None
    # without LAPACK calls the program vectorises and may run on several threads
    factorize = gram_schmidt_r if linalg == "jacobi" else None

    def one(x, y, w, mask, p0, lb, ub, xs, f_scale, ftol, xtol, gtol, max_nfev):  # type: ignore[no-untyped-def]
        n = y.shape[0]
        xs_ = None if jac_scale else xs
        if linalg == "cholesky":
            vj = _masked_value_and_jac(g, jm, x, y, w, mask)
            return tuple(lm_normal(vj, p0, xs_, ftol, xtol, gtol, max_nfev))
        reduce_fn = pointwise_reducer(
            PointwiseData(g, jm, x, y, w, mask, rho_fn, f_scale, n, factorize=factorize)
        )
        if method == "lm":
            out = lm(reduce_fn, p0, xs_, ftol, xtol, gtol, max_nfev, n, svd=svd)
        else:
            out = trf(reduce_fn, p0, lb, ub, xs_, ftol, xtol, gtol, max_nfev, n, svd=svd)
        red = out.reduction
        return (
            out.x,
            red.R,
            red.cost,
            out.initial_cost,
            out.nfev,
            out.nit,
            out.status,
            out.optimality,
            jnp.asarray(False),
            out.claimed_status,
        )

    x_axis = 0 if x_per_fit else None
    in_axes = (x_axis, 0, 0, 0, 0, 0, 0, None, None, None, None, None, None)
    batched = jax.vmap(one, in_axes=in_axes)
    cov = jax.vmap(lambda R, m, c: covariance_from_triangular(R, m, c, absolute_sigma))

    final_values = _batched_values(g, jm, x_axis)
    residuals_at = _batched_residuals(g, x_axis)

    def program(x, y, w, mask, p0, lb, ub, *shared):  # type: ignore[no-untyped-def]
        def step(per: tuple) -> tuple:
            xi = per[0] if x_per_fit else x
            _, yi, wi, mi = per[:4]
            xo, R, cost, cost0, nfev, nit, status, opt, recheck, claimed = batched(
                xi, *per[1:], *shared
            )
            # Factors and covariances of the sub-chunk.  (Here, not over all S×C fits of
            # the call at once: the same shapes for any S give the same bits however a
            # batch is cut into calls.)
            if linalg == "cholesky":  # the solver returned A = JᵀJ in place of R
                R, status = finish_normal_fits(
                    R,
                    xo,
                    status,
                    recheck,
                    lambda: final_values(xi, yi, wi, mi, xo),
                    lambda q: residuals_at(xi, yi, wi, mi, q),
                )
            n_real = jnp.full(cost.shape, yi.shape[-1]) if mi is None else jnp.sum(mi, axis=1)
            pcov, decided = cov(R, n_real, cost)
            return xo, R, pcov, decided, cost, cost0, nfev, nit, status, opt, claimed

        per = (x if x_per_fit else None, y, w, mask, p0, lb, ub)
        return jax.lax.map(step, per)

    if mesh is None:
        return jax.jit(program)
    # Each device runs its slice of every sub-chunk, independently (no communication:
    # its while loop ends when its own fits have converged).
    ax = mesh.axis_names[0]
    per_fit = PartitionSpec(None, ax)
    specs = tuple(PartitionSpec() if a is None else per_fit for a in in_axes)
    sharded = jax.shard_map(
        program, mesh=mesh, in_specs=specs, out_specs=per_fit, check_vma=False
    )
    return jax.jit(sharded)


#: Fits judged per host call of :func:`_judge_refusals` (bounds its memory).
JUDGE_BLOCK = 1024


def _judge_refusals(
    status: np.ndarray,
    claimed: np.ndarray,
    popt: np.ndarray,
    cost: np.ndarray,
    f: Callable[..., Any],
    style: str,
    jm: Any,
    x: np.ndarray,
    x_per_fit: bool,
    y: np.ndarray,
    w: np.ndarray | None,
    mask: np.ndarray | None,
    lb: np.ndarray,
    ub: np.ndarray,
    dt: np.dtype,
) -> None:
    """Probe the fits refused as far from a minimum (-4), in place, as single fits are
    (:func:`curvax.core.refusal.judge_refusal`): where no point along the probe
    directions (:func:`~curvax.core.refusal.refusal_probe_points`) has a lower cost, the
    solver's own convergence claim stands.  Runs on the host after the batch, for the
    refused fits only, in blocks of :data:`JUDGE_BLOCK`.
    """
    todo = np.flatnonzero((status == FAR_FROM_MINIMUM_STATUS) & (claimed >= 1) & (claimed <= 4))
    if not todo.size:
        return
    g = adapt_model(f, style)
    x_axis = 0 if x_per_fit else None
    values = jax.jit(_batched_values(g, adapt_model(jm, style) if callable(jm) else jm, x_axis))
    residuals_at = _batched_residuals(g, x_axis)

    @jax.jit
    def costs(xb, yb, wb, mb, qb):  # type: ignore[no-untyped-def]
        """Costs (F, K) of F fits at K points each, ``qb`` (F, K, P)."""
        r = jax.vmap(lambda q: residuals_at(xb, yb, wb, mb, q), in_axes=1, out_axes=1)(qb)
        return 0.5 * jnp.sum(r * r, axis=-1)

    with precision(dt), np.errstate(over="ignore", invalid="ignore"):  # inf: not lower
        for lo in range(0, todo.size, JUDGE_BLOCK):
            idx = todo[lo : lo + JUDGE_BLOCK]
            xb = jnp.asarray(x[idx] if x_per_fit else x, dtype=dt)
            yb = jnp.asarray(y[idx], dtype=dt)
            wb = None if w is None else jnp.asarray(w[idx], dtype=dt)
            mb = None if mask is None else jnp.asarray(mask[idx])
            r, J = (np.asarray(a, dtype=np.float64) for a in values(xb, yb, wb, mb, popt[idx]))
            Q, R = np.linalg.qr(J)
            qtf = np.einsum("fnp,fn->fp", Q, r)
            pts = refusal_probe_points(popt[idx].astype(np.float64), R, qtf, y.shape[1], dt)
            pts = np.clip(pts, lb[idx][:, None, :], ub[idx][:, None, :]).astype(dt)
            c = np.asarray(costs(xb, yb, wb, mb, jnp.asarray(pts)), dtype=np.float64)
            c = np.where(np.isfinite(c), c, np.inf)
            stands = np.all(c >= (1.0 - PROBE_TIE) * cost[idx][:, None], axis=1)
            status[idx[stands]] = claimed[idx[stands]]


def _batched_values(g: Callable[..., Any], jm: Any, x_axis: int | None) -> Callable[..., Any]:
    """``(x, y, w, mask, p) ↦`` residuals (F, N) and Jacobians (F, N, P) of F fits at
    their parameters ``p`` (F, P); ``x_axis`` 0 for per-fit x, None for shared."""

    def one_fit(xi, yi, wi, mi, pi):  # type: ignore[no-untyped-def]
        return _masked_value_and_jac(g, jm, xi, yi, wi, mi)(pi)

    return jax.vmap(one_fit, in_axes=(x_axis, 0, 0, 0, 0))


def _batched_residuals(g: Callable[..., Any], x_axis: int | None) -> Callable[..., Any]:
    """``(x, y, w, mask, q) ↦`` residuals (F, N) of F fits at points ``q`` (F, P), without
    the Jacobian (masked points zero)."""

    def one_fit(xi, yi, wi, mi, qi):  # type: ignore[no-untyped-def]
        r = g(xi, qi) - yi
        r = r if wi is None else r * wi
        return r if mi is None else jnp.where(mi, r, 0.0)

    return jax.vmap(one_fit, in_axes=(x_axis, 0, 0, 0, 0))


def _masked_value_and_jac(
    model: Callable[..., Any], jac: Any, x: Any, y: Any, w: Any, mask: Any
) -> Callable[[Any], tuple[Any, Any]]:
    """``p ↦ (r, J)`` of one fit: weighted residuals and Jacobian, masked rows zero.

    ``w`` None means unit weights and ``mask`` None that every point is real: the
    program then has no multiplication or selection for them (18 % of the time of a
    64-point Gaussian fit, measured).
    """

    def value_and_jac(p: Any) -> tuple[Any, Any]:
        r, J = weighted_value_and_jacobian(model, jac, x, y, w, p)
        if mask is None:
            return r, J
        return jnp.where(mask, r, 0.0), jnp.where(mask[:, None], J, 0.0)

    return value_and_jac


_PROGRAMS: BoundedCache[Callable[..., Any]] = BoundedCache(32)


def _program(key: tuple) -> Callable[..., Any]:
    return _PROGRAMS.get_or_make(hashable(key), lambda: _build_program(*key))


# --- input handling ----------------------------------------------------------------------


def _explain_untraceable(
    fn: Callable[..., Any], style: str, x: Any, p: np.ndarray, name: str, who: str
) -> None:
    """Raise why JAX could not trace ``fn`` (the model ``f`` or a callable ``jac``).

    Evaluated once on the host: the function's own exception when it raises, an error
    when it returns no real numbers, else (it works only outside JAX: NumPy or Python
    control flow on the parameters) the ``TypeError`` saying that ``who`` needs a
    traceable function.
    """
    what = "model" if name == "f" else "Jacobian"
    try:
        with np.errstate(all="ignore"):
            out = adapt_model(fn, style)(x, p)
    except Exception as err:
        raise ValueError(f"{name}: the {what} raised {type(err).__name__} at p0: {err}") from err
    kind = np.asarray(out).dtype.kind if out is not None else "O"
    if kind not in "biuf":
        got = "complex values" if kind == "c" else type(out).__name__
        raise ValueError(f"{name}: the {what} must return real numbers, got {got} at p0")
    raise TypeError(
        f"{name}: {who} needs a {what} JAX can trace (written with jax.numpy, without "
        "Python control flow on parameter values); fit a NumPy model one curve at a time "
        "with curvax.curve_fit"
    )


def check_batch_model(
    f: Callable[..., Any],
    jac: Any,
    style: str,
    x: Any,
    p0: np.ndarray,
    n_points: int,
    who: str = "curve_fit_batch",
) -> None:
    """Check that the model ``f`` (and a callable ``jac``) can run in a batched program.

    Both are traced abstractly at the first finite row of ``p0`` (nothing is computed);
    ``f`` must return ``n_points`` values (or one, broadcast), a callable ``jac`` the
    (n_points, P) Jacobian.  A function that cannot be traced is evaluated once on the
    host to report its own error (:func:`_explain_untraceable`).
    """
    p0 = np.atleast_2d(p0)
    finite = np.all(np.isfinite(p0), axis=1)
    p = p0[int(np.argmax(finite))]
    n_par = p.size
    shape = traced_output_shape(adapt_model(f, style), x, p)
    if shape is None:
        _explain_untraceable(f, style, x, p, "f", who)
    if shape not in ((n_points,), (), (1,)):
        raise ValueError(
            f"f: the model returned shape {shape} but each curve has {n_points} points"
        )
    if not callable(jac):
        return
    j_shape = traced_output_shape(adapt_model(jac, style), x, p)
    if j_shape is None:
        _explain_untraceable(jac, style, x, p, "jac", who)
    allowed = {(n_points, n_par)} | ({(1, n_par)} if shape != (n_points,) else set())
    if j_shape not in allowed:
        raise ValueError(
            f"jac: returned shape {j_shape}; expected ({n_points}, {n_par}): the derivative "
            f"of the model at each of the {n_points} points with respect to each of the "
            f"{n_par} parameters"
        )


def _as_y(ydata: Any) -> np.ndarray:
    y = real_array(ydata, "ydata")
    if y.ndim != 2:
        raise ValueError(
            f"ydata: expected shape (B, N) — one row of N observations per fit — got {y.shape}"
        )
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"ydata: must not be empty, got shape {y.shape}")
    return y


def _as_x(
    xdata: Any, B: int, N: int, x_per_fit: bool | None = None
) -> tuple[np.ndarray, bool | None]:
    """Numeric xdata and whether it is per fit (leading axis B) or shared.

    ``None`` in place of the verdict means the shape cannot tell: a 2-D x whose leading
    axis equals the number of fits B is either one (N,) x per fit or a shared (k, N) x
    with k = B (:func:`resolve_x_layout` decides).
    """
    x = real_array(xdata, "xdata")
    if x.ndim == 0 or x.shape[-1] != N:
        raise ValueError(
            f"xdata: shape {x.shape} does not end with N={N} (the number of points per fit "
            "in ydata); expected (N,), (k, N), (B, N) or (B, k, N)"
        )
    if x_per_fit is not None and not isinstance(x_per_fit, (bool, np.bool_)):
        raise ValueError(f"x_per_fit: expected True, False or None, got {x_per_fit!r}")
    if x_per_fit:
        if x.ndim not in (2, 3) or x.shape[0] != B:
            raise ValueError(
                f"xdata: x_per_fit=True needs shape (B, N) or (B, k, N) with B={B}, "
                f"got {x.shape}"
            )
        return x, True
    if x.ndim == 1:
        return x, False
    if x.ndim == 2:
        if x_per_fit is None and x.shape[0] == B:
            return x, None
        return x, False
    if x.ndim == 3:
        if x.shape[0] == B and x_per_fit is None:
            return x, True
        if x.shape[0] == 1:
            return x[0], False
    raise ValueError(
        f"xdata: shape {x.shape} is not one of (N,), (k, N), (B, N), (B, k, N) with B={B}, N={N}"
    )


def resolve_x_layout(
    f: Callable[..., Any], x_shape: tuple[int, ...], dtype: Any, p0: Any, param_style: str
) -> bool:
    """Whether an x of shape (B, N) with B fits is per fit (True) or shared (False).

    Read as per fit (the documented default) unless the model says otherwise: it is
    traced abstractly (nothing is computed) as ``f(x_b, p)`` with x_b of shape (N,) and
    as ``f(x, p)`` with the whole (B, N) array, and x is shared when only the second
    returns the N values of one curve — a model of k = B coordinates per point such as
    ``b1 − b2·x[0]·exp(−b3·x[1])`` would otherwise see one scalar per coordinate row
    and fit a constant.
    """
    B, N = x_shape
    if p0 is not None:
        P = int(np.shape(p0)[-1]) if np.ndim(p0) else 0
    else:
        names = getattr(f, "param_names", None)
        P = len(names) if names is not None else (count_model_params(f) or 0)
    if P < 1:
        return True
    try:
        g = adapt_model(f, detect_param_style(f, P, param_style))
    except Exception:  # the checks that follow report a bad model or p0 themselves
        return True
    p = np.ones(P)
    per = traced_output_shape(g, jax.ShapeDtypeStruct((N,), dtype), p)
    shared = traced_output_shape(g, jax.ShapeDtypeStruct((B, N), dtype), p)
    return not (shared == (N,) and per != (N,))


def _per_fit(a: Any, B: int, P: int, name: str) -> np.ndarray:
    """A (B, P) array from a scalar, (P,) or (B, P) input."""
    arr = real_array(a, name)
    if arr.ndim == 0:
        return np.full((B, P), float(arr))
    if arr.shape == (P,):
        return np.broadcast_to(arr, (B, P)).copy()
    if arr.shape == (B, P):
        return arr.copy()
    raise ValueError(f"{name}: has shape {arr.shape}; expected a scalar, ({P},) or ({B}, {P})")


def _bounds(bounds: Any, B: int, P: int) -> tuple[np.ndarray, np.ndarray]:
    if bounds is None:
        lb_raw, ub_raw = -np.inf, np.inf
    elif hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lb_raw, ub_raw = bounds.lb, bounds.ub
    else:
        try:
            lb_raw, ub_raw = bounds
        except (TypeError, ValueError) as err:
            raise ValueError("bounds: expected a (lower, upper) pair or a Bounds object") from err
    lb = _per_fit(lb_raw, B, P, "bounds")
    ub = _per_fit(ub_raw, B, P, "bounds")
    if np.isnan(lb).any() or np.isnan(ub).any():
        raise ValueError("bounds: contain NaN")
    bad = np.argwhere(lb > ub)
    if bad.size:
        b, i = (int(v) for v in bad[0])
        raise ValueError(f"bounds: lower > upper for fit {b}, parameter {i}")
    eq = np.argwhere(lb == ub)
    if eq.size:
        b, i = (int(v) for v in eq[0])
        raise ValueError(
            f"bounds: lower == upper (a fixed parameter) for fit {b}, parameter {i}; "
            "curve_fit_batch does not fix parameters — write a model without it"
        )
    return lb, ub


def _out_of_range(wy: np.ndarray, m: np.ndarray | None) -> tuple[np.ndarray, str]:
    """Fits whose weighted data ``|y/σ|`` are too large or too small for float64 squares.

    Their cost would overflow, or underflow to 0 and read as "converged at p0" (see
    :func:`curvax.core.validation.check_magnitude`); such fits fail alone with this reason.
    ``m`` is the mask of real points, None when every point is real.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if m is None:  # the common case, without an |y| temporary or a masked reduction
            mag = np.maximum(np.max(wy, axis=1), -np.min(wy, axis=1))
        else:
            mag = np.max(np.abs(wy), axis=1, where=m, initial=0.0)
    bad = (mag > MAGNITUDE_LIMIT) | ((mag > 0) & (mag < 1.0 / MAGNITUDE_LIMIT))
    return bad, (
        f"the weighted data |y/sigma| lie outside [{1 / MAGNITUDE_LIMIT:.0e}, "
        f"{MAGNITUDE_LIMIT:.0e}], where float64 can hold their squares; rescale y and sigma"
    )


def _sigma(sigma: Any, B: int, N: int) -> np.ndarray | None:
    if sigma is None:
        return None
    s = real_array(sigma, "sigma")
    if s.ndim == 0 or s.shape == (N,) or s.shape == (B, N):
        return np.broadcast_to(s, (B, N))
    raise ValueError(f"sigma: has shape {s.shape}; expected a scalar, ({N},) or ({B}, {N})")


def _mask(mask: Any, B: int, N: int) -> np.ndarray:
    if mask is None:
        return np.ones((B, N), dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        raise ValueError(f"mask: expected a boolean array, got dtype {m.dtype}")
    if m.shape not in ((N,), (B, N)):
        raise ValueError(f"mask: has shape {m.shape}; expected ({N},) or ({B}, {N})")
    return np.broadcast_to(m, (B, N)).copy()


def _auto_chunk(B: int, N: int, P: int, k: int, itemsize: int, budget: int) -> int:
    """Chunk size: the default cap, reduced so the intermediates fit the budget.

    Per fit, a trial point holds about ``N (k + 3 + 3 (P + 1))`` numbers (data, the
    tangents and the rows ``[J | r]``) plus O(P²) solver state; a factor 4 covers
    the temporaries of the compiled program.
    """
    on_cpu = jax.default_backend() == "cpu"
    cap = CPU_CHUNK if on_cpu else ACCEL_CHUNK
    per_fit = 4 * itemsize * (N * (k + 3 + 3 * (P + 1)) + 8 * (P + 1) ** 2)
    by_budget = max(1, budget // per_fit)
    chunk = int(min(cap, by_budget))
    if B < chunk:
        chunk = max(1, 1 << (int(B) - 1).bit_length())  # next power of two: few shapes
    return chunk


def _sub_chunks_per_call(chunk: int, N: int, k: int, itemsize: int, budget: int) -> int:
    """Sub-chunks per compiled call: up to :data:`CALL_FITS` fits, inputs within half the budget.

    A power of two, so that the last, partial call compiles one of few shapes.
    """
    input_bytes = chunk * N * (k + 3) * itemsize
    n = max(1, min(CALL_FITS // chunk, (budget // 2) // max(1, input_bytes)))
    return 1 << (n.bit_length() - 1)


def _plan_calls(B: int, chunk: int, per_call: int) -> list[tuple[int, int]]:
    """``(first fit, sub-chunks)`` of each compiled call for ``B`` fits.

    Calls of ``per_call`` sub-chunks, the last one rounded up to a power of two (its
    padding fits stop at once), so that few shapes are compiled.
    """
    calls = []
    lo = 0
    while lo < B:
        left = -(-(B - lo) // chunk)  # sub-chunks still to do
        n_sub = per_call if left >= per_call else 1 << (left - 1).bit_length()
        calls.append((lo, n_sub))
        lo += n_sub * chunk
    return calls


def _pow2_floor(n: int) -> int:
    """The largest power of two not above ``n`` (≥ 1)."""
    return 1 << (max(1, int(n)).bit_length() - 1)


def _safe_on_threads(key: Any, prog: Any, args: list[Any]) -> bool:
    """Whether calls of ``prog`` on ``args`` may run on several threads at once
    (:func:`curvax.core.threaded.safe_on_threads`: no custom call in its program —
    the ``'jacobi'``/``'lapack'`` solvers' LAPACK kernels, or one in the user's model)."""
    shapes = tuple(None if a is None else (a.shape, str(a.dtype)) for a in args)
    return safe_on_threads((key, shapes), lambda: prog.lower(*args).as_text())


def _run_on_threads(
    calls: list[tuple[int, int]],
    run_call: Callable[[int, int], Any],
    fetch: Callable[[Any, int, int], None],
    workers: int,
) -> None:
    """Run ``fetch(run_call(lo, n), lo, n)`` for every call, on ``workers`` threads.

    The first call of each shape traces and compiles the program; calls of the same
    shape wait for it instead of compiling it again on another thread.  The first
    exception of any call is raised here, after every thread has stopped.
    """
    compiled: dict[int, threading.Event] = {}
    lock = threading.Lock()

    def one(lo: int, n_sub: int) -> None:
        with lock:
            first = n_sub not in compiled
            done = compiled.setdefault(n_sub, threading.Event())
        if first:
            try:
                out = run_call(lo, n_sub)
            finally:
                done.set()
        else:
            done.wait()
            out = run_call(lo, n_sub)
        fetch(out, lo, n_sub)

    pool = ThreadPoolExecutor(max_workers=min(workers, len(calls)))
    try:
        futures = [pool.submit(one, lo, n_sub) for lo, n_sub in calls]
        for fut in futures:
            fut.result()
    finally:  # on an error (or Ctrl-C) the calls not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


# --- the front door ------------------------------------------------------------------


def curve_fit_batch(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    bounds: Any = (-np.inf, np.inf),
    method: str | None = None,
    jac: Any = None,
    *,
    loss: str | Callable[..., Any] = "linear",
    f_scale: float = 1.0,
    mask: Any = None,
    nan_policy: str | None = None,
    ftol: float = DEFAULT_TOL,
    xtol: float = DEFAULT_TOL,
    gtol: float = DEFAULT_TOL,
    x_scale: Any = "jac",
    max_nfev: int | None = None,
    dtype: Any = None,
    param_style: str = "auto",
    param_names: tuple[str, ...] | None = None,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    linalg: str = "auto",
    devices: Any = None,
    workers: int | None = None,
    x_per_fit: bool | None = None,
) -> BatchResult:
    """Fit the same model independently to each row of ``ydata``.

    Each fit ``b`` minimises ``½ Σ_i m_bi ρ(((f(x_b, p_b))_i − y_bi)² / σ_bi²)`` as
    :func:`curvax.curve_fit` would on that fit's data alone (same defaults, same minimum,
    same covariance; with ``method='lm'`` by the batch solver of ``linalg='cholesky'``,
    whose path to the minimum differs); all fits run as one compiled ``vmap``-ed
    program.

    Parameters
    ----------
    f : callable
        The model, ``f(x, p1, ..., pP)`` or ``f(x, params)``, written with ``jax.numpy``;
        the models of :mod:`curvax.models` (e.g. ``gaussian_2d``) work directly.
    xdata : array_like
        Shared by all fits: (N,) or (k, N) (e.g. (2, N) pixel coordinates for a 2-D
        model); or per fit: (B, N) or (B, k, N).  A 2-D array whose first axis has
        length B is read as per fit, unless only the shared reading gives the model one
        value per point (a model that indexes ``x[0]``, ``x[1]``); ``x_per_fit`` or a
        shared x passed as (1, k, N) settles it explicitly.
    ydata : array_like (B, N) or dask.array.Array (B, N)
        One row of observations per fit.  A Dask array (chunked along the batch axis)
        is fitted block by block on the Dask workers, the data staying there
        (:func:`curvax.scale.dask_backend.curve_fit_batch_dask`); per-fit inputs are
        cut along the same rows.
    p0 : array_like, optional
        (P,) shared or (B, P) per fit.  Without it: a vectorised moment estimate for
        the built-in Gaussian models, else the model's ``guess(x, y)`` fit by fit, else
        ones (inside the bounds), as ``curve_fit``.
    sigma : None, scalar, (N,) or (B, N)
        Standard deviations of ``ydata``.
    absolute_sigma : bool
        As in ``curve_fit``: if False ``pcov`` is scaled by the reduced χ² of each fit.
    bounds : (lb, ub)
        Each a scalar, (P,) shared or (B, P) per fit.
    method : {'lm', 'trf'}, optional
        Default: ``'lm'`` without bounds and with the linear loss, else ``'trf'``.
    jac : callable, str or None
        As in ``curve_fit``; default forward-mode automatic differentiation.
    loss, f_scale
        Robust loss, as in ``curve_fit`` (needs ``method='trf'``).
    mask : bool array (N,) or (B, N), optional
        True for real points; False points carry zero weight (variable-length fits
        padded to a common N).
    nan_policy : {None, 'raise', 'omit'}
        ``'omit'``: points with NaN in ``x`` or ``y`` are masked out (NaN padding);
        ``'raise'``: NaN anywhere raises; ``None``: a fit with non-finite data fails
        alone (status -1) and the others proceed.
    ftol, xtol, gtol, x_scale, max_nfev, dtype, param_style
        As in ``curve_fit`` (tolerances default 1e-12; ``dtype`` 'float64' or
        'float32').
    param_names : tuple of str, optional
        Names for the result (default: the model's or the signature's).
    chunk_size : int, optional
        Fits per compiled call; default from ``memory_budget`` (at most 256 on CPU,
        where small chunks stay in cache, 65536 on accelerators).
    memory_budget : int
        Bytes allowed for one chunk's intermediates (default 256 MiB).
    linalg : {'auto', 'cholesky', 'jacobi', 'lapack'}
        The solver family.  ``'cholesky'``: Levenberg–Marquardt on the damped normal
        equations with an unrolled Cholesky solve (:mod:`curvax.core.lm_normal`; the
        Gpufit approach, ``method='lm'`` only) — several times faster for a few
        parameters; it reaches the same minimum as ``curve_fit`` by a different path, so
        ``nfev`` differs.  ``'jacobi'`` / ``'lapack'``: the solver of ``curve_fit``
        itself, with the subproblem's SVD done by the vectorised Jacobi SVD or by LAPACK.
        ``'auto'`` (default): ``'cholesky'`` for ``method='lm'``, ``'jacobi'`` for
        ``'trf'``.
    devices : None, 'all', int, list of devices or Mesh
        Split each chunk of fits over several devices (:mod:`curvax.core.sharding`);
        each device runs its share independently, so results equal the one-device run.
    workers : int, optional
        Compiled calls run at once, each on its own Python thread.  A CPU device runs
        one call on one core (the fits' loops are sequential), so this is how a batch
        uses every core of a CPU.  Default: on a CPU device (with ``devices`` None) the
        number of cores this process may use (:func:`default_workers`), otherwise 1.
        A program holding a custom call (a LAPACK kernel: the ``'jacobi'``/``'lapack'``
        solvers' reduction, more than 12 parameters, or one in the model) always runs on
        one thread, since two such calls at once can deadlock (see
        :func:`_safe_on_threads`).  Results do not depend on ``workers``: every call
        computes the same bits on any thread.
    x_per_fit : bool, optional
        True: ``xdata`` of shape (B, N) or (B, k, N) holds each fit's own x; False: it
        is shared, (k, N) even when k = B.  Default: from the shapes, and for a 2-D x
        with B rows from the model (see ``xdata``).

    Returns
    -------
    BatchResult
        ``popt`` (B, P), ``pcov`` (B, P, P), ``perr``, and per fit ``success``,
        ``status``, ``cost``, ``nfev``, ``message``.

    Raises
    ------
    ValueError
        On malformed input (the message names the argument).  Problems of single fits
        (non-finite data or start, ``p0`` outside its bounds, too few points) do not
        raise: those fits get status -1 and a message saying why.
    """
    if not callable(f):
        raise TypeError(f"f: expected a callable model, got {type(f).__name__}")
    f, jac = canonical_function(f), canonical_function(jac)
    if type(ydata).__module__.split(".")[0] == "dask":
        from curvax.scale.dask_backend import curve_fit_batch_dask

        return curve_fit_batch_dask(
            f,
            xdata,
            ydata,
            p0,
            sigma,
            bounds,
            mask,
            absolute_sigma=absolute_sigma,
            method=method,
            jac=jac,
            loss=loss,
            f_scale=f_scale,
            nan_policy=nan_policy,
            ftol=ftol,
            xtol=xtol,
            gtol=gtol,
            x_scale=x_scale,
            max_nfev=max_nfev,
            dtype=dtype,
            param_style=param_style,
            param_names=param_names,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            linalg=linalg,
            x_per_fit=x_per_fit,
        )
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy: expected one of {NAN_POLICIES}, got {nan_policy!r}")
    if linalg not in LINALG:
        raise ValueError(f"linalg: expected one of {LINALG}, got {linalg!r}")
    dt, fs, (ftol_, xtol_, gtol_) = check_solver_options(dtype, loss, f_scale, ftol, xtol, gtol)
    mesh = resolve_mesh(devices)
    if workers is None:
        workers = default_workers() if mesh is None and jax.default_backend() == "cpu" else 1
    elif isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if not isinstance(memory_budget, (int, np.integer)) or memory_budget < 1:
        raise ValueError(
            f"memory_budget: expected a positive number of bytes, got {memory_budget!r}"
        )

    y = _as_y(ydata)
    B, N = y.shape
    x, per_fit = _as_x(xdata, B, N, x_per_fit)
    if per_fit is None:
        per_fit = resolve_x_layout(f, x.shape, x.dtype, p0, param_style)
    x_per_fit = per_fit
    m = _mask(mask, B, N)
    x_bad = ~np.isfinite(x)
    if x_per_fit:
        x_bad_pts = x_bad.reshape(B, -1, N).any(axis=1)
    else:
        x_bad_pts = np.broadcast_to(x_bad.reshape(-1, N).any(axis=0), (B, N))
    bad_pts = (~np.isfinite(y) | x_bad_pts) & m
    if nan_policy == "raise" and bad_pts.any():
        b = int(np.argwhere(bad_pts)[0][0])
        raise ValueError(
            f"xdata/ydata: {int(bad_pts.sum())} point(s) are NaN or Inf, first in fit {b} "
            "(nan_policy='raise')"
        )
    if nan_policy == "omit":
        m = m & ~bad_pts
        bad_pts = np.zeros_like(bad_pts)
    # Masked points are replaced by harmless numbers (they carry zero weight anyway).
    all_real = bool(m.all())
    if not all_real:
        y = np.where(m, y, 0.0)
    if x_per_fit:
        x = np.where(np.reshape(m, (B,) + (1,) * (x.ndim - 2) + (N,)), x, 0.0)
    elif x_bad.any():
        x = np.where(x_bad, 0.0, x)
    s = _sigma(sigma, B, N)
    w = None  # all ones: the program then has no weights
    if s is not None:
        s_ok = np.isfinite(s) & (s >= SIGMA_MIN)  # 1/sigma must be finite too
        if not np.all(s_ok | ~m):
            b = int(np.argwhere(~s_ok & m)[0][0])
            raise ValueError(
                f"sigma: every uncertainty must be positive and finite, and at least "
                f"{SIGMA_MIN:.1e} so that 1/sigma is finite (fit {b})"
            )
        w = np.where(m, 1.0 / np.where(s_ok, s, 1.0), 1.0)
    n_real = np.full(B, N) if all_real else m.sum(axis=1)

    # Number of parameters, starting points.
    names = getattr(f, "param_names", None)
    names = tuple(names) if names is not None else None
    n_sig = count_model_params(f)
    reasons: dict[int, str] = {}
    if p0 is None:
        guesser = vectorised_guesser(f)
        guess = getattr(f, "guess", None)
        xb = x if x_per_fit else np.broadcast_to(x, (B, *x.shape))
        if guesser is not None:
            with np.errstate(all="ignore"):
                p0a = guesser(xb, y, m)
        elif callable(guess):
            p0a = guess_loop(guess, xb, y, m)
        else:
            if n_sig is None:
                raise ValueError(
                    "p0: cannot infer the number of parameters from the signature of f; pass p0"
                )
            lb0, ub0 = _bounds(bounds, B, n_sig)
            p0a = initial_feasible(lb0, ub0)
        p0a = np.asarray(p0a, dtype=np.float64)
        P = p0a.shape[1]
    else:
        p0_arr = real_array(p0, "p0")
        if p0_arr.ndim not in (1, 2) or p0_arr.shape[-1] == 0:
            raise ValueError(f"p0: expected shape (P,) or (B, P), got {p0_arr.shape}")
        P = p0_arr.shape[-1]
        p0a = _per_fit(p0_arr, B, P, "p0")
    style = detect_param_style(f, P, param_style)
    if style == "args" and n_sig is not None and n_sig != P:
        raise ValueError(f"p0: has {P} values but the model f takes {n_sig} parameters")
    if names is None and style == "args":
        sig_names = signature_param_names(f)
        names = sig_names if sig_names is not None and len(sig_names) == P else None
    lb, ub = _bounds(bounds, B, P)
    bounded = bool(np.isfinite(lb).any() or np.isfinite(ub).any())
    method = default_method(method, bounded, loss)
    check_method(method, bounded)
    if method == "lm" and not (isinstance(loss, str) and loss == "linear"):
        raise ValueError("loss: method='lm' supports only the linear loss; use method='trf'")
    xs = check_x_scale(x_scale, P)
    if linalg == "auto":
        linalg = "cholesky" if method == "lm" else "jacobi"
    elif linalg == "cholesky" and method != "lm":
        raise ValueError(
            f"linalg: 'cholesky' (the normal-equations Levenberg–Marquardt) needs "
            f"method='lm', got method={method!r}; use linalg='jacobi' or 'lapack'"
        )
    nfev = check_max_nfev(max_nfev, default_max_nfev(P))
    jm = jac_mode(jac, P, N)
    x_one = x[0] if x_per_fit else x
    check_batch_model(f, jac, style, x_one, p0a, N)
    if not all_real and isinstance(x_one, np.ndarray) and N >= 2:
        p_row = p0a[int(np.argmax(np.all(np.isfinite(p0a), axis=1)))]
        if not is_pointwise(f, style, x_one, -1, p_row, dt):
            raise ValueError(
                "mask/nan_policy: the model f is not point-by-point (its value at a point "
                "depends on the other points, e.g. through mean(x) or a cumulative sum), "
                "and masked points are still passed to it, so the fits would not equal "
                "fits of the points kept; fit such curves one at a time with "
                "curvax.curve_fit(nan_policy='omit')"
            )

    # Fits that cannot start: marked now, run on a harmless start, reported as -1.
    invalid = np.zeros(B, dtype=bool)
    for cond, why in (
        (~np.all(np.isfinite(p0a), axis=1), "p0 is not finite"),
        (np.any((p0a < lb) | (p0a > ub), axis=1), "p0 lies outside the bounds"),
        (n_real < P, "fewer real data points than parameters"),
        _out_of_range(y if w is None else w * y, None if all_real else m),
        (bad_pts.any(axis=1), "non-finite data"),
    ):
        for b in np.nonzero(cond & ~invalid)[0].tolist():
            reasons[b] = why
        invalid |= cond
    start = np.where(invalid[:, None], initial_feasible(lb, ub), p0a)
    if method == "trf":
        start = strictly_feasible(start, lb, ub)

    # Run: sub-chunks of `chunk` fits, `calls_of` sub-chunks per compiled call.
    k = int(np.prod(x.shape[1:-1] if x_per_fit else x.shape[:-1], dtype=int))
    chunk = chunk_size or _auto_chunk(B, N, P, k, dt.itemsize, int(memory_budget))
    chunk = round_up(chunk, mesh_size(mesh))  # each device gets an equal slice
    per_call = _sub_chunks_per_call(chunk, N, k, dt.itemsize, int(memory_budget))
    key = (f, style, jm, loss, method, xs is None, x_per_fit, linalg, absolute_sigma, mesh)
    prog = _program(key)
    xs_arr = np.ones(P) if xs is None else xs
    with precision(dt):
        shared = [
            *(jnp.asarray(a, dtype=dt) for a in (xs_arr, fs, ftol_, xtol_, gtol_)),
            jnp.asarray(nfev, jnp.int32),
        ]
        x_dev = None if x_per_fit else jnp.asarray(x, dtype=dt)

    def call_args(lo: int, n_sub: int) -> list[Any]:
        """Arguments for fits ``lo, lo+1, ...`` as ``n_sub`` sub-chunks (padding: NaN data)."""
        size = n_sub * chunk
        hi = min(lo + size, B)
        idx = np.minimum(np.arange(lo, lo + size), hi - 1)
        yc = y[idx]
        yc[hi - lo :] = np.nan  # padding: stops at once with status -1, costs one pass

        def shaped(a: np.ndarray, dtype: Any = dt) -> jax.Array:
            return jnp.asarray(a.reshape(n_sub, chunk, *a.shape[1:]), dtype=dtype)

        with precision(dt):
            return [
                shaped(x[idx]) if x_per_fit else x_dev,
                shaped(yc),
                None if w is None else shaped(w[idx]),
                None if all_real else shaped(m[idx], bool),
                *(shaped(a[idx]) for a in (start, lb, ub)),
                *shared,
            ]

    def run_call(lo: int, n_sub: int) -> Any:
        """Dispatch one call (it runs while the next call is prepared)."""
        args = call_args(lo, n_sub)
        with precision(dt):
            return prog(*args)

    outputs: list[np.ndarray] = []  # (B, ...) each, made on the first fetch
    outputs_lock = threading.Lock()

    def fetch(out: Any, lo: int, n_sub: int) -> None:
        """Copy a call's results into the rows ``lo ...`` of ``outputs`` (on its thread)."""
        size = n_sub * chunk
        hi = min(lo + size, B)
        got = [np.asarray(o).reshape(size, *o.shape[2:]) for o in jax.device_get(out)]
        with outputs_lock:
            if not outputs:
                outputs.extend(np.empty((B, *o.shape[1:]), o.dtype) for o in got)
        for dest, o in zip(outputs, got):
            dest[lo:hi] = o[: hi - lo]

    calls = _plan_calls(B, chunk, per_call)
    if workers > 1:  # calls small enough that every thread stays busy to the end
        per_thread = _pow2_floor(min(per_call, max(1, -(-B // chunk) // (4 * workers))))
        threaded = _plan_calls(B, chunk, per_thread)
        with precision(dt):
            safe = len(threaded) > 1 and _safe_on_threads(key, prog, call_args(*threaded[0]))
        calls, workers = (threaded, workers) if safe else (calls, 1)
    if workers > 1:
        _run_on_threads(calls, run_call, fetch, workers)
    else:
        # One after the other, at most two in flight (one computing, one being prepared).
        pending: list[tuple[Any, int, int]] = []
        for lo, n_sub in calls:
            pending.append((run_call(lo, n_sub), lo, n_sub))
            if len(pending) == 2:
                fetch(*pending.pop(0))
        for p in pending:
            fetch(*p)
    xo, R, pcov, decided, cost, cost0, nfev_o, nit, status, opt, claimed = outputs
    pcov = pcov.astype(np.float64, copy=False)
    undecided = np.nonzero(~decided)[0]
    if undecided.size:  # rank test too close to call without the SVD
        pcov[undecided], _ = covariance_from_factors(
            R[undecided], n_real[undecided], cost[undecided], absolute_sigma
        )

    status = status.astype(np.int32, copy=False)
    if isinstance(loss, str) and loss == "linear":
        _judge_refusals(
            status, claimed, xo, cost, f, style, jm, x, x_per_fit, y, w,
            None if all_real else m, lb, ub, dt,
        )  # fmt: skip
    status[invalid] = STATUS_INVALID
    for b in np.nonzero(status == STATUS_INVALID)[0].tolist():
        reasons.setdefault(b, "non-finite residuals or Jacobian at p0")
    popt = xo.astype(dt, copy=False)
    failed = status == STATUS_INVALID
    popt[failed] = np.nan
    pcov[failed] = np.inf
    return BatchResult(
        popt=popt,
        pcov=pcov,
        status=status,
        cost=np.where(failed, np.nan, cost),
        initial_cost=cost0,
        nfev=nfev_o,
        nit=nit,
        optimality=opt,
        n_points=n_real,
        param_names=param_names or names,
        method=method,
        dtype=dt,
        reasons=reasons,
    )


def curve_fit_batch_stream(
    f: Callable[..., Any],
    xdata: Any,
    ydata_chunks: Iterable[Any],
    p0: Any = None,
    **kwargs: Any,
) -> Iterator[BatchResult]:
    """Fit a stream of batches, yielding one :class:`BatchResult` per batch.

    ``ydata_chunks`` yields arrays (b, N) (e.g. read from a file or generated on the
    fly); only one batch and its result are alive at a time, so any number of fits
    streams through in bounded memory.  ``xdata`` and ``p0`` are shared by every batch
    (per-fit ``p0`` rows must come with the data: pass ``p0=None`` or a (P,) start);
    the other keyword arguments are those of :func:`curve_fit_batch`.  Batches of the
    same size reuse one compiled program.

    ``ydata_chunks`` is checked when the function is called (``TypeError`` if it is
    not iterable, ``ValueError`` for a string or an array of fewer than three
    dimensions, whose items would not be (b, N) batches); each batch is checked by
    :func:`curve_fit_batch` when it is reached.
    """
    if isinstance(ydata_chunks, (str, bytes)) or (
        isinstance(ydata_chunks, (np.ndarray, jax.Array)) and ydata_chunks.ndim < 3
    ):
        raise ValueError(
            "ydata_chunks: expected an iterable of (b, N) arrays (a list, a generator, or "
            f"a 3-D array of batches), got {type(ydata_chunks).__name__}"
            + (f" of shape {ydata_chunks.shape}" if hasattr(ydata_chunks, "shape") else "")
            + "; fit a single (B, N) array with curve_fit_batch"
        )
    try:
        chunks = iter(ydata_chunks)
    except TypeError as err:
        raise TypeError(
            "ydata_chunks: expected an iterable of (b, N) arrays (a list or a generator), "
            f"got {type(ydata_chunks).__name__}"
        ) from err
    return _stream(f, xdata, chunks, p0, kwargs)


def _stream(
    f: Callable[..., Any], xdata: Any, chunks: Iterator[Any], p0: Any, kwargs: dict[str, Any]
) -> Iterator[BatchResult]:
    for yc in chunks:
        yield curve_fit_batch(f, xdata, yc, p0, **kwargs)
