"""The working-set loop: rounds and verdicts (SPEC 2), for one relaxation of one problem and many directions ``r``.

Each round solves the sub-problem on the working set (:mod:`.subproblem`), makes one pass over the data to find
the samples it violates (:mod:`.normalised`), ages the members (:mod:`.working_set`) and adds the most violated
constraints (:mod:`.separation`). When none is violated the sub-problem's optimum is feasible, hence optimal, for
the full problem; if the temporary box is active then, a recession LP decides (:mod:`.feasibility`); an LP's
optimum finally goes to an exact vertex (:mod:`.crossover`).

Units (SPEC 4c): everything is solved in normalised units (:mod:`.normalised`), so every tolerance is relative
and ``(a X, b y)`` gives the same statuses and ``(b/a) w``. ``beta`` is dimensionless: the QP minimised is
``1/2 sum_i ((s_i - y_i)_+)^2 / y_scale^2 - beta r^T u``, which in the user's units penalises
``beta * x_scale * y_scale * r^T w`` (degree-1 activations).

Verdicts are only those of the full problem: ``infeasible`` when the members (valid inequalities of the full
problem) exclude every filter without the box, ``unbounded`` with a recession direction confirmed on every patch.
"""

from __future__ import annotations

import time

import numpy as np

from ...types import ShouldStop
from ..activations import PiecewiseLinear
from ..constraints import FilterConstraints, ResolvedConstraints, resolve_constraints
from ..options import SolverSettings
from ..polishing import PolishOutcome
from ..problem import ConvProblem, FloatArray
from ..records import Backend, OnRound, RelaxationSolution, RoundRecord, TrialStatus
from ..relaxations import Relaxation, validate_relaxation
from ..tolerances import BOX_ACTIVE, BOX_GROWTH, BOX_START, MAX_BOX
from .crossover import crossover
from .feasibility import Feasibility
from .normalised import NormalisedProblem
from .outcomes import MESSAGES, Finish, unbounded_message
from .seeding import FirstWorkingSet
from .separation import separate
from .shortcut import ProvenPoint, Shortcut
from .simplex import SimplexSubproblems
from .simplex import supports as simplex_supports
from .subproblem import Outcome, SubproblemResult, Subproblems
from .working_set import InUse, WorkingSet


