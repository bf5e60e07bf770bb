"""The SQLite store on a real file: atomic claims, recovery after a crash, one finish per job, datasets."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import numpy as np
import pytest

import cnnrelax.store as store_face
from cnnrelax.store import (
    DatasetInUse,
    IdempotencyConflict,
    JobRunView,
    QueueFull,
    Store,
    decode_cursor,
    encode_cursor,
)


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def test_the_database_is_a_wal_file_under_the_data_dir(store: Store, tmp_path: Path) -> None:
    assert store.path.parent == tmp_path and store.path.exists()
    mode = store._connection().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_concurrent_claims_take_each_job_exactly_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ids = [store.create_job("solve", {"i": i})[0].id for i in range(60)]
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        own = Store(tmp_path)  # a separate Store: separate connections, as in separate processes
        while (job := own.claim_next()) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)
    assert all(store.get_job(job_id).status == "running" for job_id in ids)


def test_claims_follow_submission_order(store: Store) -> None:
    ids = [store.create_job("solve", {"i": i})[0].id for i in range(3)]
    assert [store.claim_next().id for _ in range(3)] == ids
    assert store.claim_next() is None


def test_recovery_requeues_running_jobs_and_a_stale_run_cannot_finish(store: Store) -> None:
    job = store.create_job("solve", {"x": 1})[0]
    first = store.claim_next()
    assert first.attempts == 1
    assert store.recover_running() == [job.id]          # the server died; on start the job is queued again
    second = store.claim_next()
    assert second.id == job.id and second.attempts == 2
    assert not store.finish_job(job.id, 1, "succeeded", result={"from": "the first run"})
    assert store.finish_job(job.id, 2, "succeeded", result={"from": "the second run"})
    assert not store.finish_job(job.id, 2, "failed", error="again")  # never finishes twice
    final = store.get_job(job.id)
    assert final.status == "succeeded" and final.result == {"from": "the second run"}


def test_worker_view_sees_cancel_requests_and_lost_runs(store: Store) -> None:
    job = store.create_job("solve", {"x": 2})[0]
    run = store.claim_next()
    view = JobRunView(store.path, job.id, run.attempts)
    assert not view.stop_requested()
    view.write_progress(3, 8, {"cells": [1, 2, 3]})
    assert (store.get_job(job.id).progress_done, store.get_job(job.id).partial_state) == (3, {"cells": [1, 2, 3]})
    store.request_cancel(job.id)
    assert view.stop_requested()
    other = store.create_job("solve", {"x": 3})[0]
    run = store.claim_next()
    view = JobRunView(store.path, other.id, run.attempts)
    store.recover_running()
    assert view.stop_requested()  # its run is no longer current
    view.write_progress(5, 8, None)
    assert store.get_job(other.id).progress_done is None
    view.close()


def test_cancelling_a_queued_job_ends_it_and_it_is_never_claimed(store: Store) -> None:
    job = store.create_job("solve", {"x": 4})[0]
    assert store.request_cancel(job.id).status == "cancelled"
    assert store.claim_next() is None


def test_idempotency_and_queue_depth(store: Store) -> None:
    first, created = store.create_job("solve", {"a": 1}, idempotency_key="key")
    again, created_again = store.create_job("solve", {"a": 1}, idempotency_key="key")
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        store.create_job("solve", {"a": 2}, idempotency_key="key")
    assert store.create_job("experiment", {"a": 2}, idempotency_key="key")[1]  # keys are per kind
    with pytest.raises(QueueFull):
        store.create_job("solve", {"a": 3}, max_queue_depth=2)
    assert store.create_job("solve", {"a": 1}, idempotency_key="key", max_queue_depth=2)[0].id == first.id


def test_listing_pages_newest_first(store: Store) -> None:
    ids = [store.create_job("solve", {"i": i})[0].id for i in range(5)]
    page, next_seq = store.list_jobs(kind="solve", limit=2)
    assert [j.id for j in page] == ids[:-3:-1]
    assert decode_cursor(encode_cursor(next_seq)) == next_seq
    rest, end = store.list_jobs(kind="solve", limit=10, before_seq=next_seq)
    assert [j.id for j in rest] == ids[-3::-1] and end is None
    with pytest.raises(ValueError):
        decode_cursor("garbage!")


def test_datasets_are_content_addressed_files(store: Store) -> None:
    X, y = np.arange(12.0).reshape(4, 3), np.arange(4.0)
    record, created = store.put_dataset(X, y, "npz")
    assert created and store.dataset_path(record.id).exists()
    same, created_again = store.put_dataset(X.astype(np.float32), y.astype(int), "json")
    assert same.id == record.id and not created_again
    X2, y2 = store.load_dataset(record.id)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    store.create_job("solve", {"dataset_id": record.id}, dataset_id=record.id)
    with pytest.raises(DatasetInUse):
        store.delete_dataset(record.id)
    store.request_cancel(store.claim_next().id)
    store.finish_job(store.list_jobs()[0][0].id, 1, "cancelled")
    assert store.delete_dataset(record.id)
    assert not store.dataset_path(record.id).exists()
    with pytest.raises(KeyError):
        store.dataset_path("../../etc/passwd")


def test_the_checkpointer_copies_the_wal_into_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.start_checkpointer(interval_s=0.05)
    try:
        for i in range(300):
            store.create_job("solve", {"i": i, "padding": "x" * 2000})
        assert Path(f"{store.path}-wal").stat().st_size > 0
    finally:
        store.stop_checkpointer()
    assert Path(f"{store.path}-wal").stat().st_size == 0  # truncated when it stopped
    assert len(Store(tmp_path).list_jobs(limit=1000)[0]) == 300


def test_every_name_imported_from_the_store_is_on_its_face() -> None:
    """What the service, tests, benchmarks, scripts and client import from ``cnnrelax.store`` is in its ``__all__``
    (the package's modules are its own business)."""
    root = Path(__file__).resolve().parents[1]
    package = root / "service" / "cnnrelax" / "store"
    imported: set[str] = set()
    for folder in ("service", "tests", "bench", "scripts", "clients"):
        for path in (root / folder).rglob("*.py"):
            if path.is_relative_to(package):
                continue  # the package itself
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module == "cnnrelax.store"
                                                         or (node.level and node.module == "store")):
                    imported |= {alias.name for alias in node.names}
    assert {"Store", "JobRecord", "store_fault", "dataset_digest"} <= imported  # the scan finds the callers
    assert imported <= set(store_face.__all__), sorted(imported - set(store_face.__all__))
