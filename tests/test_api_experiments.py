"""Experiments as jobs over HTTP: progress over cells, stored result, PNG figure, cancel, resume after a kill."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

experiments = pytest.importorskip("cnnrelax.experiments")

from conftest import assert_problem, wait_job  # noqa: E402 (after the importorskip that guards this module)

SMALL = {"kind": "phase_transition", "k": 1, "d": [6, 10], "n": [30, 200], "repetitions": 3,
         "methods": ["relaxation", "pseudo_inverse"], "seed": 1}
#: Many cells of a fraction of a second each: long enough to cancel or kill part-way (100 cells of about 20 ms: the
#: core's first working set made them 2.5x faster, and repetitions 4 -> 10 keeps the experiment as long as it was).
MANY_CELLS = {"kind": "phase_transition", "k": 1, "d": [20, 40], "n": [800, 1600, 2400, 3200, 4000],
              "repetitions": 10, "methods": ["relaxation"], "trials": 2, "seed": 5}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if not k.startswith("time")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _cells(result: dict) -> list:
    return sorted((_without_times(cell) for cell in result["cells"]), key=repr)


def test_experiment_runs_with_progress_and_its_result_equals_an_in_process_run(http: httpx.Client) -> None:
    answer = http.post("/v1/experiments", json=SMALL)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/v1/experiments/{job['id']}"
    assert job["kind"] == "phase_transition"
    assert job["progress"]["total"] == len(experiments.list_cells(experiments.parse_experiment_spec(SMALL)))
    if job["status"] != "succeeded":
        assert_problem(http.get(f"/v1/experiments/{job['id']}/figure.png"), 409)
    done = wait_job(http, answer.headers["location"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["progress"]["done"] == done["progress"]["total"] > 0
    with threadpool_limits(limits=1):  # as the workers run
        local = experiments.run_experiment(SMALL, progress=lambda *a: None, should_stop=lambda: False)
    assert _cells(done["result"]) == _cells(local)
    figure = http.get(done["figure_url"])
    assert figure.status_code == 200 and figure.headers["content-type"] == "image/png"
    assert figure.content.startswith(PNG_SIGNATURE)
    assert http.get(done["figure_url"]).content == figure.content  # cached
    listed = http.get("/v1/experiments").json()["items"]
    assert job["id"] in {item["id"] for item in listed}


def test_bad_experiment_specs_are_422(http: httpx.Client) -> None:
    for spec, parameter in [({"kind": "nope"}, "kind"), ({"kind": "phase_transition", "k": 2, "d": [5]}, "d"),
                            ({"kind": "phase_transition", "colour": 1}, "colour"),
                            ({"kind": "rotated_digits", "images_path": "/etc/passwd"}, "images_path"), ({}, "kind")]:
        problem = assert_problem(http.post("/v1/experiments", json=spec), 422)
        assert problem.get("parameter") == parameter, problem


def test_cancel_a_running_experiment(http: httpx.Client) -> None:
    job = http.post("/v1/experiments", json={**MANY_CELLS, "seed": 6}).json()
    deadline = time.monotonic() + 60
    while http.get(f"/v1/experiments/{job['id']}").json()["progress"]["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert http.delete(f"/v1/experiments/{job['id']}").status_code in (200, 202)
    done = wait_job(http, f"/v1/experiments/{job['id']}", timeout=30)
    assert done["status"] == "cancelled"
    assert done["progress"]["done"] < done["progress"]["total"]
    again = http.delete(f"/v1/experiments/{job['id']}")  # a finished experiment is removed, answered as it was
    assert again.status_code == 200 and again.json()["spec"]["kind"] == MANY_CELLS["kind"], again.text
    assert http.get(f"/v1/experiments/{job['id']}").status_code == 404


def test_a_killed_experiment_resumes_from_its_cells_and_ends_as_an_uninterrupted_one(start_server, tmp_path) -> None:
    server = start_server(workers=1, data_dir=tmp_path / "exp")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        job = http.post("/v1/experiments", json=MANY_CELLS).json()
        deadline = time.monotonic() + 90
        while (progress := http.get(f"/v1/experiments/{job['id']}").json()["progress"])["done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert progress["done"] < progress["total"], "the experiment finished before it could be interrupted"
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        restarted = http.get(f"/v1/experiments/{job['id']}").json()
        assert restarted["progress"]["done"] >= 1  # the stored partial state survives
        done = wait_job(http, f"/v1/experiments/{job['id']}", timeout=120)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    with threadpool_limits(limits=1):  # as the workers run: polishing near-tied patterns is sensitive to rounding
        local = experiments.run_experiment(MANY_CELLS, progress=lambda *a: None, should_stop=lambda: False)
    assert _cells(done["result"]) == _cells(local)


def _walk_keys(value: Any, path: str = "") -> set[str]:
    """Every member path of a JSON value (list entries as [])."""
    if isinstance(value, dict):
        return {f"{path}.{k}" for k in value} | {p for k, v in value.items() for p in _walk_keys(v, f"{path}.{k}")}
    if isinstance(value, list):
        return {p for v in value for p in _walk_keys(v, f"{path}[]")}
    return set()


def test_experiment_jobs_of_each_kind_send_only_declared_members(http: httpx.Client) -> None:
    """The typed models (extra members forbidden) accept the real answers of both kinds, and re-serialising
    through them loses no member: everything sent is declared."""
    from pydantic import TypeAdapter

    from cnnrelax.api.schemas import ExperimentOut

    rng = np.random.default_rng(0)
    digits = {"kind": "rotated_digits", "images": rng.random((40, 6, 6)).tolist(), "seeds": 2,
              "filter_shapes": [[3, 3]], "filters": 1, "fit_samples": 20}
    for spec in (SMALL, digits):
        answer = http.post("/v1/experiments", json=spec)
        assert answer.status_code == 202, answer.text
        done = wait_job(http, answer.headers["location"], timeout=180)
        assert done["status"] == "succeeded", done
        typed = TypeAdapter(ExperimentOut).validate_python(done)
        assert _walk_keys(typed.model_dump(mode="json", exclude_unset=True)) == _walk_keys(done)
    assert done["spec"]["images"] == {"shape": [40, 6, 6]} and "angles" not in done["spec"]  # no echo of arrays
    result = done["result"]
    assert result["seeds"] == [0, 1] and len(result["rmse_raw_per_seed"]) == 2
    assert result["learned_minus_raw"]["confidence"] == 0.95


@pytest.mark.parametrize(("spec", "parameter"), [
    ({"kind": "rotated_digits", "k": 2}, "k"),  # a phase-transition member on a digits request
    ({"kind": "phase_transition", "seeds": 3}, "seeds"),
    ({"kind": "rotated_digits", "seeds": 0}, "seeds"),
    ({"kind": "phase_transition", "methods": ["sgd"]}, "methods[0]"),
    ({"kind": "rotated_digits", "filter_shapes": [[3]]}, "filter_shapes[0]"),
    # checks across members (the spec's validators), named as the in-process runs name them
    ({"kind": "rotated_digits", "images": [[[0.0] * 4] * 4] * 12, "filter_shapes": [[5, 5]]}, "filter_shapes"),
    ({"kind": "rotated_digits", "images": [[[0.0] * 4] * 4] * 5}, "images"),
    ({"kind": "rotated_digits", "images": [[[0.0] * 4] * 4] * 12, "angles": [1.0]}, "angles"),
    ({"kind": "rotated_digits", "train_fraction": 0.5, "validation_fraction": 0.5}, "train_fraction"),
    ({"kind": "phase_transition", "k": 2, "d": [4], "methods": ["pseudo_inverse"]}, "methods"),
])
def test_typed_experiment_requests_name_the_member(http: httpx.Client, spec: dict, parameter: str) -> None:
    problem = assert_problem(http.post("/v1/experiments", json=spec), 422)
    assert problem.get("parameter") == parameter, problem
