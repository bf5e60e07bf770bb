"""Retention: finished jobs and unused datasets expire (a background purge), datasets are stored compressed."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np

from cnnrelax.dataset_files import UPLOADS_FOLDER, adopt_dataset_dir, scan_dataset
from cnnrelax.store import ORPHAN_GRACE_S, Store

from conftest import assert_problem, wait_job


def _npz(X: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue()


def test_finished_jobs_figures_and_unused_datasets_expire(start_server) -> None:
    server = start_server(workers=1, env={"CNNRELAX_JOB_RETENTION_S": "4", "CNNRELAX_DATASET_RETENTION_S": "4",
                                          "CNNRELAX_PURGE_INTERVAL_S": "0.25"})
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = np.maximum(X @ np.ones(4), 0)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        dataset_id = http.post("/v1/datasets", content=_npz(X, y),
                               headers={"content-type": "application/x-npz"}).json()["id"]
        solve = http.post("/v1/solves", json={"dataset_id": dataset_id, "trials": 1},
                          headers={"Idempotency-Key": "once"})
        experiment = http.post("/v1/experiments", json={
            "kind": "phase_transition", "d": [4], "n": [30], "repetitions": 1, "methods": ["gradient_descent"]})
        assert wait_job(http, solve.headers["location"])["status"] == "succeeded"
        assert wait_job(http, experiment.headers["location"])["status"] == "succeeded"
        assert http.get(experiment.headers["location"] + "/figure.png").status_code == 200
        figure = server.data_dir / "figures" / f"{experiment.json()['id']}.png"
        assert figure.exists()
        deadline = time.monotonic() + 20
        while 200 in (http.get(solve.headers["location"]).status_code,
                      http.get(experiment.headers["location"]).status_code,
                      http.get(f"/v1/datasets/{dataset_id}").status_code):
            assert time.monotonic() < deadline, "the finished job was not purged"
            time.sleep(0.2)
        assert_problem(http.get(solve.headers["location"]), 404)
        assert_problem(http.get(experiment.headers["location"]), 404)
        assert not figure.exists()
        assert_problem(http.get(f"/v1/datasets/{dataset_id}"), 404)
        assert not (server.data_dir / "datasets" / dataset_id).exists()
        assert http.get("/v1/solves").json()["items"] == []
        # an expired job's Idempotency-Key is free again
        again = http.post("/v1/solves", json={"planted": {"n": 50, "d": 4}, "trials": 1},
                          headers={"Idempotency-Key": "once"})
        assert again.status_code == 202 and "idempotent-replayed" not in again.headers


def test_purge_keeps_what_queued_and_running_jobs_need(tmp_path) -> None:
    store = Store(tmp_path)
    X, y = np.ones((20, 3)), np.ones(20)
    record, _ = store.put_dataset(X, y, "npz", owner="a")
    old_ds, _ = store.put_dataset(2 * X, y, "npz", owner="a")
    queued, _ = store.create_job("solve", {"dataset_id": record.id}, dataset_id=record.id, owner="a")
    done, _ = store.create_job("solve", {"planted": {}}, owner="a")
    running = store.claim_next()
    assert running is not None and running.id == queued.id
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == done.id
    store.finish_job(done.id, claimed.attempts, "succeeded", result={"ok": True})
    jobs, datasets = store.purge(jobs_before=time.time() + 1, datasets_before=time.time() + 1)
    assert jobs == [done.id]
    assert datasets == [old_ds.id]  # the running job's dataset stays, whatever its age
    assert store.get_dataset(record.id, owner="a") is not None
    assert store.get_job(queued.id) is not None and store.get_job(done.id) is None
    # nothing is purged before its time
    assert store.purge(jobs_before=0, datasets_before=0) == ([], [])
    store.close()


def test_datasets_are_stored_memory_mappable(tmp_path) -> None:
    """Two uncompressed .npy files a dataset (cnnrelax.dataset_files): loading maps them, nothing is decoded."""
    store = Store(tmp_path)
    X = np.zeros((2000, 50))
    X[:, 0] = np.arange(2000)
    record, created = store.put_dataset(X, np.ones(2000), "npz")
    path = store.dataset_path(record.id)
    assert created and path.is_dir() and sorted(p.name for p in path.iterdir()) == ["X.npy", "y.npy"]
    assert record.size_bytes == sum(p.stat().st_size for p in path.iterdir()) >= X.nbytes + 2000 * 8
    loaded_X, loaded_y = store.load_dataset(record.id)
    assert isinstance(loaded_X, np.memmap) and not loaded_X.flags.writeable and loaded_X.flags.c_contiguous
    np.testing.assert_array_equal(loaded_X, X)
    np.testing.assert_array_equal(loaded_y, np.ones(2000))
    assert (record.y_min, record.y_min_index) == (1.0, 0)  # what a submission's label check reads (no decode)
    assert list(path.parent.glob("*.tmp")) == []
    store.close()


def test_the_purge_removes_files_no_row_names_once_past_the_grace(tmp_path) -> None:
    """A crash between a completion's move of an upload's files to ``datasets/<id>/`` and the dataset's row, or between
    an upload's row and its folder, leaves files no row names: the purge removes them once older than
    ``ORPHAN_GRACE_S``, keeps them within it (a write in flight), and keeps what a row names whatever its age."""
    store = Store(tmp_path)
    later = time.time() + ORPHAN_GRACE_S + 60  # a purge that runs once the grace has passed
    stored, _ = store.put_dataset(np.ones((4, 2)), np.zeros(4), "npz", owner="a")
    # the crash in complete_upload: the verified upload's folder is moved to its dataset's place, no dataset row
    upload = store.create_upload("a", 6, 3, 3, None, expires_at=time.time() + 60)
    files = store.upload_files(upload)
    dataset_id = scan_dataset(files.folder).digest
    store.verify_upload(upload.id, dataset_id)
    adopt_dataset_dir(files.folder, store.dataset_dir / dataset_id)
    moved = store.dataset_dir / dataset_id
    assert moved.is_dir() and store.get_dataset(dataset_id) is None and not files.folder.exists()
    # the crash in delete_upload: the row is gone, the folder is not
    aborted = store.create_upload("a", 6, 3, 3, None, expires_at=time.time() + 60)
    with store._transaction() as db:
        db.execute("DELETE FROM uploads WHERE id = ?", (aborted.id,))
    left = store.upload_files(aborted).folder
    assert left.is_dir()

    store.purge(jobs_before=0, datasets_before=0, now=later)
    assert moved.is_dir()  # its upload's row names it: completing the upload again finishes it
    assert not left.exists()
    assert store.purge_uploads(time.time() + 120) == [upload.id]  # the upload expires: now no row names it
    store.purge(jobs_before=0, datasets_before=0)
    assert moved.is_dir()  # within the grace: kept (as a completion between its move and its row would be)
    store.purge(jobs_before=0, datasets_before=0, now=later)
    assert not moved.exists()
    assert sorted(path.name for path in store.dataset_dir.iterdir()) == sorted([stored.id, UPLOADS_FOLDER])
    assert store.load_dataset(stored.id)[0].shape == (4, 2)  # a dataset its row names stays, whatever its age
    store.close()
