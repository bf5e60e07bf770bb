"""Faults, without root: a store that refuses a job's result strands no job, worker processes die with their
server, and the server's log says why it stops.

The refused write is real: the server process's file-size limit (``RLIMIT_FSIZE``, lowered from outside with
``prlimit``, as any user may for their own processes) makes SQLite's write of a large result fail ("disk I/O
error", the kernel's ``EFBIG``) while small writes still fit, as on a nearly full disk. Nothing in the service is
replaced or patched. The root-only faults (a full tmpfs, an immutable store) are in ``test_faults_root.py``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from cnnrelax.jobs import run_solve_job
from cnnrelax.specs import SolveSpec

from conftest import ServerProcess, wait_job

#: About 450 KB of result per 40 trials (each trial's r and w, d = 500), a few seconds of solving.
BIG_RESULT = {"planted": {"n": 12, "d": 500, "k": 1, "seed": 1}, "trials": 60, "stop_on_certificate": False, "seed": 2}
#: The issue's bound: the service recovers within this long of the condition clearing (seconds).
RECOVERY_S = 10.0


def _wait_for(predicate: Any, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; return the seconds it took (fail after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout:g} s"
        time.sleep(0.05)
    return time.monotonic() - start


def _log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _refused(http: httpx.Client) -> bool:
    answer = http.get("/readyz")
    return answer.status_code == 503 and "refused the end of 1 job" in answer.json()["detail"]


def _files_limit(server: ServerProcess) -> int:
    """A file-size limit a little above every file the server writes now (its store and its log)."""
    files = [server.data_dir / name for name in ("cnnrelax.sqlite3", "cnnrelax.sqlite3-wal")] + [server.log_path]
    return max(path.stat().st_size for path in files if path.exists()) + 128 * 1024


def test_a_result_the_store_refuses_strands_no_job(start_server: Any) -> None:
    """A result write fails: the dispatcher lives and retries, /readyz says 503, the API answers. A result that
    does not fit past CNNRELAX_STORE_WRITE_RETRY_S ends its job failed, saying why, while the fault lasts; one
    that fits again in time ends its job succeeded within 10 s of the fault clearing, with the result an
    uninterrupted run computes."""
    server = start_server(workers=1, env={"CNNRELAX_STORE_WRITE_RETRY_S": "8"})
    pid = server.process.pid
    original = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # the fault outlasts the retries: the job ends failed with a sentence, while the store still refuses
        first = http.post("/v1/solves", json={**BIG_RESULT, "trials": 40}).headers["location"]
        _wait_for(lambda: http.get(first).json()["status"] == "running", 60, "the first job running")
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (_files_limit(server), original[1]))
        try:
            _wait_for(lambda: _refused(http), 90, "/readyz 503 naming the refused end of the job")
            assert http.get(first).json()["status"] == "running"  # not lost, not finished: held and retried
            assert http.get("/healthz").status_code == 200 and server.alive()
            _wait_for(lambda: http.get(first).json()["status"] != "running", 30, "the first job's end")
            failed = http.get(first).json()
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, original)
        assert failed["status"] == "failed", failed
        assert "could not be stored within 8 s" in failed["error"] and "disk I/O error" in failed["error"]
        _wait_for(lambda: http.get("/readyz").status_code == 200, RECOVERY_S, "/readyz 200")

        # the fault clears in time: the job ends succeeded, with its result
        second = http.post("/v1/solves", json=BIG_RESULT).headers["location"]
        _wait_for(lambda: http.get(second).json()["status"] == "running", 60, "the second job running")
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (_files_limit(server), original[1]))
        try:
            _wait_for(lambda: _refused(http), 90, "/readyz 503 naming the refused end of the job")
            job = http.get(second).json()
            assert job["status"] == "running" and job["result"] is None
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, original)
        took = _wait_for(lambda: http.get(second).json()["status"] != "running", RECOVERY_S, "the job's end")
        done = wait_job(http, second)
        _wait_for(lambda: http.get("/readyz").status_code == 200, RECOVERY_S - took, "/readyz 200")
        assert done["status"] == "succeeded", done
    expected = json.loads(json.dumps(run_solve_job(SolveSpec.model_validate(BIG_RESULT), None, None)))
    assert done["result"]["w"] == expected["w"] and done["result"]["loss"] == expected["loss"]
    assert [trial["loss"] for trial in done["result"]["trials"]] == [trial["loss"] for trial in expected["trials"]]
    assert server.alive()
    messages = [line["message"] for line in _log_lines(server)]
    assert "the end of a job could not be written; retrying until the store takes it" in messages
    assert not any("exception calling callback" in message for message in messages)


def _children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _gone(processes: list[psutil.Process]) -> bool:
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def test_workers_die_with_their_server_at_once(start_server: Any) -> None:
    """SIGKILL the server while a worker is deep in a solve: every child (both workers and the multiprocessing
    resource tracker) is gone within a second (the kernel's parent-death signal, not the 0.5 s watch)."""
    server = start_server(workers=2)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        location = http.post("/v1/solves", json={**BIG_RESULT, "trials": 1000}).headers["location"]
        _wait_for(lambda: http.get(location).json()["status"] == "running", 60, "the job running")
    children = _children(server.process.pid)
    names = {" ".join(child.cmdline()) for child in children}
    assert len(children) >= 3, names  # two workers and the resource tracker
    assert any("resource_tracker" in name for name in names), names
    time.sleep(0.3)  # the worker is solving now
    server.kill()
    took = _wait_for(lambda: _gone(children), 5, "the server's child processes gone")
    assert took < 1.0, f"children outlived their server by {took:.2f} s"


def test_the_log_says_why_the_server_stops(start_server: Any) -> None:
    server = start_server(workers=1)
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    messages = [line["message"] for line in _log_lines(server)]
    assert "stopping: received SIGTERM" in messages  # the signal, as it arrives
    assert "shutting down (received SIGTERM)" in messages  # the lifespan's last word


def test_a_second_server_on_the_same_data_dir_is_refused(start_server: Any, tmp_path: Path) -> None:
    """The store is one process's (its WAL index lives in that process's heap): a second server cannot start."""
    first = start_server(workers=1, data_dir=tmp_path / "shared")
    second = ServerProcess(tmp_path / "shared", workers=1)
    with pytest.raises(RuntimeError, match="is in use by another process"):
        second.start(timeout=60)
    assert httpx.get(f"{first.url}/readyz", timeout=10).status_code == 200
    assert not os.path.exists(tmp_path / "shared" / "cnnrelax.sqlite3-shm")
