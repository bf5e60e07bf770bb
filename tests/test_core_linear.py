"""The core's linear algebra pieces against independent computations: the constraints' one linear form and its
``tight`` test, the polishing least squares against LAPACK's SVD solver, and the pass counter."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnrelax import FilterConstraints, PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.core.passes import TriangularFactor
from cnnrelax.core.problem import PASSES


@st.composite
def _constraints(draw: st.DrawFn) -> tuple[FilterConstraints, int]:
    m = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lower = np.where(rng.random(m) < 0.5, -np.inf, -rng.random(m))
    upper = np.where(rng.random(m) < 0.5, np.inf, rng.random(m))
    rows = draw(st.integers(0, 3))
    eq = draw(st.integers(0, 2))
    return FilterConstraints(
        lower=lower.tolist(), upper=upper.tolist(),
        inequality_matrix=rng.standard_normal((rows, m)).tolist() if rows else None,
        inequality_vector=rng.standard_normal(rows).tolist() if rows else None,
        equality_matrix=rng.standard_normal((eq, m)).tolist() if eq else None,
        equality_vector=rng.standard_normal(eq).tolist() if eq else None,
    ), m


@given(_constraints(), st.integers(0, 2**32 - 1), st.floats(0.0, 0.5))
@settings(max_examples=60, deadline=None)
def test_the_linear_form_is_the_constraints(case: tuple[FilterConstraints, int], seed: int, tol: float) -> None:
    constraints, m = case
    c = constraints.resolve(m)
    form = c.linear
    u = np.random.default_rng(seed).standard_normal(m)
    A, b = form.rows
    # The rows say what the bounds and G u <= h say, coordinate by coordinate, row by row.
    expected = [-(u[i] - c.lower[i]) for i in range(m) if c.lower is not None and np.isfinite(c.lower[i])]
    expected += [u[i] - c.upper[i] for i in range(m) if c.upper is not None and np.isfinite(c.upper[i])]
    if c.inequality is not None:
        expected += list(c.inequality[0] @ u - c.inequality[1])
    np.testing.assert_allclose(A @ u - b, np.array(expected, dtype=float).reshape(-1), atol=1e-12)
    # tight: exactly the rows whose slack is at most tol.
    tight_rows, tight_rhs = form.tight(u, tol)
    slack = b - A @ u
    np.testing.assert_array_equal(tight_rows, A[slack <= tol])
    np.testing.assert_array_equal(tight_rhs, b[slack <= tol])
    # The largest violation of the linear part is the form's.
    linear_violation = max(float(np.max(A @ u - b, initial=0.0)),
                           float(np.max(np.abs(form.A_eq @ u - form.b_eq), initial=0.0)))
    assert abs(c.violation(u) - linear_violation) <= 1e-12


@given(st.integers(1, 8), st.integers(0, 40), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 1e-3, 1e-9]))
@settings(max_examples=60, deadline=None)
def test_least_squares_equals_the_svd_solution(m: int, extra: int, seed: int, collinear: float) -> None:
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((m + extra, m))
    if m > 1:
        G[:, -1] = G[:, 0] * (1 + collinear)  # collinear columns: ill conditioned, or rank deficient at 0
    y = rng.standard_normal(m + extra)
    ours = TriangularFactor.of_system(G, y).solve()
    reference = np.linalg.lstsq(G, y, rcond=None)[0]
    # The same residual (the least-squares optimum), and the same point where it is unique and well conditioned.
    assert np.linalg.norm(G @ ours - y) <= np.linalg.norm(G @ reference - y) * (1 + 1e-9) + 1e-12
    if m == 1 or collinear == 1e-3:
        cond = np.linalg.cond(G)
        np.testing.assert_allclose(ours, reference, atol=1e-10 * cond * (1 + np.linalg.norm(reference)))


def test_the_pass_counter_counts_reads_of_the_patch_tensor() -> None:
    pp = planted_problem(PlantedSpec(n=300, d=12, k=2, seed=3))
    problem = pp.problem
    PASSES.reset()
    problem.preactivations(pp.w_star)
    problem.loss(pp.w_star)
    problem.gradient_rows(pp.w_star)  # pre-activations, then the weighted sum
    assert PASSES.count == 4
    PASSES.reset()
    result = solve(problem, SolveOptions(trials=1, coverage_samples=0))
    rounds = result.trials[0].solution.outer_iterations
    assert PASSES.count >= rounds  # one pass per working-set round at least
    before = PASSES.count
    assert PASSES.reset() == before and PASSES.count == 0
