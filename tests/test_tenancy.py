"""Tenants: with API keys on, jobs, datasets, figures and Idempotency-Keys belong to the key that made them.

Two keys (alice, bob) and an admin key on a live server; the fair claim is also checked on the store
itself (real SQLite), where the order is exact.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from cnnrelax.store import Store, owner_id

from conftest import ServerProcess, assert_problem, wait_job

ALICE, BOB, ROOT = "alice-key-0123456789", "bob-key-9876543210", "root-key-admin-42"
SMALL = {"planted": {"n": 60, "d": 4, "k": 1, "seed": 0}, "trials": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("tenants"), workers=1, env={
        "CNNRELAX_API_KEYS": f"{ALICE},{BOB}", "CNNRELAX_ADMIN_API_KEYS": ROOT,
        "CNNRELAX_MAX_QUEUED_PER_KEY": "4"}).start()
    yield process
    process.stop()


def client(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": key})


def _npz(X: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue()


def test_jobs_belong_to_their_key(server: ServerProcess) -> None:
    with client(server, ALICE) as alice, client(server, BOB) as bob, client(server, ROOT) as root:
        answer = alice.post("/v1/solves", json=SMALL, headers={"Idempotency-Key": "same-key"})
        assert answer.status_code == 202
        location, job_id = answer.headers["location"], answer.json()["id"]
        assert wait_job(alice, location)["status"] == "succeeded"
        # bob: read, wait, list, cancel -> as if it did not exist
        assert_problem(bob.get(location), 404)
        assert_problem(bob.get(location, params={"wait": 1}), 404)
        assert job_id not in {item["id"] for item in bob.get("/v1/solves").json()["items"]}
        assert_problem(bob.delete(location), 404)
        # bob replaying alice's Idempotency-Key with alice's body gets a job of his own
        replay = bob.post("/v1/solves", json=SMALL, headers={"Idempotency-Key": "same-key"})
        assert replay.status_code == 202 and replay.json()["id"] != job_id
        assert "idempotent-replayed" not in replay.headers
        # ... while alice's replay is hers
        again = alice.post("/v1/solves", json=SMALL, headers={"Idempotency-Key": "same-key"})
        assert again.json()["id"] == job_id and again.headers["idempotent-replayed"] == "true"
        # the admin key sees both
        assert root.get(location).json()["id"] == job_id
        ids = {item["id"] for item in root.get("/v1/solves").json()["items"]}
        assert {job_id, replay.json()["id"]} <= ids
        assert job_id in {item["id"] for item in alice.get("/v1/solves").json()["items"]}
        assert replay.json()["id"] not in {item["id"] for item in alice.get("/v1/solves").json()["items"]}
        wait_job(bob, replay.headers["location"])
    # the key itself is never stored: only its id (a SHA-256 prefix)
    database = (server.data_dir / "cnnrelax.sqlite3").read_bytes() + b"".join(
        path.read_bytes() for path in server.data_dir.glob("cnnrelax.sqlite3-wal"))
    assert ALICE.encode() not in database and BOB.encode() not in database
    assert owner_id(ALICE).encode() in database


def test_datasets_belong_to_their_key(server: ServerProcess) -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 4))
    y = np.maximum(X @ rng.standard_normal(4), 0)
    with client(server, ALICE) as alice, client(server, BOB) as bob, client(server, ROOT) as root:
        uploaded = alice.post("/v1/datasets", content=_npz(X, y), headers={"content-type": "application/x-npz"})
        assert uploaded.status_code == 201
        dataset_id = uploaded.json()["id"]
        assert_problem(bob.get(f"/v1/datasets/{dataset_id}"), 404)
        assert dataset_id not in {item["id"] for item in bob.get("/v1/datasets").json()["items"]}
        assert_problem(bob.delete(f"/v1/datasets/{dataset_id}"), 404)
        problem = assert_problem(bob.post("/v1/solves", json={"dataset_id": dataset_id, "trials": 1}), 404)
        assert problem["parameter"] == "dataset_id"
        # bob uploading the same content holds his own copy; deleting it leaves alice's
        assert bob.post("/v1/datasets", content=_npz(X, y),
                        headers={"content-type": "application/x-npz"}).status_code == 201
        assert bob.delete(f"/v1/datasets/{dataset_id}").status_code == 204
        assert alice.get(f"/v1/datasets/{dataset_id}").status_code == 200
        job = alice.post("/v1/solves", json={"dataset_id": dataset_id, "trials": 1})
        assert wait_job(alice, job.headers["location"])["status"] == "succeeded"
        assert dataset_id in {item["id"] for item in root.get("/v1/datasets").json()["items"]}


def test_figures_and_experiments_belong_to_their_key(server: ServerProcess) -> None:
    spec = {"kind": "phase_transition", "d": [4], "n": [30], "repetitions": 1, "methods": ["gradient_descent"],
            "trials": 1}
    with client(server, ALICE) as alice, client(server, BOB) as bob:
        answer = alice.post("/v1/experiments", json=spec)
        assert answer.status_code == 202, answer.text
        location = answer.headers["location"]
        assert wait_job(alice, location, timeout=120)["status"] == "succeeded"
        assert alice.get(f"{location}/figure.png").status_code == 200
        assert_problem(bob.get(f"{location}/figure.png"), 404)
        assert_problem(bob.get(location), 404)
        assert_problem(bob.delete(location), 404)
        assert bob.get("/v1/experiments").json()["items"] == []


def test_each_key_has_its_own_queue_cap_and_keys_take_turns(server: ServerProcess) -> None:
    """Alice fills her cap (4 queued, 429 with Retry-After past it); Bob's job is still accepted and is run
    second, not after all of Alice's."""
    blocker_body = {"planted": {"n": 2000, "d": 200, "k": 1}, "trials": 30, "stop_on_certificate": False}
    with client(server, ALICE) as alice, client(server, BOB) as bob:
        blocker = alice.post("/v1/solves", json=blocker_body)
        assert blocker.status_code == 202
        deadline = time.monotonic() + 30
        while alice.get(blocker.headers["location"]).json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        queued = [alice.post("/v1/solves", json={**SMALL, "seed": seed}) for seed in range(4)]
        assert [answer.status_code for answer in queued] == [202] * 4
        over = assert_problem(alice.post("/v1/solves", json={**SMALL, "seed": 9}), 429)
        assert int(over.get("limit", 0)) == 4 and int(alice.post("/v1/solves", json=SMALL).headers["retry-after"]) > 0
        bobs = bob.post("/v1/solves", json=SMALL)
        assert bobs.status_code == 202
        alice.delete(blocker.headers["location"])
        jobs = [wait_job(alice, answer.headers["location"]) for answer in queued]
        bobs_job = wait_job(bob, bobs.headers["location"])
    started = sorted([(job["started_at"], "alice") for job in jobs] + [(bobs_job["started_at"], "bob")])
    assert [owner for _, owner in started].index("bob") <= 1, started


def test_the_claim_round_robins_between_owners(tmp_path) -> None:
    store = Store(tmp_path)
    for seed in range(6):
        store.create_job("solve", {"seed": seed}, owner="a")
    for seed in range(2):
        store.create_job("solve", {"seed": seed}, owner="b")
    store.create_job("solve", {"seed": 0}, owner="c")
    order = []
    while (job := store.claim_next()) is not None:
        order.append(job.owner)
    assert order == ["a", "b", "c", "a", "b", "a", "a", "a", "a"]
    store.close()


def test_keys_off_is_one_anonymous_tenant(start_server) -> None:
    server = start_server(workers=1)
    with httpx.Client(base_url=server.url, timeout=60) as anyone:
        answer = anyone.post("/v1/solves", json=SMALL, headers={"Idempotency-Key": "k"})
        assert anyone.post("/v1/solves", json=SMALL, headers={"Idempotency-Key": "k"}).json()["id"] == \
            answer.json()["id"]
        assert wait_job(anyone, answer.headers["location"])["status"] == "succeeded"
        assert [item["id"] for item in anyone.get("/v1/solves").json()["items"]] == [answer.json()["id"]]
