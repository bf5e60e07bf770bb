"""Polishing (SPEC 3): from a filter, the exact fit on its activation pattern, or Gauss-Newton when smooth.

Piecewise-linear activations: on the pattern of ``w`` the model is linear, so least squares on that pattern fits
the labels exactly when the pattern is right (for ReLU with ``k = 1`` this is the paper's pseudo-inverse
``X_S^+ y_S``). Smooth activations: Gauss-Newton with a decrease check, quadratic near a zero-loss minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .problem import ConvProblem, FloatArray
from .tolerances import GAUSS_NEWTON_DECREASE, GAUSS_NEWTON_FLOOR


@dataclass(frozen=True)
class PolishOutcome:
    w: FloatArray
    accepted: bool
    pattern_unchanged: bool


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
    best, best_loss = w, problem.loss(w)
    accepted = unchanged = False
    for _ in range(rounds):
        mask = problem.active_mask(best)
        G = problem.gradient_rows(best, mask)
        candidate = np.asarray(np.linalg.lstsq(G, problem.y, rcond=None)[0], dtype=np.float64)
        loss = problem.loss(candidate)
        if not loss < best_loss:
            break
        unchanged = bool(np.array_equal(problem.active_mask(candidate), mask))
        best, best_loss, accepted = candidate, loss, True
        if unchanged:
            break
    return PolishOutcome(best, accepted, unchanged)


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
    best_loss = problem.loss(best)
    floor = GAUSS_NEWTON_FLOOR * max(float(problem.y @ problem.y), np.finfo(float).tiny)
    accepted = converged = False
    for _ in range(steps):
        if best_loss <= floor:
            converged = True
            break
        residual = problem.y - problem.predict(best)
        J = problem.gradient_rows(best)
        delta = np.asarray(np.linalg.lstsq(J, residual, rcond=None)[0], dtype=np.float64)
        step, improved = 1.0, False
        for _ in range(halvings):
            candidate = best + step * delta
            loss = problem.loss(candidate)
            if loss < best_loss:
                improved = True
                break
            step *= 0.5
        if not improved:
            converged = True
            break
        small = best_loss - loss <= GAUSS_NEWTON_DECREASE * best_loss
        best, best_loss, accepted = candidate, loss, True
        if small:
            converged = True
            break
    return PolishOutcome(best, accepted, converged)
