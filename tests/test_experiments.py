"""The experiments package end to end: grid shape, figures, progress, resume, cancellation, digits."""

from __future__ import annotations

import functools
import io
import pickle
import time
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image

from cnnrelax import InvalidParameterError, PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.experiments import (
    ExperimentCancelled,
    figure_size_px,
    list_cells,
    parse_experiment_spec,
    render_figure,
    run_cell,
    run_experiment,
)
from cnnrelax.experiments.common import derived_seed
from cnnrelax.experiments.rotated_digits import (
    assemble,
    filter_test_rmses,
    learn_filters,
    paired_difference,
    prepare_data,
    relu_features,
    ridge_test_rmse,
    score_filters,
    upsampled_digits,
)
from cnnrelax.experiments.rotated_digits import (
    run_cell as digits_cell,
)
from cnnrelax.experiments.specs import (
    DIGITS_SHAPE,
    DIGITS_SOURCE,
    PhaseTransitionSpec,
    RotatedDigitsSpec,
    load_experiment_spec,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T = TypeVar("T", PhaseTransitionSpec, RotatedDigitsSpec)


def parse_spec_of(kind: type[T], request: dict[str, Any]) -> T:
    """The typed spec of ``request``, checked to be of ``kind``."""
    spec = parse_experiment_spec(request)
    assert isinstance(spec, kind)
    return spec

SMALL = {"kind": "phase_transition", "k": 1, "d": [6, 10], "n": [30, 200], "repetitions": 3,
         "methods": ["relaxation", "gradient_descent", "pseudo_inverse"], "seed": 1}
DIGITS = {"kind": "rotated_digits", "seed": 3, "seeds": 3, "max_images": 240, "angles_per_image": 2,
          "filter_shapes": [[3, 3]], "filters": 2, "fit_samples": 200}


def _without_times(cells: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if not k.startswith("time")} for c in cells]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.size


