"""The API stays responsive while both worker processes solve: /healthz answers in < 100 ms."""

from __future__ import annotations

import statistics
import time

import httpx

LONG = {"planted": {"n": 600, "d": 40, "k": 2, "seed": 1}, "trials": 1000, "stop_on_certificate": False}


def test_healthz_is_fast_while_both_cores_solve(start_server) -> None:
    server = start_server(workers=2)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ids = [http.post("/v1/solves", json={**LONG, "seed": i}).json()["id"] for i in range(2)]
        deadline = time.monotonic() + 30
        while any(http.get(f"/v1/solves/{job_id}").json()["status"] != "running" for job_id in ids):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        http.get("/healthz")  # the connection is open
        latencies = []
        for _ in range(40):
            start = time.perf_counter()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.03)
        assert all(http.get(f"/v1/solves/{job_id}").json()["status"] == "running" for job_id in ids)
        ready = http.get("/readyz").json()
        assert ready["running"] == 2
        for job_id in ids:
            http.delete(f"/v1/solves/{job_id}")
    assert max(latencies) < 0.100, f"healthz took up to {max(latencies) * 1000:.1f} ms " \
                                   f"(median {statistics.median(latencies) * 1000:.1f} ms)"
