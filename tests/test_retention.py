"""Retention: finished jobs and unused datasets expire (a background purge), datasets are stored compressed."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np

from cnnrelax.store import Store

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
