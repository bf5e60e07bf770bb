"""``backend="highs"``: LP working sets by HiGHS's warm dual simplex (cnnrelax.core.solver.simplex), against the
independent HiGHS formulation of tests/highs_reference.py (one z_ij per patch, no working set, no normalisation)
and against the default Clarabel backend; verdicts included."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax import FilterConstraints, PlantedSpec, SolveOptions, make_problem, planted_problem, solve
from cnnrelax.core.records import Backend
from cnnrelax.core.solver import RelaxationSolver
from cnnrelax.core.trials import trial_direction

from highs_reference import lp_by_highs


def _close(ours: float | None, exact: float | None) -> None:
    assert ours is not None and exact is not None
    assert ours == pytest.approx(exact, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("labels", ["planted", "generic"])
@pytest.mark.parametrize("constraints", [FilterConstraints(), FilterConstraints(nonnegative=True),
                                         FilterConstraints(lower=-0.3, upper=0.4),
                                         FilterConstraints(inequality_matrix=[[1.0, 1.0, 0.0, 0.0, -1.0, 0.0]],
                                                           inequality_vector=[0.2])])
def test_the_simplex_backend_equals_highs_on_the_full_lp(labels: str, constraints: FilterConstraints) -> None:
    pp = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=8))
    problem = pp.problem
    if labels == "generic":
        problem = make_problem(problem.X, problem.y + np.random.default_rng(1).uniform(0.1, 1.0, problem.n), k=2)
    solver = RelaxationSolver(problem, "lp", constraints=constraints, backend="highs")
    assert solver.simplex is not None
    for t in range(5):
        r = trial_direction(2, t, problem.m)
        ours, exact = solver.solve(r), lp_by_highs(problem, r, constraints)
        assert ours.status == exact.status
        assert ours.backend == Backend.highs
        if exact.status == "optimal":
            _close(ours.objective, exact.value)


def test_verdicts_unbounded_and_infeasible_are_the_full_problems() -> None:
    few = planted_problem(PlantedSpec(n=14, d=10, seed=3)).problem  # n near 2d: unbounded in about half the trials
    solver = RelaxationSolver(few, "lp", backend="highs")
    statuses = []
    for t in range(8):
        r = trial_direction(0, t, few.m)
        ours, exact = solver.solve(r), lp_by_highs(few, r)
        assert ours.status == exact.status
        statuses.append(ours.status)
    assert "unbounded" in statuses
    pp = planted_problem(PlantedSpec(n=200, d=6, seed=4))
    impossible = FilterConstraints(equality_matrix=[[1.0] * 6], equality_vector=[1e6], nonnegative=True)
    assert RelaxationSolver(pp.problem, "lp", constraints=impossible, backend="highs").solve(
        trial_direction(0, 0, 6)).status == "infeasible"


@pytest.mark.parametrize("activation", ["leaky_relu", "absolute"])
def test_the_simplex_backend_agrees_with_clarabel_for_other_piecewise_activations(activation: str) -> None:
    pp = planted_problem(PlantedSpec(n=240, d=8, k=2, seed=6, activation=activation, negative_slope=0.1))
    options = SolveOptions(trials=4, stop_on_certificate=False, coverage_samples=0)
    fast = solve(pp.problem, SolveOptions(**{**options.__dict__, "backend": "highs"}), w_star=pp.w_star)
    default = solve(pp.problem, options, w_star=pp.w_star)
    for a, b in zip(fast.trials, default.trials, strict=True):
        assert a.solution.status == b.solution.status
        if b.objective is not None:
            _close(a.objective, b.objective)
        assert a.recovered == b.recovered


def test_cones_and_penalised_fits_stay_with_clarabel() -> None:
    smooth = planted_problem(PlantedSpec(n=120, d=6, seed=2, activation="squared_relu")).problem
    assert RelaxationSolver(smooth, "lp", backend="highs").simplex is None
    relu = planted_problem(PlantedSpec(n=120, d=6, seed=2)).problem
    assert RelaxationSolver(relu, "qp", beta=1e-3, backend="highs").simplex is None
    assert RelaxationSolver(relu, "lp", constraints=FilterConstraints(l2_bound=1.0), backend="highs").simplex is None
