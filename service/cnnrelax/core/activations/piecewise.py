"""Piecewise-linear activations ``sigma(u) = max(lo u, hi u)`` with ``lo < hi``, ``hi > 0``.

ReLU (lo 0, hi 1), leaky ReLU (lo a, hi 1, ``0 < a < 1``) and the absolute value (lo -1, hi 1) are instances;
so is any scaled ReLU (lo 0, hi c). ``sum_j sigma(X_ij w) <= y_i`` is the intersection of the half-spaces
``sum_j c_j X_ij w <= y_i`` over ``c_j in {lo, hi}``; the most violated one at ``w`` has ``c_j = sigma'(X_ij w)``
(exact cuts, :meth:`PiecewiseLinear.slopes`). At a kink ``X_ij w = 0`` the subdifferential is ``[lo, hi]``.
Homogeneous of degree 1. The recession function is ``sigma`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ...errors import InvalidParameterError
from .base import Activation, BoolArray, FloatArray, RecessionForm

if TYPE_CHECKING:
    import cvxpy as cp


@dataclass(frozen=True)
class PiecewiseLinear(Activation):
    """``max(lo u, hi u)``; ``lower`` is 0 when ``lo <= 0`` (attained) and ``-inf`` when ``lo > 0``."""

    lo: float = 0.0
    hi: float = 1.0

    def value(self, u: ArrayLike) -> FloatArray:
        x = np.asarray(u, dtype=np.float64)
        out: FloatArray = np.maximum(self.lo * x, self.hi * x)
        return out

    def derivative(self, u: ArrayLike) -> FloatArray:
        return self.slopes(np.asarray(u, dtype=np.float64) > 0)

    def slopes(self, active: BoolArray) -> FloatArray:
        """``hi`` on active patches (``X_ij w > 0``), ``lo`` elsewhere: the slopes of the most violated cut."""
        out: FloatArray = np.where(active, self.hi, self.lo).astype(np.float64)
        return out

    @property
    def piecewise_linear(self) -> bool:
        return True

    def gradient_weights(self, pre: FloatArray | None, active: BoolArray | None) -> FloatArray:
        if active is not None:
            return self.slopes(active)
        return super().gradient_weights(pre, active)

    @property
    def slope_bound(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    @property
    def recession_form(self) -> RecessionForm:
        if self.lo == 0.0:
            return RecessionForm.PATCH_NONPOSITIVE
        return RecessionForm.PATCH_ZERO if self.lo < 0.0 else RecessionForm.SAMPLE

    def cvxpy_constraints(self, z: cp.Expression, pre: cp.Expression, y: FloatArray, hard_fit: bool,
                          y_scale: float) -> list[Any]:
        return [z >= self.lo * pre, z >= self.hi * pre]

    def inverse_targets(self, y: FloatArray) -> tuple[BoolArray, FloatArray]:
        """``y / hi`` where ``y > 0``; ``y / lo`` where ``y <= 0`` when ``lo > 0`` (the label's sign is the pattern).

        With ``lo = 0`` a label ``y <= 0`` says nothing (every ``u <= 0`` gives it); with ``lo < 0`` no label says
        the sign of ``u``.
        """
        if self.lo < 0.0:
            raise InvalidParameterError(
                "activation", f"The pseudo-inverse baseline cannot invert the activation {self.name}: a label "
                "|X_i w| does not say the sign of X_i w. Use the relaxation or gradient descent.")
        if self.lo == 0.0:
            rows = y > 0
            return rows, (y if self.hi == 1.0 else y / self.hi)
        positive = y if self.hi == 1.0 else y / self.hi
        return np.ones(y.shape, dtype=bool), np.where(y > 0, positive, y / self.lo)

    def cone_ties(self, tied: BoolArray, active: BoolArray) -> tuple[BoolArray, float]:
        return tied, self.hi - self.lo


@dataclass(frozen=True)
class ReLU(PiecewiseLinear):
    """``(u)_+``: ``max(0 u, 1 u)`` computed as ``max(u, 0)``."""

    def value(self, u: ArrayLike) -> FloatArray:
        out: FloatArray = np.maximum(np.asarray(u, dtype=np.float64), 0.0)
        return out


def relu(_negative_slope: float) -> Activation:
    return RELU


def leaky_relu(negative_slope: float) -> Activation:
    """``max(a u, u)`` with ``a`` = ``negative_slope`` in ``(0, 1)``."""
    slope = float(negative_slope)
    if not (np.isfinite(slope) and 0.0 < slope < 1.0):
        raise InvalidParameterError(
            "negative_slope",
            f"negative_slope must lie strictly between 0 and 1 (e.g. 0.01), got {negative_slope!r}: at 0 leaky "
            "ReLU is ReLU, and at 1 or above it is linear or not convex.",
        )
    return PiecewiseLinear("leaky_relu", degree=1, lower=-np.inf, lower_attained=False, lo=slope, hi=1.0)


def absolute(_negative_slope: float) -> Activation:
    """``|u| = max(-u, u)``: sign-symmetric."""
    return PiecewiseLinear("absolute", degree=1, sign_symmetric=True, lo=-1.0, hi=1.0)


RELU = ReLU("relu", degree=1, lo=0.0, hi=1.0)
