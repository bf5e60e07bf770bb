"""The cone shortcut (cnnrelax.core.solver.shortcut): a trial decided by a cone membership ends where the working-set
loop ends (the same filter, status and verdicts, against the loop with the shortcut off and against HiGHS's exact
vertex of the full LP, tests/highs_reference.py), and the loop still runs whenever no cone proves the optimum: a
guess that does not fit, a direction outside both cones, user constraints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnrelax import FilterConstraints, PlantedSpec, SolveOptions, SolverSettings, make_problem, planted_problem, solve
from cnnrelax.core.certificates import optimality_cone
from cnnrelax.core.polishing import polish
from cnnrelax.core.problem import ConvProblem
from cnnrelax.core.solver import RelaxationSolver
from cnnrelax.core.trials import trial_direction

from highs_reference import lp_by_highs

LOOP = SolverSettings(cone_shortcut=False)


def _agree(problem: ConvProblem, r: np.ndarray, constraints: FilterConstraints | None = None) -> int:
    """Solve ``r`` with the shortcut, with the loop alone and with HiGHS; check they agree; return the rounds the
    shortcut's solve took (0: a cone decided it)."""
    ours = RelaxationSolver(problem, "lp", constraints=constraints).solve(r)
    loop = RelaxationSolver(problem, "lp", constraints=constraints, settings=LOOP).solve(r)
    exact = lp_by_highs(problem, r, constraints)
    assert ours.status == loop.status == exact.status
    if exact.status == "optimal":
        assert ours.w is not None and loop.w is not None and exact.w is not None
        assert ours.objective == pytest.approx(exact.value, rel=1e-9, abs=1e-9)
        scale = 1.0 + float(np.max(np.abs(exact.w)))
        np.testing.assert_allclose(ours.w, loop.w, rtol=0, atol=1e-8 * scale)
        if ours.outer_iterations == 0:  # a cone proved the point the LP's unique optimum: HiGHS's vertex
            np.testing.assert_allclose(ours.w, exact.w, rtol=0, atol=1e-9 * scale)
    return ours.outer_iterations


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(120, 360), m=st.integers(3, 10), k=st.integers(1, 3), seed=st.integers(0, 10**6),
       trial=st.integers(0, 50))
def test_on_planted_problems_the_shortcut_ends_at_the_loops_filter_and_highs_vertex(n: int, m: int, k: int, seed: int,
                                                                                      trial: int) -> None:
    problem = planted_problem(PlantedSpec(n=n, d=m * k, k=k, seed=seed)).problem
    for t in range(trial, trial + 3):
        _agree(problem, trial_direction(seed, t, problem.m))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(60, 200), m=st.integers(2, 6), k=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_on_labels_no_filter_fits_the_loop_runs_and_agrees(n: int, m: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    problem = make_problem(rng.standard_normal((n, m * k)), np.abs(rng.standard_normal(n)) + 0.1, k=k)
    solver = RelaxationSolver(problem, "lp")
    assert solver.shortcut is not None and solver.shortcut.optimum(trial_direction(seed, 0, problem.m)) is None
    for t in range(2):
        r = trial_direction(seed, t, problem.m)
        sol = solver.solve(r)
        exact = lp_by_highs(problem, r)
        assert sol.status == exact.status
        if exact.status == "optimal":
            assert sol.outer_iterations >= 1 and sol.objective == pytest.approx(exact.value, rel=1e-9, abs=1e-9)


def test_both_cones_and_the_loop_decide_trials_of_one_planted_problem() -> None:
    """Directions of one problem: some end at w* by the guess's cone, some at the origin by its cone, and one that
    neither cone holds runs the loop; all agree with the loop alone and with HiGHS."""
    pp = planted_problem(PlantedSpec(n=400, d=20, k=2, seed=1))
    problem = pp.problem
    decided = {"guess": 0, "origin": 0, "loop": 0}
    for t in range(12):
        r = trial_direction(0, t, problem.m)
        rounds = _agree(problem, r)
        sol = RelaxationSolver(problem, "lp").solve(r)
        assert sol.w is not None
        if rounds:
            decided["loop"] += 1
        elif np.all(sol.w == 0.0):
            decided["origin"] += 1
        else:
            np.testing.assert_allclose(sol.w, pp.w_star, atol=1e-12)
            decided["guess"] += 1
    assert min(decided.values()) >= 1, decided


def test_a_guess_that_fits_and_a_direction_outside_its_cone_go_to_the_loop() -> None:
    """A toy in the plane: w* = (1, 0) fits; the cone at w* is spanned by (1, +-0.1); r = (1, 1) lies outside it
    (r^T w* > 0, so not at the origin either) and the LP's optimum is the vertex (0.98, 0.196), where the cut of
    (1, 0.1) meets the zero-label sample (-1, 5)."""
    w_star = np.array([1.0, 0.0])
    X = np.array([[1.0, 0.1], [1.0, -0.1], [2.0, 0.2], [2.0, -0.2], [1.5, 0.15], [1.5, -0.1],
                  [-1.0, 5.0], [-1.0, -5.0], [-1.0, 0.0], [-2.0, 9.0], [-2.0, -9.0]])
    problem = make_problem(X, np.maximum(X @ w_star, 0.0), k=1)
    solver = RelaxationSolver(problem, "lp")
    assert solver.shortcut is not None
    at_guess = solver.shortcut.at_guess
    assert at_guess is not None and np.allclose(at_guess.w, w_star, atol=1e-14)
    outside = np.array([1.0, 1.0])
    rho, _ = at_guess.distance(outside)
    assert rho > 0.1  # far outside: the cone lies within 0.1 rad of w*
    assert solver.shortcut.optimum(outside) is None
    sol = solver.solve(outside)
    assert sol.outer_iterations >= 1
    np.testing.assert_allclose(sol.w, [1 / 1.02, 0.2 / 1.02], atol=1e-12)
    assert _agree(problem, outside) >= 1
    inside = np.array([1.0, 0.05])  # = 0.75 (1, 0.1) + 0.25 (1, -0.1) + ...: inside, m = 2 positive multipliers
    assert _agree(problem, inside) == 0
    assert _agree(problem, np.array([-1.0, 0.1])) == 0  # r^T w* < 0: the origin's cone


def test_a_guess_that_does_not_fit_leaves_every_trial_to_the_loop() -> None:
    pp = planted_problem(PlantedSpec(n=400, d=12, k=2, seed=2))
    noisy = make_problem(pp.problem.X, pp.problem.y + np.random.default_rng(4).uniform(0.5, 1.0, pp.problem.n), k=2)
    solver = RelaxationSolver(noisy, "lp")
    assert solver.shortcut is not None and solver.first is not None and solver.first.guess is None
    assert solver.shortcut.at_guess is None and solver.shortcut.at_origin is None
    for t in range(3):
        assert _agree(noisy, trial_direction(1, t, noisy.m)) >= 1


def test_user_constraints_leave_every_trial_to_the_loop() -> None:
    problem = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=3)).problem
    constraints = FilterConstraints(lower=-0.3, upper=0.4)
    for t in range(3):
        assert _agree(problem, trial_direction(2, t, problem.m), constraints) >= 1


