"""How a solve ends: its verdict's sentence, and the :class:`RelaxationSolution` with the solver's evidence."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..problem import ConvProblem, FloatArray
from ..records import Backend, RelaxationSolution, TrialStatus
from ..relaxations import objective_value
from .subproblem import Outcome, SubproblemResult

if TYPE_CHECKING:
    from .loop import RelaxationSolver

MESSAGES = {
    "optimal": "Solved to optimality.",
    "cone_optimal": "Solved to optimality: r lies in the cone of optimality at the seed guess or at the origin, so "
                    "that point is the LP's unique optimum (no sub-problem was solved).",
    "cancelled": "The solve was cancelled.",
    "infeasible": "The relaxation is infeasible: the constraints on w exclude every filter with "
                  "sum_j sigma(X_ij w) <= y_i (w = 0 satisfies the data rows, so the constraints on w are the cause).",
    "undecided": "Clarabel reported the sub-problem infeasible, and deciding feasibility without the temporary box "
                 "failed too: a numerical failure.",
    "infeasible_but_feasible": "Clarabel reported the sub-problem infeasible, but a feasible filter exists: a "
                               "numerical failure.",
    "far_feasible": "Every feasible filter lies beyond 1e12 times the data's natural scale y_scale / x_scale: the "
                    "problem is too ill-conditioned to solve reliably.",
    "growing": "The filter keeps growing (beyond 1e12 times the data's natural scale y_scale / x_scale) although no "
               "recession direction exists: the problem is too ill-conditioned to solve reliably.",
    # Every sub-problem has a box or bounded constraints, so Clarabel's "unbounded" is a numerical failure.
    "sub_unbounded": "Clarabel reported a bounded sub-problem unbounded: a numerical failure.",
}


def unbounded_message(problem: ConvProblem) -> str:
    n, m = problem.n, problem.m
    return (f"The relaxation is unbounded for this r: there is a direction v with X_ij v <= 0 for every sample and "
            f"patch and r^T v > 0, so n={n} samples do not pin the filter down (m={m}). More samples are needed "
            f"than n={n}: the relaxation needs n well above 2m (the Wendel threshold), and in practice several times "
            "more.")


class Finish:
    """Builds the :class:`RelaxationSolution` of one solve."""

    def __init__(self, solver: RelaxationSolver, r: FloatArray, start: float) -> None:
        self.solver, self.r, self.start = solver, r, start

    def __call__(self, status: TrialStatus, message: str, u: FloatArray | None, iterations: int, outer: int,
                 sub: SubproblemResult | None, w: FloatArray | None = None) -> RelaxationSolution:
        """The solution at ``u`` (normalised units), or at ``w`` (user units) when given."""
        solver = self.solver
        evidence = None if sub is None else sub.evidence
        w = w if w is not None or u is None else solver.data.to_user(u)
        return RelaxationSolution(
            status=status, message=message, w=w,
            objective=None if w is None else objective_value(solver.problem, w, self.r, solver.kind, solver.beta),
            iterations=iterations, outer_iterations=outer, pool_size=len(solver.pool),
            solve_time_s=time.monotonic() - self.start,
            backend=Backend.highs if solver.simplex is not None else Backend.clarabel,
            backend_status=sub.status if sub is not None else "NotStarted",
            primal_residual=None if evidence is None else evidence.primal_residual,
            dual_residual=None if evidence is None else evidence.dual_residual,
            duality_gap=None if evidence is None else evidence.duality_gap,
        )

    def from_outcome(self, outcome: Outcome, sub: SubproblemResult, iterations: int,
                     outer: int) -> RelaxationSolution:
        """The solution for a sub-problem whose outcome ended the solve."""
        messages = {
            Outcome.cancelled: MESSAGES["cancelled"],
            Outcome.time_limit: f"The solve exceeded its time limit of {self.solver.settings.time_limit_s or 0:g} s.",
            Outcome.unbounded: MESSAGES["sub_unbounded"],
            Outcome.max_iterations: f"Clarabel stopped after {sub.iterations} iterations without converging.",
        }
        status = TrialStatus.numerical_error if outcome in (Outcome.unbounded, Outcome.numerical_error) \
            else TrialStatus(outcome.value)
        message = messages.get(outcome, f"Clarabel ended with status {sub.status}.")
        return self(status, message, None, iterations, outer, sub)


__all__ = ["MESSAGES", "Finish", "unbounded_message"]
