"""Units must not matter (SPEC 4c), and no verdict is false (issue 8).

For every relaxation, patching and kind of constraint, the result for ``(a X, b y)`` is the result for
``(X, y)`` mapped back (``w -> (b/a) w``, loss ``-> b^2 L``, LP value ``-> (b/a) r^T w``), with identical
statuses, for ``a, b`` anywhere in ``[1e-8, 1e8]`` (hypothesis draws them log-uniformly). Every LP
verdict is compared with HiGHS on the full problem (``highs_reference``), in the units where HiGHS
itself is reliable (the unscaled data).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnrelax import (
    FilterConstraints,
    ImagePatching,
    RelaxationSolver,
    SolveOptions,
    StridedPatching,
    make_problem,
    solve,
    trial_direction,
)
from cnnrelax.core.problem import ConvProblem

from highs_reference import lp_by_highs

LAWS = ("gaussian", "pixels", "heavy", "rank_deficient", "zero_rows")
LINEAR_CONSTRAINTS = ("none", "nonnegative", "box", "equality", "inequality")
CONSTRAINTS = LINEAR_CONSTRAINTS + ("l1", "l2")


def _data(law: str, seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if law == "pixels":
        X = rng.integers(0, 256, size=(n, d)).astype(np.float64) - 128.0  # centred 8-bit pixels
        X[:, 0] = 0.0  # a blank pixel
        return X
    if law == "heavy":
        return rng.standard_t(3, size=(n, d))
    X = rng.standard_normal((n, d))
    if law == "rank_deficient":
        X[:, -1] = X[:, 0]  # a repeated column
        X[:, 1] = 0.0  # and a blank one
    if law == "zero_rows":
        X[rng.random(n) < 0.2] = 0.0
    return X


def _constraints(kind: str, m: int) -> FilterConstraints:
    """Constraints in the units of the unscaled data (mapped to other units by :func:`_scaled`)."""
    if kind == "nonnegative":
        return FilterConstraints(nonnegative=True)
    if kind == "box":
        return FilterConstraints(lower=-0.5, upper=0.5)
    if kind == "equality":
        return FilterConstraints(equality_matrix=[[1.0] + [0.0] * (m - 1)], equality_vector=[0.05])
    if kind == "inequality":
        return FilterConstraints(inequality_matrix=[[1.0] * m, [0.0] * (m - 1) + [-1.0]], inequality_vector=[0.3, 0.2])
    if kind == "l1":
        return FilterConstraints(l1_bound=0.4)
    if kind == "l2":
        return FilterConstraints(l2_bound=0.3)
    return FilterConstraints()


def _scaled(c: FilterConstraints, factor: float) -> FilterConstraints:
    """The same constraint set for filters ``factor * w``: bounds and right-hand sides times ``factor``."""
    def times(v: list[float] | None) -> list[float] | None:
        return None if v is None else (np.asarray(v, dtype=float) * factor).tolist()

    return FilterConstraints(
        nonnegative=c.nonnegative, lower=times(c.lower), upper=times(c.upper),
        l1_bound=None if c.l1_bound is None else c.l1_bound * factor,
        l2_bound=None if c.l2_bound is None else c.l2_bound * factor,
        equality_matrix=c.equality_matrix, equality_vector=times(c.equality_vector),
        inequality_matrix=c.inequality_matrix, inequality_vector=times(c.inequality_vector),
    )


def _labels(X: np.ndarray, seed: int, relaxation: str, k: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    if relaxation == "lp":
        return np.abs(rng.standard_normal(X.shape[0])) * np.sqrt(k) + 0.05
    return rng.standard_normal(X.shape[0]) + 0.5  # noisy labels, some negative


def _problem(X: np.ndarray, y: np.ndarray, patching: str) -> ConvProblem:
    if patching == "strided":
        return make_problem(X, y, patching=StridedPatching(size=3, stride=2))
    if patching == "image":
        return make_problem(X, y, patching=ImagePatching(2, 3, 2, 2))
    return make_problem(X, y, k=2)


scales = st.floats(min_value=-8.0, max_value=8.0).map(lambda e: float(10.0**e))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=scales, b=scales, law=st.sampled_from(LAWS), kind=st.sampled_from(CONSTRAINTS),
    relaxation=st.sampled_from(("lp", "qp", "naive")), patching=st.sampled_from(("blocks", "strided", "image")),
    seed=st.integers(0, 10_000),
)
def test_units_do_not_matter(a: float, b: float, law: str, kind: str, relaxation: str, patching: str,
                             seed: int) -> None:
    X = _data(law, seed, n=40, d=6)
    problem = _problem(X, _labels(X, seed, relaxation, 2), patching)
    scaled = _problem(a * X, b * problem.y, patching)
    m = problem.m
    base = RelaxationSolver(problem, relaxation, beta=1e-3, constraints=_constraints(kind, m))
    other = RelaxationSolver(scaled, relaxation, beta=1e-3, constraints=_scaled(_constraints(kind, m), b / a))
    for t in range(2):
        r = trial_direction(seed, t, m)
        ours, theirs = base.solve(r), other.solve(r)
        assert ours.status == theirs.status, (ours.message, theirs.message)
        if ours.w is None:
            continue
        factor = {"lp": b / a, "qp": b * b, "naive": b * b}[relaxation]
        assert theirs.objective == pytest.approx(factor * ours.objective, rel=1e-7, abs=1e-9 * abs(factor))
        if relaxation == "lp":
            # An LP's optimum may be a face, and which vertex of it the crossover lands on is not determined by
            # the problem: the scaled answer mapped back must be an optimum of the unscaled LP (feasible, and
            # of the same value, checked above).
            back = theirs.w * a / b
            excess = problem.predict(back) - problem.y
            assert np.max(excess) <= 1e-7 * float(np.max(np.abs(problem.y)))
        else:
            assert scaled.loss(theirs.w) == pytest.approx(b * b * problem.loss(ours.w), rel=1e-6,
                                                          abs=1e-9 * b * b * float(problem.y @ problem.y))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=scales, b=scales, law=st.sampled_from(LAWS), kind=st.sampled_from(LINEAR_CONSTRAINTS),
       k=st.sampled_from((1, 2, 3)), seed=st.integers(0, 10_000))
def test_lp_verdicts_equal_highs_in_any_units(a: float, b: float, law: str, kind: str, k: int, seed: int) -> None:
    """Status and optimal value of the LP for ``(a X, b y)`` against HiGHS on ``(X, y)``, mapped back."""
    n, m = 30, 3
    X = _data(law, seed, n=n, d=k * m)
    y = _labels(X, seed, "lp", k)
    reference_problem = make_problem(X, y, k=k)
    scaled = make_problem(a * X, b * y, k=k)
    constraints = _constraints(kind, m)
    solver = RelaxationSolver(scaled, "lp", constraints=_scaled(constraints, b / a))
    for t in range(2):
        r = trial_direction(seed, t, m)
        ours = solver.solve(r)
        exact = lp_by_highs(reference_problem, r, constraints)
        assert ours.status == exact.status, (ours.message, exact)
        if exact.value is not None:
            assert ours.objective * a / b == pytest.approx(exact.value, rel=1e-7, abs=1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=scales, b=scales, seed=st.integers(0, 1000))
def test_whole_solves_are_covariant(a: float, b: float, seed: int) -> None:
    """Trials and certificates: the same verdicts in every unit.

    What the LP determines is compared: each trial's status and optimal value, whether it recovered
    ``w*`` and whether the cone test at ``w*`` predicted it. (Where the LP's optimal face is not a single
    point, the interior-point solution on it, and what polishing makes of it, is not determined by the
    problem and may differ with rounding; when some trial recovers ``w*``, both runs certify a global
    minimum.)
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, 8))
    w_star = rng.standard_normal(4)
    y = np.maximum(X.reshape(120, 2, 4) @ w_star, 0.0).sum(axis=1)
    options = SolveOptions(trials=4, seed=seed, stop_on_certificate=False, coverage_samples=16)
    ours = solve(make_problem(X, y, k=2), options, w_star=w_star)
    theirs = solve(make_problem(a * X, b * y, k=2), options, w_star=(b / a) * w_star)
    assert ours.status == theirs.status
    assert [t.solution.status for t in ours.trials] == [t.solution.status for t in theirs.trials]
    for mine, other in zip(ours.trials, theirs.trials, strict=True):
        if mine.objective is not None:
            assert other.objective == pytest.approx(mine.objective * b / a, rel=1e-7, abs=1e-9 * b / a)
    assert [t.recovered for t in ours.trials] == [t.recovered for t in theirs.trials]
    assert [t.predicted for t in ours.trials] == [t.predicted for t in theirs.trials]
    assert ours.certificate is not None and theirs.certificate is not None
    if any(t.recovered for t in ours.trials):
        assert ours.certificate.global_optimum and theirs.certificate.global_optimum
        # A certified filter has loss <= 1e-10 ||y||^2, so it is w* to about sqrt(1e-10): within recovery_tol.
        assert ours.recovery_error <= options.recovery_tol
        assert theirs.recovery_error <= options.recovery_tol