class RelaxationSolver:
    """Solve one relaxation of one problem for many directions ``r``, sharing the working set.

    Parameters
    ----------
    problem : the problem data (user units; never copied).
    relaxation : a :class:`Relaxation` or its name in :data:`~cnnrelax.core.relaxations.REGISTRY`.
    beta : the QP's dimensionless weight of ``r^T w`` (ignored by the others).
    constraints : convex constraints on ``w`` in the user's units.
    settings : Clarabel's tolerances and the loop's limits.
    backend : ``"clarabel"`` (every sub-problem by Clarabel), or ``"highs"`` (LP working sets by HiGHS's warm dual
        simplex, :mod:`.simplex`; Clarabel for the rest).
    """

    def __init__(self, problem: ConvProblem, relaxation: str | Relaxation = "lp", *, beta: float = 0.0,
                 constraints: FilterConstraints | ResolvedConstraints | None = None,
                 settings: SolverSettings | None = None, backend: Backend | str = Backend.clarabel) -> None:
        self.kind = validate_relaxation(problem, relaxation, beta)
        self.problem = problem
        self.beta = self.kind.effective_beta(beta)
        self.constraints = resolve_constraints(constraints, problem.m)
        self.settings = settings or SolverSettings()
        self.data = NormalisedProblem(problem, self.constraints)
        self.pool = WorkingSet(problem.m)
        self.batch = self.settings.batch or max(2 * problem.m, 50)
        self.subproblems = Subproblems(self.data, self.settings)
        self.feasibility = Feasibility(self.data, self.subproblems, self.settings, self.batch)
        # HiGHS's warm dual simplex for LP working sets when asked for (Clarabel otherwise, and for every cone).
        use_simplex = Backend(backend) == Backend.highs and simplex_supports(self.data, self.kind)
        self.simplex = SimplexSubproblems(self.data) if use_simplex else None
        # Cuts at a polished guess open every LP solve (:mod:`.seeding`): fewer rounds, the same optimum.
        self.first = FirstWorkingSet(self.data) if self.kind.hard_fit else None
        # A cone membership at the guess or the origin decides most LP trials without a sub-problem (:mod:`.shortcut`).
        self.shortcut = Shortcut(self.data, self.first) if self.first is not None and self.settings.cone_shortcut \
            else None

    def proven(self, w: FloatArray) -> ProvenPoint | None:
        """The point the shortcut proved optimal for some direction when ``w`` is it (:meth:`Shortcut.proven`)."""
        return None if self.shortcut is None else self.shortcut.proven(w)

    def twin(self, polished: PolishOutcome) -> ProvenPoint | None:
        """The shortcut's point at the guess when a polished filter is it to rounding (:meth:`Shortcut.twin`)."""
        return None if self.shortcut is None else self.shortcut.twin(polished)

    def solve(self, r: FloatArray, *, should_stop: ShouldStop | None = None, on_round: OnRound | None = None,
              trial: int = 0) -> RelaxationSolution:
        """Solve the relaxation for direction ``r`` (maximise ``r^T w``, SPEC 2 convention): by a cone membership when
        one proves the optimum (:mod:`.shortcut`, no round), else by the working-set loop.

        Parameters
        ----------
        r : the direction, length ``m``.
        should_stop : polled between rounds and inside Clarabel; True cancels the solve.
        on_round : called after each round with its :class:`RoundRecord` (``trial`` is its trial index).

        Returns
        -------
        The solution, its filter in the user's units, and the solver's evidence.
        """
        r = np.asarray(r, dtype=np.float64)
        if self.shortcut is not None and not (should_stop is not None and should_stop()):  # a cancel: the loop says so
            start = time.monotonic()
            w = self.shortcut.optimum(r, should_stop)
            if w is not None:
                return Finish(self, r, start)(TrialStatus.optimal, MESSAGES["cone_optimal"], None, 0, 0, None, w=w)
        run = _Run(self, r, should_stop, on_round, trial)
        seeded = self.first is not None and self.first.applies()
        # A seeded solve starts from its seeds alone (pooled cuts return when violated); others from the pool.
        self.pool.restart(cuts_in_use=not seeded)
        if self.first is not None:
            self.first.seed(self.pool)
        while True:
            verdict = run.round()
            if verdict is not None:
                return verdict


