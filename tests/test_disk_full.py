"""Disk full: /readyz 503 below the free-space threshold, 507 for writes that cannot be stored, no temporary
files left behind, and recovery once space returns.

The data dir is a real, tiny tmpfs (``mount -t tmpfs -o size=8m``), so the disk really fills up; the test
needs root (it is skipped, saying why, where ``mount`` is refused). The server's log goes elsewhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from cnnrelax.store import Store

from conftest import ServerProcess, assert_problem, wait_job

MiB = 2**20


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs was refused: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class LoggedElsewhere(ServerProcess):
    """A server whose log is not on its (full) data disk."""

    log_dir: Path = Path("/tmp")

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.port}-{self.starts}.log"


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a file until only ``leave`` bytes are free (0: until a write fails)."""
    filler = disk / "filler"
    with open(filler, "ab") as handle:
        try:
            while shutil.disk_usage(disk).free > leave:
                handle.write(bytes(min(256 * 1024, max(4096, shutil.disk_usage(disk).free - leave))))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def temporary_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*.tmp")]


def big_constraints(rows: int = 40_000) -> dict:
    """A valid solve whose request (about 1.5 MB of JSON) needs new pages in the SQLite file."""
    return {"planted": {"n": 40, "d": 4}, "trials": 1,
            "constraints": {"inequality_matrix": [[1.0, 0.0, 0.0, 0.0]] * rows, "inequality_vector": [100.0] * rows}}


def test_disk_full_is_503_and_507_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    data_dir = small_disk / "data"
    server = LoggedElsewhere(data_dir, workers=1, env={"CNNRELAX_MIN_FREE_BYTES": str(MiB)})
    server.log_dir = tmp_path
    server.start()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 20))  # 640 KB, about as much compressed
    y = np.abs(rng.standard_normal(4000))
    npz_body = _npz(X, y)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/readyz").json()["checks"]["disk"] is True
            # below the threshold: not ready, and nothing is written
            filler = fill(small_disk, leave=MiB // 2)
            problem = assert_problem(http.get("/readyz"), 503)
            assert problem["checks"]["disk"] is False and "CNNRELAX_MIN_FREE_BYTES" in problem["detail"]
            assert assert_problem(http.post("/v1/datasets", content=npz_body,
                                            headers={"content-type": "application/x-npz"}), 507)["title"]
            assert_problem(http.post("/v1/solves", json={"planted": {"n": 40, "d": 4}, "trials": 1}), 507)
            assert temporary_files(small_disk) == []
            filler.unlink()
        # the disk really full, with no reserve (threshold 0): the write itself fails, and answers 507
        server.stop()
        server.env["CNNRELAX_MIN_FREE_BYTES"] = "0"
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            filler = fill(small_disk, leave=0)
            answer = http.post("/v1/solves", json=big_constraints())
            problem = assert_problem(answer, 507)
            assert "full" in problem["detail"] and answer.headers["retry-after"]
            assert_problem(http.post("/v1/datasets", content=npz_body,
                                     headers={"content-type": "application/x-npz"}), 507)
            assert temporary_files(small_disk) == []
            # space returns: ready again at once (a probe ran just before, while the disk was full: it must not hold
            # the store unwritable until the next probe), and the same writes succeed
            assert_problem(http.get("/readyz"), 503)
            filler.unlink()
            assert http.get("/readyz").status_code == 200
            uploaded = http.post("/v1/datasets", content=npz_body, headers={"content-type": "application/x-npz"})
            assert uploaded.status_code == 201, uploaded.text
            job = http.post("/v1/solves", json=big_constraints())
            assert job.status_code == 202, job.text
            assert wait_job(http, job.headers["location"])["status"] == "succeeded"
    finally:
        server.stop()


def test_a_dataset_write_that_fills_the_disk_leaves_no_temporary_file(small_disk: Path) -> None:
    store = Store(small_disk / "store")
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((4000, 20)), np.ones(4000)
    filler = fill(small_disk, leave=200 * 1024)
    with pytest.raises(OSError) as raised:
        store.put_dataset(X, y, "npz")
    assert raised.value.errno == errno.ENOSPC
    assert temporary_files(small_disk) == [] and store.list_datasets() == []
    filler.unlink()
    record, created = store.put_dataset(X, y, "npz")
    assert created and np.array_equal(store.load_dataset(record.id)[0], X)
    store.close()


def _npz(X: np.ndarray, y: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue()
