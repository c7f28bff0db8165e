"""Built-in model library.

Every model is a :class:`Model`: call it as ``model(x, *params)`` (pure JAX),
start fits from ``model.guess(x, y)``, constrain them with ``model.bounds``
and add models with ``+``.  ``get_model(name, **options)`` and
``list_models()`` give access by name.
"""

from .base import Model, compose
from .basic import (
    GAS_CONSTANT,
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
from .registry import get_model, list_models
from .sigmoidal import gompertz, hill, logistic_growth, michaelis_menten, sigmoid
from .two_d import gaussian_2d, gaussian_2d_elliptic, gaussian_2d_rotated

__all__ = [
    "GAS_CONSTANT",
    "Model",
    "arrhenius",
    "compose",
    "constant",
    "damped_sine",
    "exp_decay",
    "exp_decay_2",
    "exp_growth",
    "gaussian",
    "gaussian_2d",
    "gaussian_2d_elliptic",
    "gaussian_2d_rotated",
    "get_model",
    "gompertz",
    "hill",
    "linear",
    "list_models",
    "logistic_growth",
    "lorentzian",
    "michaelis_menten",
    "multi_peak",
    "polynomial",
    "power_law",
    "pseudo_voigt",
    "sigmoid",
]
