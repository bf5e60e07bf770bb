"""The service on a real Dask cluster: one ``dask scheduler`` and two ``dask worker`` processes on loopback.

The service runs as ``python -m cnnrelax.server --dask-scheduler tcp://127.0.0.1:PORT`` (a subprocess,
real HTTP, real SQLite). Covered: a job runs on the cluster and equals the core's own answer; a worker
SIGKILLed in the middle of a job -> the task is rerun and the job succeeds; the scheduler down ->
``/readyz`` is 503 problem+json, a job accepted meanwhile stays queued, and runs once the scheduler
(same port) and workers are back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cnnrelax.jobs import run_solve_job
from dask_cluster import DaskCluster, free_port

pytestmark = pytest.mark.timeout(120)

SMALL_JOB = {"planted": {"n": 200, "d": 20, "k": 2, "seed": 3}, "trials": 2, "seed": 5}
#: About 3 s on one core: long enough to kill its worker while it runs.
LONG_JOB = {"planted": {"n": 5000, "d": 100, "k": 4, "seed": 1}, "trials": 30, "stop_on_certificate": False}
TERMINAL = {"succeeded", "failed", "cancelled"}


class DaskService:
    """``python -m cnnrelax.server`` against a Dask scheduler, on a free loopback port."""

    def __init__(self, data_dir: Path, scheduler: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        env = {**os.environ, "CNNRELAX_DASK_SCHEDULER": scheduler, "CNNRELAX_LOG_LEVEL": "warning"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnrelax.server", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(data_dir)],
            env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def wait_until(self, path: str, status_code: int, timeout: float) -> httpx.Response:
        """Poll ``path`` until it answers ``status_code``."""
        deadline = time.monotonic() + timeout
        last: httpx.Response | None = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                last = self.http.get(path)
                if last.status_code == status_code:
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {status_code}; last: {last and last.text}")

    def submit(self, body: dict) -> str:
        response = self.http.post("/v1/solves", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def wait_job(self, job_id: str, timeout: float) -> dict:
        """Wait (with the server's bounded ``?wait=``) until the job is terminal; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/v1/solves/{job_id}", params={"wait": 2}).json()
            if job["status"] in TERMINAL:
                return job
        raise AssertionError(f"job {job_id} did not finish in {timeout:g} s: {job}")

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A real scheduler and two workers (one process, one thread each), killed at teardown."""
    dask_cluster = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        dask_cluster.start()
        yield dask_cluster
    finally:
        dask_cluster.stop()


@pytest.fixture(scope="module")
def service(cluster: DaskCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskService]:
    """The service with ``CNNRELAX_DASK_SCHEDULER`` pointing at :func:`cluster`, ready."""
    server = DaskService(tmp_path_factory.mktemp("service"), cluster.address)
    try:
        server.wait_until("/readyz", 200, 60)
        yield server
    finally:
        server.stop()


def test_a_job_runs_on_the_cluster_and_equals_the_core(service: DaskService, cluster: DaskCluster) -> None:
    ready = service.http.get("/readyz").json()
    assert ready["checks"]["workers"] is True
    job = service.wait_job(service.submit(SMALL_JOB), 60)
    assert job["status"] == "succeeded", job
    expected = run_solve_job(SMALL_JOB, None, None)
    assert job["result"]["w"] == pytest.approx(expected["w"], rel=1e-9, abs=1e-12)
    assert job["result"]["loss"] == pytest.approx(expected["loss"], rel=1e-6, abs=1e-12)
    assert [t["index"] for t in job["result"]["trials"]] == [t["index"] for t in expected["trials"]]

    from distributed import Client

    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        # The web process is a client of this scheduler, and never a cluster of its own.
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
        clients = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients))
        assert clients >= 2  # this test's client and the service's


def test_a_worker_killed_mid_job_is_retried_and_the_job_succeeds(service: DaskService, cluster: DaskCluster) -> None:
    from distributed import Client

    job_id = service.submit(LONG_JOB)
    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        pids = client.run(os.getpid)
        deadline = time.monotonic() + 30
        victim = None
        while victim is None and time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                if any(job_id in str(key) for key in keys):
                    victim = worker
            time.sleep(0.05)
        assert victim is not None, "the job never reached a Dask worker"
        time.sleep(0.5)  # well into the solve, which takes seconds
        assert service.http.get(f"/v1/solves/{job_id}").json()["status"] == "running"
        os.kill(pids[victim], signal.SIGKILL)

        job = service.wait_job(job_id, 90)
        assert job["status"] == "succeeded", job
        assert len(job["result"]["trials"]) == LONG_JOB["trials"]
        # The nanny brought a fresh worker process back: two workers again, the killed one gone.
        client.wait_for_workers(2, timeout=30)
        assert pids[victim] not in client.run(os.getpid).values()
    service.wait_until("/readyz", 200, 30)


def test_scheduler_down_readyz_503_jobs_wait_then_run(service: DaskService, cluster: DaskCluster) -> None:
    cluster.kill_scheduler()
    not_ready = service.wait_until("/readyz", 503, 30)
    assert not_ready.headers["content-type"].startswith("application/problem+json")
    problem = not_ready.json()
    assert problem["status"] == 503
    assert f"Dask scheduler at {cluster.address} is unreachable" in problem["detail"], problem
    assert "Retry-After" in not_ready.headers
    assert service.http.get("/healthz").status_code == 200

    job_id = service.submit(SMALL_JOB)  # accepted while the cluster is down
    time.sleep(2.0)
    assert service.http.get(f"/v1/solves/{job_id}").json()["status"] == "queued"

    cluster.start()  # the same port: the service reconnects by itself
    job = service.wait_job(job_id, 60)
    assert job["status"] == "succeeded", job
    service.wait_until("/readyz", 200, 30)
