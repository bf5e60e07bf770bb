"""Scale-free measures of a filter ``w`` (SPEC 4): how well it fits ``y``, and how stationary the loss is there.

Both are unchanged by a change of units (``X -> a X``, ``y -> b y`` with ``w`` following): the fit residual is
relative to ``max |y|`` and the gradient norm to ``||y|| ||G||_F``. The tolerances every certificate uses are
named once, in :mod:`cnnrelax.core.tolerances`.
"""

from __future__ import annotations

import numpy as np

from ..problem import ConvProblem, FloatArray
from ..tolerances import DEFAULT_CONE_TOL, DEFAULT_FIT_TOL, DEFAULT_OPTIMALITY_TOL, TIE_RTOL

__all__ = ["DEFAULT_CONE_TOL", "DEFAULT_FIT_TOL", "DEFAULT_OPTIMALITY_TOL", "TIE_RTOL", "fit_residual",
           "loss_threshold", "relative_gradient_norm"]


def fit_residual(problem: ConvProblem, w: FloatArray, pre: FloatArray | None = None) -> float:
    """``max_i |f_w(x_i) - y_i|`` relative to ``max_i |y_i|`` (or to the largest prediction when ``y = 0``).

    Parameters
    ----------
    problem : the problem data.
    w : the filter.
    pre : its pre-activations ``X_ij w`` when already computed (no pass then).

    Returns
    -------
    The relative fit residual (0 for a filter that fits exactly), the same in every unit.
    """
    pred = problem.predict(w) if pre is None else problem.predict_from(pre)
    scale = max(float(np.max(np.abs(problem.y))), float(np.max(np.abs(pred))), np.finfo(float).tiny)
    return float(np.max(np.abs(pred - problem.y)) / scale)


def relative_gradient_norm(problem: ConvProblem, w: FloatArray, pre: FloatArray | None = None) -> float:
    """Stationarity of the loss at ``w``: ``||grad L(w)|| / (2 ||y|| ||G||_F)`` with ``G`` the gradient rows.

    ``grad L(w) = -2 sum_i (y_i - f_w(x_i)) g_i``; the ratio is scale-free, 0 at a stationary point and at
    most 1 (Cauchy-Schwarz, when predictions do not exceed the labels' norm). Two passes over ``X`` (the
    pre-activations, unless ``pre`` hands them on, then :meth:`ConvProblem.gradient_moments`), and no ``(n, m)``
    array: ``G`` is never formed.
    """
    pre = problem.preactivations(w) if pre is None else pre
    residual = problem.y - problem.predict_from(pre)
    product, g_norm = problem.gradient_moments(problem.gradient_weights(w, pre=pre), residual)
    grad = -2.0 * product
    denom = 2.0 * float(np.linalg.norm(problem.y)) * g_norm
    return float(np.linalg.norm(grad) / denom) if denom > 0 else 0.0


def loss_threshold(problem: ConvProblem, optimality_tol: float = DEFAULT_OPTIMALITY_TOL) -> float:
    """The largest loss that counts as zero: ``optimality_tol * ||y||^2`` (at least the smallest float)."""
    return optimality_tol * max(float(problem.y @ problem.y), np.finfo(float).tiny)
