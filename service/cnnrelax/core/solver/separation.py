"""Separation: the most violated constraints of the full problem at ``u``, added to the working set.

Piecewise-linear ``sigma`` (:class:`PiecewiseLinear`): ``s_i(u) <= y_i`` is the intersection of the half-spaces
``sum_j c_j X_ij u <= y_i`` over ``c_j in {lo, hi}``; the most violated one at ``u`` has ``c_j = sigma'(X_ij u)``
(one exact cut per violated sample, keyed by its slope pattern), deepest first. Smooth ``sigma``
(:class:`Smooth`): the sample's exact cone joins instead (a sample already in use is violated only by the interior
point's accuracy); a zero label in the LP makes the constraint ``X_ij u <= 0`` patch by patch, added as linear cuts
(the cone would have no interior, and interior-point accuracy suffers). At most ``batch`` members per round; only
the ``8 batch`` most violated samples are looked at.
"""

from __future__ import annotations

import numpy as np

from ..activations import PiecewiseLinear
from ..problem import FloatArray
from ..tolerances import TINY
from .normalised import NormalisedProblem, Violations
from .working_set import WorkingSet


def most_violated(violations: Violations, tol: FloatArray, batch: int) -> np.ndarray:
    """The violated samples (excess beyond ``tol``), cut down to the ``8 batch`` most violated."""
    excess = violations.excess
    violated = np.flatnonzero(excess > tol)
    if violated.size > 8 * batch:
        violated = violated[np.argpartition(-excess[violated], 8 * batch)[: 8 * batch]]
    return violated


def add_cuts(data: NormalisedProblem, pool: WorkingSet, violations: Violations, violated: np.ndarray,
             batch: int) -> int:
    """One exact cut per violated sample (piecewise linear), deepest first; returns how many joined."""
    act = data.activation
    assert isinstance(act, PiecewiseLinear)
    masks = violations.pre[violated] > 0
    # The most violated piece: slope sigma'(X_ij u) per patch (1/0 for ReLU, hi/lo in general).
    slopes = act.slopes(masks)
    cut_rows = np.einsum("vk,vkm->vm", slopes, data.problem.source.take(violated)) / data.x_scale
    # Deepest cuts first: the distance from u to each violated half-space.
    depth = violations.excess[violated] / np.maximum(np.linalg.norm(cut_rows, axis=1), TINY)
    added = 0
    for v in np.argsort(-depth):
        i = int(violated[v])
        if pool.add_cut(i, np.packbits(masks[v]).tobytes(), cut_rows[v], float(data.yn[i])):
            added += 1
            if added >= batch:
                break
    return added


def add_cones(data: NormalisedProblem, pool: WorkingSet, violations: Violations, violated: np.ndarray,
              batch: int, hard_fit: bool) -> int:
    """Exact cones for the most violated samples (smooth), patch cuts for zero labels in the LP."""
    excess, pre = violations.excess, violations.pre
    added = 0
    for i in violated[np.argsort(-excess[violated])].tolist():
        if hard_fit and data.yn[i] == 0.0:
            patches = data.problem.source.take(np.array([i]))[0]
            for j in np.flatnonzero(pre[i] > 0).tolist():
                if pool.add_cut(i, b"patch" + j.to_bytes(4, "little"), patches[j] / data.x_scale, 0.0):
                    added += 1
        elif pool.add_cone(int(i), float(data.yn[i])):
            added += 1
        if added >= batch:
            break
    return added


def separate(data: NormalisedProblem, pool: WorkingSet, violations: Violations, tol: FloatArray, batch: int,
             hard_fit: bool) -> int:
    """Add the most violated constraints at the point ``violations`` was computed at; returns how many joined."""
    violated = most_violated(violations, tol, batch)
    if not violated.size:
        return 0
    if isinstance(data.activation, PiecewiseLinear):
        return add_cuts(data, pool, violations, violated, batch)
    return add_cones(data, pool, violations, violated, batch, hard_fit)