def test_the_points_handed_on_are_what_polishing_and_the_certificate_compute() -> None:
    """Polishing a proven point keeps it, with the loss it reports (bit for bit); the guess's cone gives the
    certificate's distances."""
    pp = planted_problem(PlantedSpec(n=500, d=24, k=3, seed=4))
    problem = pp.problem
    solver = RelaxationSolver(problem, "lp")
    assert solver.shortcut is not None
    guess, origin = solver.shortcut.at_guess, solver.shortcut.at_origin
    assert guess is not None and origin is not None and guess.fit is not None and origin.fit is None
    for point in (guess, origin):
        again = polish(problem, point.w)
        assert not again.accepted and not point.polished.accepted
        assert np.array_equal(again.w, point.w) and again.loss == point.polished.loss
        assert again.start_loss == point.polished.start_loss
    cone, ties = optimality_cone(problem, guess.w)
    assert ties == guess.ties == 0
    for t in range(6):
        r = trial_direction(9, t, problem.m)
        rho, positive = guess.distance(r)
        _, expected, expected_positive = cone.member(r, 1e-6)
        assert rho == pytest.approx(expected, rel=1e-9, abs=1e-12) and positive == expected_positive


@pytest.mark.parametrize(("size", "seed"), [((600, 20, 2), 4), ((800, 24, 3), 1), ((300, 12, 1), 5)])
def test_a_solve_with_the_shortcut_gives_the_loops_answer_and_certificate(size: tuple[int, int, int],
                                                                           seed: int) -> None:
    n, d, k = size
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
    ours = solve(pp.problem, SolveOptions(coverage_samples=24), w_star=pp.w_star)
    loop = solve(pp.problem, SolveOptions(coverage_samples=24, solver=LOOP), w_star=pp.w_star)
    assert any(rec.solution.outer_iterations == 0 for rec in ours.trials)
    assert ours.status == loop.status and ours.selected_trial == loop.selected_trial
    assert [rec.solution.status for rec in ours.trials] == [rec.solution.status for rec in loop.trials]
    assert [rec.recovered for rec in ours.trials] == [rec.recovered for rec in loop.trials]
    assert ours.w is not None and loop.w is not None
    np.testing.assert_allclose(ours.w, loop.w, rtol=0, atol=1e-14)
    a, b = ours.certificate, loop.certificate
    assert a is not None and b is not None
    assert a.global_optimum == b.global_optimum and a.summary.split("(")[0] == b.summary.split("(")[0]
    assert a.cone.certified == b.cone.certified and a.cone.certified_by_trials == b.cone.certified_by_trials
    assert a.cone.residual == pytest.approx(b.cone.residual, abs=1e-12)
    assert a.coverage is not None and b.coverage is not None
    assert (a.coverage.directions, a.coverage.certifying_directions) == \
        (b.coverage.directions, b.coverage.certifying_directions)