@pytest.fixture(scope="module")
def small_run() -> tuple[dict, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    result = run_experiment(SMALL, progress=lambda done, total, state: calls.append((done, total)),
                            should_stop=lambda: False)
    return result, calls


def test_spec_fills_defaults_and_its_json_reads_back_the_same() -> None:
    spec = parse_experiment_spec({"kind": "phase_transition", "k": 2})
    assert spec.repetitions == 20 and spec.methods == ["relaxation", "gradient_descent"]
    assert len(spec.d) == 8 and len(spec.n) == 8 and all(d % 2 == 0 for d in spec.d)
    assert parse_experiment_spec(spec.model_dump()) == spec
    assert load_experiment_spec(spec.model_dump_json()) == spec
    digits = parse_experiment_spec({"kind": "rotated_digits"})
    assert digits.seed == 0 and digits.image_shape == (8, 8) and digits.seeds >= 5
    assert digits.shapes == [(4, 4), (3, 3), (5, 5)] and digits.source == DIGITS_SOURCE
    assert load_experiment_spec(digits.model_dump_json()) == digits
    from sklearn.datasets import load_digits

    assert load_digits().images.shape[1:] == DIGITS_SHAPE  # the default images' shape, known without loading them


def test_grids_are_sorted_and_methods_ordered_once() -> None:
    spec = parse_experiment_spec({"kind": "phase_transition", "d": [20, 10, 20], "n": [50, 40],
                                  "methods": ["gradient_descent", "relaxation", "gradient_descent"]})
    assert spec.d == [10, 20] and spec.n == [40, 50] and spec.methods == ["relaxation", "gradient_descent"]


def test_inline_images_are_arrays_in_the_spec_and_lists_in_its_json() -> None:
    images = np.random.default_rng(0).random((12, 5, 6))
    spec = parse_experiment_spec({"kind": "rotated_digits", "images": images.tolist(), "angles": list(range(12))})
    assert isinstance(spec, RotatedDigitsSpec) and spec.images is not None
    assert spec.images.dtype == np.float64 and spec.images.shape == (12, 5, 6)
    assert spec.image_shape == (5, 6) and spec.angles_given and spec.source == "user images"
    assert spec.shapes == [(4, 4), (3, 3), (5, 5)]
    again = load_experiment_spec(spec.model_dump_json())
    assert isinstance(again, RotatedDigitsSpec) and again.images is not None and again.angles is not None
    np.testing.assert_array_equal(again.images, images)
    assert again.public()["images"] == {"shape": [12, 5, 6]} and "angles" not in again.public()


@pytest.mark.parametrize(("spec", "parameter"), [
    ({"kind": "nope"}, "kind"),
    ({"kind": "phase_transition", "k": 2, "d": [10, 15]}, "d"),
    ({"kind": "phase_transition", "methods": ["sgd"]}, "methods"),
    ({"kind": "phase_transition", "k": 2, "d": [10], "methods": ["pseudo_inverse"]}, "methods"),
    ({"kind": "phase_transition", "repetitions": 0}, "repetitions"),
    ({"kind": "phase_transition", "n": [10, -3]}, "n"),
    ({"kind": "phase_transition", "colour": "red"}, "colour"),
    ({"kind": "rotated_digits", "filter_shapes": [[9, 2]]}, "filter_shapes"),
    ({"kind": "rotated_digits", "beta": 0}, "beta"),
    ({"kind": "rotated_digits", "seeds": 0}, "seeds"),
    ({"kind": "rotated_digits", "fit_samples": 5}, "fit_samples"),
    ({"kind": "phase_transition", "polish": "yes"}, "polish"),
    ({"kind": "phase_transition", "distribution": "cauchy"}, "distribution"),
    ({"kind": "phase_transition", "k": 1, "d": [10], "activation": "absolute", "methods": ["pseudo_inverse"]},
     "methods"),
    ({"kind": "rotated_digits", "train_fraction": 0.7, "validation_fraction": 0.3}, "train_fraction"),
    ({"kind": "rotated_digits", "angles": [1.0] * 10}, "angles"),
    ({"kind": "rotated_digits", "images": np.zeros((12, 4, 4)), "angles": [1.0] * 3}, "angles"),
    ({"kind": "rotated_digits", "images": np.full((12, 4, 4), np.nan)}, "images"),
    ([1, 2], "kind"),
    ({"kind": "rotated_digits", "images": np.zeros((5, 4))}, "images"),
    ({"kind": "rotated_digits", "images_path": "/nonexistent/file.npz"}, "images_path"),
])
def test_spec_errors_name_the_parameter(spec: dict, parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        parse_experiment_spec(spec)
    assert info.value.parameter == parameter


def test_small_grid_has_one_cell_per_method_d_n(small_run: tuple[dict, list]) -> None:
    result, _ = small_run
    cells = result["cells"]
    assert len(cells) == 3 * 2 * 2
    assert {(c["method"], c["d"], c["n"]) for c in cells} == {
        (m, d, n) for m in SMALL["methods"] for d in SMALL["d"] for n in SMALL["n"]}
    for c in cells:
        assert 0.0 <= c["success_rate"] <= 1.0 and c["time_s"] >= 0
        assert c["trials_run"] == 3
    by = {(c["method"], c["d"], c["n"]): c for c in cells}
    assert by[("pseudo_inverse", 10, 200)]["min_error"] <= 1e-10
    assert by[("gradient_descent", 10, 200)]["min_error"] <= 1e-4
    assert set(result["transition"]) == set(SMALL["methods"])
    for rows in result["transition"].values():
        assert [r["d"] for r in rows] == SMALL["d"]
        for r in rows:
            assert r["n"] is None or r["n"] in SMALL["n"]


def test_relaxation_cell_agrees_with_the_core_solve() -> None:
    """Recount one cell's successes and errors with ``cnnrelax.solve`` on the same seeded problems, with and
    without polishing."""
    spec = parse_experiment_spec({**SMALL, "methods": ["relaxation"], "trials": 2})
    cell = run_cell(spec, {"method": "relaxation", "d": 10, "n": 200})
    counts = {True: 0, False: 0}
    errors: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(spec.repetitions):
        seed = derived_seed(spec.seed, 1, 10, 200, rep)
        pp = planted_problem(PlantedSpec(n=200, d=10, k=1, seed=seed))
        for polished in (True, False):
            res = solve(pp.problem, SolveOptions(trials=2, seed=seed, stop_on_certificate=False, polish=polished),
                        w_star=pp.w_star)
            counts[polished] += sum(bool(t.recovered_after_polish if polished else t.recovered) for t in res.trials)
            errors[polished].append(res.recovery_error)
    assert cell["success_rate_unpolished"] == counts[False] / (2 * spec.repetitions)
    assert cell["success_rate_polished"] == cell["success_rate"] == counts[True] / (2 * spec.repetitions)
    assert cell["successes"] == counts[True]
    assert cell["min_error_unpolished"] == pytest.approx(min(errors[False]), abs=1e-9)
    assert cell["min_error"] == cell["min_error_polished"] == pytest.approx(min(errors[True]), abs=1e-9)


def test_polished_gradient_descent_reaches_the_relaxations_accuracy() -> None:
    """Fig. 1 like with like: where both methods recover, both min errors are at round-off (1e-12), while
    gradient descent's own filters stop at its iteration budget (about 1e-6)."""
    spec = {"kind": "phase_transition", "k": 2, "d": [10, 20], "n": [80, 320], "repetitions": 3,
            "methods": ["relaxation", "gradient_descent"], "seed": 2}
    result = run_experiment(spec, progress=lambda *a: None, should_stop=lambda: False)
    by = {(c["method"], c["d"], c["n"]): c for c in result["cells"]}
    for d in spec["d"]:
        for n in spec["n"]:
            relaxation, descent = by[("relaxation", d, n)], by[("gradient_descent", d, n)]
            assert relaxation["success_rate"] > 0 and descent["success_rate"] > 0
            assert relaxation["min_error"] <= 1e-12 and descent["min_error"] <= 1e-12
            assert descent["min_error_unpolished"] > 1e-9  # what the old heatmap showed: the budget
            assert descent["success_rate_polished"] >= descent["success_rate_unpolished"]
    assert _png_size(render_figure(result)) == figure_size_px(result)


def test_progress_moves_to_the_total(small_run: tuple[dict, list]) -> None:
    _, calls = small_run
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    assert [done for done, _ in calls] == list(range(13))


def test_phase_transition_figure_is_a_png_of_the_stated_size(small_run: tuple[dict, list]) -> None:
    result, _ = small_run
    data = render_figure(result)
    assert _png_size(data) == figure_size_px(result) == (3 * 450, 800)


def test_resume_skips_done_cells_and_gives_the_same_result(small_run: tuple[dict, list]) -> None:
    full, _ = small_run
    states: list[dict] = []
    with pytest.raises(ExperimentCancelled):
        run_experiment(SMALL, progress=lambda done, total, state: states.append(state),
                       should_stop=lambda: len(states) > 4)
    partial = states[-1]
    assert 1 <= len(partial["cells"]) < 12
    ran: list[dict] = []

    def recording_map(run, cells):  # noqa: ANN001, ANN202 - a plain in-process map that records what it ran
        ran.extend(cells)
        return (run(cell) for cell in cells)

    first: list[int] = []
    resumed = run_experiment(SMALL, progress=lambda done, total, state: first.append(done),
                             should_stop=lambda: False, resume=partial, map_cells=recording_map)
    assert first[0] == len(partial["cells"])
    done_keys = {(c["method"], c["d"], c["n"]) for c in partial["cells"]}
    assert len(ran) == 12 - len(done_keys)
    assert not done_keys & {(c["method"], c["d"], c["n"]) for c in ran}
    assert _without_times(resumed["cells"]) == _without_times(full["cells"])


def test_should_stop_ends_a_long_cell_promptly() -> None:
    spec = {"kind": "phase_transition", "k": 1, "d": [40], "n": [4000], "repetitions": 200,
            "methods": ["relaxation"], "trials": 2}
    start = time.monotonic()
    with pytest.raises(ExperimentCancelled):
        run_experiment(spec, progress=lambda *a: None, should_stop=lambda: time.monotonic() - start > 0.3)
    assert time.monotonic() - start < 3.0


def test_cells_are_picklable_and_independent() -> None:
    spec = parse_experiment_spec(SMALL)
    runner = pickle.loads(pickle.dumps(functools.partial(run_cell, spec)))
    cell = list_cells(spec)[-1]
    assert _without_times([runner(cell)]) == _without_times([run_cell(spec, cell)])


@pytest.fixture(scope="module")
def digits_run() -> dict:
    return run_experiment(DIGITS, progress=lambda *a: None, should_stop=lambda: False)


def test_digits_subset_gives_per_seed_rmses_reproducible_by_seed(digits_run: dict) -> None:
    result = digits_run
    assert result["seeds"] == [3, 4, 5]
    assert len(result["rmse_raw_per_seed"]) == 3 and np.all(np.isfinite(result["rmse_raw_per_seed"]))
    assert result["rmse_raw"] == pytest.approx(np.mean(result["rmse_raw_per_seed"]), rel=1e-12)
    assert result["rmse_raw_std"] == pytest.approx(np.std(result["rmse_raw_per_seed"], ddof=1), rel=1e-12)
    variant = result["variants"][0]
    assert result["rmse_filter"] == pytest.approx(np.mean(variant["rmse_one_filter"]["per_seed"]), rel=1e-12)
    assert 0 < result["rmse_raw"] < 90
    assert np.asarray(result["filter"]).shape == (3, 3)
    assert np.linalg.norm(result["filter"]) == pytest.approx(1.0, rel=1e-12)  # unit norm
    assert result["filter_helps"] == (result["learned_minus_raw"]["interval"][1] < 0)
    assert result["filter_beats_random"] == (result["learned_minus_random"]["interval"][1] < 0)
    for key in ("rmse_all_filters", "rmse_random_all_filters"):
        assert np.all(np.isfinite(variant[key]["per_seed"]))
    # A replicate seed is a run of its own: seed 4 alone gives seed 4's numbers of the three-seed run.
    alone = run_experiment({**DIGITS, "seed": 4, "seeds": 1}, progress=lambda *a: None, should_stop=lambda: False)
    assert alone["rmse_raw_per_seed"] == [result["rmse_raw_per_seed"][1]]
    assert alone["variants"][0]["rmse_one_filter"]["per_seed"] == [variant["rmse_one_filter"]["per_seed"][1]]
    assert alone["learned_minus_raw"]["interval"] is None and alone["filter_helps"] is False  # one seed: no verdict


def test_digits_split_is_by_image_and_angles_are_in_range() -> None:
    data = prepare_data(parse_spec_of(RotatedDigitsSpec, DIGITS))
    train, val, test = (set(s.image.tolist()) for s in (data.train, data.validation, data.test))
    assert not (train & test) and not (train & val) and not (val & test)
    assert len(train | val | test) == 240
    assert len(data.train.y) == 2 * len(train)
    assert np.all(np.abs(np.concatenate([data.train.y, data.test.y])) <= 45.0)
    np.testing.assert_allclose(data.train.X.mean(axis=0), 0.0, atol=1e-12)


def test_digits_figure_is_a_png_of_the_stated_size(digits_run: dict) -> None:
    assert _png_size(render_figure(digits_run)) == figure_size_px(digits_run) == (1500, 500)


def test_user_image_sets_from_npz_and_from_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((60, 6, 6))
    angles = rng.uniform(-30, 30, size=60)
    path = tmp_path / "images.npz"
    np.savez(path, images=images, angles=angles)
    spec = {"kind": "rotated_digits", "seed": 0, "seeds": 2, "images_path": str(path), "filter_shapes": [[3, 3]],
            "filters": 1}
    from_file = run_experiment(spec, progress=lambda *a: None, should_stop=lambda: False)
    from_arrays = run_experiment({**{k: v for k, v in spec.items() if k != "images_path"},
                                  "images": images, "angles": angles},
                                 progress=lambda *a: None, should_stop=lambda: False)
    assert from_file["samples"]["train"] == 36  # given angles: one sample per image, no rotation
    assert from_file["rmse_raw"] == from_arrays["rmse_raw"] and np.isfinite(from_file["rmse_raw"])
    rotated = run_experiment({"kind": "rotated_digits", "seed": 0, "seeds": 2, "images": images,
                              "filter_shapes": [[3, 3]], "filters": 1, "angles_per_image": 3},
                             progress=lambda *a: None, should_stop=lambda: False)
    assert rotated["samples"]["train"] == 36 * 3


def test_transition_is_the_half_plateau_crossing_of_a_monotone_fit() -> None:
    from cnnrelax.experiments.phase_transition import monotone_fit, transitions

    assert monotone_fit([0.1, 0.5, 0.3, 0.6, 0.4], [1, 1, 1, 1, 1]) == pytest.approx([0.1, 0.4, 0.4, 0.5, 0.5])
    spec = parse_spec_of(PhaseTransitionSpec, {"kind": "phase_transition", "methods": ["relaxation"], "d": [10],
                                               "n": [10, 20, 40, 80, 160]})
    rates = [0.0, 0.4, 0.2, 0.5, 0.45]  # a noisy dip at n=40; fit 0, 0.3, 0.3, 0.475, 0.475: crossing at n=20
    cells = [{"method": "relaxation", "d": 10, "n": n, "success_rate": r, "trials_run": 20}
             for n, r in zip(spec.n, rates, strict=True)]
    (row,) = transitions(spec, cells)["relaxation"]
    assert row["n"] == 20 and row["plateau"] == pytest.approx(0.475)
    cells[1]["success_rate"] = 0.0  # now the fit is 0, 0, 0.2, 0.475, 0.475: the crossing moves to n=80
    assert transitions(spec, cells)["relaxation"][0]["n"] == 80


# -------------------------------------------------------------------------------------------------
# rotated digits: scale-free features, paired statistics, real image sizes
# -------------------------------------------------------------------------------------------------

SMALL_DIGITS = {**DIGITS, "seeds": 5, "seed": 0, "max_images": 150}


def test_rescaling_the_learned_filters_leaves_every_rmse_unchanged() -> None:
    """ReLU is positively homogeneous: only a filter's direction matters, so c * w gives the same RMSEs for
    any c > 0, from 1e-300 (the old code's shrunken filters, much smaller) to 1e6."""
    spec = parse_spec_of(RotatedDigitsSpec, SMALL_DIGITS)
    data = prepare_data(spec, 0)
    learned, statuses, _, _ = learn_filters(spec, data, 0, [3, 3])
    assert learned, statuses
    reference = filter_test_rmses(data, [3, 3], learned, spec.penalties)
    for factor in (1e-300, 1e-8, 0.002, 7.0, 1e6):
        scaled = filter_test_rmses(data, [3, 3], [factor * w for w in learned], spec.penalties)
        for key in ("one", "all"):
            assert scaled[key]["rmse"] == pytest.approx(reference[key]["rmse"], rel=1e-9, abs=0)
            assert scaled[key]["alpha"] == reference[key]["alpha"]
    cell = score_filters(spec, data, 0, [3, 3], [1e-6 * w for w in learned])
    again = score_filters(spec, data, 0, [3, 3], learned)
    for key in ("rmse_one_filter", "rmse_all_filters", "rmse_random_one_filter", "rmse_random_all_filters"):
        assert cell[key] == pytest.approx(again[key], rel=1e-9, abs=0)


def test_filter_helps_is_false_when_the_learned_filter_is_zero() -> None:
    """The learned filters replaced by zero: the RMSE is the raw one on every seed, the paired interval is
    [0, 0], and neither filter_helps nor filter_beats_random can be true."""
    spec = parse_spec_of(RotatedDigitsSpec, SMALL_DIGITS)
    cells = []
    for seed in range(spec.seeds):
        cells.append(digits_cell(spec, {"seed": seed, "part": "raw"}))
        for shape in spec.shapes:
            data = prepare_data(spec, seed)
            cells.append(score_filters(spec, data, seed, shape, [np.zeros(9), np.zeros(9)]))
    result = assemble(spec, cells, 0.0)
    assert result["rmse_filter"] == result["rmse_raw"]
    assert result["learned_minus_raw"]["interval"] == [0.0, 0.0]
    assert result["filter_helps"] is False and result["filter_beats_random"] is False
    assert result["variants"][0]["n_filters"] == [0] * spec.seeds


def test_paired_difference_interval_on_known_inputs() -> None:
    """Student-t intervals computed by hand: t(0.975, 4) = 2.776445, t(0.975, 2) = 4.302653."""
    up = paired_difference([2.0, 4.0, 6.0, 8.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.0])  # differences 1..5
    half = 2.776445 * np.sqrt(2.5) / np.sqrt(5)
    assert up["mean"] == pytest.approx(3.0) and up["std"] == pytest.approx(np.sqrt(2.5))
    assert up["interval"] == pytest.approx([3.0 - half, 3.0 + half], abs=1e-5)
    assert up["verdict"] == "higher" and up["seeds"] == 5 and up["confidence"] == 0.95
    down = paired_difference([9.5, 9.6, 9.4], [10.0, 10.0, 10.0])  # differences -0.5, -0.4, -0.6
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert down["interval"] == pytest.approx([-0.5 - half, -0.5 + half], abs=1e-6)
    assert down["verdict"] == "lower"
    both = paired_difference([1.0, 2.0, 3.0], [2.0, 1.0, 3.5])  # differences -1, 1, -0.5: includes 0
    assert both["interval"][0] < 0 < both["interval"][1] and both["verdict"] == "inconclusive"
    assert paired_difference([1.0, 1.0], [1.0, 1.0])["interval"] == [0.0, 0.0]
    single = paired_difference([15.0], [15.1])  # one seed: a 0.1-degree "win" is no verdict
    assert single["interval"] is None and single["verdict"] == "inconclusive"


def test_relu_features_equal_the_problems_preactivations() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((7, 6 * 5))
    filters = [rng.standard_normal(6), rng.standard_normal(6)]
    features = relu_features(X, [6, 5], [2, 3], filters)
    from cnnrelax import make_problem
    from cnnrelax.core.problem import make_patching

    problem = make_problem(X, np.zeros(7), patching=make_patching(image_shape=[6, 5], filter_shape=[2, 3]))
    expected = np.hstack([np.maximum(problem.preactivations(w), 0.0) for w in filters])
    np.testing.assert_allclose(features, expected, rtol=1e-12, atol=1e-12)


def test_ridge_path_agrees_with_scikit_learn() -> None:
    """The validation choice of alpha and the refitted test RMSE, against sklearn's Ridge fitted alpha by alpha."""
    from sklearn.linear_model import Ridge

    spec = parse_spec_of(RotatedDigitsSpec, SMALL_DIGITS)
    data = prepare_data(spec, 1)
    splits = [data.train.X, data.validation.X, data.test.X]
    alphas = [0.01, 1.0, 100.0]
    ours = ridge_test_rmse(splits, data, alphas)
    scores = [np.sqrt(np.mean((Ridge(alpha=a).fit(data.train.X, data.train.y).predict(data.validation.X)
                               - data.validation.y) ** 2)) for a in alphas]
    assert ours["alpha"] == alphas[int(np.argmin(scores))]
    assert ours["validation_rmse"] == pytest.approx(min(scores), rel=1e-8)
    refit = Ridge(alpha=ours["alpha"]).fit(np.vstack(splits[:2]), np.concatenate([data.train.y, data.validation.y]))
    rmse = np.sqrt(np.mean((refit.predict(data.test.X) - data.test.y) ** 2))
    assert ours["rmse"] == pytest.approx(rmse, rel=1e-8)


def test_28x28_stand_in_runs_at_real_image_size() -> None:
    """A small run of the 28x28 stand-in (the full N = 5000 run is bench/bench_rotated_digits.py)."""
    images = upsampled_digits(150, seed=0)
    assert images.shape == (150, 28, 28) and images.max() <= 255.0 and images.min() >= 0.0
    spec = {"kind": "rotated_digits", "images": images, "seeds": 2, "filter_shapes": [[4, 4]], "filters": 1,
            "fit_samples": 120, "angles_per_image": 1}
    start = time.monotonic()
    result = run_experiment(spec, progress=lambda *a: None, should_stop=lambda: False)
    assert time.monotonic() - start < 120
    assert result["spec"]["image_shape"] == [28, 28] and result["spec"]["images"] == {"shape": [150, 28, 28]}
    cell = next(c for c in result["cells"] if c["part"] == "filter")
    assert cell["patches"] == 25 * 25 and set(cell["stage_time_s"]) == {"data", "relaxation", "ridge"}
    assert np.all(np.isfinite(result["rmse_raw_per_seed"]))
