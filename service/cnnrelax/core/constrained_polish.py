"""Polishing within the constraints: the filter that a constrained answer is, made a KKT point.

The plain polish (:func:`cnnrelax.core.trials.polish`) solves the least squares of the activation pattern without
the constraints and is thrown away when it leaves them, so a constrained answer keeps the relaxation's filter, which
is no stationary point of the loss within the constraints. Here each step is the constrained problem itself:

- piecewise-linear activations: on the pattern of ``w`` the network is linear, ``f_w(x_i) = g_i^T w``, so
  ``min ||G v - y||^2`` over ``v`` in ``C`` is a convex QP (Clarabel through cvxpy); repeated while the pattern moves
  and the loss drops. Once the pattern holds, the QP's KKT conditions are those of the loss within ``C``;
- smooth activations: Gauss-Newton with the step constrained, ``min ||J (v - w) - (y - f_w)||^2`` over ``v`` in
  ``C``, and a backtracking search along the segment from ``w`` to ``v`` (``C`` is convex: it stays inside).

The QPs work in normalised units (``u = w / w_scale``, labels over ``max |y|``, constraint rows of unit norm; SPEC
4c), so their tolerances mean the same in every unit. A step is kept only when it lowers the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from .constraints import ResolvedConstraints
from .problem import ConvProblem, FloatArray

#: Clarabel's tolerances for the polishing QPs (normalised units).
QP_TOLERANCE = 1e-12


@dataclass(frozen=True)
class ConstrainedPolish:
    """The polished filter, whether it lowered the loss, and whether the activation pattern (or Gauss-Newton)
    settled."""

    w: FloatArray
    accepted: bool
    settled: bool


def _constraint_list(v: cp.Variable, constraints: ResolvedConstraints) -> list[cp.Constraint]:
    out: list[cp.Constraint] = []
    if constraints.lower is not None:
        finite = np.isfinite(constraints.lower)
        out.append(v[finite] >= constraints.lower[finite])
    if constraints.upper is not None:
        finite = np.isfinite(constraints.upper)
        out.append(v[finite] <= constraints.upper[finite])
    if constraints.l1_bound is not None:
        out.append(cp.norm1(v) <= constraints.l1_bound)
    if constraints.l2_bound is not None:
        out.append(cp.norm2(v) <= constraints.l2_bound)
    if constraints.equality is not None:
        out.append(constraints.equality[0] @ v == constraints.equality[1])
    if constraints.inequality is not None:
        out.append(constraints.inequality[0] @ v <= constraints.inequality[1])
    return out


def _least_squares(A: FloatArray, b: FloatArray, constraints: ResolvedConstraints) -> FloatArray | None:
    """``argmin ||A u - b||^2`` over ``u`` in the (normalised) constraints, or None when Clarabel fails. ``A`` is the
    small triangular factor of the gradient rows (the objective differs from theirs by a constant)."""
    u = cp.Variable(A.shape[1])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(A @ u - b)), _constraint_list(u, constraints))
    try:
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=QP_TOLERANCE, tol_gap_rel=QP_TOLERANCE, tol_feas=QP_TOLERANCE)
    except cp.error.SolverError:
        return None
    if u.value is None or problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return None
    return np.asarray(u.value, dtype=np.float64)


def polish_within(problem: ConvProblem, w: FloatArray, constraints: ResolvedConstraints,
                  rounds: int = 8) -> ConstrainedPolish:
    """Polish ``w`` within ``constraints`` (module docstring).

    Parameters
    ----------
    problem : the problem.
    w : the filter to polish (feasible, or nearly: the first QP projects it).
    constraints : the resolved constraints.
    rounds : at most this many QPs.

    Returns
    -------
    The best filter found (``w`` itself when no step lowered the loss), and whether it settled.
    """
    kappa = problem.w_scale
    _, y_scale = problem.scales
    unit = constraints.in_units(kappa)
    best = np.asarray(w, dtype=np.float64)
    best_loss = problem.loss(best)
    accepted = settled = False
    smooth = not problem.activation.piecewise_linear
    for _ in range(rounds):
        pre = problem.preactivations(best)
        if smooth:
            weights = problem.gradient_weights(best, pre=pre)
            # J w = sum_j sigma'(X_ij w) X_ij w: the linearisation's offset from the pre-activations (no rows).
            target = problem.y - problem.predict_from(pre) + (weights * pre).sum(axis=1)
        else:
            weights = problem.gradient_weights(best, problem.active_mask(best, pre))
            target = problem.y
        # ||J u - t||^2 = ||R11 u - z||^2 + rho^2 with [J | t] = QR: an (m, m) QP instead of an (n, m) one.
        R11, z = problem.gradient_factor(weights, target).scaled(kappa / y_scale, 1.0 / y_scale)
        u = _least_squares(R11, z, unit)
        if u is None:
            break
        candidate = kappa * u
        step, loss = 1.0, problem.loss(candidate)
        while smooth and not loss < best_loss and step > 1e-6:
            step *= 0.5
            loss = problem.loss(best + step * (candidate - best))
        candidate = best + step * (candidate - best)
        if not loss < best_loss:
            settled = True
            break
        same = bool(np.array_equal(problem.active_mask(candidate), problem.active_mask(best)))
        small = best_loss - loss <= 1e-14 * best_loss
        best, best_loss, accepted = candidate, loss, True
        if (same and not smooth) or small:
            settled = True
            break
    return ConstrainedPolish(best, accepted, settled)
