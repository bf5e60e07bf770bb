"""Certificates: the cone test (eq. 12-14) against an independent LP solve, NNLS against cvxpy."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from cnnrelax import (
    FilterConstraints,
    PlantedSpec,
    certify,
    cone_certificate,
    make_problem,
    planted_problem,
    trial_direction,
)
from cnnrelax.core.problem import ConvProblem

from highs_reference import lp_by_highs


def _lp_value_by_highs(problem: ConvProblem, r: np.ndarray, constraints: FilterConstraints | None = None) -> float:
    """The LP optimum from HiGHS's simplex on the z-formulation: an independent solver and formulation."""
    solution = lp_by_highs(problem, r, constraints)
    assert solution.value is not None, solution
    return solution.value


@pytest.mark.parametrize(("n", "d", "k"), [(300, 8, 1), (400, 12, 2), (500, 15, 3)])
def test_cone_test_at_w_star_says_exactly_when_w_star_is_lp_optimal(n: int, d: int, k: int) -> None:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=d))
    verdicts = []
    for t in range(8):
        r = trial_direction(4, t, pp.problem.m)
        cert = cone_certificate(pp.problem, pp.w_star, r)
        assert cert.applicable
        optimal = _lp_value_by_highs(pp.problem, r) <= float(r @ pp.w_star) + 1e-7 * max(1.0, abs(float(r @ pp.w_star)))
        assert cert.certified == optimal, (t, cert)
        verdicts.append(cert.certified)
    assert any(verdicts) and not all(verdicts)  # both outcomes occur, so the test can tell them apart


def test_cone_residual_equals_an_independent_nnls() -> None:
    pp = planted_problem(PlantedSpec(n=40, d=10, k=2, seed=3))
    r = trial_direction(0, 0, pp.problem.m)
    cert = cone_certificate(pp.problem, pp.w_star, r)
    G = pp.problem.gradient_rows(pp.w_star)
    v = cp.Variable(G.shape[0], nonneg=True)
    best = cp.Problem(cp.Minimize(cp.norm2(G.T @ v - r))).solve(solver=cp.CLARABEL)
    assert cert.residual == pytest.approx(best / np.linalg.norm(r), rel=1e-5, abs=1e-8)
    assert cert.residual > cert.tolerance and not cert.certified


def test_a_filter_that_does_not_fit_is_not_applicable() -> None:
    pp = planted_problem(PlantedSpec(n=100, d=6, seed=1))
    cert = cone_certificate(pp.problem, pp.w_star * 1.01, np.ones(6))
    assert not cert.applicable and not cert.certified and cert.residual is None
    assert "does not fit y" in cert.reason


def test_zero_loss_certifies_a_global_minimum_and_nothing_else_does() -> None:
    pp = planted_problem(PlantedSpec(n=200, d=8, k=2, seed=5))
    r = trial_direction(0, 0, pp.problem.m)
    at_star = certify(pp.problem, pp.w_star, r)
    assert at_star.global_optimum and at_star.loss == 0.0
    near = certify(pp.problem, pp.w_star + 1e-3, r)
    assert not near.global_optimum and near.loss > near.loss_threshold
    assert not near.cone.applicable


def test_active_linear_constraints_join_the_cone() -> None:
    """With ``w >= 0`` active at zero entries of ``w*``, their normals ``-e_l`` enter the cone (KKT)."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((400, 6))
    w_star = np.array([0.8, 0.0, 0.5, 0.0, 0.3, 0.1])
    problem = make_problem(X, np.maximum(X @ w_star, 0.0))
    nonneg = FilterConstraints(nonnegative=True)
    resolved = nonneg.resolve(6)
    verdicts = []
    for t in range(10):
        r = trial_direction(9, t, 6)
        cert = cone_certificate(problem, w_star, r, constraints=resolved)
        optimal = _lp_value_by_highs(problem, r, nonneg) <= float(r @ w_star) + 1e-7
        assert cert.certified == optimal
        verdicts.append(cert.certified)
    assert any(verdicts)


def test_an_active_norm_bound_makes_the_cone_test_not_applicable() -> None:
    pp = planted_problem(PlantedSpec(n=100, d=6, seed=2))
    resolved = FilterConstraints(l2_bound=1.0).resolve(6)
    cert = cone_certificate(pp.problem, pp.w_star, np.ones(6), constraints=resolved)
    assert not cert.applicable and "norm bound" in cert.reason


def test_column_generation_nnls_equals_the_full_nnls_on_many_generators() -> None:
    from scipy.optimize import nnls

    from cnnrelax.core.certificate import _nnls_residual

    pp = planted_problem(PlantedSpec(n=3000, d=40, k=4, seed=12))
    G = pp.problem.gradient_rows(pp.w_star)
    G = G[np.any(G != 0, axis=1)]
    for t in range(6):
        r = trial_direction(1, t, pp.problem.m)
        _, full = nnls(G.T, r, maxiter=50 * max(G.shape))
        ours, _ = _nnls_residual(G, np.zeros((0, pp.problem.m)), r)
        assert ours == pytest.approx(full, rel=1e-9, abs=1e-12)
