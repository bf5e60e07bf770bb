"""Convex activations ``sigma`` of the hidden layer (SPEC 2 item 5; the paper's eq. 4-5 for any convex sigma).

The network predicts ``f_w(x_i) = sum_j sigma(X_ij w)``. The relaxation's constraint ``sum_j sigma(X_ij w) <= y_i``
is convex for every convex ``sigma``; how it is represented depends on the activation:

- piecewise linear, ``sigma(u) = max(lo u, hi u)`` with ``lo < hi``:
  ``relu`` (lo 0, hi 1), ``leaky_relu`` (lo a, hi 1, ``0 < a < 1``) and ``absolute`` (lo -1, hi 1).
  ``sum_j sigma(X_ij w) <= y_i`` is the intersection of the half-spaces ``sum_j c_j X_ij w <= y_i`` over
  ``c_j in {lo, hi}``; the most violated one at ``w`` has ``c_j = sigma'(X_ij w)`` (exact cuts).
  At a kink ``X_ij w = 0`` the subdifferential is ``[lo, hi]``.
- smooth: ``squared_relu`` (``(u)_+^2``, second-order cones) and ``softplus`` (``log(1 + e^u)``,
  exponential cones); the derivative is unique everywhere.

Units (SPEC 4c). ``sigma`` positively homogeneous of degree ``q`` (1 for the piecewise-linear ones, 2 for
``squared_relu``) makes the problem covariant under ``X -> a X``, ``y -> b y`` with ``w -> b^(1/q) / a w``;
``softplus`` is not homogeneous, and its problem has no such law (a change of units changes the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidParameterError

FloatArray = NDArray[np.float64]
ActivationName = Literal["relu", "leaky_relu", "absolute", "squared_relu", "softplus"]
ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "absolute", "squared_relu", "softplus")
DEFAULT_NEGATIVE_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """A convex activation: its values, derivatives, kinks and the facts the solvers and certificates need.

    Attributes
    ----------
    name : one of :data:`ACTIVATIONS`.
    lo, hi : the two slopes of a piecewise-linear activation ``max(lo u, hi u)`` (None for smooth ones).
    degree : the degree of positive homogeneity (None when ``sigma`` is not homogeneous).
    lower : the infimum of ``sigma``'s range (``-inf`` when unbounded below); ``lower_attained`` whether
        ``sigma`` takes that value.
    sign_symmetric : ``sigma(-u) = sigma(u)``: ``w`` and ``-w`` predict the same, recovery is up to sign.
    """

    name: str
    lo: float | None = None
    hi: float | None = None
    degree: int | None = 1
    lower: float = 0.0
    lower_attained: bool = True
    sign_symmetric: bool = False

    @property
    def piecewise_linear(self) -> bool:
        return self.lo is not None

    @property
    def is_relu(self) -> bool:
        return self.name == "relu"

    def value(self, u: ArrayLike) -> FloatArray:
        """``sigma(u)`` elementwise."""
        x = np.asarray(u, dtype=np.float64)
        out: FloatArray
        if self.name == "relu":
            out = np.maximum(x, 0.0)
        elif self.lo is not None and self.hi is not None:
            out = np.maximum(self.lo * x, self.hi * x)
        elif self.name == "squared_relu":
            positive = np.maximum(x, 0.0)
            out = positive * positive
        else:
            out = np.logaddexp(0.0, x)  # softplus, without overflow
        return out

    def derivative(self, u: ArrayLike) -> FloatArray:
        """``sigma'(u)`` elementwise; at a kink the lower end ``lo`` of the subdifferential."""
        x = np.asarray(u, dtype=np.float64)
        out: FloatArray
        if self.piecewise_linear:
            out = self.slopes(x > 0)
        elif self.name == "squared_relu":
            out = 2.0 * np.maximum(x, 0.0)
        else:
            out = 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without overflow
        return out

    def slopes(self, active: NDArray[np.bool_]) -> FloatArray:
        """Piecewise linear: ``hi`` on active patches (``X_ij w > 0``), ``lo`` elsewhere."""
        assert self.lo is not None and self.hi is not None
        out: FloatArray = np.where(active, self.hi, self.lo).astype(np.float64)
        return out

    def fold(self, c: FloatArray) -> FloatArray | None:
        """Patch multipliers ``s`` with ``c sigma(u) = sigma(s u)`` for ``c >= 0``, or None when none exist."""
        if self.degree == 1:
            return c
        if self.degree == 2:
            return np.sqrt(c)
        return None

    def in_range(self, value: float) -> bool:
        """Can a sum of activations take ``value`` (or come arbitrarily close from above)?"""
        return bool(value > self.lower or (self.lower_attained and value >= self.lower))


def make_activation(name: str | Activation = "relu", negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Activation:
    """The activation named ``name`` (``negative_slope`` is leaky ReLU's slope for ``u < 0``, in ``(0, 1)``).

    Parameters
    ----------
    name : one of :data:`ACTIVATIONS` (an :class:`Activation` is returned as it is).
    negative_slope : leaky ReLU's slope on negative inputs (ignored by the others).

    Returns
    -------
    The activation.
    """
    if isinstance(name, Activation):
        return name
    if name == "relu":
        return RELU
    if name == "leaky_relu":
        slope = float(negative_slope)
        if not (np.isfinite(slope) and 0.0 < slope < 1.0):
            raise InvalidParameterError(
                "negative_slope",
                f"negative_slope must lie strictly between 0 and 1 (e.g. 0.01), got {negative_slope!r}: at 0 leaky "
                "ReLU is ReLU, and at 1 or above it is linear or not convex.",
            )
        return Activation("leaky_relu", lo=slope, hi=1.0, degree=1, lower=-np.inf, lower_attained=False)
    if name == "absolute":
        return Activation("absolute", lo=-1.0, hi=1.0, degree=1, sign_symmetric=True)
    if name == "squared_relu":
        return Activation("squared_relu", degree=2)
    if name == "softplus":
        return Activation("softplus", degree=None, lower_attained=False)
    raise InvalidParameterError(
        "activation", f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}."
    )


RELU = Activation("relu", lo=0.0, hi=1.0, degree=1)


def label_range_error(activation: Activation, where: str, value: float) -> InvalidParameterError:
    """The 422 for a label outside the activation's range: ``where`` names it (e.g. ``y[3]``)."""
    bound = "negative" if activation.lower_attained else "zero or negative"
    reach = "cannot be negative" if activation.lower_attained else "is always positive"
    return InvalidParameterError(
        "y",
        f"{where} = {value:g} is {bound}: the LP limit needs labels in the range of the activation, and a sum of "
        f"{activation.name} terms {reach}. Use relaxation 'qp' (beta > 0) for noisy labels"
        + (", or the activation leaky_relu." if activation.name != "leaky_relu" else "."),
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
