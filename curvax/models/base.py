"""The :class:`Model` container and model composition.

A :class:`Model` bundles a pure JAX function ``func(x, *params)`` with the
metadata a fitter needs: parameter names, natural bounds, an optional analytic
Jacobian and a data-driven initial guess.

Composition rule for parameter names
------------------------------------
``m1 + m2 + ...`` flattens the operands into a list of *parts* (leaf models),
numbered ``1, 2, ...`` from the left.  A parameter name that occurs in only one
part keeps its name.  A name that occurs in two or more parts gets the suffix
``_k`` in part ``k`` (e.g. ``gaussian + gaussian + constant`` has the parameters
``amplitude_1, center_1, sigma_1, amplitude_2, center_2, sigma_2, offset``).
If that still produced duplicates (a part already has a name such as
``amplitude_2``), every name of every part gets its ``_k`` suffix.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _guess as g

__all__ = ["Model", "compose"]

GuessFn = Callable[[np.ndarray, np.ndarray], Sequence[float] | np.ndarray]

_ROLES = ("generic", "peak", "baseline")


def _as_bound_tuple(values: Sequence[float] | None, n: int, fill: float) -> tuple[float, ...]:
    if values is None:
        return (fill,) * n
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise ValueError(f"expected {n} bounds, got {len(out)}")
    return out


def _clip_inside(p: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Move ``p`` strictly inside ``(lower, upper)`` (needed by trust-region fitters)."""
    p = p.copy()
    for i in range(p.size):
        lo, hi = lower[i], upper[i]
        if not np.isfinite(p[i]):
            if np.isfinite(lo) and np.isfinite(hi):
                p[i] = 0.5 * (lo + hi)
            elif np.isfinite(lo):
                p[i] = lo + max(1.0, abs(lo))
            elif np.isfinite(hi):
                p[i] = hi - max(1.0, abs(hi))
            else:
                p[i] = 1.0
        span = hi - lo
        margin_lo = 1e-8 * max(1.0, abs(lo)) if np.isfinite(lo) else 0.0
        margin_hi = 1e-8 * max(1.0, abs(hi)) if np.isfinite(hi) else 0.0
        if np.isfinite(span):
            margin_lo = min(margin_lo, 1e-3 * span)
            margin_hi = min(margin_hi, 1e-3 * span)
        if np.isfinite(lo) and p[i] <= lo:
            p[i] = lo + margin_lo
        if np.isfinite(hi) and p[i] >= hi:
            p[i] = hi - margin_hi
    return p


