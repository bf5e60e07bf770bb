"""The relaxations written plainly in cvxpy, one ``z_ij`` per sample and patch (paper eq. 7-9).

This is the independent oracle the tests compare the working-set solver against, the baseline
``bench/`` times, and a selectable backend (``backend="cvxpy"``). Solved by Clarabel through cvxpy.
Like the core it works in normalised units (``X / x_scale``, ``y / y_scale``, ``u = w / kappa``;
SPEC 4c), which is where the QP's dimensionless ``beta`` is defined; ``w`` is mapped back.
"""

from __future__ import annotations

import time
from typing import Any

import cvxpy as cp
import numpy as np

from ..types import ShouldStop
from .constraints import FilterConstraints, ResolvedConstraints, resolve_constraints
from .problem import ConvProblem, FloatArray
from .records import Backend, OnRound, RelaxationSolution, TrialStatus
from .relaxations import Relaxation, objective_value, validate_relaxation

_STATUS = {
    cp.OPTIMAL: TrialStatus.optimal, cp.OPTIMAL_INACCURATE: TrialStatus.optimal,
    cp.UNBOUNDED: TrialStatus.unbounded, cp.UNBOUNDED_INACCURATE: TrialStatus.unbounded,
    cp.INFEASIBLE: TrialStatus.infeasible, cp.INFEASIBLE_INACCURATE: TrialStatus.infeasible,
}


def constraint_list(w: cp.Variable, c: ResolvedConstraints) -> list[Any]:
    """SPEC 2.4's constraints on ``w`` as cvxpy constraints (the linear ones from their one form)."""
    A, b = c.linear.rows
    out: list[Any] = [A @ w <= b] if A.shape[0] else []
    if c.linear.A_eq.shape[0]:
        out.append(c.linear.A_eq @ w == c.linear.b_eq)
    if c.l1_bound is not None:
        out.append(cp.norm1(w) <= c.l1_bound)
    if c.l2_bound is not None:
        out.append(cp.norm2(w) <= c.l2_bound)
    return out


def build_problem(
    problem: ConvProblem, kind: Relaxation, beta: float, constraints: ResolvedConstraints
) -> tuple[cp.Problem, cp.Variable, cp.Parameter]:
    """The z-formulation: ``z_ij >= sigma~(X~_ij u)`` (eq. 4-5), with the LP's ``sum_j z_ij = y_i`` or the QP's loss.

    ``sigma~`` is the activation on normalised data, as the activation writes it
    (:meth:`~cnnrelax.core.activations.Activation.cvxpy_constraints`): ``max(lo p, hi p)`` for the piecewise-linear
    ones (ReLU: ``z >= 0``, ``z >= p``), ``(p)_+^2`` for squared ReLU, ``log(1 + e^p) / y_scale`` for softplus.

    In normalised units: the returned variable is ``u = w / kappa`` (multiply its value by
    ``problem.w_scale`` for the filter).
    """
    x_scale, y_scale = problem.scales
    kappa = problem.w_scale
    y = problem.y / y_scale
    w = cp.Variable(problem.m, name="u")
    z = cp.Variable((problem.n, problem.k), name="z")
    r = cp.Parameter(problem.m, name="r")
    cons: list[Any] = []
    for j in range(problem.k):
        pre = (problem.patches[:, j, :] / x_scale) @ w
        cons += problem.activation.cvxpy_constraints(z[:, j], pre, y, kind.hard_fit, y_scale)
    cons += constraint_list(w, constraints.in_units(kappa))
    if kind.hard_fit:
        cons.append(cp.sum(z, axis=1) == y)
        objective = cp.Maximize(r @ w)
    else:
        fit = 0.5 * cp.sum_squares(cp.sum(z, axis=1) - y)
        objective = cp.Minimize(fit - kind.direction_weight(beta) * (r @ w))
    return cp.Problem(objective, cons), w, r


class CvxpyRelaxation:
    """Same interface as :class:`~cnnrelax.core.relaxation.RelaxationSolver`, through cvxpy + Clarabel."""

    def __init__(
        self,
        problem: ConvProblem,
        relaxation: str | Relaxation = "lp",
        *,
        beta: float = 0.0,
        constraints: FilterConstraints | ResolvedConstraints | None = None,
        solver_options: dict[str, Any] | None = None,
    ) -> None:
        self.kind = validate_relaxation(problem, relaxation, beta)
        self.problem = problem
        self.beta = self.kind.effective_beta(beta)
        resolved = resolve_constraints(constraints, problem.m)
        self.cvx, self.w, self.r = build_problem(problem, self.kind, self.beta, resolved)
        self.solver_options = solver_options or {}

    def solve(self, r: FloatArray, *, should_stop: ShouldStop | None = None, on_round: OnRound | None = None,
              trial: int = 0) -> RelaxationSolution:
        """Solve for direction ``r``; ``should_stop`` and ``on_round`` are accepted for the backends' protocol and
        ignored (one solve, no rounds)."""
        self.r.value = np.asarray(r, dtype=np.float64)
        start = time.monotonic()
        try:
            self.cvx.solve(solver=cp.CLARABEL, **self.solver_options)
        except cp.error.SolverError as exc:
            return RelaxationSolution(TrialStatus.numerical_error, f"cvxpy/Clarabel failed: {exc}", None, None, 0, 1,
                                      0, time.monotonic() - start, Backend.cvxpy, "SolverError")
        status = _STATUS.get(self.cvx.status, TrialStatus.numerical_error)
        solved = status == TrialStatus.optimal and self.w.value is not None
        w = np.array(self.w.value) * self.problem.w_scale if solved else None
        stats = self.cvx.solver_stats
        return RelaxationSolution(
            status=status,
            message=f"cvxpy status {self.cvx.status}",
            w=w,
            objective=None if w is None else objective_value(self.problem, w, self.r.value, self.kind, self.beta),
            iterations=int(stats.num_iters or 0),
            outer_iterations=1,
            pool_size=self.problem.n * self.problem.k,
            solve_time_s=time.monotonic() - start,
            backend=Backend.cvxpy,
            backend_status=str(self.cvx.status),
        )
