"""Work you keep or throw away, over real HTTP: DELETE removes a queued or finished job (then 404) with its figure
and its inline data no other job uses, asks a running one to stop (202); a cancelled experiment keeps the cells it
finished (a partial result); booleans are not numbers in any request."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pytest
from test_api_pricing import BLOCKER, wait_running

from cnnrelax.store import dataset_digest

from conftest import ServerProcess, assert_problem, wait_job

#: Many cells of a fraction of a second each: long enough to cancel part-way.
MANY_CELLS = {"kind": "phase_transition", "k": 1, "d": [10, 20], "n": [400, 800, 1200, 1600, 2000],
              "repetitions": 8, "methods": ["relaxation"], "trials": 2, "seed": 15}
SMALL_EXPERIMENT = {"kind": "phase_transition", "k": 1, "d": [6], "n": [30, 60], "repetitions": 2,
                    "methods": ["relaxation", "pseudo_inverse"], "seed": 3}


def inline_solve(seed: int) -> tuple[dict[str, Any], str]:
    """A solve with inline data, and the id of the dataset the service makes of it."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 4))
    y = np.maximum(X @ np.array([1.0, -0.5, 0.25, 0.5]), 0.0)
    return {"data": {"X": X.tolist(), "y": y.tolist()}, "trials": 2}, dataset_digest(X, y)


def test_delete_a_finished_solve_removes_it_and_its_inline_data_once_no_job_uses_it(http: httpx.Client) -> None:
    body, dataset_id = inline_solve(1)
    first = http.post("/v1/solves", json=body)
    second = http.post("/v1/solves", json={**body, "seed": 1})
    for answer in (first, second):
        assert wait_job(http, answer.headers["location"])["status"] == "succeeded"
    assert http.get(f"/v1/datasets/{dataset_id}").status_code == 200
    deleted = http.delete(first.headers["location"])
    assert deleted.status_code == 200 and deleted.json()["status"] == "succeeded"
    assert_problem(http.get(first.headers["location"]), 404)
    assert_problem(http.delete(first.headers["location"]), 404)
    assert http.get(f"/v1/datasets/{dataset_id}").status_code == 200  # the second job still names it
    assert http.delete(second.headers["location"]).status_code == 200
    assert_problem(http.get(f"/v1/datasets/{dataset_id}"), 404)
    assert first.json()["id"] not in {job["id"] for job in http.get("/v1/solves").json()["items"]}


def test_an_uploaded_dataset_stays_when_its_solve_is_deleted(http: httpx.Client) -> None:
    body, dataset_id = inline_solve(2)
    uploaded = http.post("/v1/datasets", json=body["data"])
    assert uploaded.status_code in (200, 201) and uploaded.json()["id"] == dataset_id
    job = http.post("/v1/solves", json={"dataset_id": dataset_id, "trials": 1})
    assert wait_job(http, job.headers["location"])["status"] == "succeeded"
    assert http.delete(job.headers["location"]).status_code == 200
    assert http.get(f"/v1/datasets/{dataset_id}").status_code == 200


def test_delete_a_queued_job_removes_it_and_a_running_one_is_asked_to_stop(start_server: Any) -> None:
    server: ServerProcess = start_server(workers=1)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        running = http.post("/v1/solves", json=BLOCKER)
        wait_running(http, running.headers["location"])
        queued = http.post("/v1/solves", json={**BLOCKER, "seed": 3})
        experiment = http.post("/v1/experiments", json=SMALL_EXPERIMENT)
        for answer in (queued, experiment):
            removed = http.delete(answer.headers["location"])
            assert removed.status_code == 200 and removed.json()["status"] == "cancelled", removed.text
            assert_problem(http.get(answer.headers["location"]), 404)
        stopping = http.delete(running.headers["location"])
        assert stopping.status_code == 202 and stopping.json()["cancel_requested"] is True
        assert http.get(running.headers["location"]).status_code == 200
        assert wait_job(http, running.headers["location"], timeout=30)["status"] == "cancelled"
        assert http.delete(running.headers["location"]).status_code == 200
        assert_problem(http.get(running.headers["location"]), 404)


