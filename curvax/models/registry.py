"""Look up built-in models by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Model
from .basic import (
    arrhenius,
    constant,
    damped_sine,
    exp_decay,
    exp_decay_2,
    exp_growth,
    linear,
    polynomial,
    power_law,
)
from .peaks import gaussian, lorentzian, multi_peak, pseudo_voigt
from .sigmoidal import gompertz, hill, logistic_growth, michaelis_menten, sigmoid
from .two_d import gaussian_2d, gaussian_2d_elliptic, gaussian_2d_rotated

__all__ = ["get_model", "list_models"]


def _fixed(model: Model) -> Callable[[], Model]:
    def factory() -> Model:
        return model

    return factory


def _elliptic(rotation: bool = False) -> Model:
    return gaussian_2d_rotated if rotation else gaussian_2d_elliptic


_REGISTRY: dict[str, Callable[..., Model]] = {
    "constant": _fixed(constant),
    "linear": _fixed(linear),
    "polynomial": polynomial,
    "exp_decay": _fixed(exp_decay),
    "exp_decay_2": _fixed(exp_decay_2),
    "exp_growth": _fixed(exp_growth),
    "power_law": _fixed(power_law),
    "gaussian": _fixed(gaussian),
    "lorentzian": _fixed(lorentzian),
    "pseudo_voigt": _fixed(pseudo_voigt),
    "multi_peak": multi_peak,
    "sigmoid": _fixed(sigmoid),
    "hill": _fixed(hill),
    "michaelis_menten": _fixed(michaelis_menten),
    "gompertz": _fixed(gompertz),
    "logistic_growth": _fixed(logistic_growth),
    "damped_sine": _fixed(damped_sine),
    "arrhenius": _fixed(arrhenius),
    "gaussian_2d": _fixed(gaussian_2d),
    "gaussian_2d_elliptic": _elliptic,
    "gaussian_2d_rotated": _fixed(gaussian_2d_rotated),
}


def get_model(name: str, **kwargs: Any) -> Model:
    """Return the built-in model called ``name``.

    Parameters
    ----------
    name : str
        Registry name (see :func:`list_models`); case and ``-``/``_`` are ignored.
    **kwargs
        Options of factory models: ``polynomial(degree=2)``,
        ``multi_peak(shape="gaussian", n=2, baseline="constant")``,
        ``gaussian_2d_elliptic(rotation=False)``.  Other models take none.

    Returns
    -------
    Model

    Raises
    ------
    ValueError
        If the name is unknown (the message lists the known names) or the
        options are not accepted by that model.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    try:
        return _REGISTRY[key](**kwargs)
    except TypeError as exc:
        raise ValueError(f"invalid options {sorted(kwargs)} for model {key!r}: {exc}") from None


def list_models() -> dict[str, tuple[str, ...]]:
    """Names of the built-in models and their parameter names (factories at defaults).

    Returns
    -------
    dict
        ``{name: param_names}`` in registry order.
    """
    return {name: factory().param_names for name, factory in _REGISTRY.items()}
