"""Crossover: the interior-point LP optimum moved onto an exact vertex, as commercial LP solvers do.

Two candidates: the projection of ``u`` onto the cuts and constraints tight at it, and HiGHS's simplex on the
final working set (the cuts in use, the user constraints and the box). A projection whose tight rows have full
rank is that vertex already (HiGHS is then skipped: it costs a third of a trial). The best candidate that
satisfies every sample and user constraint and whose value ``r^T u`` is no worse (to
:data:`~cnnrelax.core.tolerances.CROSSOVER_VALUE` relative) replaces ``u``; the interior point stays otherwise.
(The value may drop a little when the interior point was itself infeasible by up to the cut tolerance.)
The LP's value then matches HiGHS's to about 1e-12.
"""

from __future__ import annotations

import numpy as np

from ..problem import FloatArray
from ..tolerances import (
    CROSSOVER_ACTIVE,
    CROSSOVER_FEASIBILITY,
    CROSSOVER_NEAR,
    CROSSOVER_ROUNDING,
    CROSSOVER_VALUE,
)
from .feasibility import highs
from .normalised import NormalisedProblem


def crossover(data: NormalisedProblem, u: FloatArray, r: FloatArray, rows: FloatArray, rhs: FloatArray,
              tol: FloatArray, bound: float | None) -> FloatArray:
    """The exact vertex replacing ``u`` (module docstring), or ``u`` itself when no candidate is acceptable.

    ``rows``, ``rhs`` are the final working set's cuts, ``tol`` the per-sample violation tolerance.
    """
    if rows.shape[0] == 0:
        return u
    value = float(r @ u)
    rnorm = float(np.linalg.norm(r))
    floor = value - CROSSOVER_VALUE * (abs(value) + rnorm)

    def acceptable(candidate: FloatArray | None) -> bool:
        if candidate is None or not np.all(np.isfinite(candidate)):
            return False
        excess = data.violations(candidate).excess
        scale = 1.0 + float(np.max(np.abs(candidate)))
        return not (np.any(excess > tol) or data.constraints.violation(candidate) > CROSSOVER_FEASIBILITY * scale
                    or float(r @ candidate) < floor)

    projection, rank = project(data, u, rows, rhs)
    if rank == data.m and acceptable(projection):
        assert projection is not None
        return projection
    candidate_vertex = vertex(data, r, rows, rhs, bound)
    # On an optimal face that is not a point, ties within rounding go to the vertex: which point wins must not
    # depend on the last bits (the same answer in every unit).
    rounding = CROSSOVER_ROUNDING * (abs(value) + rnorm)
    best, best_value = u, -np.inf
    for candidate in (candidate_vertex, projection):
        if acceptable(candidate):
            assert candidate is not None
            candidate_value = float(r @ candidate)
            if candidate_value > best_value + rounding:
                best, best_value = candidate, candidate_value
    return best


def vertex(data: NormalisedProblem, r: FloatArray, rows: FloatArray, rhs: FloatArray,
           bound: float | None) -> FloatArray | None:
    """HiGHS's simplex on the working-set LP ``max r^T u`` (linear constraints only; None otherwise)."""
    if not data.constraints.is_linear:
        return None
    res = highs(-r, rows, rhs, data.constraints.linear, bound, tight=True)
    return np.asarray(res.x, dtype=np.float64) if res.status == 0 and res.x is not None else None


def project(data: NormalisedProblem, u: FloatArray, rows: FloatArray,
            rhs: FloatArray) -> tuple[FloatArray | None, int]:
    """``u`` projected onto ``{A u = b}`` for the cuts and user constraints tight at it; and the rank of ``A``."""
    # Active: tight at the interior point (Clarabel's duals of slack rows are small but not zero, and on
    # this degenerate LP many tight rows have zero duals, so slack decides; a wrong guess is rejected above).
    active = rhs - rows @ u <= CROSSOVER_ACTIVE * (1.0 + np.abs(rhs))
    linear = data.constraints.linear
    user, user_rhs = linear.tight(u, CROSSOVER_NEAR * (1.0 + float(np.max(np.abs(u)))))
    A = np.vstack([rows[active], linear.A_eq, user])
    b = np.concatenate([rhs[active], linear.b_eq, user_rhs])
    if A.shape[0] == 0:
        return None, 0
    step, _, rank, _ = np.linalg.lstsq(A, b - A @ u, rcond=None)
    if rank == data.m and not np.any(b):
        # Tight rows of full rank, all with right-hand side 0: the vertex is the origin itself, not u + step's
        # rounding (whose pattern polishing would otherwise follow: the trial's outcome would hang on the last bits).
        return np.zeros(data.m), int(rank)
    return np.asarray(u + step, dtype=np.float64), int(rank)
