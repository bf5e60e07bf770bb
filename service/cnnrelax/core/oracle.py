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

from .constraints import FilterConstraints, ResolvedConstraints, resolve_constraints
from .problem import ConvProblem, FloatArray
from .relaxation import RelaxationSolution, objective_value, relaxation_kind, validate_relaxation

_STATUS = {
    cp.OPTIMAL: "optimal", cp.OPTIMAL_INACCURATE: "optimal",
    cp.UNBOUNDED: "unbounded", cp.UNBOUNDED_INACCURATE: "unbounded",
    cp.INFEASIBLE: "infeasible", cp.INFEASIBLE_INACCURATE: "infeasible",
}


def constraint_list(w: cp.Variable, c: ResolvedConstraints) -> list[Any]:
    """SPEC 2.4's constraints on ``w`` as cvxpy constraints."""
    out: list[Any] = []
    if c.lower is not None:
        keep = np.isfinite(c.lower)
        out.append(w[keep] >= c.lower[keep])
    if c.upper is not None:
        keep = np.isfinite(c.upper)
        out.append(w[keep] <= c.upper[keep])
    if c.l1_bound is not None:
        out.append(cp.norm1(w) <= c.l1_bound)
    if c.l2_bound is not None:
        out.append(cp.norm2(w) <= c.l2_bound)
    if c.equality is not None:
        out.append(c.equality[0] @ w == c.equality[1])
    if c.inequality is not None:
        out.append(c.inequality[0] @ w <= c.inequality[1])
    return out


def build_problem(
    problem: ConvProblem, relaxation: str, beta: float, constraints: ResolvedConstraints
) -> tuple[cp.Problem, cp.Variable, cp.Parameter]:
    """The z-formulation: ``z_ij >= sigma~(X~_ij u)`` (eq. 4-5), with the LP's ``sum_j z_ij = y_i`` or the QP's loss.

    ``sigma~`` is the activation on normalised data: ``max(lo p, hi p)`` for the piecewise-linear ones (ReLU:
    ``z >= 0``, ``z >= p``), ``(p)_+^2`` for squared ReLU, ``log(1 + e^p) / y_scale`` for softplus.

    In normalised units: the returned variable is ``u = w / kappa`` (multiply its value by
    ``problem.w_scale`` for the filter).
    """
    x_scale, y_scale = problem.scales
    kappa = problem.w_scale
    y = problem.y / y_scale
    w = cp.Variable(problem.m, name="u")
    z = cp.Variable((problem.n, problem.k), name="z")
    r = cp.Parameter(problem.m, name="r")
    act = problem.activation
    cons: list[Any] = []
    for j in range(problem.k):
        pre = (problem.patches[:, j, :] / x_scale) @ w
        if act.piecewise_linear:  # sigma(p) = max(lo p, hi p)
            cons += [z[:, j] >= act.lo * pre, z[:, j] >= act.hi * pre]
        elif act.name == "squared_relu":
            cons.append(z[:, j] >= cp.square(cp.pos(pre)))
            if relaxation_kind(relaxation).hard_fit and (y == 0).any():
                # sum_j (p_j)_+^2 <= 0 is p_j <= 0: said linearly, since the cone form has no interior (Slater fails).
                cons.append(pre[y == 0] <= 0)
        else:  # softplus, not homogeneous: sigma~(p) = log(1 + e^p) / y_scale with kappa = 1 / x_scale
            cons.append(z[:, j] >= cp.logistic(pre) / y_scale)
    cons += constraint_list(w, constraints.in_units(kappa))
    kind = relaxation_kind(relaxation)
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
        relaxation: str = "lp",
        *,
        beta: float = 0.0,
        constraints: FilterConstraints | ResolvedConstraints | None = None,
        solver_options: dict[str, Any] | None = None,
    ) -> None:
        validate_relaxation(problem, relaxation, beta)
        self.problem = problem
        self.relaxation = relaxation
        self.beta = float(beta) if relaxation_kind(relaxation).needs_beta else 0.0
        resolved = resolve_constraints(constraints, problem.m)
        self.cvx, self.w, self.r = build_problem(problem, relaxation, self.beta, resolved)
        self.solver_options = solver_options or {}

    def solve(self, r: FloatArray, *, should_stop: Any = None) -> RelaxationSolution:
        """Solve for direction ``r``; ``should_stop`` is accepted for interface parity and ignored."""
        self.r.value = np.asarray(r, dtype=np.float64)
        start = time.monotonic()
        try:
            self.cvx.solve(solver=cp.CLARABEL, **self.solver_options)
        except cp.error.SolverError as exc:
            return RelaxationSolution("numerical_error", f"cvxpy/Clarabel failed: {exc}", None, None, 0, 1, 0,
                                      time.monotonic() - start, "SolverError")
        status = _STATUS.get(self.cvx.status, "numerical_error")
        w = None if status != "optimal" or self.w.value is None else np.array(self.w.value) * self.problem.w_scale
        stats = self.cvx.solver_stats
        return RelaxationSolution(
            status=status,
            message=f"cvxpy status {self.cvx.status}",
            w=w,
            objective=None if w is None else objective_value(self.problem, w, self.r.value, self.relaxation, self.beta),
            iterations=int(stats.num_iters or 0),
            outer_iterations=1,
            working_set=self.problem.n * self.problem.k,
            solve_time_s=time.monotonic() - start,
            clarabel_status=str(self.cvx.status),
        )
