"""The activation interface: what the model, the solver, the oracle, the baselines and the certificates ask of
``sigma`` (SPEC 2 item 5; the paper's eq. 4-5 for any convex sigma).

The network predicts ``f_w(x_i) = sum_j sigma(X_ij w)``. The relaxation's constraint ``sum_j sigma(X_ij w) <= y_i``
is convex for every convex ``sigma``; how the solver represents it is the activation's business: exact cuts for a
piecewise-linear ``sigma`` (:mod:`.piecewise`), exact cones for a smooth one (:mod:`.smooth`). Every consumer asks
the object; none tests its name.

Units (SPEC 4c). ``sigma`` positively homogeneous of degree ``q`` makes the problem covariant under
``X -> a X``, ``y -> b y`` with ``w -> b^(1/q) / a w``; an activation that is not homogeneous (``degree`` None)
has no such law (a change of units changes the model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import cvxpy as cp

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


class RecessionForm(Enum):
    """The recession cone of ``{w : sum_j sigma(X_ij w) <= y_i}``, ``{v : sum_j sigma_inf(X_ij v) <= 0}``, by rows.

    ``sigma_inf(u) = lim sigma(t u) / t`` is the activation's recession function.
    """

    #: ``sigma_inf = (u)_+`` (or ``+inf`` for ``u > 0``): one row ``X_ij v <= 0`` per patch.
    PATCH_NONPOSITIVE = "patch_nonpositive"
    #: ``sigma_inf >= 0`` with equality only at 0 (``|u|``): ``X_ij v = 0`` per patch, as two signed rows.
    PATCH_ZERO = "patch_zero"
    #: ``sigma_inf`` takes negative values (leaky ReLU): one row per sample and slope pattern.
    SAMPLE = "sample"


@dataclass(frozen=True)
class Activation(ABC):
    """A convex activation: values, derivatives, kinks, and the facts the solvers and certificates need.

    Attributes
    ----------
    name : its name in the registry (:data:`cnnrelax.core.activations.ACTIVATION_REGISTRY`).
    degree : the degree of positive homogeneity (None when ``sigma`` is not homogeneous).
    lower : the infimum of ``sigma``'s range (``-inf`` when unbounded below); ``lower_attained`` whether
        ``sigma`` takes that value.
    sign_symmetric : ``sigma(-u) = sigma(u)``: ``w`` and ``-w`` predict the same, recovery is up to sign.
    """

    name: str
    degree: int | None = 1
    lower: float = 0.0
    lower_attained: bool = True
    sign_symmetric: bool = False

    # -- the function ----------------------------------------------------------------------------

    @abstractmethod
    def value(self, u: ArrayLike) -> FloatArray:
        """``sigma(u)`` elementwise."""

    @abstractmethod
    def derivative(self, u: ArrayLike) -> FloatArray:
        """``sigma'(u)`` elementwise; at a kink the lower end of the subdifferential."""

    @property
    @abstractmethod
    def piecewise_linear(self) -> bool:
        """True for ``max(lo u, hi u)``: linear on each activation pattern (least-squares polishing, exact cuts)."""

    def gradient_weights(self, pre: FloatArray | None, active: BoolArray | None) -> FloatArray:
        """``sigma'(X_ij w)`` per patch; a piecewise-linear activation takes its slope from ``active`` when given."""
        assert pre is not None
        return self.derivative(pre)

    @property
    def slope_bound(self) -> float | None:
        """``max |sigma'|`` when bounded (a Lipschitz constant of the mean loss, :mod:`cnnrelax.core.baselines`)."""
        return None

    # -- units and labels --------------------------------------------------------------------------

    def fold(self, c: FloatArray) -> FloatArray | None:
        """Patch multipliers ``s`` with ``c sigma(u) = sigma(s u)`` for ``c >= 0``, or None when none exist."""
        if self.degree is None:
            return None
        if self.degree == 1:
            return c
        root: FloatArray = np.sqrt(c) if self.degree == 2 else np.asarray(c ** (1.0 / self.degree), dtype=np.float64)
        return root

    def w_scale(self, x_scale: float, y_scale: float) -> float:
        """The natural size of a filter: ``y_scale^(1/q) / x_scale`` for degree ``q``, ``1 / x_scale`` otherwise."""
        if self.degree == 1:
            return y_scale / x_scale
        if self.degree is None:
            return 1.0 / x_scale
        return float(y_scale ** (1.0 / self.degree)) / x_scale

    def normalised_divisor(self, y_scale: float) -> float:
        """``d`` with ``sigma~(p) = sigma(p) / d`` on normalised pre-activations ``p`` (1 when homogeneous)."""
        return 1.0 if self.degree is not None else y_scale

    def in_range(self, value: float) -> bool:
        """Can a sum of activations take ``value`` (or come arbitrarily close from above)?"""
        return bool(value > self.lower or (self.lower_attained and value >= self.lower))

    # -- the solvers, the oracle, the baselines and the certificates ----------------------------------

    @property
    @abstractmethod
    def recession_form(self) -> RecessionForm:
        """How the recession cone of the sample constraints is written (:class:`RecessionForm`)."""

    @abstractmethod
    def cvxpy_constraints(self, z: cp.Expression, pre: cp.Expression, y: FloatArray, hard_fit: bool,
                          y_scale: float) -> list[Any]:
        """``z_ij >= sigma~(p_ij)`` for one patch column in cvxpy (the oracle's z-formulation, normalised units).

        ``pre`` is the column's normalised pre-activations, ``y`` the normalised labels, ``hard_fit`` the LP limit.
        """

    @abstractmethod
    def inverse_targets(self, y: FloatArray) -> tuple[BoolArray, FloatArray]:
        """The samples where ``sigma`` inverts and ``sigma^-1(y)`` there (the pseudo-inverse baseline, ``k = 1``).

        Raises :class:`~cnnrelax.errors.InvalidParameterError` when ``sigma`` cannot be inverted.
        """

    @abstractmethod
    def cone_ties(self, tied: BoolArray, active: BoolArray) -> tuple[BoolArray, float]:
        """The tied patches that carry a multiplier in ``[0, v_i]`` in the cone of optimality, and their spread.

        A tied patch contributes ``spread * X_ij`` (piecewise linear: ``hi - lo``, the width of the
        subdifferential at the kink).
        """


@dataclass(frozen=True)
class ConeBlock:
    """Exact constraints of some samples for Clarabel: rows ``A`` (columns up to ``first + width``), right-hand
    sides ``b`` and their cones, in order; ``width`` new variables start at column ``first``."""

    A: Any
    b: FloatArray
    cones: list[Any]
    width: int
