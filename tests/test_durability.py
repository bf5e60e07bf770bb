"""Durability: SIGKILL the server mid-queue, start it again on the same data dir, every job ends succeeded once,
with results identical to an uninterrupted run."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import Any

import httpx
import psutil

from conftest import database_snapshot, wait_job

#: Jobs of a few hundred milliseconds each, so that the kill lands while some run and some wait.
BODIES = [{"planted": {"n": 1500, "d": 40, "k": 2, "seed": seed}, "trials": 4, "seed": seed,
           "stop_on_certificate": False} for seed in range(8)]
TIMING_KEYS = {"solve_time_s", "time_s", "run_time_s"}


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _run_all(url: str, ids: list[str]) -> dict[str, dict]:
    with httpx.Client(base_url=url, timeout=60) as http:
        return {job_id: wait_job(http, f"/v1/solves/{job_id}", timeout=120) for job_id in ids}


def test_sigkill_mid_queue_loses_no_job_and_finishes_none_twice(start_server, tmp_path) -> None:
    server = start_server(workers=2, data_dir=tmp_path / "killed")
    workers_before = {child.pid for child in psutil.Process(server.process.pid).children(recursive=True)}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ids = [http.post("/v1/solves", json=body).json()["id"] for body in BODIES]
        deadline = time.monotonic() + 60
        while True:  # wait until the queue is part-way through
            states = [job["status"] for job in http.get("/v1/solves", params={"limit": 100}).json()["items"]]
            if "running" in states and "queued" in states:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.02)
    server.kill()
    # the orphaned worker processes notice and exit on their own
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
              for pid in workers_before):
        assert time.monotonic() < deadline, "worker processes outlived their server"
        time.sleep(0.1)
    with contextlib.closing(sqlite3.connect(server.data_dir / "cnnrelax.sqlite3")) as db:
        left = dict(db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
    assert left.get("running", 0) + left.get("queued", 0) > 0, left

    server.start()
    interrupted = _run_all(server.url, ids)
    assert all(job["status"] == "succeeded" for job in interrupted.values()), interrupted
    assert any(job["attempts"] == 2 for job in interrupted.values())  # some ran again after the restart
    with contextlib.closing(database_snapshot(server.data_dir, tmp_path / "snapshot")) as db:  # the server runs
        rows = db.execute("SELECT id, status FROM jobs").fetchall()
    assert sorted(job_id for job_id, _ in rows) == sorted(ids)

    fresh = start_server(workers=2, data_dir=tmp_path / "uninterrupted")
    with httpx.Client(base_url=fresh.url, timeout=30) as http:
        fresh_ids = [http.post("/v1/solves", json=body).json()["id"] for body in BODIES]
    uninterrupted = _run_all(fresh.url, fresh_ids)
    for job_id, fresh_id in zip(ids, fresh_ids, strict=True):
        assert _without_timings(interrupted[job_id]["result"]) == _without_timings(uninterrupted[fresh_id]["result"])
