"""The first working set (cnnrelax.core.solver.seeding): its cuts are valid inequalities of the LP, the LP's optimum
with them is the optimum without them (and HiGHS's on the full LP, tests/highs_reference.py), a direction in the
guess's cone ends in one round at the planted filter, and a guess that does not fit seeds nothing. The loop is
tested here, so the cone shortcut that decides most of these directions without it
(cnnrelax.core.solver.shortcut, tests/test_shortcut.py) is off."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax import FilterConstraints, PlantedSpec, SolverSettings, make_problem, planted_problem
from cnnrelax.core.problem import ConvProblem
from cnnrelax.core.solver import RelaxationSolver
from cnnrelax.core.trials import trial_direction

from highs_reference import lp_by_highs

LOOP = SolverSettings(cone_shortcut=False)


def _unseeded(problem: ConvProblem, constraints: FilterConstraints) -> RelaxationSolver:
    solver = RelaxationSolver(problem, "lp", constraints=constraints, settings=LOOP)
    solver.first = None  # the loop as it was: an empty first working set
    return solver


def test_seeded_cuts_are_valid_inequalities_tight_at_the_planted_filter() -> None:
    pp = planted_problem(PlantedSpec(n=600, d=20, k=2, seed=5))
    solver = RelaxationSolver(pp.problem, "lp", settings=LOOP)
    seeds = solver.first.seeds if solver.first is not None else None
    assert seeds is not None and seeds.toward is not None and seeds.away is not None
    cuts = seeds.toward
    assert len(cuts.samples) == 4 * pp.problem.m
    data = solver.data
    rhs = data.yn[cuts.samples]
    for u in np.random.default_rng(0).standard_normal((50, pp.problem.m)) * 3.0:
        # c^T (X_i u) <= sum_j sigma(X_ij u) for every pattern c: the cut never cuts off a feasible u.
        values = data.activation.value(data.pre(u)[cuts.samples]).sum(axis=1) / data.divisor
        assert np.all(cuts.rows @ u <= values + 1e-12 * (1.0 + np.abs(values)))
        away = data.activation.value(data.pre(u)[seeds.away.samples]).sum(axis=1) / data.divisor
        assert np.all(seeds.away.rows @ u <= away + 1e-12 * (1.0 + np.abs(away)))
    u_star = pp.w_star / data.kappa
    assert np.allclose(cuts.rows @ u_star, rhs, rtol=1e-10, atol=1e-12)
    # The other side: zero labels, rows tight at the origin and strictly negative at w* (so r^T w* < 0 can stop at 0).
    assert np.all(data.yn[seeds.away.samples] == 0) and np.all(seeds.away.rows @ u_star < 0)


@pytest.mark.parametrize("constraints", [FilterConstraints(), FilterConstraints(lower=-0.3, upper=0.4)])
@pytest.mark.parametrize("size", [(300, 12, 1), (500, 16, 2)])
def test_the_optimum_is_the_unseeded_one_and_highs(size: tuple[int, int, int], constraints: FilterConstraints) -> None:
    n, d, k = size
    problem = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=11)).problem
    seeded = RelaxationSolver(problem, "lp", constraints=constraints, settings=LOOP)
    plain = _unseeded(problem, constraints=constraints)
    assert seeded.first is not None and seeded.first.seeds is not None
    for t in range(6):
        r = trial_direction(3, t, problem.m)
        ours, theirs, exact = seeded.solve(r), plain.solve(r), lp_by_highs(problem, r, constraints)
        assert ours.status == theirs.status == exact.status
        if exact.status == "optimal":
            assert ours.objective == pytest.approx(exact.value, rel=1e-9, abs=1e-9)
            assert ours.w is not None and theirs.w is not None
            assert np.allclose(ours.w, theirs.w, rtol=1e-8, atol=1e-10)


def test_a_direction_in_the_cone_ends_in_one_round_at_the_planted_filter() -> None:
    pp = planted_problem(PlantedSpec(n=2000, d=40, k=4, seed=1))
    solver = RelaxationSolver(pp.problem, "lp", settings=LOOP)
    one_round = 0
    for t in range(4):
        fresh = RelaxationSolver(pp.problem, "lp", settings=LOOP)  # an empty pool: only the seeds are there at round 1
        sol = fresh.solve(trial_direction(0, t, pp.problem.m))
        if sol.w is not None and np.linalg.norm(sol.w - pp.w_star) <= 1e-9 * np.linalg.norm(pp.w_star):
            one_round += sol.outer_iterations == 1
    assert one_round >= 1
    assert solver.first is not None and solver.first.seeds is not None


def test_a_guess_that_does_not_fit_seeds_nothing() -> None:
    pp = planted_problem(PlantedSpec(n=400, d=12, k=2, seed=2))
    noisy = make_problem(pp.problem.X, pp.problem.y + np.random.default_rng(4).uniform(0.5, 1.0, pp.problem.n), k=2)
    solver = RelaxationSolver(noisy, "lp", settings=LOOP)
    assert solver.first is not None and solver.first.seeds is None
    assert not solver.first.applies() and solver.first.seed(solver.pool) == 0


def test_a_seeded_solve_starts_from_its_seeds_alone_and_ends_at_the_full_optimum() -> None:
    problem = planted_problem(PlantedSpec(n=800, d=24, k=2, seed=6)).problem
    solver = RelaxationSolver(problem, "lp", settings=LOOP)
    first = solver.first
    assert first is not None and first.applies()
    solver.first = None  # two solves from an empty pool fill it with cuts of their own
    for t in range(2):
        solver.solve(trial_direction(7, t, problem.m))
    pooled = len(solver.pool)
    assert pooled > 0
    solver.first = first
    first_rounds: list[int] = []
    for t in range(6):
        r = trial_direction(5, t, problem.m)
        sol = solver.solve(r, on_round=lambda rec: first_rounds.append(rec.working_set) if rec.round == 1 else None)
        exact = lp_by_highs(problem, r)
        assert sol.status == exact.status
        if exact.status == "optimal":
            assert sol.objective == pytest.approx(exact.value, rel=1e-9, abs=1e-9)
    # The seeds alone (both sides) in every first round, however many cuts the pool holds.
    assert first_rounds == [8 * problem.m] * 6 and len(solver.pool) >= pooled


def test_a_direction_away_from_the_guess_ends_in_one_round_at_the_origin() -> None:
    pp = planted_problem(PlantedSpec(n=2000, d=40, k=4, seed=1))
    at_origin = 0
    for t in range(8):
        r = trial_direction(0, t, pp.problem.m)
        if r @ pp.w_star >= 0:
            continue
        # An empty pool: only the seeds are there at round 1.
        sol = RelaxationSolver(pp.problem, "lp", settings=LOOP).solve(r)
        exact = lp_by_highs(pp.problem, r)
        assert sol.status == exact.status == "optimal"
        assert sol.objective == pytest.approx(exact.value, abs=1e-9)
        assert sol.w is not None
        if np.linalg.norm(sol.w) <= 1e-9:  # the optimum is the origin (the trial fails): seeds hold it at once
            assert np.all(sol.w == 0.0)  # the crossover's vertex is the origin itself, not rounding around it
            at_origin += sol.outer_iterations == 1
    assert at_origin >= 1
