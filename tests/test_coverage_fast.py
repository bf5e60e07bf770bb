"""The fast coverage estimate stays a correct estimate (issue 17): every verdict it counts equals HiGHS's answer
to "is w optimal for the LP with this r?", the sequential rule's interval keeps its confidence, and the cone's
rescaling and separators change no verdict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnrelax import FilterConstraints, PlantedSpec, make_problem, planted_problem
from cnnrelax.core.certificates import (
    COVERAGE_CONFIDENCE,
    DEFAULT_COVERAGE_SAMPLES,
    CoverageStatus,
    clopper_pearson_interval,
    coverage,
    optimality_cone,
)
from cnnrelax.core.certificates.cone import OptimalityCone
from cnnrelax.core.certificates.coverage import directions_to_judge
from cnnrelax.core.trials import SolveOptions

from highs_reference import lp_by_highs


def _directions(seed: int, samples: int, m: int, paired: bool = False) -> np.ndarray:
    """The directions :func:`coverage` judges (its documented stream): the draws one by one, or, for a pointed cone,
    the first ``samples // 2`` draws each followed by its mirror."""
    rng = np.random.default_rng([seed, 2**32 - 1])
    if not paired:
        return rng.standard_normal((samples, m))
    draws = rng.standard_normal((samples // 2, m))
    return np.stack([draws, -draws], axis=1).reshape(-1, m)


def _optimal_by_highs(problem, w: np.ndarray, r: np.ndarray, constraints: FilterConstraints | None = None) -> bool:
    exact = lp_by_highs(problem, r, constraints)
    value = float(r @ w)
    return exact.status == "optimal" and exact.value <= value + 1e-7 * max(1.0, abs(value))


def _blank_rows_instance(seed: int, n: int = 90, m: int = 6, blank: int = 25):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    X[:blank, 0] = 0.0
    w_star = np.eye(m)[0]
    return make_problem(X, np.maximum(X @ w_star, 0.0)), w_star


@pytest.mark.parametrize(("n", "d", "k", "seed"), [(200, 6, 1, 0), (300, 12, 2, 1), (400, 15, 3, 2)])
def test_every_counted_verdict_equals_highs(n: int, d: int, k: int, seed: int) -> None:
    """Brute force: HiGHS solves the LP for each sampled direction; the estimate counts exactly its optima."""
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
    samples = 40
    estimate = coverage(pp.problem, pp.w_star, samples=samples, seed=seed, half_width=None)
    assert optimality_cone(pp.problem, pp.w_star)[0].pointed  # a ReLU fit with positive labels: mirrored pairs
    R = _directions(seed, samples, pp.problem.m, paired=True)
    brute = [_optimal_by_highs(pp.problem, pp.w_star, r) for r in R]
    assert estimate.directions == samples
    assert estimate.certifying_directions == sum(brute)
    assert 0 < sum(brute) < samples  # both verdicts occur: the test can tell a wrong count
    assert not any(brute[0::2][t] and brute[1::2][t] for t in range(samples // 2))  # one of a pair at most
    # the interval: Clopper-Pearson for 2p over the pairs, halved
    low, high = clopper_pearson_interval(sum(brute), samples // 2)
    assert estimate.interval == pytest.approx((low / 2, high / 2), abs=1e-15)
    assert estimate.estimate == sum(brute) / samples


def test_verdicts_with_ties_equal_highs() -> None:
    problem, w_star = _blank_rows_instance(3)
    cone, ties = optimality_cone(problem, w_star)
    assert ties == 25
    R = _directions(5, 40, problem.m)
    verdicts = cone.members(R, 1e-6)
    assert list(verdicts) == [_optimal_by_highs(problem, w_star, r) for r in R]


def test_verdicts_with_active_bounds_equal_highs() -> None:
    """Active box constraints add one-sided normals; the -w separator must then be checked, not assumed."""
    pp = planted_problem(PlantedSpec(n=250, d=5, k=1, seed=4))
    w = pp.w_star
    lower, upper = np.full(5, -np.inf), np.full(5, np.inf)
    lower[0], upper[1] = w[0], w[1]  # both active at w
    constraints = FilterConstraints(lower=lower.tolist(), upper=upper.tolist())
    resolved = constraints.resolve(5)
    cone, _ = optimality_cone(pp.problem, w, resolved)
    R = _directions(6, 40, 5)
    verdicts = cone.members(R, 1e-6)
    assert list(verdicts) == [_optimal_by_highs(pp.problem, w, r, constraints) for r in R]
    assert 0 < verdicts.sum() < 40


def test_the_slice_rescaling_and_separators_change_no_verdict() -> None:
    """The cone with the axis (rescaled rows, -w as a first separator, batched scores) against the plain one."""
    pp = planted_problem(PlantedSpec(n=3000, d=40, k=4, seed=12))
    fast, _ = optimality_cone(pp.problem, pp.w_star)
    G = pp.problem.gradient_rows(pp.w_star)
    G = G[np.any(G != 0, axis=1)]
    empty = np.zeros((0, pp.problem.m))
    plain = OptimalityCone(G, empty, np.zeros(0, dtype=np.intp), empty, empty)
    R = _directions(1, 48, pp.problem.m)
    batched = fast.members(R, 1e-6)
    one_by_one = np.array([plain.member(r, 1e-6)[0] for r in R])
    assert np.array_equal(batched, one_by_one)
    assert fast.separators, "-w is a separator of a ReLU fit with positive labels"
    for r in R:  # the distances agree too (the early stop only applies in members)
        assert fast.residual(r)[0] == pytest.approx(plain.residual(r)[0], rel=1e-7, abs=1e-9)
        break


def test_the_sequential_estimate_is_a_prefix_of_the_full_one() -> None:
    pp = planted_problem(PlantedSpec(n=400, d=8, k=1, seed=7))
    full = coverage(pp.problem, pp.w_star, samples=DEFAULT_COVERAGE_SAMPLES, seed=3, half_width=None)
    fast = coverage(pp.problem, pp.w_star, samples=DEFAULT_COVERAGE_SAMPLES, seed=3)
    assert fast.directions < full.directions == DEFAULT_COVERAGE_SAMPLES
    cone, _ = optimality_cone(pp.problem, pp.w_star)
    assert cone.pointed
    verdicts = cone.members(_directions(3, DEFAULT_COVERAGE_SAMPLES, pp.problem.m, paired=True), 1e-6)
    assert fast.directions % 2 == 0 and fast.certifying_directions == int(verdicts[:fast.directions].sum())
    assert full.certifying_directions == int(verdicts.sum())
    low, high = fast.interval
    assert (2 * low, 2 * high) == clopper_pearson_interval(fast.certifying_directions, fast.directions // 2)
    assert fast.status is CoverageStatus.ESTIMATED


def test_cones_that_are_not_pointed_judge_the_draws_one_by_one() -> None:
    """Ties (and active constraints) can put both r and -r in the cone: no pairs, the plain binomial interval."""
    problem, w_star = _blank_rows_instance(3)
    cone, ties = optimality_cone(problem, w_star)
    assert ties and not cone.pointed
    estimate = coverage(problem, w_star, samples=24, seed=2, half_width=None, cone=cone)
    verdicts = cone.members(_directions(2, 24, problem.m), 1e-6)
    assert estimate.certifying_directions == int(verdicts.sum()) and estimate.directions == 24
    assert estimate.interval == clopper_pearson_interval(int(verdicts.sum()), 24)
    assert "mirrored" not in estimate.reason


def test_a_cancelled_estimate_says_so() -> None:
    pp = planted_problem(PlantedSpec(n=200, d=6, k=1, seed=1))
    stopped = coverage(pp.problem, pp.w_star, samples=64, should_stop=lambda: True)
    assert not stopped.applicable and stopped.status is CoverageStatus.STOPPED and stopped.estimate is None
    assert coverage(pp.problem, pp.w_star, samples=0).status is CoverageStatus.NOT_COMPUTED
    assert coverage(pp.problem, 1.1 * pp.w_star).status is CoverageStatus.NOT_APPLICABLE


def test_one_constant_for_the_default_budget() -> None:
    assert SolveOptions().coverage_samples == DEFAULT_COVERAGE_SAMPLES


def _simulated_confidence(p: float, runs: int, rng: np.random.Generator, paired: bool = False) -> float:
    """How often the sequential rule's reported interval contains ``p`` (Bernoulli draws stand for verdicts; in
    pairs, one of ``r, -r`` is inside with probability ``2p``, never both)."""
    inside = 0
    for _ in range(runs):
        if paired:
            hit = rng.random(DEFAULT_COVERAGE_SAMPLES // 2) < 2 * p
            first = rng.random(DEFAULT_COVERAGE_SAMPLES // 2) < 0.5  # which of the pair
            draws = np.stack([hit & first, hit & ~first], axis=1).reshape(-1)
        else:
            draws = rng.random(DEFAULT_COVERAGE_SAMPLES) < p
        hits: list[bool] = []
        while directions_to_judge(hits, DEFAULT_COVERAGE_SAMPLES, 0.2, paired):
            hits.extend(bool(v) for v in draws[len(hits):len(hits) + (2 if paired else 1)])
        if paired:
            low, high = (b / 2 for b in clopper_pearson_interval(sum(hits), len(hits) // 2))
        else:
            low, high = clopper_pearson_interval(sum(hits), len(hits))
        inside += low <= p <= high
    return inside / runs


@pytest.mark.parametrize("p", [0.03, 0.2, 0.45, 0.5, 0.7, 0.97])
def test_the_sequential_interval_keeps_its_confidence(p: float) -> None:
    """Stopping on the data narrows Wilson's interval below 95% (0.89 at p = 1/2); Clopper-Pearson's holds."""
    confidence = _simulated_confidence(p, 1500, np.random.default_rng([17, int(p * 1000)]))
    assert confidence >= COVERAGE_CONFIDENCE - 0.02  # 1500 runs: the standard error is about 0.006


@pytest.mark.parametrize("p", [0.02, 0.1, 0.25, 0.4, 0.45, 0.5])
def test_the_paired_interval_keeps_its_confidence(p: float) -> None:
    """Mirrored pairs (a pointed cone: p <= 1/2), stopped by the paired rule: the halved interval holds p."""
    confidence = _simulated_confidence(p, 1500, np.random.default_rng([19, int(p * 1000)]), paired=True)
    assert confidence >= COVERAGE_CONFIDENCE - 0.02


def test_pairs_give_a_narrower_interval_near_one_half() -> None:
    """The point of the pairs: at p = 0.45, 12 paired directions beat 16 independent ones by far."""
    independent = clopper_pearson_interval(7, 16)
    low, high = clopper_pearson_interval(5, 6)  # 2p = 0.9: five of six pairs with a hit
    assert (high - low) / 2 < 0.75 * (independent[1] - independent[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 64).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_clopper_pearson_is_the_beta_quantiles_and_holds_the_estimate(pair: tuple[int, int]) -> None:
    from scipy.stats import beta

    successes, total = pair
    low, high = clopper_pearson_interval(successes, total)
    assert 0.0 <= low <= high <= 1.0
    if total:
        assert low <= successes / total <= high
        expected_low = 0.0 if successes == 0 else beta.ppf(0.025, successes, total - successes + 1)
        expected_high = 1.0 if successes == total else beta.ppf(0.975, successes + 1, total - successes)
        assert low == pytest.approx(expected_low, abs=1e-12) and high == pytest.approx(expected_high, abs=1e-12)
