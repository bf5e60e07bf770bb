"""Convex activations ``sigma`` of the hidden layer as strategy objects in one registry (SPEC 2 item 5).

:data:`ACTIVATION_REGISTRY` maps a name to a factory ``negative_slope -> Activation``. Every consumer (the model,
the solver, the oracle, the baselines, the certificates) asks the object (:class:`~.base.Activation`) for what it
needs, never its name; so a new activation is one object registered here (:func:`register_activation`), and an
unregistered name fails with the list of registered ones. The built-in five are ReLU, leaky ReLU and the absolute
value (piecewise linear: exact cuts, :mod:`.piecewise`), squared ReLU and softplus (smooth: exact cones,
:mod:`.smooth`).
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from numpy.typing import ArrayLike

from ...errors import InvalidParameterError
from .base import Activation, ConeBlock, RecessionForm
from .piecewise import RELU, PiecewiseLinear, ReLU, absolute, leaky_relu, relu
from .smooth import Smooth, Softplus, SquaredReLU, softplus, squared_relu

__all__ = ["ACTIVATIONS", "ACTIVATION_REGISTRY", "Activation", "ActivationName", "ConeBlock",
           "DEFAULT_NEGATIVE_SLOPE", "PiecewiseLinear", "RELU", "ReLU", "RecessionForm", "Smooth",
           "Softplus", "SquaredReLU", "check_labels", "label_range_error", "make_activation",
           "register_activation"]

#: Builds an activation from the request's ``negative_slope`` (which only leaky ReLU reads).
ActivationFactory = Callable[[float], Activation]

#: The one registry: name -> factory.
ACTIVATION_REGISTRY: dict[str, ActivationFactory] = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "absolute": absolute,
    "squared_relu": squared_relu,
    "softplus": softplus,
}
#: The built-in names, as the API's requests spell them (``ActivationName`` is the same list as a type).
ActivationName = Literal["relu", "leaky_relu", "absolute", "squared_relu", "softplus"]
ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATION_REGISTRY)
DEFAULT_NEGATIVE_SLOPE = 0.01


def register_activation(name: str, factory: ActivationFactory) -> None:
    """Register ``factory`` under ``name`` (a new activation is this one call; the name must be new)."""
    if name in ACTIVATION_REGISTRY:
        raise ValueError(f"An activation named {name!r} is already registered.")
    ACTIVATION_REGISTRY[name] = factory


def make_activation(name: str | Activation = "relu", negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Activation:
    """The activation registered as ``name`` (``negative_slope`` is leaky ReLU's slope for ``u < 0``, in ``(0, 1)``).

    Parameters
    ----------
    name : a name in :data:`ACTIVATION_REGISTRY` (an :class:`Activation` is returned as it is).
    negative_slope : leaky ReLU's slope on negative inputs (ignored by the others).

    Returns
    -------
    The activation.
    """
    if isinstance(name, Activation):
        return name
    factory = ACTIVATION_REGISTRY.get(name)
    if factory is None:
        raise InvalidParameterError(
            "activation", f"activation must be one of {', '.join(ACTIVATION_REGISTRY)}, got {name!r}."
        )
    return factory(negative_slope)


def label_range_error(activation: Activation, where: str, value: float) -> InvalidParameterError:
    """The 422 for a label outside the activation's range: ``where`` names it (e.g. ``y[3]``)."""
    bound = "negative" if activation.lower_attained else "zero or negative"
    reach = "cannot be negative" if activation.lower_attained else "is always positive"
    return InvalidParameterError(
        "y",
        f"{where} = {value:g} is {bound}: the LP limit needs labels in the range of the activation, and a sum of "
        f"{activation.name} terms {reach}. Use relaxation 'qp' (beta > 0) for noisy labels, or the activation "
        "leaky_relu.",
    )


def check_labels(activation: Activation, y: ArrayLike) -> None:
    """Refuse labels that no sum of ``activation`` can reach (for the LP limit, whose fit is a hard constraint).

    A sum of ReLUs, absolute values, squared ReLUs or softpluses is never negative (a softplus sum is even
    positive), so the LP ``sum_j sigma(X_ij w) <= y_i`` is infeasible for such labels; the QP (``beta > 0``)
    takes them (noisy labels). Leaky ReLU's range is every real number.

    Parameters
    ----------
    activation : the activation.
    y : the labels.
    """
    if activation.lower == -np.inf:
        return
    y = np.asarray(y, dtype=np.float64)
    bad = y < activation.lower if activation.lower_attained else y <= activation.lower
    if bad.any():
        i = int(np.argmax(bad))
        raise label_range_error(activation, f"y[{i}]", float(y[i]))
