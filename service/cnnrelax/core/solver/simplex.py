"""LP sub-problems by HiGHS's dual simplex, warm started between rounds and trials (``backend="highs"``).

For the LP limit of a piecewise-linear activation with linear user constraints, every sub-problem is the LP
``max r^T u`` over the cuts in use, the user constraints and the box: the same model each round with a few rows
more (or switched off), and each trial with another objective. One HiGHS model per solver holds every pooled cut
as a row (pool position ``p`` is row ``user rows + p``); a cut out of use has its bounds opened to
``(-inf, inf)``, so the basis of the last solve stays valid and the dual simplex restarts from it. The optimum is
a vertex: no crossover is needed. Clarabel stays the default and the solver of every cone, QP and norm bound
(:func:`supports`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...errors import InvalidParameterError
from ...types import ShouldStop
from ..activations import PiecewiseLinear
from ..problem import FloatArray
from ..relaxations import Relaxation
from ..tolerances import HIGHS_VERTEX_TOL, MIN_TIME_LIMIT_S
from .normalised import NormalisedProblem
from .subproblem import Outcome, SubproblemResult
from .working_set import InUse


def _highspy() -> Any:
    """The ``highspy`` module (an optional dependency: ``pip install 'cnnrelax[highs]'``)."""
    try:
        import highspy
    except ImportError:  # pragma: no cover - installed with the test extra
        raise InvalidParameterError(
            "backend", "backend 'highs' needs the package highspy (pip install 'cnnrelax[highs]'); use the default "
            "backend 'clarabel' without it.") from None
    return highspy


def highs_outcomes(highspy: Any) -> dict[Any, Outcome]:
    """HiGHS's model statuses as outcomes (any other is a numerical error)."""
    status = highspy.HighsModelStatus
    return {
        status.kOptimal: Outcome.solved,
        status.kInfeasible: Outcome.infeasible,
        status.kUnbounded: Outcome.unbounded,
        status.kUnboundedOrInfeasible: Outcome.infeasible,
        status.kTimeLimit: Outcome.time_limit,
        status.kIterationLimit: Outcome.max_iterations,
        status.kInterrupt: Outcome.cancelled,
    }


def supports(data: NormalisedProblem, kind: Relaxation) -> bool:
    """The sub-problems are LPs: the LP limit, a piecewise-linear activation, linear user constraints."""
    return kind.hard_fit and isinstance(data.activation, PiecewiseLinear) and data.constraints.is_linear


def _int32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


class SimplexSubproblems:
    """The LP sub-problems of one solver in one warm HiGHS model (module docstring)."""

    def __init__(self, data: NormalisedProblem) -> None:
        self.data = data
        m = data.m
        highspy = _highspy()
        self.inf = float(highspy.kHighsInf)
        self.outcomes = highs_outcomes(highspy)
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("primal_feasibility_tolerance", HIGHS_VERTEX_TOL)
        self.highs.setOptionValue("dual_feasibility_tolerance", HIGHS_VERTEX_TOL)
        linear = data.constraints.linear
        self.lower, self.upper = linear.lower.copy(), linear.upper.copy()
        self.highs.addVars(m, np.where(np.isfinite(self.lower), self.lower, -self.inf),
                           np.where(np.isfinite(self.upper), self.upper, self.inf))
        self._add_rows(linear.A_ub, np.full(linear.A_ub.shape[0], -self.inf), linear.b_ub)
        self._add_rows(linear.A_eq, linear.b_eq, linear.b_eq)
        self.first_cut = linear.A_ub.shape[0] + linear.A_eq.shape[0]
        self.cuts = 0  # pooled cuts in the model
        self.active = np.zeros(0, dtype=bool)  # ... and which of them bind
        self.bound: float | None = None
        self.cost: FloatArray | None = None

    def _add_rows(self, A: FloatArray, lower: FloatArray, upper: FloatArray) -> None:
        if not A.shape[0]:
            return
        M = sp.csr_matrix(A)
        self.highs.addRows(A.shape[0], np.where(np.isfinite(lower), lower, -self.inf),
                           np.where(np.isfinite(upper), upper, self.inf), M.nnz, _int32(M.indptr[:-1]),
                           _int32(M.indices), M.data)

    def _sync_rows(self, members: InUse, pool_rows: FloatArray, pool_rhs: FloatArray) -> None:
        """New pooled cuts become rows; rows in use bind (``a^T u <= b``), the others are opened."""
        total = pool_rows.shape[0]
        if total > self.cuts:
            new = slice(self.cuts, total)
            opened = np.full(total - self.cuts, self.inf)
            self._add_rows(pool_rows[new], -opened, opened)
            self.active = np.concatenate([self.active, np.zeros(total - self.cuts, dtype=bool)])
            self.cuts = total
        wanted = np.zeros(total, dtype=bool)
        wanted[members.cut_positions] = True
        changed = np.flatnonzero(wanted != self.active)
        if changed.size:
            upper = np.where(wanted[changed], pool_rhs[changed], self.inf)
            self.highs.changeRowsBounds(changed.size, _int32(changed + self.first_cut),
                                        np.full(changed.size, -self.inf), upper)
            self.active = wanted

    def _sync_columns(self, q_w: FloatArray, bound: float | None) -> None:
        m = self.data.m
        if bound != self.bound:
            lower = self.lower if bound is None else np.maximum(self.lower, -bound)
            upper = self.upper if bound is None else np.minimum(self.upper, bound)
            self.highs.changeColsBounds(m, _int32(np.arange(m)), np.where(np.isfinite(lower), lower, -self.inf),
                                        np.where(np.isfinite(upper), upper, self.inf))
            self.bound = bound
        if self.cost is None or not np.array_equal(q_w, self.cost):
            self.highs.changeColsCost(m, _int32(np.arange(m)), q_w)
            self.cost = q_w.copy()

    def solve(self, members: InUse, pool_rows: FloatArray, pool_rhs: FloatArray, q_w: FloatArray,
              bound: float | None, should_stop: ShouldStop | None, deadline: float | None) -> SubproblemResult:
        """``min q_w^T u`` over the cuts in use, the user constraints and the box, from the last basis."""
        self._sync_rows(members, pool_rows, pool_rhs)
        self._sync_columns(q_w, bound)
        if deadline is not None:
            self.highs.setOptionValue("time_limit", max(deadline - time.monotonic(), MIN_TIME_LIMIT_S))
        self.highs.run()
        status = self.highs.getModelStatus()
        info = self.highs.getInfo()
        x = np.asarray(self.highs.getSolution().col_value, dtype=np.float64)
        return SubproblemResult(self.highs.modelStatusToString(status), x,
                                max(int(info.simplex_iteration_count), 0), None, None,
                                self.data.m, self.outcomes.get(status, Outcome.numerical_error))
