"""The service's LP limit for the piecewise-linear activations against an independent HiGHS LP in ``w`` alone.

For ``sigma(u) = max(lo u, hi u)`` the constraint ``sum_j sigma(X_ij w) <= y_i`` is the intersection of the
``2^k`` half-spaces ``sum_j c_j X_ij w <= y_i`` over ``c in {lo, hi}^k`` (every sign pattern written out,
no working set, no cuts, no scaling); for the squared ReLU with ``k = 1`` it is ``x_i^T w <= sqrt(y_i)``.
``max r^T w`` over them, solved by scipy's HiGHS, is compared with :class:`cnnrelax.core.relaxation.RelaxationSolver`:
the same status, the same optimal value, and the service's filter feasible for these rows. This was the
prototype of the per-activation phase transitions (``bench/bench_activations.py``) before the working-set
solver took the activations.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from cnnrelax import make_problem, planted_problem
from cnnrelax.core.planted import PlantedSpec
from cnnrelax.core.problem import ConvProblem
from cnnrelax.core.relaxation import RelaxationSolver
from cnnrelax.core.trials import trial_direction

CASES = [("relu", 0.01), ("leaky_relu", 0.01), ("leaky_relu", 0.1), ("absolute", 0.01)]


def rows_by_sign_pattern(problem: ConvProblem, slopes: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Every ``sum_j c_j X_ij`` with ``c in {lo, hi}^k``, and its label, as ``A w <= b``."""
    n, k, _ = problem.patches.shape
    blocks = []
    for pattern in itertools.product(slopes, repeat=k):
        blocks.append(np.einsum("j,ijm->im", np.asarray(pattern), problem.patches))
    return np.concatenate(blocks), np.tile(problem.y, len(blocks))


def highs_lp(A: np.ndarray, b: np.ndarray, r: np.ndarray) -> tuple[str, float | None]:
    res = linprog(-r, A_ub=A, b_ub=b, bounds=[(None, None)] * r.size, method="highs")
    status = {0: "optimal", 2: "infeasible", 3: "unbounded"}.get(res.status, str(res.status))
    return status, (None if status != "optimal" else float(-res.fun))


def _slopes(name: str, slope: float) -> tuple[float, float]:
    return {"relu": (0.0, 1.0), "leaky_relu": (slope, 1.0), "absolute": (-1.0, 1.0)}[name]


def _compare(problem: ConvProblem, A: np.ndarray, b: np.ndarray, seeds: range) -> int:
    solver = RelaxationSolver(problem, "lp")
    optimal = 0
    for t in seeds:
        r = trial_direction(11, t, problem.m)
        status, value = highs_lp(A, b, r)
        sol = solver.solve(r)
        assert sol.status == status, (status, sol.status, sol.message)
        if value is None:
            continue
        optimal += 1
        assert sol.w is not None
        scale = np.linalg.norm(r) * max(np.linalg.norm(sol.w), 1.0)
        assert float(r @ sol.w) == pytest.approx(value, abs=1e-7 * scale)
        assert np.max(A @ sol.w - b) <= 1e-7 * max(float(np.max(np.abs(b))), 1.0)
    return optimal


@pytest.mark.parametrize(("name", "slope"), CASES)
@pytest.mark.parametrize("k", [1, 2])
def test_planted_lp_agrees_with_highs_over_every_sign_pattern(name: str, slope: float, k: int) -> None:
    pp = planted_problem(PlantedSpec(n=40 * k, d=4 * k, k=k, seed=7, activation=name, negative_slope=slope))
    A, b = rows_by_sign_pattern(pp.problem, _slopes(name, slope))
    assert _compare(pp.problem, A, b, range(4)) == 4


@pytest.mark.parametrize(("name", "slope"), CASES)
@pytest.mark.parametrize("k", [1, 2])
def test_generic_label_lp_agrees_with_highs_over_every_sign_pattern(name: str, slope: float, k: int) -> None:
    rng = np.random.default_rng(k)
    n, m = 50, 4
    X = rng.standard_normal((n, k * m))
    probe = make_problem(X, np.zeros(n), k=k, activation=name, negative_slope=slope)
    # Feasible (w0 satisfies every row) and fitted by no filter: labels above a random filter's predictions.
    y = probe.predict(rng.standard_normal(m)) + 0.01 * np.abs(rng.standard_normal(n))
    if name == "leaky_relu":
        assert (y < 0).any()
    problem = make_problem(X, y, k=k, activation=name, negative_slope=slope)
    A, b = rows_by_sign_pattern(problem, _slopes(name, slope))
    assert _compare(problem, A, b, range(4)) == 4


def test_squared_relu_single_patch_is_the_relu_lp_on_square_roots() -> None:
    """``(x^T w)_+^2 <= y`` is ``x^T w <= sqrt(y)``: the squared ReLU's relaxation (second-order cones in the
    service) is a linear program in disguise for ``k = 1``."""
    pp = planted_problem(PlantedSpec(n=60, d=5, k=1, seed=3, activation="squared_relu"))
    A = pp.problem.patches[:, 0, :]
    b = np.sqrt(pp.problem.y)
    assert _compare(pp.problem, A, b, range(4)) == 4


def test_when_the_gradients_positively_span_every_direction_recovers_w_star() -> None:
    """The mechanism behind leaky ReLU's per-trial rate of 1 (README, "Beyond ReLU"): for k = 1 the normal
    cone at ``w*`` is ``cone{x_i}``; once the ``x_i`` positively span ``R^m`` (checked here by HiGHS: some
    ``lambda >= 1`` with ``X^T lambda = 0``) the feasible set is ``{w*}`` and every direction, ``r = -w*``
    included, returns ``w*`` unpolished. ReLU on the same ``X`` and ``w*`` has 0 feasible, so ``r = -w*``
    cannot recover ``w*`` there."""
    m = 5
    leaky = planted_problem(PlantedSpec(n=8 * m, d=m, k=1, seed=2, activation="leaky_relu", negative_slope=0.1))
    X = leaky.problem.X
    spans = linprog(np.zeros(X.shape[0]), A_eq=X.T, b_eq=np.zeros(m), bounds=[(1.0, None)] * X.shape[0],
                    method="highs")
    assert spans.status == 0
    solver = RelaxationSolver(leaky.problem, "lp")
    for r in [trial_direction(0, t, m) for t in range(4)] + [-leaky.w_star]:
        sol = solver.solve(r)
        assert sol.status == "optimal" and sol.w is not None
        assert np.linalg.norm(sol.w - leaky.w_star) <= 1e-7
    relu = planted_problem(PlantedSpec(n=8 * m, d=m, k=1, seed=2))
    np.testing.assert_array_equal(relu.w_star, leaky.w_star)
    sol = RelaxationSolver(relu.problem, "lp").solve(-relu.w_star)
    assert sol.w is not None and float(-relu.w_star @ sol.w) >= -1e-9  # at least w = 0's objective, not -1
    assert np.linalg.norm(sol.w - relu.w_star) > 0.5