# -------------------------------------------------------------------------------------------------
# the reproducers of issue 8
# -------------------------------------------------------------------------------------------------

def test_a_near_zero_recession_direction_is_not_unbounded() -> None:
    """X = [[1, 0], [-1, 1e-6], [-1, -1e-6]]: bounded (HiGHS: 2000000.001), once called unbounded."""
    problem = make_problem([[1.0, 0.0], [-1.0, 1e-6], [-1.0, -1e-6]], [1.0, 1.0, 1.0])
    r = np.array([1e-3, 1.0])
    ours = RelaxationSolver(problem, "lp").solve(r)
    exact = lp_by_highs(problem, r)
    assert exact.status == ours.status == "optimal", ours.message
    assert ours.objective == pytest.approx(exact.value, rel=1e-9)
    assert exact.value == pytest.approx(2000000.001, rel=1e-12)


def test_a_true_recession_direction_is_unbounded_in_any_units() -> None:
    """Two samples in the plane leave a cone of directions open: unbounded for r inside it, HiGHS agrees."""
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    for a in (1e-8, 1.0, 1e8):
        problem = make_problem(a * X, [1.0, 1.0])
        for r in (np.array([-1.0, 0.2]), np.array([1.0, 1.0])):
            ours = RelaxationSolver(problem, "lp").solve(r)
            assert ours.status == lp_by_highs(make_problem(X, [1.0, 1.0]), r).status