def evaluate_numpy(model: Model, x: np.ndarray, params: Sequence[float]) -> np.ndarray:
    """Evaluate ``model`` in float64 and return a NumPy array (helper for guesses)."""
    with jax.enable_x64(True):
        out = model.func(jnp.asarray(x, dtype=jnp.float64), *(float(p) for p in params))
        return np.asarray(out, dtype=np.float64).reshape(-1)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Model:
    """A parametric curve ``y = func(x, *params)`` with fitting metadata.

    Parameters
    ----------
    name : str
        Short model name.
    param_names : tuple of str
        Parameter names, in the order ``func`` takes them; valid identifiers.
    func : callable
        Pure JAX function ``func(x, *params) -> (N,) array``. ``x`` has shape
        ``(N,)`` when ``ndim_x == 1`` and ``(2, N)`` when ``ndim_x == 2``.
    guess_fn : callable, optional
        ``guess_fn(x, y) -> array of length P`` computing a starting point from
        data with NumPy. Called through :meth:`guess`, which sanitises it.
    lower, upper : sequence of float, optional
        Natural bounds of each parameter (``-inf``/``inf`` where there is none).
    jac : callable, optional
        Analytic Jacobian ``jac(x, *params) -> (N, P) array``.
    ndim_x : {1, 2}
        Number of independent variables.
    description : str
        One-line formula, shown by :func:`curvax.models.list_models` users.
    doc : str
        Long documentation (formula, parameter meaning, guess method); becomes
        the instance's ``__doc__``.
    role : {"generic", "peak", "baseline"}
        Hint used by the guess of composite models.  ``"baseline"``: the model
        is linear in its parameters (constant, line, polynomial).  ``"peak"``:
        parameters are ``(amplitude, center, width, *shape)``, the function is
        linear in ``amplitude`` and broadcasts over parameter arrays.  A sum of
        peaks and baselines gets a variable-projection guess (see
        :func:`compose`); other sums estimate baseline parts first with a
        robust (outlier-rejecting) fit, then the other parts in turn.
    parts : tuple of Model
        For composite models, the leaf models summed; empty for a leaf.

    Notes
    -----
    Models are callable: ``model(x, *params)`` evaluates ``func``. They are
    hashable by identity and can be passed as static arguments to ``jax.jit``.
    ``inspect.signature(model)`` reports ``(x, <param names>)``, so SciPy-style
    fitters can count the parameters without ``p0``.
    """

    name: str
    param_names: tuple[str, ...]
    func: Callable[..., Any]
    guess_fn: GuessFn | None = None
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    jac: Callable[..., Any] | None = None
    ndim_x: int = 1
    description: str = ""
    doc: str = ""
    role: str = "generic"
    parts: tuple[Model, ...] = ()

    def __post_init__(self) -> None:
        names = tuple(self.param_names)
        for nm in names:
            if not isinstance(nm, str) or not nm.isidentifier() or keyword.iskeyword(nm):
                raise ValueError(f"parameter name {nm!r} is not a valid identifier")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        if self.ndim_x not in (1, 2):
            raise ValueError(f"ndim_x must be 1 or 2, got {self.ndim_x}")
        if self.role not in _ROLES:
            raise ValueError(f"role must be one of {_ROLES}, got {self.role!r}")
        lower = _as_bound_tuple(self.lower, len(names), -np.inf)
        upper = _as_bound_tuple(self.upper, len(names), np.inf)
        for nm, lo, hi in zip(names, lower, upper):
            if not lo < hi:
                raise ValueError(f"lower bound of {nm!r} must be below its upper bound")
        object.__setattr__(self, "param_names", names)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "parts", tuple(self.parts))
        if self.doc:
            object.__setattr__(self, "__doc__", self.doc)
        params = [inspect.Parameter("x", inspect.Parameter.POSITIONAL_ONLY)]
        params += [inspect.Parameter(nm, inspect.Parameter.POSITIONAL_OR_KEYWORD) for nm in names]
        # Lets scipy-style ``curve_fit(model, x, y)`` infer the number of parameters.
        object.__setattr__(self, "__signature__", inspect.Signature(params))

    # ------------------------------------------------------------------ basics
    def __call__(self, x: Any, *params: Any) -> jax.Array:
        """Evaluate the model, ``func(x, *params)``."""
        if len(params) != len(self.param_names):
            raise TypeError(
                f"{self.name} takes {len(self.param_names)} parameters "
                f"{self.param_names}, got {len(params)}"
            )
        return self.func(x, *params)

    @property
    def n_params(self) -> int:
        """Number of parameters ``P``."""
        return len(self.param_names)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Natural bounds ``(lower, upper)`` as float64 arrays, in SciPy's format."""
        return (np.array(self.lower, dtype=np.float64), np.array(self.upper, dtype=np.float64))

    @property
    def components(self) -> tuple[Model, ...]:
        """Leaf models of a sum (``(self,)`` for a leaf model)."""
        return self.parts if self.parts else (self,)

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, params=({', '.join(self.param_names)}))"

    # ------------------------------------------------------------------- guess
    def _check_data(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if self.ndim_x == 1:
            x = x.reshape(-1)
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"x has {x.shape[0]} points but y has {y.shape[0]}")
            keep = np.isfinite(x) & np.isfinite(y)
            return x[keep], y[keep]
        if x.ndim != 2 or x.shape[0] != 2 or x.shape[1] != y.shape[0]:
            raise ValueError(f"x must have shape (2, {y.shape[0]}) for {self.name}, got {x.shape}")
        keep = np.all(np.isfinite(x), axis=0) & np.isfinite(y)
        return x[:, keep], y[keep]

    def guess(self, x: Any, y: Any) -> np.ndarray:
        """Starting parameters estimated from data.

        Parameters
        ----------
        x : array_like
            Independent variable, shape ``(N,)`` (or ``(2, N)`` for 2-D models).
        y : array_like
            Observations, shape ``(N,)``.

        Returns
        -------
        numpy.ndarray
            Float64 array of length ``n_params``, finite and strictly inside the
            natural bounds.
        """
        x, y = self._check_data(x, y)
        lower, upper = self.bounds
        if self.guess_fn is None or y.size == 0:
            p = np.ones(self.n_params)
        else:
            with np.errstate(all="ignore"):
                p = np.asarray(self.guess_fn(x, y), dtype=np.float64).reshape(-1)
            if p.size != self.n_params:
                raise RuntimeError(
                    f"guess of {self.name} returned {p.size} values, expected {self.n_params}"
                )
        return _clip_inside(p, lower, upper)

    # ------------------------------------------------------------- composition
    def __add__(self, other: Model) -> Model:
        if not isinstance(other, Model):
            return NotImplemented
        return compose(self, other)

    def __radd__(self, other: Any) -> Model:
        # Allows ``sum([m1, m2, m3])``.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented


