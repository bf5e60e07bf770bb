"""Solve jobs over real HTTP against a live ``python -m cnnrelax.server``: submit, wait, cancel, list, idempotency."""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np

from cnnrelax import PlantedSpec, SolveOptions, planted_problem, solve

from conftest import assert_problem, wait_job

PLANTED = {"planted": {"n": 300, "d": 20, "k": 2, "seed": 4}, "trials": 3, "seed": 2}
#: A job that runs for many seconds unless stopped: a thousand small trials that never stop early.
LONG = {"planted": {"n": 400, "d": 20, "k": 2, "seed": 1}, "trials": 1000, "stop_on_certificate": False}


def submit(http: httpx.Client, body: dict, **headers: str) -> httpx.Response:
    answer = http.post("/v1/solves", json=body, headers=headers)
    assert answer.status_code in (200, 202), answer.text
    return answer


def test_submit_answers_202_with_location_and_the_result_equals_the_core(http: httpx.Client) -> None:
    answer = submit(http, PLANTED)
    assert answer.status_code == 202
    job = answer.json()
    assert answer.headers["location"] == f"/v1/solves/{job['id']}"
    assert job["status"] in ("queued", "running", "succeeded")
    done = wait_job(http, answer.headers["location"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    for key in ("w", "loss", "certificate", "recovery_error", "trials"):
        assert key in result
    assert set(result["certificate"]["cone"]) >= {"residual", "certified", "applicable"}
    for trial in result["trials"]:
        assert set(trial) >= {"index", "r", "w", "loss", "objective", "recovered", "predicted", "solver"}
        assert set(trial["solver"]) >= {"status", "iterations", "solve_time_s"}
    planted = planted_problem(PlantedSpec(n=300, d=20, k=2, seed=4))
    reference = solve(planted.problem, SolveOptions(trials=3, seed=2), w_star=planted.w_star)
    np.testing.assert_allclose(result["w"], reference.w, rtol=1e-9, atol=1e-12)
    assert len(result["trials"]) == len(reference.trials)
    assert result["recovery_error"] < 1e-6
    assert done["progress"] == {"done": len(reference.trials), "total": 3}  # trials run (an early stop: fewer)


def test_inline_data_solve_matches_the_core(http: httpx.Client) -> None:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((120, 6))
    w = rng.standard_normal(3)
    y = np.maximum(X[:, :3] @ w, 0) + np.maximum(X[:, 3:] @ w, 0)
    body = {"data": {"X": X.tolist(), "y": y.tolist()}, "k": 2, "trials": 4, "output_weights": [1.0, 1.0]}
    done = wait_job(http, submit(http, body).headers["location"])
    assert done["status"] == "succeeded"
    from cnnrelax import make_problem

    reference = solve(make_problem(X, y, k=2), SolveOptions(trials=4))
    np.testing.assert_allclose(done["result"]["w"], reference.w, rtol=1e-9, atol=1e-12)
    assert done["result"]["recovery_error"] is None
    assert done["result"]["trials"][0]["recovered"] is None


def test_wait_is_bounded_and_returns_early_when_the_job_ends(http: httpx.Client) -> None:
    job = submit(http, LONG).json()
    try:
        start = time.monotonic()
        held = http.get(f"/v1/solves/{job['id']}", params={"wait": 0.5}).json()
        assert 0.4 <= time.monotonic() - start < 5
        assert held["status"] in ("queued", "running")
    finally:
        http.delete(f"/v1/solves/{job['id']}")
    quick = submit(http, {**PLANTED, "seed": 11}).json()
    start = time.monotonic()
    done = http.get(f"/v1/solves/{quick['id']}", params={"wait": 20}).json()
    assert done["status"] == "succeeded"
    assert time.monotonic() - start < 10
    assert_problem(http.get(f"/v1/solves/{quick['id']}", params={"wait": 3600}), 422)


def test_cancel_a_running_job_stops_it_promptly(http: httpx.Client) -> None:
    job = submit(http, LONG).json()
    deadline = time.monotonic() + 30
    while http.get(f"/v1/solves/{job['id']}").json()["status"] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    start = time.monotonic()
    answer = http.delete(f"/v1/solves/{job['id']}")
    assert answer.status_code in (200, 202)
    assert answer.json()["cancel_requested"] is True
    done = wait_job(http, f"/v1/solves/{job['id']}", timeout=20)
    assert done["status"] == "cancelled", done
    assert time.monotonic() - start < 3
    assert done["error"]
    # DELETE of the finished job removes it
    again = http.delete(f"/v1/solves/{job['id']}")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert_problem(http.get(f"/v1/solves/{job['id']}"), 404)


def test_cancel_a_queued_job_is_immediate(start_server) -> None:
    server = start_server(workers=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        blocker = submit(http, LONG).json()
        deadline = time.monotonic() + 30
        while http.get(f"/v1/solves/{blocker['id']}").json()["status"] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        queued = submit(http, PLANTED).json()
        answer = http.delete(f"/v1/solves/{queued['id']}")
        assert answer.status_code == 200
        assert answer.json()["status"] == "cancelled"
        http.delete(f"/v1/solves/{blocker['id']}")
        assert wait_job(http, f"/v1/solves/{blocker['id']}")["status"] == "cancelled"
        assert_problem(http.get(f"/v1/solves/{queued['id']}"), 404)  # a queued job DELETEd is removed


def test_list_filters_by_status_and_pages_with_a_cursor(http: httpx.Client) -> None:
    ids = [submit(http, {**PLANTED, "trials": 1, "seed": 100 + i}).json()["id"] for i in range(5)]
    for job_id in ids:
        wait_job(http, f"/v1/solves/{job_id}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "status": "succeeded"} | ({"cursor": cursor} if cursor else {})
        page = http.get("/v1/solves", params=params).json()
        assert len(page["items"]) <= 2
        assert all(item["status"] == "succeeded" for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)
    assert seen.index(ids[-1]) < seen.index(ids[0])  # newest first
    cancelled = http.get("/v1/solves", params={"status": "cancelled", "limit": 500}).json()["items"]
    assert not set(ids) & {item["id"] for item in cancelled}
    assert_problem(http.get("/v1/solves", params={"cursor": "not-a-cursor"}), 422)
    assert_problem(http.get("/v1/solves", params={"status": "sleeping"}), 422)


def test_idempotency_key_same_body_same_job_other_body_409(http: httpx.Client) -> None:
    key = uuid.uuid4().hex
    first = submit(http, PLANTED, **{"Idempotency-Key": key})
    second = submit(http, PLANTED, **{"Idempotency-Key": key})
    assert first.status_code == 202 and second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["location"] == first.headers["location"]
    body = assert_problem(http.post("/v1/solves", json={**PLANTED, "seed": 3}, headers={"Idempotency-Key": key}), 409)
    assert "Idempotency-Key" in body["detail"]
    other = submit(http, PLANTED, **{"Idempotency-Key": uuid.uuid4().hex})
    assert other.json()["id"] != first.json()["id"]


def test_unbounded_lp_is_a_result_not_an_error(http: httpx.Client) -> None:
    done = wait_job(http, submit(http, {"planted": {"n": 12, "d": 10, "k": 1, "seed": 0}, "trials": 2,
                                        "stop_on_certificate": False}).headers["location"])
    assert done["status"] == "succeeded"
    statuses = {trial["solver"]["status"] for trial in done["result"]["trials"]}
    assert "unbounded" in statuses or done["result"]["status"] != "solved"


def test_time_limit_fails_the_job_with_that_reason(http: httpx.Client) -> None:
    done = wait_job(http, submit(http, {**LONG, "time_limit_s": 0.5}).headers["location"], timeout=30)
    assert done["status"] == "failed"
    assert "time limit" in done["error"]


def test_logs_are_json_lines_with_the_job_id(http: httpx.Client, live_server) -> None:
    import json

    job_id = submit(http, {**PLANTED, "seed": 21}).json()["id"]
    wait_job(http, f"/v1/solves/{job_id}")
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in live_server.log_tail(10**7).splitlines() if line.startswith("{")]
        events = {entry["message"] for entry in lines if entry.get("job_id") == job_id}
        if {"job queued", "job started", "job finished"} <= events or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {"job queued", "job started", "job finished"} <= events
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