def test_an_equality_far_outside_the_first_box_is_not_infeasible() -> None:
    """8-bit pixels with a blank column and w_0 = 1: feasible (HiGHS finds 0.126...), once called infeasible."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-255, 255, (200, 5))
    X[:, 0] = 0.0
    y = rng.uniform(0, 1, 200)
    problem = make_problem(X, y)
    pin = FilterConstraints(equality_matrix=[[1, 0, 0, 0, 0]], equality_vector=[1.0])
    solver = RelaxationSolver(problem, "lp", constraints=pin)
    for t in range(3):
        r = trial_direction(0, t, 5)
        ours, exact = solver.solve(r), lp_by_highs(problem, r, pin)
        assert ours.status == exact.status == "optimal", ours.message
        assert ours.objective == pytest.approx(exact.value, rel=1e-9)
        assert ours.w[0] == pytest.approx(1.0, rel=1e-12)


def test_an_infeasible_equality_is_infeasible_in_any_units() -> None:
    """A pinned weight that no filter with s_i(w) <= y_i allows: infeasible for us and for HiGHS."""
    rng = np.random.default_rng(1)
    X = np.abs(rng.standard_normal((50, 3))) + 0.1  # positive data: w_0 = 1e3 overshoots every label
    y = np.ones(50)
    pin = FilterConstraints(equality_matrix=[[1, 0, 0]], equality_vector=[1e3], lower=[-np.inf, -1.0, -1.0])
    assert lp_by_highs(make_problem(X, y), np.ones(3), pin).status == "infeasible"
    for a in (1e-6, 1.0, 1e6):
        ours = RelaxationSolver(make_problem(a * X, y), "lp", constraints=_scaled(pin, 1.0 / a)).solve(np.ones(3))
        assert ours.status == "infeasible", ours.message


def test_no_copy_of_x_for_blocks_with_unit_weights() -> None:
    X = np.random.default_rng(0).standard_normal((50, 12))
    problem = make_problem(X, np.ones(50), k=3)
    assert np.shares_memory(problem.patches, X)
    assert not np.shares_memory(make_problem(X, np.ones(50), k=3, output_weights=[1, 2, 1]).patches, X)
