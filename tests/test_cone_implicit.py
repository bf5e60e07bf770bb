"""The cone without copies of the data (issue 17 items 2-3, issue 20): its generators stay implicit over the patch
source (or are cached within a budget), and every verdict and distance equals an explicit NNLS - scipy's
``nnls`` (and ``lsq_linear``) on the whole generator matrix, ties expanded into ``g_i + sum_{j in J} t_ij`` for
every subset ``J`` -
computed here from the patches, independently of the cone's code. Coverage's estimate equals the exhaustive count
of that explicit NNLS over the same seeded directions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import lsq_linear, nnls

from cnnrelax import PlantedSpec, make_problem, planted_problem
from cnnrelax.core.certificates import cone as cone_module
from cnnrelax.core.certificates import coverage, optimality_cone
from cnnrelax.core.certificates.generators import ExplicitGenerators, PatchGenerators

TOL = 1e-6


def _explicit_generators(X: np.ndarray, k: int, w: np.ndarray, tie_rtol: float = 1e-9) -> np.ndarray:
    """Every generator of the cone at ``w`` (ReLU, blocks), as rows: ``g_i + sum_{j in J} X_ij`` over the subsets
    ``J`` of sample ``i``'s tied patches (``|X_ij w| <= tie_rtol ||X_ij|| ||w||``)."""
    n, d = X.shape
    patches = X.reshape(n, k, d // k)
    rows = []
    for sample in patches:
        pre = sample @ w
        bound = tie_rtol * np.linalg.norm(w) * np.linalg.norm(sample, axis=1)
        g = sample[pre > bound].sum(axis=0)
        tied = [patch for patch, p, b in zip(sample, pre, bound, strict=True) if abs(p) <= b and np.any(patch)]
        for size in range(len(tied) + 1):
            for subset in itertools.combinations(tied, size):
                rows.append(g + sum(subset, np.zeros_like(g)))
    G = np.array(rows).reshape(-1, d // k)
    return G[np.any(G != 0, axis=1)]


def _explicit_distance(G: np.ndarray, r: np.ndarray) -> float:
    """The distance from ``r`` to ``cone{rows of G}``: the better of scipy's ``nnls`` and its bounded-variable least
    squares, each residual computed from the multipliers (``nnls``'s own ``rnorm`` can be wrong, scipy#25389)."""
    if G.shape[0] == 0:  # no generator: the cone is {0} (and scipy's nnls aborts on an empty matrix)
        return float(np.linalg.norm(r))
    x, _ = nnls(G.T, r, maxiter=100 * max(G.shape))
    bounded = lsq_linear(G.T, r, bounds=(0.0, np.inf), method="bvls", tol=1e-14).x
    return float(min(np.linalg.norm(G.T @ x - r), np.linalg.norm(G.T @ np.maximum(bounded, 0.0) - r)))


def _tied_instance(seed: int, n: int, k: int, m: int, blank: float):
    """``w = e_1``; a fraction ``blank`` of the patches have ``x_1 = 0`` (tied at ``w``); labels fitted exactly."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k * m))
    mask = rng.random((n, k)) < blank
    X.reshape(n, k, m)[:, :, 0][mask] = 0.0
    w = np.eye(m)[0]
    y = np.maximum(X.reshape(n, k, m) @ w, 0.0).sum(axis=1)
    return X, y, w


@pytest.fixture(params=["implicit", "cached"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Build cones with implicit generators (no budget) or with the cache (any size fits)."""
    fraction = 0.0 if request.param == "implicit" else 10.0  # nothing fits, or everything (ties included)
    monkeypatch.setattr(cone_module, "GENERATOR_CACHE_FRACTION", fraction)
    return str(request.param)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(4, 30), k=st.integers(1, 3), m=st.integers(2, 5),
       blank=st.sampled_from([0.0, 0.3, 0.6]))
def test_verdicts_and_distances_equal_an_explicit_nnls(store: str, seed: int, n: int, k: int, m: int,
                                                       blank: float) -> None:
    """For all small instances, with and without ties: the cone's distance and the verdicts of ``members`` (in
    rounds, with separators) equal scipy's NNLS on every generator, whichever way the generators are held."""
    X, y, w = _tied_instance(seed, n, k, m, blank)
    problem = make_problem(X, y, k=k)
    cone, _ = optimality_cone(problem, w)
    expected_store = PatchGenerators if store == "implicit" else ExplicitGenerators
    assert isinstance(cone.generators, expected_store)
    G = _explicit_generators(X, k, w)
    R = np.random.default_rng(seed).standard_normal((12, m))
    distances = np.array([_explicit_distance(G, r) for r in R])
    ours = np.array([cone.residual(r)[0] for r in R])
    np.testing.assert_allclose(ours, distances, rtol=1e-6, atol=1e-8)
    norms = np.linalg.norm(R, axis=1)
    clear = np.abs(distances - TOL * norms) > 1e-7 * norms  # verdicts away from the tolerance's edge
    verdicts = cone.members(R, TOL)
    assert np.array_equal(verdicts[clear], (distances <= TOL * norms)[clear])


@pytest.mark.parametrize(("n", "d", "k", "seed"), [(600, 12, 3, 0), (900, 20, 4, 1)])
def test_coverage_equals_the_exhaustive_explicit_count(store: str, n: int, d: int, k: int, seed: int) -> None:
    """Coverage's estimate (every direction judged, and the sequential one) equals the count of the seeded
    directions an explicit NNLS over all generators puts inside: the same verdicts, direction by direction."""
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
    X = np.asarray(pp.problem.X)
    G = _explicit_generators(X, k, pp.w_star)
    samples = 48
    # the documented stream of a pointed cone (a ReLU fit with positive labels): each draw, then its mirror
    draws = np.random.default_rng([seed, 2**32 - 1]).standard_normal((samples // 2, pp.problem.m))
    R = np.stack([draws, -draws], axis=1).reshape(-1, pp.problem.m)
    inside = [_explicit_distance(G, r) <= TOL * np.linalg.norm(r) for r in R]
    full = coverage(pp.problem, pp.w_star, samples=samples, seed=seed, half_width=None, tol=TOL)
    assert full.directions == samples and full.certifying_directions == sum(inside)
    assert 0 < sum(inside) < samples  # both verdicts occur: a wrong count shows
    sequential = coverage(pp.problem, pp.w_star, samples=samples, seed=seed, tol=TOL)
    assert sequential.certifying_directions == sum(inside[:sequential.directions])


def test_a_memory_mapped_x_gives_the_same_cone(tmp_path) -> None:
    """X memory-mapped (read in blocks, never copied) and in memory: the same verdicts and distances."""
    pp = planted_problem(PlantedSpec(n=800, d=16, k=4, seed=5))
    path = tmp_path / "X.npy"
    np.save(path, np.asarray(pp.problem.X))
    mapped = make_problem(np.load(path, mmap_mode="r"), pp.problem.y, k=4)
    here, _ = optimality_cone(pp.problem, pp.w_star)
    there, _ = optimality_cone(mapped, pp.w_star)
    R = np.random.default_rng(5).standard_normal((24, pp.problem.m))
    assert np.array_equal(here.members(R, TOL), there.members(R, TOL))
    for r in R[:6]:
        assert there.residual(r)[0] == pytest.approx(here.residual(r)[0], rel=1e-9, abs=1e-12)


def test_the_cache_keeps_to_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generators are cached only within the budget (bytes and fraction of the patches); beyond, they stay
    implicit: the cone then holds vectors of length n, not an (n, m) array."""
    pp = planted_problem(PlantedSpec(n=2000, d=40, k=4, seed=2))
    cached, _ = optimality_cone(pp.problem, pp.w_star)  # (n, m) is a quarter of the patches: within the budget
    assert isinstance(cached.generators, ExplicitGenerators)
    monkeypatch.setattr(cone_module, "GENERATOR_CACHE_BYTES", 2000 * 10 * 8 - 1)
    implicit, _ = optimality_cone(pp.problem, pp.w_star)
    assert isinstance(implicit.generators, PatchGenerators)
    held = [value for value in vars(implicit.generators).values() if isinstance(value, np.ndarray)]
    assert all(array.ndim < 2 or array.shape[1] != pp.problem.m or array.shape[0] < pp.problem.n for array in held)


def test_constraints_project_the_directions_not_the_rows(store: str) -> None:
    """An active equality (its row projected out of the directions, not of the generators) and an active bound
    (a one-sided normal among the generators): the verdicts equal HiGHS's on the LP written with the constraints."""
    from cnnrelax import FilterConstraints

    from highs_reference import lp_by_highs

    pp = planted_problem(PlantedSpec(n=200, d=8, k=1, seed=8))
    w, m = pp.w_star, 8
    upper = np.full(m, np.inf)
    upper[2] = w[2]  # active at w
    row = np.zeros(m)
    row[0], row[1] = w[1], -w[0]  # orthogonal to w: the cone stays pointed once the row is projected out
    constraints = FilterConstraints(upper=upper.tolist(), equality_matrix=[row.tolist()], equality_vector=[0.0])
    cone, _ = optimality_cone(pp.problem, w, constraints.resolve(m))
    R = np.random.default_rng(8).standard_normal((30, m))
    verdicts = cone.members(R, TOL)
    exact = [lp_by_highs(pp.problem, r, constraints) for r in R]
    expected = [e.status == "optimal" and e.value <= float(r @ w) + 1e-7 * max(1.0, abs(float(r @ w)))
                for e, r in zip(exact, R, strict=True)]
    assert list(verdicts) == expected
    assert 0 < sum(expected) < len(R)
