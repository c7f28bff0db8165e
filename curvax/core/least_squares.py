"""``least_squares``: SciPy-compatible front door for a general residual function.

Solves ``min_x C(x) = ½ Σ_i ρ(f_i(x)²)`` subject to ``lb ≤ x ≤ ub``, where ``f`` is
the user's residual function (``f_scale`` enters ρ as in SciPy).  The solver is the
compiled trust-region code of :mod:`curvax.core.trf` / :mod:`curvax.core.lm`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from curvax.core.data_source import DataSource
from curvax.core.engine import Kernel
from curvax.core.memo import canonical_function
from curvax.core.result import FitResult
from curvax.core.solve import solve
from curvax.core.sparsity import check_mode as check_sparse_mode
from curvax.core.sparsity import greedy_colouring, residual_pattern
from curvax.core.validation import (
    check_f_scale,
    check_free_parameters,
    check_jac_sparsity,
    check_loss,
    check_max_nfev,
    check_method,
    check_tolerances,
    check_x0,
    check_x_scale,
    prepare_bounds,
    resolve_dtype,
)

DEFAULT_TOL = 1e-12




def _traced_output(
    fn: Callable[..., Any], name: str, hint: str, n: int, dt: np.dtype, data_args: Any
) -> Any:
    """The abstract output of ``fn(x, *args, **kwargs)`` at ``n`` parameters (nothing
    runs); a ``ValueError`` naming ``name`` if JAX cannot trace it."""
    with jax.enable_x64(dt == np.float64):
        try:
            return jax.eval_shape(
                lambda p: fn(p, *data_args[0], **data_args[1]), jax.ShapeDtypeStruct((n,), dt)
            )
        except Exception as err:
            raise ValueError(
                f"{name}: could not be evaluated by JAX at x0 ({type(err).__name__}); {hint}"
            ) from err

def check_residual_shape(out: Any) -> None:
    """A residual function's traced output must be a real scalar or 1-D array.

    Raises
    ------
    ValueError
        Naming ``fun``, for another shape or dtype (as SciPy, which requires at most 1-D).
    """
    if out is None or not hasattr(out, "shape"):
        raise ValueError(
            f"fun: must return an array of residuals, got {type(out).__name__}"
        )
    if len(out.shape) > 1:
        raise ValueError(f"fun: must return at most a 1-D array, got shape {out.shape}")
    kind = np.dtype(out.dtype).kind
    if kind == "c":
        raise ValueError(
            "fun: complex residuals are not supported; return real and imaginary parts "
            "stacked as one real array"
        )
    if kind != "f":
        raise ValueError(
            f"fun: must return floating-point residuals, got dtype {out.dtype} (integer "
            "residuals have no derivative)"
        )

def default_max_nfev(n_params: int) -> int:
    """Evaluation budget when none is given: 400 per parameter, at least 2000.

    Generous on purpose: an evaluation inside the compiled loop is cheap, and hard
    problems (e.g. NIST Bennett5 from its first start) need over a thousand.
    """
    return max(2000, 400 * n_params)


def jac_mode(jac: Any, n_params: int, n_rows: int) -> str | Callable[..., Any]:
    """Resolve the ``jac`` argument to a Jacobian strategy (see :mod:`curvax.core.problem`)."""
    if callable(jac):
        return jac
    if jac is None or jac == "auto":
        return "rev" if n_rows < n_params else "fwd"
    if jac in ("fwd", "rev", "2-point", "3-point"):
        return jac
    if jac == "cs":
        return "3-point"
    raise ValueError(
        f"jac: expected a callable, 'auto', 'fwd', 'rev', '2-point', '3-point' or 'cs', got {jac!r}"
    )


def _numeric_tree(tree: Any) -> bool:
    leaves = jax.tree.leaves(tree)
    return all(isinstance(a, (int, float, np.ndarray, np.number, jax.Array)) for a in leaves)


def least_squares(
    fun: Callable[..., Any],
    x0: Any,
    jac: Any = "auto",
    bounds: Any = (-np.inf, np.inf),
    method: str = "trf",
    ftol: float | None = DEFAULT_TOL,
    xtol: float | None = DEFAULT_TOL,
    gtol: float | None = DEFAULT_TOL,
    x_scale: Any = "jac",
    loss: str | Callable[..., Any] = "linear",
    f_scale: float = 1.0,
    max_nfev: int | None = None,
    args: tuple = (),
    kwargs: dict | None = None,
    verbose: int = 0,
    *,
    dtype: Any = None,
    jac_sparsity: Any = None,
) -> FitResult:
    """Solve a nonlinear least-squares problem with bounds (SciPy-compatible).

    Parameters
    ----------
    fun : callable
        ``fun(x, *args, **kwargs) -> (m,)`` residuals, written with ``jax.numpy``.
    x0 : array_like (n,)
        Starting point; must lie within the bounds.
    jac : {'auto', 'fwd', 'rev', '2-point', '3-point', 'cs'} or callable
        Jacobian: automatic differentiation by default; a callable
        ``jac(x, *args, **kwargs) -> (m, n)``; or finite differences.
    bounds : (lb, ub) or Bounds
        Lower and upper bounds (scalars or length-n).  ``lb == ub`` fixes a parameter.
    method : {'trf', 'lm'}
        Trust Region Reflective (bounds allowed) or Levenberg–Marquardt (no bounds).
    ftol, xtol, gtol : float
        Termination tolerances, with SciPy's meanings for ``trf`` and MINPACK's for
        ``lm`` (see :mod:`curvax.core.trust_region` and :mod:`curvax.core.lm`).
        Default 1e-12 — tighter than SciPy's 1e-8, since an iteration costs little in a
        compiled loop and loose tolerances stop well short of the minimum on
        ill-conditioned problems.
    x_scale : 'jac', 'bounds', float or array
        Characteristic scale of each variable; ``'jac'`` (default) uses the inverse
        Jacobian column norms, making the solver invariant to parameter units;
        ``'bounds'`` uses the width ``ub − lb`` of each parameter with two finite bounds
        (the fit then proceeds as for parameters normalised to [0, 1]) and ``'jac'`` for
        the others (see :func:`curvax.core.validation.check_x_scale`).
    loss : {'linear', 'soft_l1', 'huber', 'cauchy', 'arctan', 'tukey'} or callable
        Robust loss ρ (see :mod:`curvax.core.loss`).
    f_scale : float
        Soft margin between inlier and outlier residuals.
    max_nfev : int, optional
        Evaluation budget (default ``max(2000, 400·n)``).
    args, kwargs
        Extra arguments for ``fun`` and ``jac``.
    verbose : int
        Accepted for compatibility; progress printing is done through callbacks.
    dtype : {'float64', 'float32'}, optional
        Working precision (float64 by default).
    jac_sparsity : array_like (m, n), sparse matrix, 'auto' or None
        Which ``∂f_i/∂x_j`` may be non-zero (True) — or its transpose, or ``'auto'`` to
        detect it from ``fun`` at ``x0`` and three random points near it.  The Jacobian
        is then evaluated with one pass per group of structurally orthogonal columns
        (:mod:`curvax.core.sparsity`); entries outside the pattern are taken as zero.

    Returns
    -------
    FitResult
        With SciPy's fields ``x, cost, fun, jac, grad, optimality, active_mask, nfev,
        njev, status, message, success`` and more.
    """
    kwargs = dict(kwargs or {})
    dt = resolve_dtype(dtype)
    x0a = check_x0(x0, None, name="x0")
    n = x0a.size
    lb, ub = prepare_bounds(bounds, n)
    check_free_parameters(lb, ub)
    bounded = bool(np.any(np.isfinite(lb)) or np.any(np.isfinite(ub)))
    check_method(method, bounded)
    check_loss(loss)
    fs = check_f_scale(f_scale)
    ftol_, xtol_, gtol_ = check_tolerances(ftol, xtol, gtol)
    xs = check_x_scale(x_scale, n, lb, ub)
    nfev = check_max_nfev(max_nfev, default_max_nfev(n))
    if np.any((x0a < lb) | (x0a > ub)):
        i = int(np.nonzero((x0a < lb) | (x0a > ub))[0][0])
        raise ValueError(f"x0: x0[{i}]={x0a[i]:g} lies outside its bounds [{lb[i]:g}, {ub[i]:g}]")
    if not callable(fun):
        raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
    fun, jac = canonical_function(fun), canonical_function(jac)

    data_args: Any = (tuple(args), kwargs)
    fn: Callable[..., Any] = fun
    jac_c = jac
    if not _numeric_tree(data_args):
        # Non-array extra arguments cannot be traced: bind them (no reuse across calls).
        a, kw = data_args

        def fn(x: Any) -> Any:
            return fun(x, *a, **kw)

        if callable(jac):

            def jac_c(x: Any) -> Any:
                return jac(x, *a, **kw)

        data_args = ((), {})

    m_shape = _traced_output(fn, "fun", "write it with jax.numpy", n, dt, data_args)
    check_residual_shape(m_shape)
    m = int(np.prod(getattr(m_shape, "shape", ()) or (1,)))
    mode = jac_mode(jac_c, n, m)
    if callable(jac_c):
        j_shape = _traced_output(
            jac_c, "jac", "write it with jax.numpy, or pass jac='2-point'", n, dt, data_args
        )
        if tuple(getattr(j_shape, "shape", ())) not in ((m, n),) + (((n,),) if m == 1 else ()):
            raise ValueError(
                f"jac: returned shape {tuple(getattr(j_shape, 'shape', ()))} at x0; "
                f"expected (m, n) = ({m}, {n})"
            )

    fixed = lb == ub
    sparsity, colours = None, None
    if jac_sparsity is not None:
        mode = check_sparse_mode(mode, jac)
        with jax.enable_x64(dt == np.float64):
            pattern = residual_pattern(jac_sparsity, fn, data_args, m, x0a, lb, ub)
        sparsity = check_jac_sparsity(pattern, m, n, ~fixed)[:, ~fixed]
        colours = greedy_colouring(sparsity)
    kernel = Kernel(
        kind="ls",
        fn=fn,
        param_style="array",
        jac=mode,
        loss=loss,
        method=method,
        jac_scale=xs is None,
        fixed=tuple(bool(v) for v in fixed) if fixed.any() else None,
        jac_colours=colours,
    )
    free = ~fixed
    leaves, treedef = jax.tree_util.tree_flatten_with_path(data_args)
    names = [("args" if path[0].idx == 0 else "kwargs") + jax.tree_util.keystr(path[1:])
             for path, _ in leaves]

    def build_data(**given: Any) -> dict[str, Any]:
        args, kwargs = jax.tree_util.tree_unflatten(treedef, [given[k] for k in names])
        data = {"args": args, "kwargs": kwargs}
        if sparsity is not None:
            data["sparsity"] = sparsity
        if fixed.any():
            data["p_full"] = x0a
        return data

    inputs = {k: leaf for k, (_, leaf) in zip(names, leaves, strict=True)}
    return solve(
        kernel,
        build_data(**inputs),
        x0a[free],
        lb[free],
        ub[free],
        x_scale=None if xs is None else xs[free],
        f_scale=fs,
        ftol=ftol_,
        xtol=xtol_,
        gtol=gtol_,
        max_nfev=nfev,
        dtype=dt,
        loss_name=loss if isinstance(loss, str) else "custom",
        fixed_values=x0a if fixed.any() else None,
        x0_name="x0",
        source=DataSource(build_data, inputs),
    )
