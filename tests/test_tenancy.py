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


def test_a_dataset_record_is_each_tenants_own_even_when_the_bytes_are_shared(server: ServerProcess) -> None:
    """Bob uploads as JSON the numbers Alice uploaded as .npz: one stored file, two records (format, time)."""
    rng = np.random.default_rng(17)
    X = rng.standard_normal((30, 3))
    y = np.abs(rng.standard_normal(30))
    with client(server, ALICE) as alice, client(server, BOB) as bob:
        first = alice.post("/v1/datasets", content=_npz(X, y), headers={"content-type": "application/x-npz"})
        assert first.status_code == 201, first.text
        time.sleep(0.05)  # a later upload time for bob
        second = bob.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()})
        assert second.status_code == 201, second.text
        assert second.json()["id"] == first.json()["id"]  # the same content, stored once
        assert (first.json()["source"], second.json()["source"]) == ("npz", "json")
        assert second.json()["created_at"] > first.json()["created_at"]
        dataset_id = first.json()["id"]
        assert alice.get(f"/v1/datasets/{dataset_id}").json()["source"] == "npz"
        assert bob.get(f"/v1/datasets/{dataset_id}").json()["source"] == "json"
        listed = {item["id"]: item for item in bob.get("/v1/datasets").json()["items"]}
        assert listed[dataset_id]["source"] == "json"
        assert listed[dataset_id]["created_at"] == second.json()["created_at"]
        # bob's second upload (as .npz now) is a replay of his own record: 200, still his JSON
        again = bob.post("/v1/datasets", content=_npz(X, y), headers={"content-type": "application/x-npz"})
        assert again.status_code == 200 and again.json()["source"] == "json"
        assert alice.delete(f"/v1/datasets/{dataset_id}").status_code == 204
        assert bob.get(f"/v1/datasets/{dataset_id}").json()["source"] == "json"


def _job_gauges(text: str) -> dict[tuple[str, str], float]:
    """``cnnrelax_jobs{kind, state}`` of a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "cnnrelax_jobs":
            for sample in family.samples:
                found[(sample.labels["kind"], sample.labels["state"])] = sample.value
    return found


def _own_counts(http: httpx.Client) -> dict[tuple[str, str], float]:
    """A key's jobs by kind and state, counted from its own listings."""
    own: dict[tuple[str, str], float] = {}
    for kind, path in (("solve", "/v1/solves"), ("experiment", "/v1/experiments")):
        for item in http.get(path, params={"limit": 200}).json()["items"]:
            own[(kind, item["status"])] = own.get((kind, item["status"]), 0) + 1
    return own


def test_metrics_show_a_key_its_own_jobs_and_an_admin_key_everyone_s(server: ServerProcess) -> None:
    """Counted independently, from each key's listings: a key's gauges are its own jobs, the admin's the sum of
    both keys' (no other tenant has jobs on this server); the process-wide histograms are the admin's only."""
    with client(server, ALICE) as alice, client(server, BOB) as bob, client(server, ROOT) as root:
        for seed in range(2):
            wait_job(bob, bob.post("/v1/solves", json={**SMALL, "seed": 100 + seed}).headers["location"])
        deadline = time.monotonic() + 60
        while any(state in ("queued", "running") for http in (alice, bob) for _, state in _own_counts(http)):
            assert time.monotonic() < deadline, "jobs of earlier tests still running"
            time.sleep(0.2)
        counted = {"alice": _own_counts(alice), "bob": _own_counts(bob)}
        shown = {name: _job_gauges(http.get("/metrics").text) for name, http in (("alice", alice), ("bob", bob))}
        admin_text = root.get("/metrics").text
        bob_text = bob.get("/metrics").text
    everyone = _job_gauges(admin_text)
    for name in ("alice", "bob"):
        assert {key: value for key, value in shown[name].items() if value} == counted[name], name
    assert counted["bob"] != counted["alice"]
    total = {key: counted["alice"].get(key, 0) + counted["bob"].get(key, 0) for key in everyone}
    assert {key: value for key, value in everyone.items() if value} == {k: v for k, v in total.items() if v}
    assert "cnnrelax_job_run_seconds" in admin_text and "cnnrelax_job_run_seconds" not in bob_text
