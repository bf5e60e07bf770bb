"""Polishing (SPEC 3): from a filter, the exact fit on its activation pattern, or Gauss-Newton when smooth.

Piecewise-linear activations: on the pattern of ``w`` the model is linear, so least squares on that pattern fits
the labels exactly when the pattern is right (for ReLU with ``k = 1`` this is the paper's pseudo-inverse
``X_S^+ y_S``). Smooth activations: Gauss-Newton with a decrease check, quadratic near a zero-loss minimum.

Every least squares is over the gradient rows ``g_i = sum_j c_ij X_ij``, solved from the triangular factor of
``[G | target]`` accumulated block by block in one pass (:meth:`ConvProblem.gradient_factor`): the rows are never
formed, so a memory-mapped ``X`` streams, and no normal equations square the condition number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .problem import ConvProblem, FloatArray
from .tolerances import GAUSS_NEWTON_DECREASE, GAUSS_NEWTON_FLOOR


@dataclass(frozen=True)
class PolishOutcome:
    """The polished filter and its loss, the loss it started from, whether it was accepted (lower loss), and
    whether the pattern settled (Gauss-Newton: whether it converged). ``fit_pattern``: the activation pattern whose
    least squares gave ``w`` (piecewise linear, accepted; None otherwise), so a caller that fits that pattern again
    knows the answer (:mod:`cnnrelax.core.solver.shortcut`); ``pattern``: the activation pattern of ``w`` itself
    (piecewise linear; None otherwise), which differs from ``fit_pattern`` when the last fit moved the pattern but
    did not lower the loss."""

    w: FloatArray
    accepted: bool
    pattern_unchanged: bool
    loss: float
    start_loss: float
    fit_pattern: NDArray[np.bool_] | None = None
    pattern: NDArray[np.bool_] | None = None


def polish(problem: ConvProblem, w: FloatArray, rounds: int = 3) -> PolishOutcome:
    """Polish ``w`` for the problem's activation: least squares on its pattern, or Gauss-Newton when smooth.

    Piecewise-linear activations (ReLU, leaky ReLU, ``|u|``): on the pattern of ``w`` the model is linear,
    ``f_w(x_i) = sum_j c_j X_ij w`` with ``c_j = hi`` on active patches and ``lo`` elsewhere, so least squares
    solves ``sum_j c_j X_ij w = y_i``. The pattern is judged relative to ``||X_ij|| ||w||``
    (:meth:`ConvProblem.active_mask`), so patches the LP left at a kink (``X_ij w`` at rounding level) count as
    inactive in every unit. Kept when the loss drops; repeated while the pattern moves (for ReLU with ``k = 1``
    this is ``X_S^+ y_S``). Smooth activations: :func:`gauss_newton`.

    Parameters
    ----------
    problem : the problem.
    w : the filter to polish.
    rounds : least-squares rounds (piecewise linear).

    Returns
    -------
    The polished filter (``w`` itself when nothing lowered the loss), whether it was accepted, and whether the
    pattern settled (Gauss-Newton: whether it converged).
    """
    if not problem.activation.piecewise_linear:
        return gauss_newton(problem, w)
    pre = problem.preactivations(w)  # one pass per filter tried: its loss and its pattern
    best, best_loss = w, problem.loss_from(pre)
    start_loss = best_loss
    accepted = unchanged = False
    fit_pattern = None
    mask = problem.active_mask(best, pre)
    for _ in range(rounds):
        candidate = problem.gradient_factor(problem.gradient_weights(best, mask), problem.y).solve()
        candidate_pre = problem.preactivations(candidate)
        loss = problem.loss_from(candidate_pre)
        if not loss < best_loss:
            break
        candidate_mask = problem.active_mask(candidate, candidate_pre)
        unchanged = bool(np.array_equal(candidate_mask, mask))
        best, best_loss, pre, accepted, fit_pattern = candidate, loss, candidate_pre, True, mask
        mask = candidate_mask
        if unchanged:
            break
    return PolishOutcome(best, accepted, unchanged, best_loss, start_loss, fit_pattern, mask)


def gauss_newton(problem: ConvProblem, w: FloatArray, steps: int = 20, halvings: int = 30) -> PolishOutcome:
    """Gauss-Newton on ``L(w) = ||y - f_w||^2`` for a smooth activation, with a decrease check.

    Each step solves the linearised least squares ``J delta = y - f_w`` with ``J_i = sum_j sigma'(X_ij w) X_ij``
    (:meth:`ConvProblem.gradient_rows`) and halves the step until the loss drops; it stops when no step lowers
    the loss, when the loss is zero to rounding, or after ``steps`` steps. Near a zero-loss minimum the
    convergence is quadratic.

    Parameters
    ----------
    problem : the problem (smooth activation).
    w : the starting filter.
    steps : at most this many steps.
    halvings : at most this many halvings of a step.

    Returns
    -------
    The best filter found, whether it beat ``w``, and whether the iteration converged.
    """
    best = np.asarray(w, dtype=np.float64)
    pre = problem.preactivations(best)
    best_loss = start_loss = problem.loss_from(pre)
    floor = GAUSS_NEWTON_FLOOR * max(float(problem.y @ problem.y), np.finfo(float).tiny)
    accepted = converged = False
    for _ in range(steps):
        if best_loss <= floor:
            converged = True
            break
        residual = problem.y - problem.predict_from(pre)
        delta = problem.gradient_factor(problem.gradient_weights(best, pre=pre), residual).solve()
        step, improved = 1.0, False
        for _ in range(halvings):
            candidate = best + step * delta
            candidate_pre = problem.preactivations(candidate)
            loss = problem.loss_from(candidate_pre)
            if loss < best_loss:
                improved = True
                break
            step *= 0.5
        if not improved:
            converged = True
            break
        small = best_loss - loss <= GAUSS_NEWTON_DECREASE * best_loss
        best, best_loss, pre, accepted = candidate, loss, candidate_pre, True
        if small:
            converged = True
            break
    return PolishOutcome(best, accepted, converged, best_loss, start_loss)
