"""The working-set Clarabel solver against the plain cvxpy z-formulation (the oracle), instance by instance."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax import (
    FilterConstraints,
    ImagePatching,
    PlantedSpec,
    RelaxationSolver,
    StridedPatching,
    make_problem,
    planted_problem,
    trial_direction,
)
from cnnrelax.core.oracle import CvxpyRelaxation
from cnnrelax.core.problem import ConvProblem


def _oracle_value(problem: ConvProblem, relaxation: str, r: np.ndarray, beta: float = 0.0,
                  constraints: FilterConstraints | None = None) -> tuple[str, float | None, np.ndarray | None]:
    oracle = CvxpyRelaxation(problem, relaxation, beta=beta, constraints=constraints)
    sol = oracle.solve(r)
    return sol.status, sol.objective, sol.w


def _assert_same_value(ours: float, theirs: float, tol: float = 1e-6) -> None:
    assert abs(ours - theirs) <= tol * max(1.0, abs(theirs)), (ours, theirs)


def _random_instance(seed: int, n: int, d: int, k: int) -> ConvProblem:
    """Labels that no filter fits exactly: the LP's feasible set is a generic polyhedron."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.abs(rng.standard_normal(n)) + 0.1
    return make_problem(X, y, k=k)


@pytest.mark.parametrize(("n", "d", "k"), [(200, 8, 1), (240, 12, 2), (300, 15, 3)])
def test_lp_matches_the_oracle_on_planted_problems(n: int, d: int, k: int) -> None:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=n + k))
    solver = RelaxationSolver(pp.problem, "lp")
    recovered = 0
    for t in range(4):
        r = trial_direction(11, t, pp.problem.m)
        ours = solver.solve(r)
        status, value, w_oracle = _oracle_value(pp.problem, "lp", r)
        assert ours.status == status == "optimal"
        _assert_same_value(ours.objective, value)
        if np.linalg.norm(ours.w - pp.w_star) < 1e-6:
            recovered += 1
            # A recovered filter is the LP's unique vertex: the oracle lands on it too.
            np.testing.assert_allclose(w_oracle, pp.w_star, atol=1e-4)
    # The working set stayed smaller than the full LP (empty when the cone shortcut decided every direction).
    assert len(solver.pool) < n * k


@pytest.mark.parametrize(("seed", "k"), [(0, 1), (1, 2), (2, 4)])
def test_lp_matches_the_oracle_on_generic_labels(seed: int, k: int) -> None:
    problem = _random_instance(seed, n=150, d=4 * k, k=k)
    solver = RelaxationSolver(problem, "lp")
    for t in range(3):
        r = trial_direction(seed, t, problem.m)
        ours = solver.solve(r)
        status, value, w_oracle = _oracle_value(problem, "lp", r)
        assert ours.status == status
        if status == "optimal":
            _assert_same_value(ours.objective, value)
            # Feasible for the full problem, not just for the working set:
            assert np.all(problem.predict(ours.w) <= problem.y + 1e-7)


@pytest.mark.parametrize("beta", [1e-2, 1e-4])
def test_qp_matches_the_oracle(beta: float) -> None:
    pp = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=5, noise_std=0.05))
    solver = RelaxationSolver(pp.problem, "qp", beta=beta)
    for t in range(3):
        r = trial_direction(3, t, pp.problem.m)
        ours = solver.solve(r)
        status, value, w_oracle = _oracle_value(pp.problem, "qp", r, beta=beta)
        assert ours.status == status == "optimal"
        _assert_same_value(ours.objective, value, tol=1e-7)


def test_qp_identity_the_z_minimisation_forgives_under_prediction() -> None:
    """``min_z`` of the QP at fixed ``w`` is ``1/2 sum ((s_i(w) - y_i)_+)^2 - beta r^T w`` (SPEC 2)."""
    import cvxpy as cp

    pp = planted_problem(PlantedSpec(n=60, d=6, k=3, seed=9, noise_std=0.3))
    problem = pp.problem
    rng = np.random.default_rng(0)
    w = rng.standard_normal(problem.m)
    z = cp.Variable((problem.n, problem.k))
    cons = [z >= 0] + [z[:, j] >= problem.patches[:, j, :] @ w for j in range(problem.k)]
    value = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(cp.sum(z, axis=1) - problem.y)), cons).solve(solver=cp.CLARABEL)
    excess = np.maximum(problem.predict(w) - problem.y, 0.0)
    assert value == pytest.approx(0.5 * excess @ excess, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    "constraints",
    [
        FilterConstraints(nonnegative=True),
        FilterConstraints(lower=-0.3, upper=0.4),
        FilterConstraints(l1_bound=0.8),
        FilterConstraints(l2_bound=0.5),
        FilterConstraints(equality_matrix=[[1.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, -2.0, 0.0, 0.0]],
                          equality_vector=[0.0, 0.0]),
        FilterConstraints(inequality_matrix=[[1.0, -1.0, 0.0, 0.0, 0.0, 0.0]], inequality_vector=[0.05],
                          nonnegative=True, l2_bound=2.0),
    ],
)
@pytest.mark.parametrize("relaxation", ["lp", "qp"])
def test_constrained_relaxations_match_the_oracle(constraints: FilterConstraints, relaxation: str) -> None:
    pp = planted_problem(PlantedSpec(n=200, d=12, k=2, seed=21))
    beta = 1e-2 if relaxation == "qp" else 0.0
    solver = RelaxationSolver(pp.problem, relaxation, beta=beta, constraints=constraints)
    resolved = constraints.resolve(pp.problem.m)
    for t in range(2):
        r = trial_direction(5, t, pp.problem.m)
        ours = solver.solve(r)
        status, value, _ = _oracle_value(pp.problem, relaxation, r, beta=beta, constraints=constraints)
        assert ours.status == status == "optimal"
        _assert_same_value(ours.objective, value, tol=1e-6)
        assert resolved.violation(ours.w) <= 1e-7


