"""Baselines (SPEC 5) against independent computations: pseudo-inverse and gradient descent."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax import InvalidParameterError, PlantedSpec, make_problem, planted_problem
from cnnrelax.core.baselines import (
    gradient_descent,
    lipschitz_constant,
    mean_loss_gradient,
    pseudo_inverse,
    restart_start,
)


def test_pseudo_inverse_recovers_the_planted_filter_for_k_1() -> None:
    pp = planted_problem(PlantedSpec(n=200, d=12, k=1, seed=5))
    w = pseudo_inverse(pp.problem)
    X, y = pp.problem.X, pp.problem.y
    positive = y > 0
    independent = np.linalg.pinv(X[positive]) @ y[positive]
    np.testing.assert_allclose(w, independent, atol=1e-12)
    assert np.linalg.norm(w - pp.w_star) <= 1e-10
    assert pp.problem.loss(w) <= 1e-20 * float(y @ y) + 1e-24


def test_pseudo_inverse_rejects_several_patches() -> None:
    pp = planted_problem(PlantedSpec(n=50, d=8, k=2, seed=0))
    with pytest.raises(InvalidParameterError) as info:
        pseudo_inverse(pp.problem)
    assert info.value.parameter == "k" and "k=2" in str(info.value)


def test_gradient_matches_finite_differences_of_the_mean_loss() -> None:
    pp = planted_problem(PlantedSpec(n=80, d=12, k=3, seed=1, noise_std=0.1))
    problem = pp.problem
    rng = np.random.default_rng(0)
    w = rng.standard_normal(problem.m)
    def mean_loss(v: np.ndarray) -> float:
        return problem.loss(v) / (2 * problem.n)

    h = 1e-6
    numeric = np.array([(mean_loss(w + h * e) - mean_loss(w - h * e)) / (2 * h) for e in np.eye(problem.m)])
    np.testing.assert_allclose(mean_loss_gradient(problem, w), numeric, rtol=1e-5, atol=1e-8)


def test_one_batched_step_is_plain_gradient_descent() -> None:
    pp = planted_problem(PlantedSpec(n=60, d=10, k=2, seed=2))
    step = 0.05
    result = gradient_descent(pp.problem, restarts=3, iterations=1, step=step, seed=7, tol=0.0)
    for t, record in enumerate(result.restarts):
        w0 = restart_start(7, t, pp.problem.m)
        np.testing.assert_array_equal(record.w0, w0)
        np.testing.assert_allclose(record.w, w0 - step * mean_loss_gradient(pp.problem, w0), rtol=1e-12, atol=1e-14)


def test_default_step_is_one_over_the_block_lipschitz_constant() -> None:
    pp = planted_problem(PlantedSpec(n=90, d=12, k=3, seed=3))
    p = pp.problem
    blocks = p.X.reshape(p.n * p.k, p.m)  # non-overlapping blocks, unit output weights
    sigma = np.linalg.svd(blocks, compute_uv=False)[0]
    assert lipschitz_constant(p) == pytest.approx(p.k * sigma**2 / p.n, rel=1e-12)
    result = gradient_descent(p, restarts=1, iterations=2, seed=0)
    assert result.step == pytest.approx(p.n / (p.k * sigma**2), rel=1e-12)


@pytest.mark.parametrize(("n", "d", "k"), [(400, 10, 1), (400, 12, 2), (500, 20, 5)])
def test_gradient_descent_recovers_an_easy_planted_filter(n: int, d: int, k: int) -> None:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=4))
    result = gradient_descent(pp.problem, restarts=2, iterations=3000, seed=0, w_star=pp.w_star)
    assert result.recovery_error is not None and result.recovery_error <= 1e-5
    assert np.linalg.norm(result.w - pp.w_star) <= 1e-5
    assert result.loss <= 1e-10 * float(pp.problem.y @ pp.problem.y)
    assert all(r.recovered == (r.recovery_error <= 1e-4) for r in result.restarts)
    assert result.loss == min(r.loss for r in result.restarts)


def test_gradient_descent_is_seeded_and_keeps_the_least_loss() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    y = np.abs(rng.standard_normal(40))  # no filter fits: restarts end in different places
    problem = make_problem(X, y, k=2)
    a = gradient_descent(problem, restarts=5, iterations=200, seed=3)
    b = gradient_descent(problem, restarts=5, iterations=200, seed=3)
    c = gradient_descent(problem, restarts=5, iterations=200, seed=4)
    np.testing.assert_array_equal(a.w, b.w)
    assert not np.array_equal(a.restarts[0].w0, c.restarts[0].w0)
    assert a.selected_restart == int(np.argmin([problem.loss(r.w) for r in a.restarts]))


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"restarts": 0}, "restarts"), ({"iterations": -1}, "iterations"), ({"step": -0.1}, "step"),
    ({"seed": -1}, "seed"), ({"tol": float("nan")}, "tol"), ({"w_star": np.zeros(3)}, "w_star"),
])
def test_gradient_descent_rejects_bad_parameters(kwargs: dict, parameter: str) -> None:
    pp = planted_problem(PlantedSpec(n=20, d=4, k=1, seed=0))
    with pytest.raises(InvalidParameterError) as info:
        gradient_descent(pp.problem, **kwargs)
    assert info.value.parameter == parameter


def test_polished_restarts_are_the_relaxations_polish_of_their_filters() -> None:
    """polish=True: each restart's w_polished is cnnrelax.core.trials.polish of its own filter (when it helped), the
    selection is by the polished loss, and on an easy planted problem the error drops from gradient
    descent's budget (about 1e-6) to round-off."""
    from cnnrelax.core.trials import polish

    pp = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=6))
    plain = gradient_descent(pp.problem, restarts=3, iterations=2000, seed=1, w_star=pp.w_star)
    polished = gradient_descent(pp.problem, restarts=3, iterations=2000, seed=1, w_star=pp.w_star, polish=True)
    for before, after in zip(plain.restarts, polished.restarts, strict=True):
        np.testing.assert_array_equal(before.w, after.w)  # the descent itself is unchanged
        assert before.w_polished is None and before.recovered_after_polish == before.recovered
        outcome = polish(pp.problem, after.w)
        if outcome.accepted:
            np.testing.assert_array_equal(after.w_polished, outcome.w)
            assert after.loss == pp.problem.loss(outcome.w) < after.raw_loss
        else:
            assert after.w_polished is None and after.loss == after.raw_loss
    assert polished.loss == min(r.loss for r in polished.restarts)
    np.testing.assert_array_equal(polished.w, polished.restarts[polished.selected_restart].final_w)
    assert plain.recovery_error is not None and 1e-9 < plain.recovery_error <= 1e-4
    assert polished.recovery_error is not None and polished.recovery_error <= 1e-12
    assert all(r.recovered_after_polish for r in polished.restarts if r.recovered)
    record = polished.restarts[0].to_dict()
    assert {"w_polished", "raw_loss", "recovered_after_polish"} <= set(record)
