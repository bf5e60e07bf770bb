"""Trials, selection, polishing and Theorem 1, on planted problems."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnrelax import PlantedSpec, SolveOptions, make_problem, planted_problem, polish, solve, trial_direction
from cnnrelax.results import solve_result_json


@pytest.mark.parametrize(("n", "d", "k"), [(600, 10, 1), (800, 20, 2), (1500, 40, 5)])
def test_planted_filters_are_recovered_and_certified(n: int, d: int, k: int) -> None:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=0))
    result = solve(pp.problem, SolveOptions(trials=12, seed=1), w_star=pp.w_star)
    assert result.status == "solved"
    assert result.recovery_error <= 1e-6
    assert result.certificate.global_optimum
    assert result.certificate.fit_residual <= 1e-9
    assert result.loss <= 1e-10 * float(pp.problem.y @ pp.problem.y)


def test_theorem_1_about_half_the_trials_recover_and_the_cone_test_predicts_each() -> None:
    """For large n/d one trial recovers ``w*`` with probability near 1/2, exactly when ``r in cone{g_i}``."""
    pp = planted_problem(PlantedSpec(n=3000, d=10, k=1, seed=0))
    result = solve(pp.problem, SolveOptions(trials=60, seed=1, stop_on_certificate=False, polish=False),
                   w_star=pp.w_star)
    recovered = np.array([t.recovered for t in result.trials])
    predicted = np.array([t.predicted for t in result.trials])
    assert np.array_equal(recovered, predicted)
    assert 0.3 <= recovered.mean() <= 0.7  # binomial(60, ~1/2): this band is more than 3 standard deviations
    # Recovery needs r^T w* > 0 (the proof's P(r_1 > 0) = 1/2).
    aligned = np.array([t.r @ pp.w_star > 0 for t in result.trials])
    assert not np.any(recovered & ~aligned)


def test_directions_come_from_the_seed_and_trial_index() -> None:
    pp = planted_problem(PlantedSpec(n=300, d=8, k=2, seed=2))
    options = SolveOptions(trials=3, seed=42, stop_on_certificate=False)
    a, b = solve(pp.problem, options), solve(pp.problem, options)
    for t, (ta, tb) in enumerate(zip(a.trials, b.trials, strict=True)):
        np.testing.assert_array_equal(ta.r, np.random.default_rng([42, t]).standard_normal(pp.problem.m))
        np.testing.assert_array_equal(ta.r, tb.r)
        np.testing.assert_array_equal(ta.w, tb.w)
    np.testing.assert_array_equal(a.w, b.w)


def test_early_stop_at_the_first_certified_trial() -> None:
    pp = planted_problem(PlantedSpec(n=800, d=10, k=1, seed=3))
    full = solve(pp.problem, SolveOptions(trials=10, seed=0, stop_on_certificate=False, polish=False), w_star=pp.w_star)
    threshold = 1e-10 * float(pp.problem.y @ pp.problem.y)
    first = next(t.index for t in full.trials if t.loss <= threshold)
    early = solve(pp.problem, SolveOptions(trials=10, seed=0, polish=False), w_star=pp.w_star)
    assert len(early.trials) == first + 1
    assert early.selected_trial == first


def test_selection_keeps_the_least_loss() -> None:
    pp = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=4, noise_std=0.05))
    result = solve(pp.problem, SolveOptions(relaxation="qp", beta=1e-3, trials=5, polish=False), w_star=pp.w_star)
    losses = [t.loss for t in result.trials]
    assert result.loss == min(losses) and result.trials[result.selected_trial].loss == result.loss
    assert not result.certificate.global_optimum  # noisy labels: no zero-loss filter exists


def test_noisy_labels_qp_then_polish_fits_as_well_as_the_teacher() -> None:
    pp = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=4, noise_std=0.05))
    result = solve(pp.problem, SolveOptions(relaxation="qp", beta=1e-1, trials=5), w_star=pp.w_star)
    assert result.loss <= pp.problem.loss(pp.w_star)
    assert result.recovery_error < 0.05


def test_polishing_is_the_pseudo_inverse_on_the_positive_labels_for_k_1() -> None:
    pp = planted_problem(PlantedSpec(n=200, d=8, k=1, seed=5))
    X, y = pp.problem.X, pp.problem.y
    positive = y > 0
    pinv = np.linalg.pinv(X[positive]) @ y[positive]
    outcome = polish(pp.problem, pp.w_star + 1e-4 * np.random.default_rng(0).standard_normal(8))
    assert outcome.accepted and outcome.pattern_unchanged
    np.testing.assert_allclose(outcome.w, pinv, atol=1e-12)
    np.testing.assert_allclose(outcome.w, pp.w_star, atol=1e-12)


def test_the_cvxpy_backend_agrees_with_the_working_set_solver() -> None:
    pp = planted_problem(PlantedSpec(n=300, d=8, k=2, seed=6))
    options = SolveOptions(trials=4, seed=3, stop_on_certificate=False, polish=False)
    fast = solve(pp.problem, options, w_star=pp.w_star)
    oracle = solve(pp.problem, SolveOptions(**{**options.__dict__, "backend": "cvxpy"}), w_star=pp.w_star)
    for a, b in zip(fast.trials, oracle.trials, strict=True):
        assert a.objective == pytest.approx(b.objective, abs=1e-6)
        assert a.recovered == b.recovered


def test_all_trials_unbounded_is_a_status_not_an_error() -> None:
    pp = planted_problem(PlantedSpec(n=5, d=12, seed=1))
    result = solve(pp.problem, SolveOptions(trials=3, seed=0))
    assert result.w is None and result.status in ("unbounded", "no_solution")
    assert "More samples are needed" in result.message
    payload = solve_result_json(result)
    assert payload["certificate"]["global_optimum"] is False
    assert payload["certificate"]["cone"]["applicable"] is False


def test_result_dict_carries_the_contract_keys_and_is_json() -> None:
    pp = planted_problem(PlantedSpec(n=300, d=8, k=2, seed=7))
    payload = json.loads(json.dumps(solve_result_json(solve(pp.problem, SolveOptions(trials=2), w_star=pp.w_star))))
    assert {"w", "loss", "certificate", "recovery_error", "trials"} <= payload.keys()
    assert {"global_optimum", "cone"} <= payload["certificate"].keys()
    assert {"residual", "certified", "applicable"} <= payload["certificate"]["cone"].keys()
    trial = payload["trials"][0]
    assert {"index", "r", "w", "loss", "objective", "recovered", "predicted", "solver"} <= trial.keys()
    assert {"status", "iterations", "solve_time_s"} <= trial["solver"].keys()


def test_data_without_a_planted_filter_has_no_recovery_fields() -> None:
    rng = np.random.default_rng(8)
    problem = make_problem(rng.standard_normal((100, 6)), np.abs(rng.standard_normal(100)), k=2)
    result = solve(problem, SolveOptions(trials=2))
    assert result.recovery_error is None
    assert all(t.recovered is None and t.predicted is None for t in result.trials)
    assert trial_direction(0, 1, 3).shape == (3,)
