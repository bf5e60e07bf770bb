"""The sub-problem's constraint matrix (cnnrelax.core.solver.subproblem), assembled from coordinates, against the
definition written out densely: equalities, the cuts ``a^T u - t_i <= b``, ``-t <= 0``, the box ``+-u <= B``, the
user's inequalities and l1 rows, the l2 cone, in that order, with their cones."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax import FilterConstraints, PlantedSpec, planted_problem
from cnnrelax.core.solver import RelaxationSolver
from cnnrelax.core.solver.working_set import InUse


def _members(rows: np.ndarray, samples: np.ndarray) -> InUse:
    rhs = np.linspace(0.5, 1.5, rows.shape[0])
    empty = np.zeros(0, dtype=np.intp)
    return InUse(rows, rhs, samples, np.arange(rows.shape[0]), empty, empty)


@pytest.mark.parametrize("with_t", [False, True])
@pytest.mark.parametrize("constraints", [FilterConstraints(), FilterConstraints(l1_bound=3.0, lower=-1.0),
                                         FilterConstraints(l2_bound=2.0, equality_matrix=[[1.0, 0, 0, 0, 0, 1.0]],
                                                           equality_vector=[0.1])])
def test_the_matrix_is_the_dense_definition(with_t: bool, constraints: FilterConstraints) -> None:
    problem = planted_problem(PlantedSpec(n=50, d=12, k=2, seed=1)).problem
    sub = RelaxationSolver(problem, "lp", constraints=constraints).subproblems
    m, st = problem.m, sub.static
    rng = np.random.default_rng(0)
    cuts = rng.standard_normal((7, m))
    cuts[2, 3] = 0.0  # a zero entry stays out of the sparse matrix
    samples = np.array([4, 1, 4, 9, 2, 1, 7])
    uniq = np.unique(samples) if with_t else None
    n_t = 0 if uniq is None else len(uniq)
    width = m + st.n_u + n_t
    rows = sub._rows(width, _members(cuts, samples), uniq, n_t, 5.0, None)
    A, b = rows.matrix()
    blocks, rhs = [], []
    pad = np.zeros((0, width))

    def put(M: np.ndarray, v: np.ndarray, column: int = 0) -> None:
        full = np.zeros((M.shape[0], width))
        full[:, column:column + M.shape[1]] = M
        blocks.append(full)
        rhs.append(v)

    put(st.zero, st.zero_rhs)
    cut_block = np.zeros((7, width))
    cut_block[:, :m] = cuts
    if uniq is not None:
        cut_block[np.arange(7), m + st.n_u + np.searchsorted(uniq, samples)] = -1.0
    put(cut_block, np.linspace(0.5, 1.5, 7))
    if n_t:
        put(-np.eye(n_t), np.zeros(n_t), m + st.n_u)
    put(np.vstack([np.eye(m), -np.eye(m)]), np.full(2 * m, 5.0))
    put(st.ineq, st.ineq_rhs)
    if st.soc is not None and st.soc_rhs is not None:
        put(st.soc, st.soc_rhs)
    dense = np.vstack(blocks or [pad])
    assert A.shape == dense.shape and A.format == "csc" and A.has_sorted_indices
    assert np.array_equal(A.toarray(), dense)
    assert A.nnz == np.count_nonzero(dense)
    assert np.array_equal(b, np.concatenate(rhs))
    nonneg = 7 + n_t + 2 * m + st.ineq.shape[0]
    assert rows.nonneg == nonneg


def _lp_trials(problem, settings=None) -> list:
    from cnnrelax import SolverSettings
    from cnnrelax.core.trials import trial_direction

    solver = RelaxationSolver(problem, "lp", settings=settings or SolverSettings(cone_shortcut=False))
    return [solver.solve(trial_direction(3, t, problem.m)) for t in range(4)]


def test_lp_sub_problems_without_refinement_end_at_the_same_vertices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The LP limit's sub-problems go first without Clarabel's iterative refinement (the crossover follows): the
    same statuses and vertices as with it, and the loop's vertices are HiGHS's (checked elsewhere)."""
    from cnnrelax.core.solver import subproblem

    pp = planted_problem(PlantedSpec(n=600, d=24, k=2, seed=3))
    fast = _lp_trials(pp.problem)
    monkeypatch.setattr(subproblem, "VERTEX_SETTINGS", {})  # refinement on, as for every other sub-problem
    refined = _lp_trials(pp.problem)
    assert [s.status for s in fast] == [s.status for s in refined]
    assert any(s.outer_iterations > 0 for s in fast)
    for a, b in zip(fast, refined, strict=True):
        assert a.w is not None and b.w is not None
        np.testing.assert_allclose(a.w, b.w, rtol=0, atol=1e-12 * np.abs(b.w).max())


def _record_clarabel(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Clarabel itself, each solve's status appended to the list returned."""
    from cnnrelax.core.solver import subproblem

    statuses: list[str] = []
    real = subproblem.clarabel.DefaultSolver

    class Recording:
        def __init__(self, *args):
            self.solver = real(*args)

        def solve(self):
            solution = self.solver.solve()
            statuses.append(str(solution.status))
            return solution

        def __getattr__(self, name):
            return getattr(self.solver, name)

    monkeypatch.setattr(subproblem.clarabel, "DefaultSolver", Recording)
    return statuses


def test_a_cancel_without_refinement_is_not_solved_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnrelax import SolverSettings
    from cnnrelax.core.trials import trial_direction

    pp = planted_problem(PlantedSpec(n=600, d=24, k=2, seed=3))
    solver = RelaxationSolver(pp.problem, "lp", settings=SolverSettings(cone_shortcut=False))
    statuses = _record_clarabel(monkeypatch)
    calls = iter(range(10**6))
    sol = solver.solve(trial_direction(3, 0, pp.problem.m), should_stop=lambda: next(calls) >= 1)  # once inside
    assert str(sol.status) == "cancelled"
    assert statuses == ["CallbackTerminated"]  # one solve: the cancel is not retried with refinement


def test_a_sub_problem_short_of_solved_without_refinement_is_solved_again_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two interior-point iterations are not enough: the first variant ends MaxIterations, the sub-problem is solved
    again with the default settings, the trial ends as if the first variant had not been tried, and the solver's
    later sub-problems go with refinement from the start."""
    from cnnrelax.core.solver import subproblem

    pp = planted_problem(PlantedSpec(n=600, d=24, k=2, seed=3))
    refined = _lp_trials(pp.problem)
    tried = _record_clarabel(monkeypatch)
    monkeypatch.setattr(subproblem, "VERTEX_SETTINGS", {"iterative_refinement_enable": False, "max_iter": 2})
    again = _lp_trials(pp.problem)
    # the first sub-problem ran the short variant (MaxIterations) and was solved again with refinement; the rest
    # were solved with refinement once each
    assert len(tried) >= 3 and tried[:2] == ["MaxIterations", "Solved"]
    assert tried[2:] == ["Solved"] * (len(tried) - 2)
    assert [s.status for s in again] == [s.status for s in refined]
    assert [s.backend_status for s in again] == ["Solved"] * len(again)
    for a, b in zip(again, refined, strict=True):
        np.testing.assert_allclose(a.w, b.w, rtol=0, atol=1e-12 * np.abs(b.w).max())