def test_trials_decided_by_a_cone_report_no_round() -> None:
    pp = planted_problem(PlantedSpec(n=400, d=20, k=2, seed=5))
    rounds: list[int] = []
    result = solve(pp.problem, SolveOptions(trials=4, stop_on_certificate=False, coverage_samples=0),
                   on_round=lambda rec: rounds.append(rec.trial))
    decided = [rec.index for rec in result.trials if rec.solution.outer_iterations == 0]
    assert decided and not set(decided) & set(rounds)
    for rec in result.trials:
        if rec.index in decided:
            assert rec.solution.backend_status == "NotStarted" and rec.solution.iterations == 0
            assert "cone of optimality" in rec.solution.message


def test_a_cancel_is_answered_before_any_cone_is_tested() -> None:
    problem = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=1)).problem
    solver = RelaxationSolver(problem, "lp")
    sol = solver.solve(trial_direction(0, 0, problem.m), should_stop=lambda: True)
    assert sol.status == "cancelled" and sol.w is None
    assert solver.shortcut is not None and "at_guess" not in solver.shortcut.__dict__  # nothing was built


def test_beyond_the_largest_filter_the_loop_decides_and_a_cancel_between_stages_stops_the_cones() -> None:
    """A membership cannot be interrupted inside a direction: filters longer than SHORTCUT_MAX_M go to the loop
    (which a cancel stops inside Clarabel), and a cancel arriving while the cones are being built ends the shortcut."""
    from cnnrelax.core.tolerances import SHORTCUT_MAX_M

    problem = planted_problem(PlantedSpec(n=4 * (SHORTCUT_MAX_M + 1), d=SHORTCUT_MAX_M + 1, k=1, seed=0)).problem
    solver = RelaxationSolver(problem, "lp")
    assert solver.shortcut is not None and not solver.shortcut.applies
    small = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=1)).problem
    polls: list[int] = []

    def stop_on_second_poll() -> bool:
        polls.append(1)
        return len(polls) >= 2  # the loop's own first poll passes; the shortcut's first poll stops

    sol = RelaxationSolver(small, "lp").solve(trial_direction(0, 0, small.m), should_stop=stop_on_second_poll)
    assert sol.status == "cancelled"


def test_a_polished_filter_that_is_the_guess_to_rounding_becomes_the_guess() -> None:
    """A trial whose LP lands on another vertex polishes to w*: when the filter it stops on has the guess's pattern
    and lies within TWIN_RTOL of it, the trial reports the guess itself, so the certificate reuses the cone and the
    trial's measured distance; the answer is the loop's to rounding, and the certificate the same."""
    pp = planted_problem(PlantedSpec(n=2000, d=50, k=1, seed=1))  # trial 0: a third vertex, polished to w*
    solver = RelaxationSolver(pp.problem, "lp")
    r = trial_direction(0, 0, pp.problem.m)
    sol = solver.solve(r)
    assert sol.outer_iterations > 0  # the loop ran: no cone held r
    point = solver.shortcut.at_guess
    assert point is not None and not np.array_equal(point.w, sol.w)
    outcome = polish(pp.problem, sol.w)
    assert outcome.accepted and not np.array_equal(outcome.w, point.w)  # polishing stops one fit short, in bits
    assert np.array_equal(outcome.pattern, point.pattern)
    assert np.linalg.norm(outcome.w - point.w) <= 1e-12 * np.linalg.norm(point.w)
    assert solver.twin(outcome) is point
    ours = solve(pp.problem, SolveOptions(coverage_samples=12), w_star=pp.w_star)
    assert ours.trials[0].solution.outer_iterations > 0
    assert ours.w is not None and ours.trials[0].w_polished is not None
    np.testing.assert_allclose(ours.w, pp.w_star, rtol=0, atol=1e-13 * np.abs(pp.w_star).max())
    loop = solve(pp.problem, SolveOptions(coverage_samples=12, solver=LOOP), w_star=pp.w_star)
    assert loop.w is not None
    np.testing.assert_allclose(ours.w, loop.w, rtol=0, atol=1e-13 * np.abs(pp.w_star).max())
    a, b = ours.certificate, loop.certificate
    assert a is not None and b is not None and a.global_optimum and b.global_optimum
    assert a.cone.certified == b.cone.certified and a.cone.residual == pytest.approx(b.cone.residual, rel=1e-9)


def test_a_polished_filter_with_another_pattern_or_farther_is_not_the_guess() -> None:
    pp = planted_problem(PlantedSpec(n=2000, d=50, k=1, seed=1))
    solver = RelaxationSolver(pp.problem, "lp")
    solver.solve(trial_direction(0, 0, pp.problem.m))
    point = solver.shortcut.at_guess
    assert point is not None and point.pattern is not None
    assert solver.twin(replace(point.polished, w=point.w.copy())) is point  # the control: the same filter
    assert solver.twin(replace(point.polished, w=point.w * (1 + 1e-9))) is None  # 1e-9 away: not rounding
    flipped = point.pattern.copy()
    flipped[0, 0] = not flipped[0, 0]
    assert solver.twin(replace(point.polished, w=point.w.copy(), pattern=flipped)) is None  # another pattern
