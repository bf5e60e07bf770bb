"""Faults that need root (opt-in: ``pytest -m root_faults``): a disk that fills while a job runs, and a store
made immutable (``chattr +i``). Each ends with the job not ``running``, ``/readyz`` 503 while the fault lasts and
200 within 10 s after it clears, and the API alive throughout (before issue 16: a job stranded ``running`` until
a restart; the API killed by SIGBUS, or gone without a word).

The disk is a real 40 MiB tmpfs (``mount -t tmpfs -o size=40m``), the immutable files real ``chattr +i`` on an
ext4 (or any filesystem that supports it) directory; the server's log is kept off the faulty disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerProcess, assert_problem, wait_job

pytestmark = [pytest.mark.root_faults, pytest.mark.timeout(600)]

#: About 700 KB of result (each trial's r and w, d = 500): a write that needs room.
BIG_RESULT = {"planted": {"n": 12, "d": 500, "k": 1, "seed": 1}, "trials": 60, "stop_on_certificate": False, "seed": 2}
SMALL = {"planted": {"n": 40, "d": 4, "k": 1}, "trials": 1}
RECOVERY_S = 10.0


@pytest.fixture(autouse=True)
def _opted_in(request: pytest.FixtureRequest) -> None:
    if "root_faults" not in (request.config.option.markexpr or ""):
        pytest.skip("opt-in: run with pytest -m root_faults (as root: mounts a tmpfs, runs chattr)")
    if os.geteuid() != 0:
        pytest.skip("needs root (mount, chattr)")


class LoggedElsewhere(ServerProcess):
    """A server whose log is not on its faulty data disk."""

    log_dir: Path = Path("/tmp")

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.port}-{self.starts}.log"


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs was refused: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _server(data_dir: Path, log_dir: Path, **env: str) -> LoggedElsewhere:
    server = LoggedElsewhere(data_dir, workers=1, env={"CNNRELAX_MIN_FREE_BYTES": str(1024 * 1024), **env})
    server.log_dir = log_dir
    return server


def _wait_for(predicate: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout:g} s"
        time.sleep(0.05)
    return time.monotonic() - start


def _fill(disk: Path) -> Path:
    """Fill ``disk`` until a write fails."""
    filler = disk / "filler"
    with open(filler, "ab") as handle:
        try:
            while True:
                handle.write(bytes(256 * 1024))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _assert_alive(server: ServerProcess, http: httpx.Client) -> None:
    assert server.alive(), server.log_tail()
    assert http.get("/healthz").status_code == 200
    assert "Fatal Python error" not in server.log_path.read_text(errors="replace")


def test_a_disk_that_fills_while_a_job_runs(small_disk: Path, tmp_path: Path) -> None:
    server = _server(small_disk / "data", tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            location = http.post("/v1/solves", json=BIG_RESULT).headers["location"]
            _wait_for(lambda: http.get(location).json()["status"] == "running", 60, "the job running")
            filler = _fill(small_disk)
            assert shutil.disk_usage(small_disk).free < 1024 * 1024
            problem = assert_problem(http.get("/readyz"), 503)
            assert problem["checks"]["disk"] is False
            assert_problem(http.post("/v1/solves", json=SMALL), 507)
            # the job finishes computing; its result does not fit: held, retried, the API alive
            _wait_for(lambda: "refused the end of 1 job" in http.get("/readyz").json()["detail"], 120,
                      "/readyz naming the refused end of the job")
            assert http.get(location).json()["status"] == "running"
            time.sleep(2.0)
            _assert_alive(server, http)
            filler.unlink()
            took = _wait_for(lambda: http.get(location).json()["status"] != "running", RECOVERY_S, "the job's end")
            _wait_for(lambda: http.get("/readyz").status_code == 200, RECOVERY_S - took, "/readyz 200")
            done = wait_job(http, location)
            assert done["status"] == "succeeded" and len(done["result"]["trials"]) == BIG_RESULT["trials"], done
            again = http.post("/v1/solves", json=SMALL)
            assert again.status_code == 202 and wait_job(http, again.headers["location"])["status"] == "succeeded"
            _assert_alive(server, http)
    finally:
        server.stop()


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def test_a_store_made_immutable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = _server(data_dir, tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            first = http.post("/v1/solves", json=SMALL)
            assert wait_job(http, first.headers["location"])["status"] == "succeeded"
            location = http.post("/v1/solves", json=BIG_RESULT).headers["location"]
            _wait_for(lambda: http.get(location).json()["status"] == "running", 60, "the job running")
            files = sorted(data_dir.glob("cnnrelax.sqlite3*"))
            try:
                probe = subprocess.run(["chattr", "+i", str(files[0])], capture_output=True, text=True)
                if probe.returncode != 0:
                    pytest.skip(f"chattr +i is not supported here: {probe.stderr.strip()}")
                _chattr("+i", files)
                # noticed by the next probe write (at most one a second), whether or not anything else writes
                _wait_for(lambda: http.get("/readyz").status_code == 503, 3, "/readyz 503")
                problem = assert_problem(http.get("/readyz"), 503)
                assert problem["checks"]["store"] is False and "cannot take writes" in problem["detail"]
                refused = assert_problem(http.post("/v1/solves", json=SMALL), 503)
                assert "read-only" in refused["detail"] or "cannot be written" in refused["detail"]
                assert_problem(http.delete(location), 503)  # a cancel is a write too: refused, not a 500
                _wait_for(lambda: "refused the end of 1 job" in http.get("/readyz").json()["detail"], 120,
                          "/readyz naming the refused end of the job")
                time.sleep(2.0)
                _assert_alive(server, http)
                assert http.get(location).json()["status"] == "running"
            finally:
                _chattr("-i", files)
            took = _wait_for(lambda: http.get(location).json()["status"] != "running", RECOVERY_S, "the job's end")
            _wait_for(lambda: http.get("/readyz").status_code == 200, RECOVERY_S - took, "/readyz 200")
            assert wait_job(http, location)["status"] == "succeeded"
            again = http.post("/v1/solves", json=SMALL)
            assert again.status_code == 202 and wait_job(http, again.headers["location"])["status"] == "succeeded"
            _assert_alive(server, http)
    finally:
        server.stop()