def _composite_names(parts: Sequence[Model]) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for part in parts:
        for nm in part.param_names:
            counts[nm] = counts.get(nm, 0) + 1
    names = [
        nm if counts[nm] == 1 else f"{nm}_{k}"
        for k, part in enumerate(parts, start=1)
        for nm in part.param_names
    ]
    if len(set(names)) != len(names):
        names = [f"{nm}_{k}" for k, part in enumerate(parts, start=1) for nm in part.param_names]
    if len(set(names)) != len(names):
        raise ValueError(f"cannot make parameter names distinct: {names}")
    return tuple(names)


def _robust_fit(part: Model, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Guess ``part`` from ``r`` while iteratively rejecting points far off (peaks)."""
    n = r.size
    keep = np.ones(n, dtype=bool)
    p = part.guess(x, r)
    for _ in range(6):
        res = r - evaluate_numpy(part, x, p)
        centre = np.median(res[keep])
        scale = 1.4826 * np.median(np.abs(res[keep] - centre))
        if not np.isfinite(scale) or scale <= 0:
            break
        new_keep = np.abs(res - centre) < 2.5 * scale
        if new_keep.sum() < max(part.n_params + 2, n // 10) or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        xs = x[..., keep]
        p = part.guess(xs, r[keep])
    return p


def _peak_grid_evaluator(part: Model) -> Callable[..., np.ndarray]:
    """Jitted unit-height peak shapes on a (center, width) grid.

    ``evaluate(xs, cc, ww, *extras)`` returns a ``(G, M)`` array whose first
    ``N = xs.size`` columns are the shapes and the rest zeros; ``M`` is ``N``
    padded to a power of two so that few array shapes (compilations) occur.
    """

    @jax.jit
    def shapes(xs: Any, mask: Any, cc: Any, ww: Any, *extras: Any) -> jax.Array:
        return part.func(xs[None, :], 1.0, cc[:, None], ww[:, None], *extras) * mask[None, :]

    def evaluate(xs: np.ndarray, cc: np.ndarray, ww: np.ndarray, *extras: float) -> np.ndarray:
        n = xs.size
        size = _padded_size(n)
        xp = np.concatenate([xs, np.full(size - n, xs[-1])])
        mask = (np.arange(size) < n).astype(np.float64)
        with jax.enable_x64(True):
            out = shapes(
                jnp.asarray(xp), jnp.asarray(mask), jnp.asarray(cc), jnp.asarray(ww), *extras
            )
            return np.asarray(out, dtype=np.float64)

    return evaluate


def _padded_size(n: int) -> int:
    return max(64, 1 << (n - 1).bit_length())


def _peaks_on_linear_baseline(
    parts: tuple[Model, ...],
    evaluators: dict[int, Callable[..., np.ndarray]],
    x: np.ndarray,
    y: np.ndarray,
) -> np.ndarray:
    """Guess for a sum of ``peak`` parts and linear ``baseline`` parts (1-D ``x``).

    Variable projection: for each peak, a grid over (center, width) where the
    peak height and all baseline coefficients are solved by linear least
    squares jointly.  Peaks are found greedily (the best single peak of what
    the previous peaks leave), then each is refined on a local grid against
    the data minus the other peaks (never increasing the residual).
    """
    xs, ys = g.subsample(x, y, 2000)
    peaks = [k for k, p in enumerate(parts) if p.role == "peak"]
    cols: list[np.ndarray] = []
    base_slices: dict[int, tuple[int, int]] = {}
    for k, part in enumerate(parts):
        if part.role != "baseline":
            continue
        start = len(cols)
        for i in range(part.n_params):
            unit = np.zeros(part.n_params)
            unit[i] = 1.0
            cols.append(evaluate_numpy(part, xs, unit))  # baseline parts are linear
        base_slices[k] = (start, len(cols))
    basis_b = np.stack(cols, axis=1) if cols else np.zeros((xs.size, 0))
    extras = {k: np.asarray(parts[k].guess(xs, ys))[3:] for k in peaks}

    # Project the baseline out once: for a peak shape s and data r, the best height and
    # baseline leave the residual |r_perp|^2 - <s, r_perp>^2 / |s_perp|^2.
    if basis_b.shape[1]:
        q_b = np.linalg.qr(basis_b / np.maximum(np.linalg.norm(basis_b, axis=0), 1e-300))[0]
    else:
        q_b = np.zeros((xs.size, 0))

    pad = _padded_size(xs.size) - xs.size  # the evaluators return zero-padded columns
    q_pad = np.ascontiguousarray(np.pad(q_b, ((0, pad), (0, 0))).T)

    def best(k: int, r: np.ndarray, centers: np.ndarray, widths: np.ndarray):
        cc, ww = (a.ravel() for a in np.meshgrid(centers, widths, indexing="ij"))
        shapes = evaluators[k](xs, cc, ww, *(float(e) for e in extras[k]))
        r_perp = np.pad(r - q_b @ (q_b.T @ r), (0, pad))
        ss = np.einsum("gn,gn->g", shapes, shapes)
        for q_col in q_pad:  # (einsum: no BLAS threading overhead for these small products)
            proj = np.einsum("gn,n->g", shapes, q_col)
            ss = ss - proj * proj
        sr = np.einsum("gn,n->g", shapes, r_perp)
        with np.errstate(all="ignore"):
            gain = np.where(ss > 1e-12 * np.max(np.abs(ss)), sr * sr / ss, -np.inf)
        gain = np.where(np.isfinite(gain), gain, -np.inf)
        b = int(np.argmax(gain))
        amp = sr[b] / ss[b] if np.isfinite(gain[b]) else 0.0
        return np.r_[amp, cc[b], ww[b], extras[k]]

    span = g.span(xs)
    dx = np.diff(xs)
    dx = float(np.median(dx[dx > 0])) if np.any(dx > 0) else span / max(xs.size, 1)
    c_glob = xs if xs.size <= 150 else np.linspace(xs[0], xs[-1], 150)
    w_glob = np.geomspace(max(0.7 * dx, 1e-6 * span), 0.5 * span, 14)
    params: dict[int, np.ndarray] = {}
    contrib: dict[int, np.ndarray] = {}
    for k in peaks:
        r = ys - sum(contrib.values(), np.zeros_like(ys))
        params[k] = best(k, r, c_glob, w_glob)
        contrib[k] = evaluate_numpy(parts[k], xs, params[k])
    for _ in range(2):
        for k in peaks:
            r = ys - sum((contrib[j] for j in peaks if j != k), np.zeros_like(ys))
            c0, w0 = params[k][1], params[k][2]
            params[k] = best(
                k, r, c0 + w0 * np.linspace(-1.5, 1.5, 13), w0 * np.geomspace(0.5, 2.0, 9)
            )
            contrib[k] = evaluate_numpy(parts[k], xs, params[k])
    out: list[np.ndarray] = []
    if base_slices:
        r = ys - sum(contrib.values(), np.zeros_like(ys))
        coef_b = g.linear_coefs(basis_b, r)
    for k in range(len(parts)):
        if k in params:
            out.append(params[k])
        else:
            a, b = base_slices[k]
            out.append(coef_b[a:b])
    return np.concatenate(out)


def _make_composite_guess(parts: tuple[Model, ...]) -> GuessFn:
    peak_sum = any(p.role == "peak" for p in parts) and all(
        p.role in ("peak", "baseline") and p.ndim_x == 1 for p in parts
    )

    evaluators = (
        {k: _peak_grid_evaluator(p) for k, p in enumerate(parts) if p.role == "peak"}
        if peak_sum
        else {}
    )

    def guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if peak_sum and y.size >= 3:
            return _peaks_on_linear_baseline(parts, evaluators, x, y)
        n = len(parts)
        params: list[np.ndarray | None] = [None] * n
        contrib = [np.zeros_like(y) for _ in range(n)]
        baseline = [k for k in range(n) if parts[k].role == "baseline"]
        others = [k for k in range(n) if parts[k].role != "baseline"]
        resid = y.copy()
        # 1. baselines first, robustly (ignoring peaks), when there is something else.
        if others:
            for k in baseline:
                params[k] = _robust_fit(parts[k], x, resid)
                contrib[k] = evaluate_numpy(parts[k], x, params[k])
                resid = resid - contrib[k]
        # 2. the other parts in order, each from what is left (peaks: largest first).
        for k in others + ([] if others else baseline):
            params[k] = parts[k].guess(x, resid)
            contrib[k] = evaluate_numpy(parts[k], x, params[k])
            resid = resid - contrib[k]
        # 3. back-fitting: re-estimate each part from y minus the others; keep if better.
        if n > 1:
            for _ in range(2):
                for k in range(n):
                    partial = resid + contrib[k]
                    cand = parts[k].guess(x, partial)
                    c = evaluate_numpy(parts[k], x, cand)
                    if np.all(np.isfinite(c)) and np.sum((partial - c) ** 2) < np.sum(
                        (partial - contrib[k]) ** 2
                    ):
                        params[k] = cand
                        contrib[k] = c
                        resid = partial - c
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in params])

    return guess


def compose(*models: Model, name: str | None = None) -> Model:
    """Sum of models, ``compose(m1, m2)`` is ``m1 + m2``.

    Parameters
    ----------
    *models : Model
        Models to add; composite operands are flattened into their parts.
        All must share ``ndim_x``.
    name : str, optional
        Name of the result (default: the part names joined by ``" + "``).

    Returns
    -------
    Model
        Model whose parameters are the concatenation of the parts' parameters
        (renamed by the rule in this module's docstring), whose function is the
        sum of the parts, whose bounds concatenate, and which has an analytic
        Jacobian when every part has one.

        Its guess: for a sum of peak and (linear) baseline parts, each peak in
        turn is found by a grid search over (center, width) with its height
        and the baseline solved by linear least squares, on the data minus the
        peaks already found (so the dominant peak comes first, then the next),
        and then refined against the data minus the other peaks.  Otherwise,
        baseline parts are estimated first by an outlier-rejecting fit, then
        each other part from the remaining residual, then each part is
        re-estimated from the data minus the others while that lowers the
        residual.
    """
    if not models:
        raise ValueError("compose needs at least one model")
    parts: list[Model] = []
    for m in models:
        if not isinstance(m, Model):
            raise TypeError(f"can only add Model objects, got {type(m).__name__}")
        parts.extend(m.components)
    ndims = {p.ndim_x for p in parts}
    if len(ndims) != 1:
        raise ValueError("cannot add models with different ndim_x")
    parts_t = tuple(parts)
    if len(parts_t) == 1 and name is None:
        return parts_t[0]
    names = _composite_names(parts_t)
    slices = []
    start = 0
    for p in parts_t:
        slices.append((start, start + p.n_params))
        start += p.n_params

    def func(x: Any, *params: Any) -> jax.Array:
        out = parts_t[0].func(x, *params[slices[0][0] : slices[0][1]])
        for part, (a, b) in zip(parts_t[1:], slices[1:]):
            out = out + part.func(x, *params[a:b])
        return out

    jac = None
    if all(p.jac is not None for p in parts_t):

        def jac(x: Any, *params: Any) -> jax.Array:
            cols = [part.jac(x, *params[a:b]) for part, (a, b) in zip(parts_t, slices)]
            return jnp.concatenate(cols, axis=1)

    lower = tuple(v for p in parts_t for v in p.lower)
    upper = tuple(v for p in parts_t for v in p.upper)
    return Model(
        name=name if name is not None else " + ".join(p.name for p in parts_t),
        param_names=names,
        func=func,
        guess_fn=_make_composite_guess(parts_t),
        lower=lower,
        upper=upper,
        jac=jac,
        ndim_x=parts_t[0].ndim_x,
        description=" + ".join(f"({p.description or p.name})" for p in parts_t),
        role="generic",
        parts=parts_t,
    )