class _Run:
    """The state of one solve: the box, the counters, the last sub-problem."""

    def __init__(self, solver: RelaxationSolver, r: FloatArray, should_stop: ShouldStop | None,
                 on_round: OnRound | None, trial: int) -> None:
        self.solver, self.r, self.should_stop, self.on_round, self.trial = solver, r, should_stop, on_round, trial
        st = solver.settings
        self.start = time.monotonic()
        self.deadline = None if st.time_limit_s is None else self.start + st.time_limit_s
        self.q_w = -solver.kind.direction_weight(solver.beta) * r
        self.with_t = not solver.kind.hard_fit
        self.bound: float | None = None if solver.data.constraints.is_bounded else BOX_START
        self.iterations = self.outer = 0
        self.tol = st.cut_tol * (1.0 + np.abs(solver.data.yn))
        # An LP limit of a piecewise-linear sigma ends at an exact vertex (the crossover, Clarabel's sub-problems) ...
        self.to_vertex = solver.kind.hard_fit and isinstance(solver.data.activation, PiecewiseLinear) \
            and solver.simplex is None
        # ... and its sub-problems go without Clarabel's iterative refinement when the feasible set is a polyhedron.
        self.refine = not (self.to_vertex and solver.constraints.is_linear)
        self.sub: SubproblemResult | None = None
        self.finish = Finish(solver, r, self.start)

    def _end(self, status: TrialStatus, message: str, u: FloatArray | None = None) -> RelaxationSolution:
        return self.finish(status, message, u, self.iterations, self.outer, self.sub)

    def _limits(self) -> RelaxationSolution | None:
        st = self.solver.settings
        if self.should_stop is not None and self.should_stop():
            return self._end(TrialStatus.cancelled, MESSAGES["cancelled"])
        if self.deadline is not None and time.monotonic() > self.deadline:
            return self._end(TrialStatus.time_limit, f"The solve exceeded its time limit of {st.time_limit_s:g} s.")
        if self.outer > st.max_outer_iterations:
            return self._end(TrialStatus.max_iterations, "The working-set loop did not converge within "
                             f"{st.max_outer_iterations} rounds.")
        return None

    def round(self) -> RelaxationSolution | None:
        """One round (reported to ``on_round`` once its sub-problem is solved); the solution when the solve ends."""
        solver = self.solver
        self.outer += 1
        stop = self._limits()
        if stop is not None:
            return stop
        members = solver.pool.in_use_members()
        if solver.simplex is not None:
            sub = solver.simplex.solve(members, solver.pool.rows, solver.pool.rhs, self.q_w, self.bound,
                                       self.should_stop, self.deadline)
        else:
            sub = solver.subproblems.solve(members, self.with_t, self.q_w, self.bound, self.should_stop,
                                           self.deadline, refine=self.refine)
        self.sub = sub
        self.iterations += sub.iterations
        added = 0
        outcome = sub.outcome
        if outcome is Outcome.infeasible:
            verdict = self._infeasible(members)
        elif outcome is not Outcome.solved:
            verdict = self.finish.from_outcome(outcome, sub, self.iterations, self.outer)
        else:
            u = sub.x[:solver.data.m]
            added = self._separate(members, sub, u)
            verdict = None if added else self._converged(u, members)
        if self.on_round is not None:
            self.on_round(RoundRecord(self.trial, self.outer, len(members), added, sub.status,
                                      time.monotonic() - self.start))
        return verdict

    def _separate(self, members: InUse, sub: SubproblemResult, u: FloatArray) -> int:
        solver = self.solver
        t_samples, t_values = sub.t_samples, sub.t_values()
        slack = members.rhs - members.rows @ u
        if t_samples is not None and t_values is not None:
            slack += t_values[np.searchsorted(t_samples, members.samples)]
        violations = solver.data.violations(u, t_samples, t_values)
        solver.pool.age(members.cut_positions, slack)
        solver.pool.age(members.cone_positions, -violations.excess[members.cone_samples])
        return separate(solver.data, solver.pool, violations, self.tol, solver.batch, solver.kind.hard_fit)

    def _infeasible(self, members: InUse) -> RelaxationSolution | None:
        """The sub-problem is infeasible: without the box too (a verdict), or grow the box."""
        feasible, size = self.solver.feasibility.decide(members, self.with_t, self.should_stop, self.deadline)
        if feasible is None:
            return self._end(TrialStatus.numerical_error, MESSAGES["undecided"])
        if not feasible:
            return self._end(TrialStatus.infeasible, MESSAGES["infeasible"])
        if self.bound is None:
            return self._end(TrialStatus.numerical_error, MESSAGES["infeasible_but_feasible"])
        grown = Feasibility.grown_box(self.bound, size)
        if grown is None:
            return self._end(TrialStatus.numerical_error, MESSAGES["far_feasible"])
        self.bound = grown
        return None

    def _converged(self, u: FloatArray, members: InUse) -> RelaxationSolution | None:
        """No sample is violated: a verdict, unless the box is active (recession test, or a larger box)."""
        solver = self.solver
        if (self.bound is not None and solver.kind.has_direction
                and np.max(np.abs(u)) >= BOX_ACTIVE * self.bound):
            if solver.feasibility.recession_direction(self.r, self.should_stop, self.deadline) is not None:
                return self._end(TrialStatus.unbounded, unbounded_message(solver.problem))
            self.bound *= BOX_GROWTH
            if self.bound > MAX_BOX:
                return self._end(TrialStatus.numerical_error, MESSAGES["growing"])
            return None
        if self.to_vertex:
            u = crossover(solver.data, u, self.r, members.rows, members.rhs, self.tol, self.bound)
        return self._end(TrialStatus.optimal, MESSAGES["optimal"], u)


def solve_relaxation(problem: ConvProblem, r: FloatArray, relaxation: str | Relaxation = "lp", *, beta: float = 0.0,
                     constraints: FilterConstraints | None = None, settings: SolverSettings | None = None,
                     should_stop: ShouldStop | None = None) -> RelaxationSolution:
    """One-shot convenience: build a :class:`RelaxationSolver` and solve for ``r``."""
    return RelaxationSolver(problem, relaxation, beta=beta, constraints=constraints, settings=settings).solve(
        r, should_stop=should_stop)


__all__ = ["OnRound", "RelaxationSolver", "solve_relaxation"]
