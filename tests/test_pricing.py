"""The cost model (cnnrelax.pricing): its calibrated data, its laws, the issue's work bombs and legitimate work, and
its estimates against CPU time measured here on small jobs."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnrelax.experiments import run_experiment
from cnnrelax.experiments.specs import parse_experiment_spec
from cnnrelax.jobs import run_solve_job
from cnnrelax.pricing import COSTS_PATH, ESTIMATORS, FEATURES, estimate_cost, load_coefficients, parse_coefficients
from cnnrelax.settings import Settings
from cnnrelax.specs import SolveSpec

#: The default job time limit and per-key queued work (the settings' defaults, read once).
DEFAULTS = Settings()
#: The README's first solve.
README_SOLVE = {"planted": {"n": 500, "d": 20, "k": 2, "seed": 0, "noise_std": 0.0}, "trials": 8, "seed": 0}
#: Issue 16's work bombs: a 187-byte phase transition and a 117-byte planted solve.
BOMB_PHASE = {"kind": "phase_transition", "k": 1, "d": [2], "n": [8], "repetitions": 10000, "trials": 1000}
BOMB_SOLVE = {"planted": {"n": 1_000_000, "d": 20}, "trials": 1000, "coverage_samples": 10000}
#: The README's paper grid (the default d and n, both methods, repetitions 100): one job per k.
PAPER_GRID = [{"kind": "phase_transition", "k": k, "repetitions": 100} for k in (1, 2, 5)]
#: Stated accuracy on small jobs that run every trial: measured CPU / estimate within [LOW, HIGH].
LOW, HIGH = 1 / 15, 3.0


def solve_estimate(members: dict[str, Any]) -> float:
    spec = SolveSpec.model_validate(members)
    return estimate_cost(spec, spec.size(None)).cpu_s


def test_the_coefficients_are_data_measured_here_and_read_back() -> None:
    data = json.loads(COSTS_PATH.read_text())
    assert data["date"] and data["machine"]["cpus"] >= 1 and "calibrate_costs.py" in data["command"]
    coefficients = load_coefficients()
    assert set(coefficients.costs) == set(FEATURES)
    assert coefficients.safety_factor >= 1
    for unit, cost in coefficients.costs.items():
        assert set(cost.coef) == set(FEATURES[unit]) and all(v >= 0 for v in cost.coef.values())
    assert set(ESTIMATORS) == {"solve", "phase_transition", "rotated_digits"}


def test_a_file_that_disagrees_with_the_code_is_refused() -> None:
    data = json.loads(COSTS_PATH.read_text())
    renamed = copy.deepcopy(data)
    renamed["costs"]["relaxation_trial"]["coef"]["E*m^2"] = renamed["costs"]["relaxation_trial"]["coef"].pop("E*m")
    with pytest.raises(ValueError, match="relaxation_trial"):
        parse_coefficients(renamed)
    negative = copy.deepcopy(data)
    negative["costs"]["ridge"]["coef"]["1"] = -1.0
    with pytest.raises(ValueError, match="negative"):
        parse_coefficients(negative)


def test_the_work_bombs_are_priced_past_the_time_limit_and_the_readme_solve_well_within() -> None:
    limit = DEFAULTS.job_time_limit_s
    assert estimate_cost(parse_experiment_spec(BOMB_PHASE)).cpu_s > 10 * limit
    assert solve_estimate(BOMB_SOLVE) > 10 * limit
    assert solve_estimate(README_SOLVE) < 5.0
    assert estimate_cost(parse_experiment_spec({"kind": "phase_transition"})).cpu_s < limit  # the default sweep
    assert estimate_cost(parse_experiment_spec({"kind": "rotated_digits"})).cpu_s < limit


def test_the_paper_grid_fits_the_defaults_as_one_job_per_k() -> None:
    estimates = [estimate_cost(parse_experiment_spec(job)).cpu_s for job in PAPER_GRID]
    assert max(estimates) < DEFAULTS.job_time_limit_s, estimates
    assert sum(estimates) < DEFAULTS.max_queued_cpu_s_per_key, estimates


def test_mnist_sized_stored_images_fit_the_time_limit() -> None:
    spec = parse_experiment_spec({"kind": "rotated_digits", "images_dataset_id": "0" * 64})
    assert estimate_cost(spec.with_dataset((28, 28), 5000, False)).cpu_s < DEFAULTS.job_time_limit_s
    assert estimate_cost(spec.with_dataset((28, 28), 8000, False)).cpu_s < DEFAULTS.job_time_limit_s


@settings(max_examples=60, deadline=None)
@given(n=st.integers(10, 200_000), m=st.integers(1, 200), k=st.integers(1, 8), trials=st.integers(1, 999),
       coverage=st.integers(0, 9999), relaxation=st.sampled_from(["lp", "qp", "naive"]))
def test_a_solve_costs_more_with_more_of_anything(n: int, m: int, k: int, trials: int, coverage: int,
                                                  relaxation: str) -> None:
    base = {"planted": {"n": n, "d": k * m, "k": k}, "trials": trials, "coverage_samples": coverage,
            "relaxation": relaxation, "beta": 0.01 if relaxation != "lp" else 1e-4}
    cost = solve_estimate(base)
    assert cost > 0
    assert solve_estimate({**base, "trials": trials + 1}) > cost
    assert solve_estimate({**base, "coverage_samples": coverage + 1}) > cost
    assert solve_estimate({**base, "planted": {"n": 2 * n, "d": k * m, "k": k}}) > cost


@settings(max_examples=40, deadline=None)
@given(repetitions=st.integers(1, 500), trials=st.integers(1, 20), extra_n=st.integers(41, 3000))
def test_a_phase_transition_is_the_sum_of_its_cells(repetitions: int, trials: int, extra_n: int) -> None:
    one = {"kind": "phase_transition", "d": [10, 20], "repetitions": repetitions, "trials": trials}
    cost = estimate_cost(parse_experiment_spec({**one, "n": [40]})).cpu_s
    other = estimate_cost(parse_experiment_spec({**one, "n": [extra_n]})).cpu_s
    both = estimate_cost(parse_experiment_spec({**one, "n": [40, extra_n]})).cpu_s
    assert both == pytest.approx(cost + other, rel=1e-9)
    double = estimate_cost(parse_experiment_spec({**one, "n": [40], "repetitions": 2 * repetitions})).cpu_s
    assert double == pytest.approx(2 * cost, rel=1e-9)


#: Small jobs that run every trial (no early stop), measured in process against their estimate.
MEASURED_JOBS: list[tuple[str, dict[str, Any]]] = [
    ("solve lp", {"planted": {"n": 1500, "d": 30, "k": 1, "seed": 3}, "trials": 3, "stop_on_certificate": False}),
    ("solve qp", {"planted": {"n": 800, "d": 20, "k": 2, "seed": 4, "noise_std": 0.01}, "relaxation": "qp",
                  "trials": 2, "stop_on_certificate": False}),
    ("solve wide", {"planted": {"n": 12, "d": 500, "k": 1, "seed": 1}, "trials": 10, "seed": 2,
                    "stop_on_certificate": False}),  # fewer patches than m: a working set of n k cuts, not m
    ("phase transition", {"kind": "phase_transition", "k": 2, "d": [10, 20], "n": [40, 320], "repetitions": 2}),
    ("rotated digits", {"kind": "rotated_digits", "seeds": 1, "filters": 1, "filter_shapes": [[3, 3]],
                        "max_images": 400}),
]


@pytest.mark.parametrize(("label", "members"), MEASURED_JOBS, ids=[label for label, _ in MEASURED_JOBS])
def test_the_estimate_is_within_the_stated_factor_of_the_cpu_measured(label: str, members: dict[str, Any]) -> None:
    if "kind" in members:
        spec = parse_experiment_spec(members)
        estimate = estimate_cost(spec).cpu_s
        start = time.process_time()
        run_experiment(spec, progress=lambda *args: None, should_stop=lambda: False)
    else:
        solve = SolveSpec.model_validate(members)
        estimate = estimate_cost(solve, solve.size(None)).cpu_s
        run_solve_job(SolveSpec.model_validate({"planted": {"n": 40, "d": 4, "k": 2}, "trials": 1}), None, None)
        start = time.process_time()
        run_solve_job(solve, None, None)
    measured = time.process_time() - start
    assert LOW <= measured / estimate <= HIGH, f"{label}: measured {measured:.3f} s, estimated {estimate:.3f} s"
