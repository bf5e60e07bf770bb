"""The experiments package end to end: grid shape, figures, progress, resume, cancellation, digits."""

from __future__ import annotations

import functools
import io
import pickle
import time

import numpy as np
import pytest
from PIL import Image

from cnnrelax import InvalidParameterError, PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.experiments import (
    ExperimentCancelled, figure_size_px, list_cells, render_figure, run_cell, run_experiment, validate_experiment,
)
from cnnrelax.experiments.common import derived_seed
from cnnrelax.experiments.rotated_digits import prepare_data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = {"kind": "phase_transition", "k": 1, "d": [6, 10], "n": [30, 200], "repetitions": 3,
         "methods": ["relaxation", "gradient_descent", "pseudo_inverse"], "seed": 1}
DIGITS = {"kind": "rotated_digits", "seed": 3, "max_images": 240, "angles_per_image": 2,
          "filter_shapes": [[3, 3]], "filters": 2}


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


def test_validate_fills_defaults_and_is_idempotent() -> None:
    spec = validate_experiment({"kind": "phase_transition", "k": 2})
    assert spec["repetitions"] == 20 and spec["methods"] == ["relaxation", "gradient_descent"]
    assert len(spec["d"]) == 8 and len(spec["n"]) == 8 and all(d % 2 == 0 for d in spec["d"])
    assert validate_experiment(spec) == spec
    digits = validate_experiment({"kind": "rotated_digits"})
    assert digits["seed"] == 0 and digits["image_shape"] == [8, 8]
    assert validate_experiment(digits) == digits


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
    ({"kind": "rotated_digits", "images": np.zeros((5, 4))}, "images"),
    ({"kind": "rotated_digits", "images_path": "/nonexistent/file.npz"}, "images_path"),
])
def test_validate_names_the_parameter(spec: dict, parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        validate_experiment(spec)
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
    """Recount one cell's successes and errors with ``cnnrelax.solve`` on the same seeded problems."""
    spec = validate_experiment({**SMALL, "methods": ["relaxation"], "trials": 2})
    cell = run_cell(spec, {"method": "relaxation", "d": 10, "n": 200})
    successes, errors = 0, []
    for rep in range(spec["repetitions"]):
        seed = derived_seed(spec["seed"], 1, 10, 200, rep)
        pp = planted_problem(PlantedSpec(n=200, d=10, k=1, seed=seed))
        res = solve(pp.problem, SolveOptions(trials=2, seed=seed, stop_on_certificate=False, polish=False),
                    w_star=pp.w_star)
        successes += sum(bool(t.recovered) for t in res.trials)
        errors.append(res.recovery_error)
    assert cell["successes"] == successes
    assert cell["success_rate"] == successes / (2 * spec["repetitions"])
    assert cell["min_error"] == pytest.approx(min(errors), abs=1e-9)


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
    spec = validate_experiment(SMALL)
    runner = pickle.loads(pickle.dumps(functools.partial(run_cell, spec)))
    cell = list_cells(spec)[-1]
    assert _without_times([runner(cell)]) == _without_times([run_cell(spec, cell)])


@pytest.fixture(scope="module")
def digits_run() -> dict:
    return run_experiment(DIGITS, progress=lambda *a: None, should_stop=lambda: False)


def test_digits_subset_gives_finite_rmses_reproducible_by_seed(digits_run: dict) -> None:
    result = digits_run
    assert np.isfinite(result["rmse_raw"]) and np.isfinite(result["rmse_filter"])
    assert 0 < result["rmse_raw"] < 90 and result["seed"] == 3
    assert np.asarray(result["filter"]).shape == (3, 3)
    again = run_experiment(DIGITS, progress=lambda *a: None, should_stop=lambda: False)
    assert again["rmse_raw"] == result["rmse_raw"] and again["rmse_filter"] == result["rmse_filter"]
    other = run_experiment({**DIGITS, "seed": 4}, progress=lambda *a: None, should_stop=lambda: False)
    assert other["rmse_raw"] != result["rmse_raw"]
    variant = result["variants"][0]
    assert np.isfinite(variant["rmse_all_filters"]) and np.isfinite(variant["rmse_random_all_filters"])


def test_digits_split_is_by_image_and_angles_are_in_range() -> None:
    data = prepare_data(validate_experiment(DIGITS))
    train, val, test = (set(s.image.tolist()) for s in (data.train, data.validation, data.test))
    assert not (train & test) and not (train & val) and not (val & test)
    assert len(train | val | test) == 240
    assert len(data.train.y) == 2 * len(train)
    assert np.all(np.abs(np.concatenate([data.train.y, data.test.y])) <= 45.0)
    np.testing.assert_allclose(data.train.X.mean(axis=0), 0.0, atol=1e-12)


def test_digits_figure_is_a_png_of_the_stated_size(digits_run: dict) -> None:
    assert _png_size(render_figure(digits_run)) == figure_size_px(digits_run) == (1200, 500)


def test_user_image_sets_from_npz_and_from_arrays(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    images = rng.random((60, 6, 6))
    angles = rng.uniform(-30, 30, size=60)
    path = tmp_path / "images.npz"
    np.savez(path, images=images, angles=angles)
    spec = {"kind": "rotated_digits", "seed": 0, "images_path": str(path), "filter_shapes": [[3, 3]], "filters": 1}
    from_file = run_experiment(spec, progress=lambda *a: None, should_stop=lambda: False)
    from_arrays = run_experiment({**{k: v for k, v in spec.items() if k != "images_path"},
                                  "images": images, "angles": angles},
                                 progress=lambda *a: None, should_stop=lambda: False)
    assert from_file["samples"]["train"] == 36  # given angles: one sample per image, no rotation
    assert from_file["rmse_raw"] == from_arrays["rmse_raw"] and np.isfinite(from_file["rmse_raw"])
    rotated = run_experiment({"kind": "rotated_digits", "seed": 0, "images": images, "filter_shapes": [[3, 3]],
                              "filters": 1, "angles_per_image": 3},
                             progress=lambda *a: None, should_stop=lambda: False)
    assert rotated["samples"]["train"] == 36 * 3


def test_transition_is_the_half_plateau_crossing_of_a_monotone_fit() -> None:
    from cnnrelax.experiments.phase_transition import monotone_fit, transitions

    assert monotone_fit([0.1, 0.5, 0.3, 0.6, 0.4], [1, 1, 1, 1, 1]) == pytest.approx([0.1, 0.4, 0.4, 0.5, 0.5])
    spec = {"methods": ["relaxation"], "d": [10], "n": [10, 20, 40, 80, 160]}
    rates = [0.0, 0.4, 0.2, 0.5, 0.45]  # a noisy dip at n=40; fit 0, 0.3, 0.3, 0.475, 0.475: crossing at n=20
    cells = [{"method": "relaxation", "d": 10, "n": n, "success_rate": r, "trials_run": 20}
             for n, r in zip(spec["n"], rates)]
    (row,) = transitions(spec, cells)["relaxation"]
    assert row["n"] == 20 and row["plateau"] == pytest.approx(0.475)
    cells[1]["success_rate"] = 0.0  # now the fit is 0, 0, 0.2, 0.475, 0.475: the crossing moves to n=80
    assert transitions(spec, cells)["relaxation"][0]["n"] == 80
