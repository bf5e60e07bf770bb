"""The core's registries and hooks: an activation registered through the registry alone is solved, certified and
polished everywhere (checked against the theory: a scaled ReLU's optimum is ReLU's rescaled), an unregistered
name fails naming the registered ones, and the progress hook reports every working-set round."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from cnnrelax import PlantedSpec, SolveOptions, SolverSettings, make_problem, planted_problem, solve
from cnnrelax.core.activations import (
    ACTIVATION_REGISTRY,
    Activation,
    PiecewiseLinear,
    make_activation,
    register_activation,
)
from cnnrelax.core.certificates import cone_certificate
from cnnrelax.core.oracle import CvxpyRelaxation
from cnnrelax.core.polishing import polish
from cnnrelax.core.records import RoundRecord
from cnnrelax.core.solver import RelaxationSolver
from cnnrelax.core.trials import trial_direction
from cnnrelax.errors import InvalidParameterError

SCALE = 2.5


@pytest.fixture
def scaled_relu() -> Iterator[Activation]:
    """``sigma(u) = 2.5 (u)_+``, registered as one object (and removed afterwards)."""
    activation = PiecewiseLinear("scaled_relu", degree=1, lo=0.0, hi=SCALE)
    register_activation("scaled_relu", lambda _negative_slope: activation)
    try:
        yield activation
    finally:
        del ACTIVATION_REGISTRY["scaled_relu"]


def _relu_data(seed: int, n: int = 600, d: int = 12, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
    return pp.problem.X, pp.problem.y, pp.w_star


@pytest.mark.parametrize("seed", [1, 2])
def test_a_registered_scaled_relu_solves_certifies_and_polishes_as_the_theory_says(scaled_relu: Activation,
                                                                                    seed: int) -> None:
    # sum_j c (X_ij w)_+ = sum_j (X_ij c w)_+: the scaled model at w is ReLU's at c w, so every optimum of the
    # scaled problem is ReLU's divided by c, and the planted filter w* of ReLU labels becomes w* / c.
    X, y, w_star = _relu_data(seed)
    scaled = make_problem(X, y, k=2, activation="scaled_relu")
    assert scaled.activation is scaled_relu
    relu = make_problem(X, y, k=2)
    # The relaxation, trial by trial: the same directions, values divided by c, filters divided by c.
    ours, theirs = RelaxationSolver(scaled, "lp"), RelaxationSolver(relu, "lp")
    for t in range(4):
        r = trial_direction(0, t, scaled.m)
        a, b = ours.solve(r), theirs.solve(r)
        assert a.status == b.status
        if b.w is not None:
            assert a.w is not None and a.objective is not None and b.objective is not None
            np.testing.assert_allclose(a.w, b.w / SCALE, rtol=1e-7, atol=1e-9 * scaled.w_scale)
            assert a.objective == pytest.approx(b.objective / SCALE, rel=1e-7, abs=1e-12)
    # The oracle writes the activation's own cvxpy form: the same values (to interior-point accuracy).
    oracle = CvxpyRelaxation(scaled, "lp")
    for t in range(2):
        r = trial_direction(0, t, scaled.m)
        value = oracle.solve(r).objective
        assert value == pytest.approx(ours.solve(r).objective, rel=2e-6, abs=1e-7 * scaled.w_scale * np.linalg.norm(r))
    # The whole solve (the relaxation's own filters: polishing from a degenerate w = 0 depends on rounding):
    # recovered at w* / c by ReLU's trials, certified a global minimum, by ReLU's directions.
    options = SolveOptions(trials=8, coverage_samples=16, polish=False, stop_on_certificate=False)
    result, reference = solve(scaled, options, w_star=w_star / SCALE), solve(relu, options, w_star=w_star)
    assert [t.recovered for t in result.trials] == [t.recovered for t in reference.trials]
    assert any(t.recovered for t in result.trials)
    assert result.status == "solved" and result.w is not None
    np.testing.assert_allclose(result.w, w_star / SCALE, atol=1e-8)
    assert result.certificate is not None and result.certificate.global_optimum
    assert reference.certificate is not None
    assert result.certificate.cone.certified_by_trials == reference.certificate.cone.certified_by_trials
    # The cone test at w* / c certifies exactly the directions ReLU's does at w*.
    for t in range(6):
        r = trial_direction(3, t, scaled.m)
        assert cone_certificate(scaled, w_star / SCALE, r).certified == cone_certificate(relu, w_star, r).certified
    # Polishing from a perturbed filter lands on w* / c (least squares on the pattern, slope c).
    start = w_star / SCALE + 1e-3 * np.random.default_rng(seed).standard_normal(scaled.m)
    polished = polish(scaled, start)
    assert polished.accepted
    np.testing.assert_allclose(polished.w, w_star / SCALE, atol=1e-10)
    assert scaled.loss(polished.w) <= 1e-20 * float(y @ y)


def test_an_unregistered_activation_fails_naming_the_registered_ones() -> None:
    with pytest.raises(InvalidParameterError) as info:
        make_activation("swish")
    assert info.value.parameter == "activation"
    assert "'swish'" in info.value.message
    for name in ACTIVATION_REGISTRY:
        assert name in info.value.message
    with pytest.raises(InvalidParameterError, match="swish"):
        make_problem(np.ones((4, 2)), np.ones(4), activation="swish")


def test_a_name_registers_once(scaled_relu: Activation) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_activation("scaled_relu", lambda _s: scaled_relu)


def test_the_round_hook_reports_every_round_of_every_trial() -> None:
    pp = planted_problem(PlantedSpec(n=400, d=20, k=2, seed=5))
    rounds: list[RoundRecord] = []
    # The loop's rounds (the cone shortcut decides trials in none: tests/test_shortcut.py).
    result = solve(pp.problem, SolveOptions(trials=3, stop_on_certificate=False, coverage_samples=0,
                                            solver=SolverSettings(cone_shortcut=False)), on_round=rounds.append)
    assert [rec.trial for rec in rounds] == sorted(rec.trial for rec in rounds)
    for trial in result.trials:
        own = [rec for rec in rounds if rec.trial == trial.index]
        assert [rec.round for rec in own] == list(range(1, trial.solution.outer_iterations + 1))
        assert own[-1].added == 0 and all(rec.added > 0 for rec in own[:-1] if rec.status == "Solved")
        assert all(rec.working_set >= 0 and rec.seconds >= 0 for rec in own)
        assert sorted(rec.seconds for rec in own) == [rec.seconds for rec in own]
