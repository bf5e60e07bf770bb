"""Bad input is a 4xx problem+json with a sentence, and the server keeps serving; limits, auth, back-pressure."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import assert_problem, wait_job

GOOD = {"planted": {"n": 100, "d": 10, "k": 2, "seed": 0}, "trials": 1}
LONG = {"planted": {"n": 400, "d": 20, "k": 2, "seed": 1}, "trials": 1000, "stop_on_certificate": False}

BAD_BODIES = [
    pytest.param({"data": {"X": [[1.0, 2.0], [3.0]], "y": [1.0, 2.0]}}, "X", id="ragged-rows"),
    pytest.param({"data": {"X": [[1.0, 2.0], [3.0, 4.0]], "y": [1.0]}}, "y", id="label-count"),
    pytest.param({"data": {"X": [1.0, 2.0], "y": [1.0, 2.0]}}, "data", id="X-not-a-matrix"),
    pytest.param({"data": {"X": [[1.0, 2.0, 3.0]], "y": [1.0]}, "k": 2}, "k", id="d-not-divisible-by-k"),
    pytest.param({"planted": {"n": 50, "d": 9, "k": 2}}, "k", id="planted-d-not-divisible"),
    pytest.param({"data": {"X": [[1.0, 2.0], [3.0, 4.0]], "y": [1.0, 2.0]}, "k": 2, "output_weights": [1.0, -0.5]},
                 "output_weights", id="negative-output-weight"),
    pytest.param({"data": {"X": [[1.0, 2.0]], "y": [1.0]}, "planted": {"n": 10, "d": 2}}, None, id="two-sources"),
    pytest.param({"trials": 2}, None, id="no-source"),
    pytest.param({**GOOD, "trials": 0}, "trials", id="zero-trials"),
    pytest.param({**GOOD, "relaxation": "sdp"}, "relaxation", id="unknown-relaxation"),
    pytest.param({**GOOD, "trails": 3}, "trails", id="unknown-member"),
    pytest.param({**GOOD, "relaxation": "qp", "beta": 0}, "beta", id="qp-needs-beta"),
    pytest.param({"dataset_id": "../../etc/passwd"}, "dataset_id", id="bad-dataset-id"),
    pytest.param({**GOOD, "trials": 10**6}, "trials", id="too-many-trials"),
    pytest.param({"planted": {"n": 10**6, "d": 1000}}, "planted", id="matrix-too-large"),
    pytest.param({"data": {"X": [[1.0, 2.0]], "y": [-1.0]}}, "y", id="negative-label-lp"),
    pytest.param([1, 2, 3], None, id="not-an-object"),
]


@pytest.mark.parametrize(("body", "parameter"), BAD_BODIES)
def test_bad_solve_requests_are_422_naming_the_parameter(http: httpx.Client, body: object,
                                                         parameter: str | None) -> None:
    problem = assert_problem(http.post("/v1/solves", json=body), 422)
    if parameter is not None:
        assert problem.get("parameter", "").split(".")[-1] == parameter or parameter in problem["detail"], problem
    assert http.get("/healthz").status_code == 200


def test_nan_in_json_is_rejected(http: httpx.Client) -> None:
    raw = b'{"data": {"X": [[1.0, NaN], [2.0, 3.0]], "y": [1.0, 2.0]}}'
    problem = assert_problem(http.post("/v1/solves", content=raw, headers={"content-type": "application/json"}), 422)
    assert "X" in problem["detail"]
    raw = b'{"planted": {"n": 10, "d": 2}, "beta": Infinity}'
    assert_problem(http.post("/v1/solves", content=raw, headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"planted": {"n": 10,}}', b"\xff\xfe"])
def test_malformed_json_is_400(http: httpx.Client, raw: bytes) -> None:
    problem = assert_problem(http.post("/v1/solves", content=raw, headers={"content-type": "application/json"}), 400)
    assert "JSON" in problem["detail"]
    assert http.get("/healthz").status_code == 200


def test_unknown_ids_routes_and_methods(http: httpx.Client) -> None:
    assert "no solve job" in assert_problem(http.get("/v1/solves/doesnotexist"), 404)["detail"].lower()
    assert_problem(http.delete("/v1/solves/doesnotexist"), 404)
    assert_problem(http.get("/v1/experiments/doesnotexist"), 404)
    assert_problem(http.get("/v1/experiments/doesnotexist/figure.png"), 404)
    assert_problem(http.get(f"/v1/datasets/{'a' * 64}"), 404)
    assert_problem(http.get("/v1/nothing-here"), 404)
    problem = assert_problem(http.put("/v1/solves"), 405)
    assert "PUT" in problem["detail"]
    job_id = http.post("/v1/solves", json=GOOD).json()["id"]
    assert_problem(http.get(f"/v1/experiments/{job_id}"), 404)  # a solve is not an experiment


def test_huge_bodies_are_413_and_the_server_keeps_serving(start_server) -> None:
    server = start_server(env={"CNNRELAX_MAX_BODY_BYTES": "100000"}, workers=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        big = {"data": {"X": [[0.5] * 50] * 1000, "y": [1.0] * 1000}}
        problem = assert_problem(http.post("/v1/solves", json=big), 413)
        assert "100000" in problem["detail"]

        def chunks():  # no Content-Length: the limit applies while the body streams in
            yield b'{"data": {"X": ['
            for _ in range(2000):
                yield b"[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],"
            yield b"[1.0]], \"y\": [1.0]}}"

        assert_problem(http.post("/v1/solves", content=chunks(), headers={"content-type": "application/json"}), 413)
        assert_problem(http.post("/v1/datasets", content=b"\x93NUMPY" + b"0" * 200_000,
                                 headers={"content-type": "application/x-npy"}), 413)
        assert http.get("/healthz").status_code == 200
        assert http.post("/v1/solves", json=GOOD).status_code == 202


def test_full_queue_answers_429_with_retry_after_and_drops_nothing(start_server) -> None:
    server = start_server(env={"CNNRELAX_MAX_QUEUE_DEPTH": "2"}, workers=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        running = http.post("/v1/solves", json=LONG).json()
        deadline = time.monotonic() + 30
        while http.get(f"/v1/solves/{running['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        accepted = [http.post("/v1/solves", json={**GOOD, "seed": i}) for i in range(2)]
        assert all(a.status_code == 202 for a in accepted)
        refused = http.post("/v1/solves", json={**GOOD, "seed": 9})
        problem = assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue" in problem["detail"].lower()
        assert http.get("/metrics").text.count("cnnrelax_submissions_rejected_total 1.0") == 1
        http.delete(f"/v1/solves/{running['id']}")
        for answer in accepted:
            assert wait_job(http, answer.headers["location"])["status"] == "succeeded"


def test_api_keys_guard_every_route_but_health(start_server) -> None:
    server = start_server(env={"CNNRELAX_API_KEYS": "alpha, beta"}, workers=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        assert_problem(http.post("/v1/solves", json=GOOD), 401)
        assert_problem(http.get("/v1/solves"), 401)
        assert_problem(http.get("/metrics"), 401)
        assert_problem(http.get("/v1/solves", headers={"X-API-Key": "gamma"}), 401)
        answer = http.post("/v1/solves", json=GOOD, headers={"X-API-Key": "beta"})
        assert answer.status_code == 202
        assert http.get("/v1/solves", headers={"X-API-Key": "alpha"}).status_code == 200
        assert http.get("/metrics", headers={"X-API-Key": "alpha"}).status_code == 200


def test_metrics_report_jobs_by_state_queue_depth_and_durations(http: httpx.Client) -> None:
    wait_job(http, http.post("/v1/solves", json={**GOOD, "seed": 77}).headers["location"])
    text = http.get("/metrics").text
    assert 'cnnrelax_jobs{kind="solve",state="succeeded"}' in text
    assert "cnnrelax_queue_depth" in text
    assert 'cnnrelax_job_run_seconds_count{kind="solve",status="succeeded"}' in text
