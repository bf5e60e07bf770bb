"""Tie-aware cone test and coverage (SPEC 4, issue 8), against HiGHS and against measured trial rates."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax import (
    PlantedSpec,
    RelaxationSolver,
    SolveOptions,
    cone_certificate,
    make_problem,
    planted_problem,
    solve,
    trial_direction,
)
from cnnrelax.core.certificate import coverage, optimality_cone, trials_needed, wilson_interval

from highs_reference import lp_by_highs


def _lp_optimal_at(problem, w: np.ndarray, r: np.ndarray) -> bool:
    exact = lp_by_highs(problem, r)
    value = float(r @ w)
    return exact.status == "optimal" and exact.value <= value + 1e-7 * max(1.0, abs(value))


def _blank_rows_instance(seed: int, n: int = 80, m: int = 6, blank: int = 26):
    """``w* = e_1`` and ``blank`` rows with ``x_i1 = 0``: those samples are tied at ``w*`` (``X_i w* = 0``)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    X[:blank, 0] = 0.0
    w_star = np.eye(m)[0]
    return make_problem(X, np.maximum(X @ w_star, 0.0)), w_star


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tied_patches_cone_verdict_equals_highs_for_every_trial(seed: int) -> None:
    problem, w_star = _blank_rows_instance(seed)
    cone, ties = optimality_cone(problem, w_star)
    assert ties == 26
    verdicts = []
    for t in range(60):
        r = trial_direction(seed, t, problem.m)
        cert = cone_certificate(problem, w_star, r, cone=cone)
        assert cert.certified == _lp_optimal_at(problem, w_star, r), (t, cert)
        verdicts.append(cert.certified)
    assert any(verdicts) and not all(verdicts)


def test_ties_in_image_patches_with_blank_pixels() -> None:
    """k = 3 blocks whose first pixel is often blank: ties at w* in many samples; verdicts equal HiGHS's."""
    rng = np.random.default_rng(5)
    n, k, m = 150, 3, 4
    X = rng.standard_normal((n, k * m))
    X[rng.random((n, k)).repeat(m, axis=1).reshape(n, k * m) < 0.3] = 0.0  # whole blank patches
    blank_first = rng.random((n, k)) < 0.4
    X.reshape(n, k, m)[..., 0][blank_first] = 0.0
    w_star = np.array([1.0, 0.0, 0.0, 0.0])
    problem = make_problem(X, np.maximum(X.reshape(n, k, m) @ w_star, 0.0).sum(axis=1), k=k)
    cone, ties = optimality_cone(problem, w_star)
    assert ties > 50
    for t in range(40):
        r = trial_direction(3, t, m)
        assert cone_certificate(problem, w_star, r, cone=cone).certified == _lp_optimal_at(problem, w_star, r)


def test_the_selected_filter_with_ties_is_certified_by_the_trials_whose_lp_it_solves() -> None:
    problem, w_star = _blank_rows_instance(4, n=120)
    result = solve(problem, SolveOptions(trials=6, seed=2, stop_on_certificate=False, coverage_samples=32),
                   w_star=w_star)
    cert = result.certificate
    assert cert is not None and cert.global_optimum
    assert cert.cone.tied_patches == 26
    expected = [t.index for t in result.trials if _lp_optimal_at(problem, result.w, t.r)]
    assert cert.cone.certified_by_trials == expected and expected
    assert cert.cone.certified
    assert [t.predicted for t in result.trials] == [_lp_optimal_at(problem, w_star, t.r) for t in result.trials]


def test_coverage_agrees_with_the_measured_per_trial_rate() -> None:
    """Planted Gaussian, k = 1: the Monte Carlo coverage at w* against 300 real LP trials, seeded."""
    pp = planted_problem(PlantedSpec(n=600, d=8, k=1, seed=3))
    problem, w_star = pp.problem, pp.w_star
    estimate = coverage(problem, w_star, samples=600, seed=11)
    solver = RelaxationSolver(problem, "lp")
    trials = 300
    recovered = 0
    for t in range(trials):
        sol = solver.solve(trial_direction(7, t, problem.m))
        recovered += sol.w is not None and np.linalg.norm(sol.w - w_star) <= 1e-4 * np.linalg.norm(w_star)
    rate = recovered / trials
    assert estimate.applicable and estimate.directions == 600
    low, high = estimate.interval
    assert low <= estimate.estimate <= high
    # Two independent binomial estimates of one probability: their difference within 3 standard errors.
    p = (estimate.certifying_directions + recovered) / (600 + trials)
    se = np.sqrt(p * (1 - p) * (1 / 600 + 1 / trials))
    assert abs(estimate.estimate - rate) <= 3 * se, (estimate, rate)
    assert 0.2 < rate < 0.7  # the test can tell a wrong estimate from a right one


def test_coverage_is_seeded_and_the_sample_count_is_an_option() -> None:
    pp = planted_problem(PlantedSpec(n=300, d=6, k=1, seed=1))
    first = coverage(pp.problem, pp.w_star, samples=50, seed=4)
    assert first == coverage(pp.problem, pp.w_star, samples=50, seed=4)
    assert first.directions == 50
    assert not coverage(pp.problem, pp.w_star, samples=0).applicable
    assert not coverage(pp.problem, pp.w_star * 1.1, samples=50).applicable  # does not fit y


def test_trials_needed_arithmetic() -> None:
    assert trials_needed(0.5, 0.99) == 7  # 1 - 2^-7 = 0.992 >= 0.99 > 1 - 2^-6
    assert trials_needed(0.5, 0.999) == 10
    assert trials_needed(0.1, 0.99) == 44  # log(0.01) / log(0.9) = 43.7
    assert trials_needed(1.0, 0.99) == 1
    assert trials_needed(0.0, 0.99) is None
    for p in (0.03, 0.2, 0.5, 0.77):
        for q in (0.9, 0.99, 0.999):
            T = trials_needed(p, q)
            assert 1 - (1 - p) ** T >= q > 1 - (1 - p) ** (T - 1)


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