def test_too_few_samples_is_an_unbounded_status_with_an_explanation() -> None:
    pp = planted_problem(PlantedSpec(n=12, d=10, seed=2))
    solver = RelaxationSolver(pp.problem, "lp")
    statuses = []
    for t in range(6):
        r = trial_direction(0, t, pp.problem.m)
        ours = solver.solve(r)
        status, _, _ = _oracle_value(pp.problem, "lp", r)
        assert ours.status == status
        statuses.append(ours.status)
        if ours.status == "unbounded":
            assert "More samples are needed than n=12" in ours.message
            assert ours.w is None
    assert "unbounded" in statuses


def test_constraints_that_exclude_every_filter_make_an_infeasible_status() -> None:
    pp = planted_problem(PlantedSpec(n=50, d=5, seed=2))
    impossible = FilterConstraints(lower=0.0, upper=1.0, equality_matrix=[[1.0] * 5], equality_vector=[10.0])
    ours = RelaxationSolver(pp.problem, "lp", constraints=impossible).solve(np.ones(5))
    status, _, _ = _oracle_value(pp.problem, "lp", np.ones(5), constraints=impossible)
    assert ours.status == status == "infeasible"
    assert "constraints on w" in ours.message


@pytest.mark.parametrize(
    "patching", [StridedPatching(size=4, stride=2), ImagePatching(height=4, width=4, filter_height=2, filter_width=2)]
)
def test_overlapping_patchings_match_the_oracle(patching) -> None:
    rng = np.random.default_rng(8)
    X = rng.standard_normal((150, 16))
    probe = make_problem(X, np.zeros(150), patching=patching)
    w_star = rng.standard_normal(probe.m)
    problem = make_problem(X, probe.predict(w_star), patching=patching)
    solver = RelaxationSolver(problem, "lp")
    for t in range(3):
        r = trial_direction(1, t, problem.m)
        ours = solver.solve(r)
        status, value, _ = _oracle_value(problem, "lp", r)
        assert ours.status == status
        if status == "optimal":
            _assert_same_value(ours.objective, value)


def test_the_shared_cut_pool_does_not_change_the_answer() -> None:
    pp = planted_problem(PlantedSpec(n=400, d=16, k=2, seed=13))
    shared = RelaxationSolver(pp.problem, "lp")
    rs = [trial_direction(2, t, pp.problem.m) for t in range(4)]
    pooled = [shared.solve(r) for r in rs]
    for r, sol in zip(rs, pooled, strict=True):
        fresh = RelaxationSolver(pp.problem, "lp").solve(r)
        assert sol.objective == pytest.approx(fresh.objective, abs=1e-7)


def test_naive_relaxation_admits_zero_and_misses_the_planted_filter() -> None:
    """Paper Sec. 2.1: ``w = 0`` attains the naive optimum, so it cannot identify ``w*``."""
    pp = planted_problem(PlantedSpec(n=400, d=10, k=1, seed=4))
    problem = pp.problem
    sol = RelaxationSolver(problem, "naive").solve(np.zeros(problem.m))
    status, value, _ = _oracle_value(problem, "naive", np.zeros(problem.m))
    assert sol.status == status == "optimal"
    zero_value = 0.5 * float(np.sum(np.maximum(problem.predict(np.zeros(problem.m)) - problem.y, 0.0) ** 2))
    assert zero_value == 0.0 and value == pytest.approx(0.0, abs=1e-7)  # w = 0 attains the optimal value
    assert sol.objective == pytest.approx(0.0, abs=1e-7)
    assert np.linalg.norm(sol.w - pp.w_star) > 0.1  # and the filter returned is not w*
    assert problem.loss(sol.w) > 1e-3


def test_cancellation_stops_a_solve() -> None:
    pp = planted_problem(PlantedSpec(n=400, d=20, k=2, seed=1))
    sol = RelaxationSolver(pp.problem, "lp").solve(np.ones(pp.problem.m), should_stop=lambda: True)
    assert sol.status == "cancelled" and sol.w is None


@pytest.mark.parametrize("n", [14, 19, 26])
def test_unbounded_rate_follows_wendel(n: int) -> None:
    """The LP ``max r^T w, Xw <= y`` is unbounded iff ``-x_1, ..., -x_n, r`` lie in a common half-space:
    by Wendel's theorem that has probability ``2^-n sum_{i<m} C(n, i)`` for Gaussian data (1/2 at n = 2m - 1)."""
    from math import comb

    m, draws = 10, 80
    unbounded = 0
    for seed in range(draws):
        pp = planted_problem(PlantedSpec(n=n, d=m, seed=1000 + seed))
        sol = RelaxationSolver(pp.problem, "lp").solve(trial_direction(seed, 0, m))
        assert sol.status in ("optimal", "unbounded")
        unbounded += sol.status == "unbounded"
    wendel = sum(comb(n, i) for i in range(m)) / 2**n
    assert abs(unbounded / draws - wendel) < 0.16, (unbounded / draws, wendel)
