"""Robust loss functions ρ and the rescaling that lets a Gauss–Newton solver use them.

What is minimised
-----------------
With residuals ``r_i`` (already divided by ``sigma_i``) and a scale ``f_scale = c``,
the cost is

    C(p) = ½ · c² · Σ_i ρ(z_i),      z_i = (r_i / c)²,

where ρ is one of the functions below.  ρ(z) ≈ z for small z, so near a perfect fit
every loss behaves like ordinary least squares; the losses differ in how they damp
large residuals (outliers).

Each loss returns the stack ``(ρ(z), ρ'(z), ρ''(z))`` evaluated elementwise (the same
convention as ``scipy.optimize.least_squares``).  ``scale_residuals_and_jacobian``
then turns a robust problem into an ordinary least-squares one for the current
iterate (Triggs et al., *Bundle Adjustment — A Modern Synthesis*, 2000, §4.3; the
same rescaling SciPy uses):

    J̃ = √(ρ' + 2 ρ'' r²) · J,      r̃ = ρ' · r / √(ρ' + 2 ρ'' r²),

so that ``J̃ᵀ r̃ = Jᵀ (ρ' r)`` is the exact gradient of ``C`` and ``J̃ᵀ J̃`` is the
Gauss–Newton part of its Hessian.  The factor under the root is clipped from below
at machine epsilon so that points in the flat part of a redescending loss (Tukey)
do not produce a zero or negative curvature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.select import where

Array = jax.Array

LOSS_NAMES = ("linear", "soft_l1", "huber", "cauchy", "arctan", "tukey")


def _linear(z: Array) -> Array:
    return jnp.stack([z, jnp.ones_like(z), jnp.zeros_like(z)])


def _soft_l1(z: Array) -> Array:
    t = 1.0 + z
    return jnp.stack([2.0 * (jnp.sqrt(t) - 1.0), t**-0.5, -0.5 * t**-1.5])


def _huber(z: Array) -> Array:
    inside = z <= 1.0
    zs = where(inside, 1.0, z)  # keep the outer branch finite where unused
    return jnp.stack(
        [
            where(inside, z, 2.0 * jnp.sqrt(zs) - 1.0),
            where(inside, 1.0, zs**-0.5),
            where(inside, 0.0, -0.5 * zs**-1.5),
        ]
    )


def _cauchy(z: Array) -> Array:
    t = 1.0 + z
    return jnp.stack([jnp.log1p(z), 1.0 / t, -1.0 / t**2])


def _arctan(z: Array) -> Array:
    t = 1.0 + z**2
    return jnp.stack([jnp.arctan(z), 1.0 / t, -2.0 * z / t**2])


def _tukey(z: Array) -> Array:
    """Tukey's biweight, scaled so that ρ(z) ≈ z near 0: ρ = (1 − (1 − z)³)/3 for z ≤ 1."""
    inside = z <= 1.0
    u = where(inside, 1.0 - z, 0.0)
    return jnp.stack([(1.0 - u**3) / 3.0, u**2, where(inside, -2.0 * u, 0.0)])


_BUILTIN: dict[str, Callable[[Array], Array]] = {
    "linear": _linear,
    "soft_l1": _soft_l1,
    "huber": _huber,
    "cauchy": _cauchy,
    "arctan": _arctan,
    "tukey": _tukey,
}


def _from_user_callable(fn: Callable[[Any], Any]) -> Callable[[Array], Array]:
    """Wrap a user loss.

    The callable may return either the SciPy-style stack of shape ``(3, m)`` with
    ``(ρ, ρ', ρ'')``, or just ``ρ(z)`` of shape ``(m,)``; in the second case the
    derivatives are obtained by automatic differentiation.
    """

    def rho(z: Array) -> Array:
        out = jnp.asarray(fn(z))
        if out.ndim == 2 and out.shape[0] == 3:
            return out.astype(z.dtype)
        if out.shape != z.shape:
            raise ValueError(
                f"loss: a callable loss must return rho(z) with the shape of z {z.shape} "
                f"or a (3, m) stack (rho, rho', rho''); got shape {out.shape}"
            )

        def scalar(t: Array) -> Array:
            return jnp.asarray(fn(t[None]))[0]

        d1 = jax.vmap(jax.grad(scalar))(z)
        d2 = jax.vmap(jax.grad(jax.grad(scalar)))(z)
        return jnp.stack([out.astype(z.dtype), d1, d2])

    return rho


def check_callable_loss(loss: Callable[..., Any], dtype: Any) -> None:
    """Trace a user loss on four values (abstractly: nothing runs), so that a loss JAX
    cannot trace (written with NumPy) or of the wrong shape is refused by name here
    rather than deep inside the compiled fit.

    Raises
    ------
    ValueError
        If ``loss`` cannot be traced or returns the wrong shape.
    """
    try:
        with jax.enable_x64(np.dtype(dtype) == np.float64):
            jax.eval_shape(_from_user_callable(loss), jax.ShapeDtypeStruct((4,), dtype))
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"loss: the callable loss could not be traced by JAX ({type(err).__name__}); "
            "write it with jax.numpy (import jax.numpy as jnp)"
        ) from err


def get_loss(loss: str | Callable[..., Any]) -> Callable[[Array], Array]:
    """Return ρ for ``loss`` (a name in ``LOSS_NAMES`` or a callable).

    Raises
    ------
    ValueError
        If ``loss`` is an unknown name or neither a string nor a callable.
    """
    if callable(loss):
        return _from_user_callable(loss)
    if isinstance(loss, str) and loss in _BUILTIN:
        return _BUILTIN[loss]
    raise ValueError(f"loss: unknown loss {loss!r}; expected one of {LOSS_NAMES} or a callable")


def loss_terms(rho_fn: Callable[[Array], Array], r: Array, f_scale: Array) -> Array:
    """Evaluate ``(c²ρ(z), ρ'(z), ρ''(z)/c²)`` for residuals ``r`` and scale ``c``.

    With these three rows, ``½ Σ row0`` is the cost and the rescaling below needs no
    further reference to ``c`` (the chain rule for z = (r/c)² is absorbed here).
    """
    z = (r / f_scale) ** 2
    rho = rho_fn(z)
    return jnp.stack([rho[0] * f_scale**2, rho[1], rho[2] / f_scale**2])


def scale_residuals_and_jacobian(
    r: Array, jac: Array, rho: Array, transposed: bool = False
) -> tuple[Array, Array]:
    """Rescale residuals ``r`` (m,) and Jacobian ``jac`` (m, p) for a robust loss.

    ``rho`` is the output of :func:`loss_terms`.  Returns ``(r̃, J̃)`` as described in
    the module docstring.  With ``transposed=True`` the Jacobian is given (and
    returned) as its transpose, (p, m).
    """
    r_scaled, js = scale_residuals(r, rho)
    return r_scaled, jac * (js[None, :] if transposed else js[:, None])


def scale_residuals(r: Array, rho: Array) -> tuple[Array, Array]:
    """``(r̃, s)``: the rescaled residuals ``r̃ = ρ′ r / s`` and the factor
    ``s = √max(ρ′ + 2ρ″r², ε)`` (m,) by which each point's Jacobian row is multiplied
    (:func:`scale_residuals_and_jacobian`, module docstring)."""
    eps = jnp.finfo(r.dtype).eps
    js = jnp.sqrt(jnp.maximum(rho[1] + 2.0 * rho[2] * r**2, eps))
    return rho[1] * r / js, js
