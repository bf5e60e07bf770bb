"""The service on a real Dask cluster: one ``dask scheduler`` and two ``dask worker`` processes on loopback.

The service runs as ``python -m cnnrelax.server --dask-scheduler tcp://127.0.0.1:PORT`` (a subprocess,
real HTTP, real SQLite). The workers cannot open anything under the API's data dir (an audit hook,
:mod:`dask_deny_paths`) and run in their own directories without the service's settings: everything
below works without the API's filesystem on the workers. Covered: a job runs on the cluster and equals
the core's own answer; a job on an uploaded dataset; cancelling a running solve (the stop Event); an
experiment's progress (the progress Variable) and its cancellation; the time limit; a worker SIGKILLed in the
middle of a job -> the task is rerun and the job succeeds; the scheduler down -> ``/readyz`` is 503 problem+json, a
job accepted meanwhile stays queued, and runs once the scheduler (same port) and workers are back.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from cnnrelax.jobs import run_solve_job
from cnnrelax.specs import SolveSpec

from dask_cluster import SMALL_JOB, DaskCluster, assert_equals_the_core, free_port

pytestmark = pytest.mark.timeout(120)

#: About 2 s on one core: long enough to kill its worker while it runs ((5000, 100, 4) became a 0.3 s job once the
#: core's first working set ended most trials in one round).
LONG_JOB = {"planted": {"n": 20000, "d": 200, "k": 4, "seed": 1}, "trials": 30, "stop_on_certificate": False}
TERMINAL = {"succeeded", "failed", "cancelled"}
#: An experiment of many cells of a fraction of a second each (as in test_api_experiments).
MANY_CELLS = {"kind": "phase_transition", "k": 1, "d": [20, 40], "n": [800, 1600, 2400, 3200, 4000],
              "repetitions": 12, "methods": ["relaxation"], "trials": 2, "seed": 5}


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
def api_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's data dir, which the Dask workers may not see."""
    return tmp_path_factory.mktemp("api") / "data"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, api_data_dir: Path) -> Iterator[DaskCluster]:
    """A real scheduler and two workers (one process, one thread each), killed at teardown; the workers
    cannot open anything under the API's data dir."""
    dask_cluster = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2, denied_paths=(api_data_dir.parent,))
    try:
        dask_cluster.start()
        yield dask_cluster
    finally:
        dask_cluster.stop()


@pytest.fixture(scope="module")
def service(cluster: DaskCluster, api_data_dir: Path) -> Iterator[DaskService]:
    """The service with ``CNNRELAX_DASK_SCHEDULER`` pointing at :func:`cluster`, ready."""
    api_data_dir.mkdir(parents=True, exist_ok=True)
    server = DaskService(api_data_dir, cluster.address)
    try:
        server.wait_until("/readyz", 200, 60)
        yield server
    finally:
        server.stop()


def test_a_job_runs_on_the_cluster_and_equals_the_core(service: DaskService, cluster: DaskCluster) -> None:
    ready = service.http.get("/readyz").json()
    assert ready["checks"]["workers"] is True
    assert_equals_the_core(service.wait_job(service.submit(SMALL_JOB), 60))

    from distributed import Client

    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        # The web process is a client of this scheduler, and never a cluster of its own.
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
        clients = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients))
        assert clients >= 2  # this test's client and the service's


def _upload_npz(service: DaskService, X: np.ndarray, y: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    response = service.http.post("/v1/datasets", content=buffer.getvalue(),
                                 headers={"content-type": "application/x-npz"})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def test_workers_without_the_api_filesystem_run_a_job_on_an_uploaded_dataset(
        service: DaskService, cluster: DaskCluster, api_data_dir: Path) -> None:
    from distributed import Client

    database = str(api_data_dir / "cnnrelax.sqlite3")
    assert Path(database).exists()

    def try_open(path: str = database) -> str:
        try:
            with open(path, "rb"):
                return "opened"
        except PermissionError:
            return "denied"

    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        # The workers really cannot see the API's data dir, nor its settings.
        assert set(client.run(try_open).values()) == {"denied"}
        assert not any(value for value in client.run(os.environ.get, "CNNRELAX_DATA_DIR").values())

    rng = np.random.default_rng(11)
    X = rng.standard_normal((300, 12))
    y = np.maximum(X @ rng.standard_normal(12), 0.0) + np.maximum(X @ rng.standard_normal(12), 0.0)
    dataset_id = _upload_npz(service, X, y)
    body = {"dataset_id": dataset_id, "k": 2, "trials": 2, "seed": 4}
    job = service.wait_job(service.submit(body), 60)
    assert job["status"] == "succeeded", job
    expected = run_solve_job(SolveSpec.model_validate(body), (X, y), None)
    assert job["result"]["w"] == pytest.approx(expected["w"], rel=1e-9, abs=1e-12)
    assert job["result"]["loss"] == pytest.approx(expected["loss"], rel=1e-6, abs=1e-12)


def test_cancel_a_running_solve_on_the_cluster(service: DaskService) -> None:
    job_id = service.submit({**LONG_JOB, "seed": 21})
    deadline = time.monotonic() + 30
    while service.http.get(f"/v1/solves/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    time.sleep(0.5)
    cancelled_at = time.monotonic()
    assert service.http.delete(f"/v1/solves/{job_id}").status_code in (200, 202)
    job = service.wait_job(job_id, 30)
    assert job["status"] == "cancelled", job
    assert time.monotonic() - cancelled_at < 2.5  # the stop Event is seen within a poll, not at the end


def test_an_experiment_on_the_cluster_reports_progress_and_cancels(service: DaskService) -> None:
    job = service.http.post("/v1/experiments", json=MANY_CELLS).json()
    path = f"/v1/experiments/{job['id']}"
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while len(set(seen) - {0}) < 2:
        assert time.monotonic() < deadline, f"no progress seen: {seen}"
        current = service.http.get(path).json()
        assert current["status"] in ("queued", "running"), current
        seen.append(int(current["progress"]["done"]))
        time.sleep(0.05)
    assert seen == sorted(seen)  # done only moves forward
    assert service.http.delete(path).status_code in (200, 202)
    deadline = time.monotonic() + 30
    while (done := service.http.get(path).json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert done["status"] == "cancelled", done
    assert 1 <= done["progress"]["done"] < done["progress"]["total"]


def test_the_time_limit_stops_a_solve_on_the_cluster_and_run_names_are_cleaned_up(
        service: DaskService, cluster: DaskCluster) -> None:
    from distributed import Client

    job = service.wait_job(service.submit({**LONG_JOB, "seed": 22, "time_limit_s": 0.5}), 30)
    assert job["status"] == "failed", job
    assert "exceeded its time limit of 0.5 s" in job["error"], job

    def names(dask_scheduler) -> list[str]:  # noqa: ANN001 - the scheduler, as client.run_on_scheduler passes it
        events = dask_scheduler.extensions["events"]._events
        variables = dask_scheduler.extensions["variables"].variables
        return [str(name) for name in [*events, *variables] if str(name).startswith("cnnrelax-")]

    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        deadline = time.monotonic() + 5  # the service's relay thread removes them within a poll or two
        while (left := client.run_on_scheduler(names)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], left  # no stop Event or progress Variable left over from the runs above


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
