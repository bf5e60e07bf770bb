"""Work priced by what it costs, over real HTTP: the estimate on every job view and in the store, the work bombs
refused at submission (422 naming the estimate, the limit and the setting), the paper's grid accepted at the
default settings, and a tenant's queued work capped (429 with Retry-After)."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import httpx
from test_pricing import BOMB_PHASE, BOMB_SOLVE, PAPER_GRID, README_SOLVE

from conftest import ServerProcess, assert_problem, database_snapshot, wait_job

#: Runs for many seconds unless stopped: it keeps the one worker busy while others queue.
BLOCKER = {"planted": {"n": 400, "d": 20, "k": 2, "seed": 1}, "trials": 1000, "stop_on_certificate": False}


def wait_running(http: httpx.Client, location: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while http.get(location).json()["status"] == "queued":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


def test_the_work_bombs_are_refused_naming_the_estimate_the_limit_and_the_setting(http: httpx.Client) -> None:
    for path, body, parameter in (("/v1/experiments", BOMB_PHASE, "repetitions"),
                                  ("/v1/solves", BOMB_SOLVE, "trials")):
        problem = assert_problem(http.post(path, json=body), 422)
        assert problem["parameter"] == parameter
        assert problem["setting"] == "CNNRELAX_JOB_TIME_LIMIT_S" and problem["limit"] == 3600
        estimate = float(re.search(r"estimated at (\d+) CPU-seconds", problem["detail"]).group(1))  # type: ignore[union-attr]
        assert estimate > 36000, problem["detail"]
        assert "CNNRELAX_JOB_TIME_LIMIT_S" in problem["detail"]
    assert len(http.get("/v1/solves").json()["items"]) == 0 or all(
        job["estimated_cpu_s"] < 3600 for job in http.get("/v1/solves").json()["items"])


def test_every_view_of_a_job_shows_its_estimate_as_stored(http: httpx.Client, live_server: ServerProcess,
                                                          tmp_path: Path) -> None:
    answer = http.post("/v1/solves", json=README_SOLVE)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    estimate = job["estimated_cpu_s"]
    assert 0 < estimate < 5
    done = wait_job(http, answer.headers["location"])
    assert done["status"] == "succeeded" and done["estimated_cpu_s"] == estimate
    listed = {item["id"]: item for item in http.get("/v1/solves").json()["items"]}
    assert listed[job["id"]]["estimated_cpu_s"] == estimate
    with contextlib.closing(database_snapshot(live_server.data_dir, tmp_path / "snapshot")) as db:  # it runs
        stored = db.execute("SELECT estimated_cpu_s FROM jobs WHERE id = ?", (job["id"],)).fetchone()
    assert stored is not None and stored[0] == estimate
    experiment = http.post("/v1/experiments", json={"kind": "phase_transition", "d": [4], "n": [20],
                                                    "repetitions": 1, "methods": ["pseudo_inverse"]})
    assert experiment.status_code == 202, experiment.text
    assert experiment.json()["estimated_cpu_s"] > 0
    assert wait_job(http, experiment.headers["location"])["estimated_cpu_s"] == experiment.json()["estimated_cpu_s"]


def test_the_paper_grid_is_accepted_at_the_default_settings(start_server: Any) -> None:
    server = start_server(workers=1)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        blocker = http.post("/v1/solves", json=BLOCKER)
        wait_running(http, blocker.headers["location"])
        accepted = []
        for body in PAPER_GRID:
            answer = http.post("/v1/experiments", json=body)
            assert answer.status_code == 202, answer.text
            assert answer.json()["estimated_cpu_s"] < 3600
            accepted.append(answer.headers["location"])
        for location in accepted:  # queued: removed at once
            assert http.delete(location).status_code == 200
            assert_problem(http.get(location), 404)
        assert http.delete(blocker.headers["location"]).status_code == 202


def test_a_tenants_queued_work_is_capped_and_another_tenant_is_not(start_server: Any) -> None:
    server = start_server(workers=1, env={"CNNRELAX_API_KEYS": "key-a,key-b",
                                          "CNNRELAX_MAX_QUEUED_CPU_S_PER_KEY": "100"})
    a = httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": "key-a"})
    b = httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": "key-b"})
    with a, b:
        blocker = b.post("/v1/solves", json=BLOCKER)
        wait_running(b, blocker.headers["location"])
        queued: list[float] = []
        for seed in range(50):
            answer = a.post("/v1/solves", json={**BLOCKER, "seed": seed})
            if answer.status_code != 202:
                break
            queued.append(answer.json()["estimated_cpu_s"])
        else:
            raise AssertionError("50 jobs were queued past a cap of 100 CPU-seconds")
        problem = assert_problem(answer, 429)
        assert problem["setting"] == "CNNRELAX_MAX_QUEUED_CPU_S_PER_KEY" and problem["limit"] == 100
        assert int(answer.headers["retry-after"]) >= 5
        assert queued and sum(queued) <= 100 < sum(queued) + queued[0]
        other = b.post("/v1/solves", json={**BLOCKER, "seed": 99})  # b's queue is empty: its own share
        assert other.status_code == 202, other.text
        for job in a.get("/v1/solves").json()["items"]:
            a.delete(f"/v1/solves/{job['id']}")
        assert a.post("/v1/solves", json={**BLOCKER, "seed": 100}).status_code == 202  # room again
        for client in (a, b):
            for job in client.get("/v1/solves").json()["items"]:
                client.delete(f"/v1/solves/{job['id']}")
