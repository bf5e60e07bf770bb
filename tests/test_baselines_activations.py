"""Baselines for every activation (issue 12 item 4), against independent computations.

The gradient against central finite differences of the mean loss, the step-size rules (the pattern
Lipschitz bound for the piecewise-linear activations, Armijo's condition for the smooth ones), recovery of
planted filters by gradient descent, and the pseudo-inverse per activation.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnrelax import InvalidParameterError, PlantedSpec, make_problem, planted_problem
from cnnrelax.core.activations import ACTIVATIONS
from cnnrelax.core.baselines import (
    ARMIJO_C,
    gradient_descent,
    lipschitz_constant,
    mean_loss_gradient,
    pseudo_inverse,
    restart_start,
)

SMOOTH = ("squared_relu", "softplus")
PIECEWISE = ("relu", "leaky_relu", "absolute")


def _sigma(name: str, u: np.ndarray, slope: float = 0.01) -> np.ndarray:
    """The activations written out here, independently of cnnrelax.core.activations."""
    if name == "relu":
        return np.where(u > 0, u, 0.0)
    if name == "leaky_relu":
        return np.where(u > 0, u, slope * u)
    if name == "absolute":
        return np.abs(u)
    if name == "squared_relu":
        return np.where(u > 0, u * u, 0.0)
    return np.log1p(np.exp(u))


def _mean_loss(X: np.ndarray, y: np.ndarray, k: int, w: np.ndarray, name: str, slope: float = 0.01) -> float:
    n, m = X.shape[0], X.shape[1] // k
    pred = _sigma(name, X.reshape(n, k, m) @ w, slope).sum(axis=1)
    return float(np.sum((y - pred) ** 2) / (2 * n))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(ACTIVATIONS), k=st.integers(1, 3), m=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       slope=st.sampled_from([0.01, 0.1, 0.5]), scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_gradient_matches_finite_differences_for_every_activation(
        name: str, k: int, m: int, seed: int, slope: float, scale: float) -> None:
    rng = np.random.default_rng(seed)
    n = 15
    X = rng.standard_normal((n, k * m))
    y = np.abs(rng.standard_normal(n)) + 0.1  # generic labels (no filter fits them)
    problem = make_problem(X, y, k=k, activation=name, negative_slope=slope)
    w = scale * rng.standard_normal(m)
    h = 1e-6 * max(1.0, scale)
    pre = X.reshape(n, k, m) @ w
    norms = np.linalg.norm(X.reshape(n, k, m), axis=2)
    assume(np.all(np.abs(pre) > 1e3 * h * norms))  # no kink within the difference's reach
    numeric = np.array([(_mean_loss(X, y, k, w + h * e, name, slope) - _mean_loss(X, y, k, w - h * e, name, slope))
                        / (2 * h) for e in np.eye(m)])
    np.testing.assert_allclose(mean_loss_gradient(problem, w), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["leaky_relu", "absolute"])
def test_pattern_hessian_is_below_the_lipschitz_bound(name: str) -> None:
    """On the pattern of any ``w`` the mean loss's Hessian ``(1/n) sum_i g_i g_i^T`` is below ``1/step``."""
    rng = np.random.default_rng(3)
    n, k, m = 60, 3, 4
    X = rng.standard_normal((n, k * m))
    problem = make_problem(X, np.abs(rng.standard_normal(n)), k=k, activation=name, negative_slope=0.1)
    bound = lipschitz_constant(problem)
    for _ in range(20):
        w = rng.standard_normal(m)
        slopes = np.where(X.reshape(n, k, m) @ w > 0, 1.0, 0.1 if name == "leaky_relu" else -1.0)
        G = np.einsum("ik,ikm->im", slopes, X.reshape(n, k, m))
        assert np.linalg.eigvalsh(G.T @ G / n)[-1] <= bound * (1 + 1e-12)
    sigma = np.linalg.svd(X.reshape(n * k, m), compute_uv=False)[0]
    assert bound == pytest.approx(k * sigma**2 / n, rel=1e-12)  # slopes at most 1 in absolute value