def test_delete_a_finished_experiment_removes_its_figure(http: httpx.Client, live_server: ServerProcess) -> None:
    answer = http.post("/v1/experiments", json=SMALL_EXPERIMENT)
    assert wait_job(http, answer.headers["location"])["status"] == "succeeded"
    assert http.get(answer.headers["location"] + "/figure.png").status_code == 200
    figure = live_server.data_dir / "figures" / f"{answer.json()['id']}.png"
    assert figure.exists()
    assert http.delete(answer.headers["location"]).status_code == 200
    assert not figure.exists()
    assert_problem(http.get(answer.headers["location"] + "/figure.png"), 404)


def test_a_cancelled_experiment_keeps_the_cells_it_finished(http: httpx.Client) -> None:
    answer = http.post("/v1/experiments", json=MANY_CELLS)
    location = answer.headers["location"]
    deadline = time.monotonic() + 90
    while http.get(location).json()["progress"]["done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert http.delete(location).status_code == 202
    done = wait_job(http, location, timeout=60)
    assert done["status"] == "cancelled"
    result = done["result"]
    assert result is not None and result["partial"] is True
    assert result["cells_total"] == 10 and 2 <= len(result["cells"]) < 10
    for cell in result["cells"]:
        assert cell["repetitions"] == 8 and cell["trials_run"] == 16
    assert_problem(http.get(location + "/figure.png"), 409)
    assert http.delete(location).status_code == 200
    assert_problem(http.get(location), 404)


@pytest.mark.parametrize(("path", "body", "parameter"), [
    ("/v1/experiments", {"kind": "phase_transition", "seed": False}, "seed"),
    ("/v1/experiments", {"kind": "phase_transition", "n": [40, True]}, "n"),
    ("/v1/experiments", {"kind": "rotated_digits", "filters": True}, "filters"),
    ("/v1/experiments", {"kind": "rotated_digits", "alphas": [1.0, False]}, "alphas"),
    ("/v1/solves", {"planted": {"n": 100, "d": 10}, "seed": False}, "seed"),
    ("/v1/solves", {"planted": {"n": 100, "d": 10, "seed": True}}, "planted.seed"),
])
def test_booleans_are_not_numbers(http: httpx.Client, path: str, body: dict[str, Any], parameter: str) -> None:
    problem = assert_problem(http.post(path, json=body), 422)
    named = problem.get("parameter") or ".".join(problem["errors"][0]["location"].split(".")[1:])
    assert named == parameter, problem


def test_a_run_stopped_hard_shows_the_cells_its_progress_recorded(tmp_path: Any) -> None:
    """No result was written (the worker was killed past its grace period): the view assembles the recorded cells."""
    from cnnrelax.api.views import experiment_view
    from cnnrelax.experiments import list_cells, parse_experiment_spec, run_cell
    from cnnrelax.store import Store

    spec = parse_experiment_spec(SMALL_EXPERIMENT)
    cells = [run_cell(spec, cell) for cell in list_cells(spec)[:2]]
    store = Store(tmp_path)
    job, _ = store.create_job("experiment", spec.model_dump_json(), progress_total=len(list_cells(spec)))
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == job.id
    store.set_progress(job.id, claimed.attempts, 2, 4, {"kind": spec.kind, "cells": cells})
    store.finish_job(job.id, claimed.attempts, "cancelled", error="The job was cancelled; it did not stop.")
    record = store.get_job(job.id)
    assert record is not None and record.result is None
    shown = experiment_view(record).model_dump(mode="json")
    assert shown["status"] == "cancelled" and shown["result"]["partial"] is True
    assert shown["result"]["cells_total"] == 4
    assert sorted((c["method"], c["n"]) for c in shown["result"]["cells"]) == sorted(
        (c["method"], c["n"]) for c in cells)
