"""The phase-transition experiment per activation (issue 12 items 1 and 5): the spec, the planted problems
drawn with the activation, recovery up to sign for the absolute value, and the same over HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from cnnrelax import InvalidParameterError, PlantedSpec, planted_problem
from cnnrelax.core.activations import ACTIVATIONS
from cnnrelax.core.baselines import gradient_descent
from cnnrelax.experiments import parse_experiment_spec, run_cell, run_experiment
from cnnrelax.experiments.common import derived_seed

from conftest import assert_problem, wait_job

GD = {"kind": "phase_transition", "k": 2, "d": [8], "n": [120], "repetitions": 3, "methods": ["gradient_descent"],
      "trials": 2, "seed": 3}


def test_activation_defaults_to_relu_and_is_normalised() -> None:
    spec = parse_experiment_spec({"kind": "phase_transition"})
    assert spec.activation == "relu" and spec.negative_slope == 0.01
    leaky = parse_experiment_spec({"kind": "phase_transition", "activation": "leaky_relu", "negative_slope": 0.1})
    assert leaky.activation == "leaky_relu" and leaky.negative_slope == 0.1
    assert parse_experiment_spec(leaky.model_dump()) == leaky


@pytest.mark.parametrize(("extra", "parameter"), [
    ({"activation": "tanh"}, "activation"),
    ({"activation": "leaky_relu", "negative_slope": 1.5}, "negative_slope"),
    ({"activation": "leaky_relu", "negative_slope": 0}, "negative_slope"),
    ({"activation": "absolute", "k": 1, "d": [10], "methods": ["pseudo_inverse"]}, "methods"),
])
def test_bad_activation_specs_name_the_parameter(extra: dict, parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        parse_experiment_spec({"kind": "phase_transition", **extra})
    assert info.value.parameter == parameter


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_gradient_descent_cell_counts_the_restarts_that_recover_w_star(name: str) -> None:
    """The cell's rates are recomputed here from gradient_descent on the planted problems drawn with the
    activation, errors up to sign for the absolute value."""
    spec = parse_experiment_spec({**GD, "activation": name, "negative_slope": 0.1})
    cell = run_cell(spec, {"method": "gradient_descent", "d": 8, "n": 120})
    raw = polished = 0
    for rep in range(spec.repetitions):
        seed = derived_seed(spec.seed, 2, 8, 120, rep)
        pp = planted_problem(PlantedSpec(n=120, d=8, k=2, seed=seed, activation=name, negative_slope=0.1))
        assert np.all(pp.problem.y == pp.problem.predict(pp.w_star))
        if name == "leaky_relu":
            assert (pp.problem.y < 0).any()
        result = gradient_descent(pp.problem, restarts=2, iterations=spec.gd_iterations, seed=seed,
                                  tol=spec.gd_tol, polish=True)
        for restart in result.restarts:
            for w, counter in ((restart.w, "raw"), (restart.final_w, "polished")):
                errors = [np.linalg.norm(w - pp.w_star)]
                if name == "absolute":
                    errors.append(np.linalg.norm(w + pp.w_star))
                if min(errors) <= spec.recovery_tol:
                    if counter == "raw":
                        raw += 1
                    else:
                        polished += 1
    assert cell["trials_run"] == 6
    assert cell["success_rate_unpolished"] == raw / 6
    assert cell["success_rate_polished"] == polished / 6
    assert cell["success_rate"] == polished / 6 > 0


def test_the_same_x_and_w_star_for_every_activation() -> None:
    """Paired comparisons: the seed draws X and w* alike for every activation; only the labels differ."""
    base = planted_problem(PlantedSpec(n=30, d=6, k=2, seed=9))
    for name in ACTIVATIONS:
        other = planted_problem(PlantedSpec(n=30, d=6, k=2, seed=9, activation=name))
        np.testing.assert_array_equal(other.problem.X, base.problem.X)
        np.testing.assert_array_equal(other.w_star, base.w_star)


def test_figure_title_names_the_activation() -> None:
    from cnnrelax.experiments.figures import _activation_label

    spec = parse_experiment_spec({**GD, "activation": "leaky_relu", "negative_slope": 0.1})
    assert _activation_label({"spec": spec.model_dump()}) == ", leaky_relu (slope 0.1)"
    assert _activation_label({"spec": parse_experiment_spec(GD).model_dump()}) == ""


def test_an_activation_experiment_over_http_equals_the_in_process_run(http: httpx.Client) -> None:
    spec = {"kind": "phase_transition", "k": 1, "d": [6], "n": [40], "repetitions": 2,
            "methods": ["gradient_descent", "pseudo_inverse"], "activation": "leaky_relu", "negative_slope": 0.2,
            "seed": 4}
    answer = http.post("/v1/experiments", json=spec)
    assert answer.status_code == 202, answer.text
    done = wait_job(http, answer.headers["location"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["spec"]["activation"] == "leaky_relu" and done["spec"]["negative_slope"] == 0.2
    local = run_experiment(spec, progress=lambda *a: None, should_stop=lambda: False)
    for remote, here in zip(done["result"]["cells"], local["cells"], strict=True):
        assert remote["method"] == here["method"]
        assert remote["success_rate"] == here["success_rate"] == 1.0


@pytest.mark.parametrize(("extra", "parameter"), [
    ({"activation": "tanh"}, "activation"),
    ({"activation": "leaky_relu", "negative_slope": 2}, "negative_slope"),
    ({"activation": "absolute", "methods": ["pseudo_inverse"]}, "methods"),
])
def test_bad_activation_experiments_are_422_naming_the_parameter(http: httpx.Client, extra: dict,
                                                                 parameter: str) -> None:
    body = {"kind": "phase_transition", "k": 1, "d": [6], "n": [40], "repetitions": 1, **extra}
    problem = assert_problem(http.post("/v1/experiments", json=body), 422)
    assert problem.get("parameter") == parameter, problem


@pytest.mark.parametrize(("name", "k"), [("leaky_relu", 2), ("absolute", 1), ("softplus", 1)])
def test_relaxation_cell_agrees_with_the_core_solver_for_other_activations(name: str, k: int) -> None:
    from cnnrelax.core.relaxation import RelaxationSolver
    from cnnrelax.core.trials import polish, trial_direction

    d, n = 6 * k, 60
    spec = parse_experiment_spec({"kind": "phase_transition", "k": k, "d": [d], "n": [n], "repetitions": 3,
                                "methods": ["relaxation"], "trials": 2, "seed": 1, "activation": name,
                                "negative_slope": 0.1})
    cell = run_cell(spec, {"method": "relaxation", "d": d, "n": n})
    counts = {False: 0, True: 0}
    for rep in range(3):
        seed = derived_seed(1, k, d, n, rep)
        pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed, activation=name, negative_slope=0.1))
        solver = RelaxationSolver(pp.problem, "lp")
        for t in range(2):
            sol = solver.solve(trial_direction(seed, t, pp.problem.m))
            assert sol.w is not None
            outcome = polish(pp.problem, sol.w)
            for polished, w in ((False, sol.w), (True, outcome.w if outcome.accepted else sol.w)):
                error = min(np.linalg.norm(w - s * pp.w_star) for s in ((1, -1) if name == "absolute" else (1,)))
                counts[polished] += bool(error <= spec.recovery_tol)
    assert cell["success_rate_unpolished"] == counts[False] / 6
    assert cell["success_rate_polished"] == cell["success_rate"] == counts[True] / 6
    assert counts[True] > 0


def test_the_readme_table_is_the_benchmarks_output() -> None:
    """The README's per-activation table is what bench/bench_activations.py prints from its committed JSON."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    module_spec = importlib.util.spec_from_file_location("bench_activations", root / "bench" / "bench_activations.py")
    assert module_spec is not None and module_spec.loader is not None
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)
    data = json.loads((root / "docs" / "bench_activations.json").read_text())
    table = bench.table(data["runs"], data["ratios"])
    assert table in (root / "README.md").read_text()
    assert data["repetitions"] == 20 and max(data["ratios"]) == 40


def test_the_client_runs_an_activation_experiment(live_server) -> None:  # type: ignore[no-untyped-def]
    """The README's client call, on a small grid: the keyword arguments reach the spec."""
    from cnnrelax_client import Client

    with Client(live_server.url) as client:
        experiment = client.run_experiment(kind="phase_transition", k=2, d=[8], n=[40, 80], repetitions=2,
                                           activation="leaky_relu", negative_slope=0.1, seed=2, timeout=120)
    assert experiment.result is not None
    spec = experiment.result["spec"]
    assert spec["activation"] == "leaky_relu" and spec["negative_slope"] == 0.1
    assert {cell["method"] for cell in experiment.result["cells"]} == {"relaxation", "gradient_descent"}