@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_steps_satisfy_armijos_condition(name: str) -> None:
    """One line-search step per restart: ``w1 = w0 - t g`` with ``t = step0 / 2^j`` and sufficient decrease."""
    pp = planted_problem(PlantedSpec(n=80, d=12, k=2, seed=2, activation=name))
    p = pp.problem
    X, y = p.X, p.y
    result = gradient_descent(p, restarts=4, iterations=1, seed=5, tol=0.0)
    step0 = 1.0 / lipschitz_constant(p)
    assert result.step == pytest.approx(step0, rel=1e-12)
    for t, record in enumerate(result.restarts):
        w0 = restart_start(5, t, p.m)
        g = mean_loss_gradient(p, w0)
        taken = np.linalg.norm(record.w - w0) / np.linalg.norm(g)
        np.testing.assert_allclose(record.w, w0 - taken * g, rtol=1e-9, atol=1e-12)
        halvings = np.log2(step0 / taken)
        assert halvings >= -1e-9 and abs(halvings - round(halvings)) < 1e-6
        decrease = _mean_loss(X, y, 2, w0, name) - _mean_loss(X, y, 2, record.w, name)
        assert decrease >= ARMIJO_C * taken * float(g @ g) * (1 - 1e-9)
        if halvings > 0.5:  # the step twice as long failed the test
            longer = w0 - 2 * taken * g
            longer_decrease = _mean_loss(X, y, 2, w0, name) - _mean_loss(X, y, 2, longer, name)
            assert longer_decrease < ARMIJO_C * 2 * taken * float(g @ g)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_an_explicit_step_is_a_fixed_step_for_every_activation(name: str) -> None:
    pp = planted_problem(PlantedSpec(n=60, d=10, k=2, seed=2, activation=name))
    result = gradient_descent(pp.problem, restarts=2, iterations=1, step=0.01, seed=7, tol=0.0)
    for t, record in enumerate(result.restarts):
        w0 = restart_start(7, t, pp.problem.m)
        np.testing.assert_allclose(record.w, w0 - 0.01 * mean_loss_gradient(pp.problem, w0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize(("n", "d", "k"), [(200, 10, 1), (300, 12, 2)])
def test_gradient_descent_recovers_an_easy_planted_filter_for_every_activation(name: str, n: int, d: int,
                                                                                k: int) -> None:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=4, activation=name))
    result = gradient_descent(pp.problem, restarts=2, iterations=3000, seed=0, w_star=pp.w_star)
    error = min(np.linalg.norm(result.w - pp.w_star), np.linalg.norm(result.w + pp.w_star)) \
        if name == "absolute" else np.linalg.norm(result.w - pp.w_star)
    assert result.recovery_error is not None and result.recovery_error <= 1e-5
    assert error == pytest.approx(result.recovery_error * np.linalg.norm(pp.w_star), rel=1e-9)
    assert result.loss <= 1e-10 * float(pp.problem.y @ pp.problem.y)
    assert result.loss == pytest.approx(pp.problem.loss(result.w), rel=1e-12)


def test_absolute_value_recovery_is_up_to_sign() -> None:
    pp = planted_problem(PlantedSpec(n=200, d=10, k=1, seed=4, activation="absolute"))
    plus = gradient_descent(pp.problem, restarts=6, iterations=3000, seed=0, w_star=pp.w_star)
    minus = gradient_descent(pp.problem, restarts=6, iterations=3000, seed=0, w_star=-pp.w_star)
    signs = {int(np.sign(r.w @ pp.w_star)) for r in plus.restarts}
    assert signs == {-1, 1}  # both global minima are reached by some restart
    assert all(r.recovered for r in plus.restarts)
    assert [r.recovery_error for r in plus.restarts] == [r.recovery_error for r in minus.restarts]


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "squared_relu", "softplus"])
def test_pseudo_inverse_recovers_the_planted_filter_for_invertible_activations(name: str) -> None:
    pp = planted_problem(PlantedSpec(n=100, d=8, k=1, seed=5, activation=name, negative_slope=0.1))
    X, y = pp.problem.X, pp.problem.y
    if name == "leaky_relu":
        assert (y < 0).any()  # negative labels are used, divided by the slope
        independent = np.linalg.lstsq(X, np.where(y > 0, y, y / 0.1), rcond=None)[0]
    elif name == "softplus":
        independent = np.linalg.lstsq(X, np.log(np.exp(y) - 1), rcond=None)[0]
    else:
        positive = y > 0
        target = np.sqrt(y[positive]) if name == "squared_relu" else y[positive]
        independent = np.linalg.pinv(X[positive]) @ target
    w = pseudo_inverse(pp.problem)
    np.testing.assert_allclose(w, independent, atol=1e-10)
    assert np.linalg.norm(w - pp.w_star) <= 1e-9


def test_pseudo_inverse_refuses_the_absolute_value() -> None:
    pp = planted_problem(PlantedSpec(n=50, d=6, k=1, seed=0, activation="absolute"))
    with pytest.raises(InvalidParameterError) as info:
        pseudo_inverse(pp.problem)
    assert info.value.parameter == "activation" and "absolute" in str(info.value)


@pytest.mark.parametrize("name", SMOOTH)
def test_line_search_never_raises_the_loss_on_labels_no_filter_fits(name: str) -> None:
    """Armijo's condition makes every accepted step lower the loss: the loss after ``t`` steps is
    non-increasing in ``t`` for every restart, even where no filter fits (noisy labels, large residuals)."""
    rng = np.random.default_rng(4)
    X = 3.0 * rng.standard_normal((50, 8))
    y = np.abs(rng.standard_normal(50)) * 5.0 + 0.5
    problem = make_problem(X, y, k=2, activation=name)
    losses = np.array([[r.raw_loss for r in gradient_descent(problem, restarts=3, iterations=t, seed=2, tol=0.0,
                                                              stall_tol=0.0).restarts]
                       for t in range(1, 25)])
    assert np.all(np.diff(losses, axis=0) <= 1e-12 * losses[:-1])
    assert np.all(losses[-1] < 0.9 * losses[0])
