"""Problem model: patchings against brute-force loops, folded output weights, and every validation error."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax import (
    BlockPatching,
    ImagePatching,
    InvalidParameterError,
    PlantedSpec,
    SolveOptions,
    StridedPatching,
    make_patching,
    make_problem,
    planted_problem,
    solve,
)


def test_block_patches_are_contiguous_blocks_with_weights_folded() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 12))
    c = np.array([1.0, 0.5, 2.0])
    problem = make_problem(X, np.ones(5), k=3, output_weights=c)
    for i in range(5):
        for j in range(3):
            np.testing.assert_array_equal(problem.patches[i, j], c[j] * X[i, 4 * j: 4 * j + 4])
    w = rng.standard_normal(4)
    expected = [sum(c[j] * max(X[i, 4 * j: 4 * j + 4] @ w, 0.0) for j in range(3)) for i in range(5)]
    np.testing.assert_allclose(problem.predict(w), expected)
    assert problem.loss(w) == pytest.approx(sum((1.0 - e) ** 2 for e in expected))


def test_strided_patches_overlap_as_a_loop_would_take_them() -> None:
    X = np.arange(2 * 10, dtype=float).reshape(2, 10)
    problem = make_problem(X, np.zeros(2), patching=StridedPatching(size=4, stride=3))
    starts = list(range(0, 10 - 4 + 1, 3))
    assert problem.k == len(starts) == 3 and problem.m == 4
    for i in range(2):
        for j, s in enumerate(starts):
            np.testing.assert_array_equal(problem.patches[i, j], X[i, s: s + 4])


def test_image_patches_match_a_sliding_window() -> None:
    rng = np.random.default_rng(1)
    images = rng.standard_normal((3, 6, 5))
    patching = ImagePatching(height=6, width=5, filter_height=3, filter_width=2, stride=2)
    problem = make_problem(images.reshape(3, -1), np.zeros(3), patching=patching)
    windows = [images[:, r: r + 3, c: c + 2].reshape(3, -1) for r in range(0, 4, 2) for c in range(0, 4, 2)]
    assert problem.k == len(windows) and problem.m == 6
    for j, window in enumerate(windows):
        np.testing.assert_array_equal(problem.patches[:, j, :], window)


def test_make_patching_chooses_the_kind_from_its_options() -> None:
    assert make_patching(k=4) == BlockPatching(4)
    assert make_patching(patch_size=3, stride=1) == StridedPatching(3, 1)
    assert make_patching(image_shape=(8, 8), filter_shape=(3, 3)) == ImagePatching(8, 8, 3, 3, 1)


@pytest.mark.parametrize(
    ("kwargs", "parameter", "fragment"),
    [
        ({"X": np.ones((4, 10)), "y": np.ones(4), "k": 3}, "k", "d=10 is not divisible by k=3"),
        ({"X": np.ones((4, 6)), "y": np.ones(4), "k": 2, "output_weights": [1.0, -0.5]}, "output_weights",
         "output_weights[1] = -0.5 is negative"),
        ({"X": [[1.0, np.nan], [0.0, 1.0]], "y": [1.0, 1.0]}, "X", "NaN or infinite"),
        ({"X": np.ones((2, 2)), "y": [1.0, np.inf]}, "y", "NaN or infinite"),
        ({"X": np.ones((3, 2)), "y": np.ones(4)}, "y", "y has 4 labels but X has 3 rows"),
        ({"X": np.ones(5), "y": np.ones(5)}, "X", "2-D matrix"),
        ({"X": np.zeros((0, 3)), "y": np.zeros(0)}, "X", "empty"),
        ({"X": [["a", "b"]], "y": [1.0]}, "X", "real numbers"),
        ({"X": np.ones((2, 4)), "y": np.ones(2), "k": 2, "output_weights": [1.0]}, "output_weights",
         "1 entries but the patching makes k=2"),
        ({"X": np.ones((2, 4)), "y": np.ones(2), "k": 0}, "k", "positive integer"),
    ],
)
def test_invalid_input_names_the_parameter_and_the_value(kwargs: dict, parameter: str, fragment: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        make_problem(**kwargs)
    assert info.value.parameter == parameter
    assert fragment in str(info.value)


def test_negative_labels_are_rejected_by_the_lp_but_not_the_qp() -> None:
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 4))
    y = np.abs(rng.standard_normal(30))
    y[7] = -0.25
    problem = make_problem(X, y)
    with pytest.raises(InvalidParameterError) as info:
        solve(problem, SolveOptions(relaxation="lp", trials=1))
    assert info.value.parameter == "y" and "y[7] = -0.25 is negative" in str(info.value)
    result = solve(problem, SolveOptions(relaxation="qp", beta=1e-3, trials=1))
    assert result.w is not None


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        (SolveOptions(relaxation="sdp"), "relaxation"),
        (SolveOptions(relaxation="qp", beta=0.0), "beta"),
        (SolveOptions(trials=0), "trials"),
        (SolveOptions(seed=-1), "seed"),
        (SolveOptions(backend="mosek"), "backend"),
    ],
)
def test_invalid_options_name_the_parameter(options: SolveOptions, parameter: str) -> None:
    problem = make_problem(np.ones((3, 2)), np.ones(3))
    with pytest.raises(InvalidParameterError) as info:
        solve(problem, options)
    assert info.value.parameter == parameter


def test_planted_model_is_reproducible_from_its_seed_and_fits_exactly() -> None:
    spec = PlantedSpec(n=50, d=12, k=3, seed=7)
    a, b = planted_problem(spec), planted_problem(spec)
    np.testing.assert_array_equal(a.problem.X, b.problem.X)
    np.testing.assert_array_equal(a.w_star, b.w_star)
    assert np.linalg.norm(a.w_star) == pytest.approx(1.0)
    assert a.problem.loss(a.w_star) == 0.0
    other = planted_problem(PlantedSpec(n=50, d=12, k=3, seed=8))
    assert not np.allclose(other.problem.X, a.problem.X)


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher", "laplace"])
def test_planted_distributions_have_unit_variance(distribution: str) -> None:
    pp = planted_problem(PlantedSpec(n=4000, d=10, seed=3, distribution=distribution))
    assert pp.problem.X.var() == pytest.approx(1.0, abs=0.05)
    if distribution == "rademacher":
        assert set(np.unique(pp.problem.X)) == {-1.0, 1.0}


def test_planted_noise_is_added_with_the_requested_scale() -> None:
    clean = planted_problem(PlantedSpec(n=3000, d=6, seed=4))
    noisy = planted_problem(PlantedSpec(n=3000, d=6, seed=4, noise_std=0.1))
    assert np.std(noisy.problem.y - clean.problem.y) == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize(
    ("spec", "parameter"),
    [
        (PlantedSpec(n=0, d=4), "n"),
        (PlantedSpec(n=10, d=5, k=2), "k"),
        (PlantedSpec(n=10, d=4, noise_std=-1.0), "noise_std"),
        (PlantedSpec(n=10, d=4, distribution="cauchy"), "distribution"),  # type: ignore[arg-type]  # invalid on purpose
    ],
)
def test_invalid_planted_specs_are_rejected(spec: PlantedSpec, parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        planted_problem(spec)
    assert info.value.parameter == parameter
