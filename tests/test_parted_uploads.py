"""Uploads in parts over HTTP (/v1/datasets/uploads; docs/uploads.md): a real server over loopback, its real SQLite
file and data dir; parts out of order, repeated, missing, over their size; a crash between parts; digests; the
dataset they make equal to the same data in one body. Also: datasets stored before the .npy layout still load."""

from __future__ import annotations

import base64
import hashlib
import io
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest

from cnnrelax import SolveOptions, make_problem, solve
from cnnrelax.dataset_files import adopt_dataset_dir, dataset_array_paths, dataset_digest
from cnnrelax.store import Store, owner_id
from cnnrelax_client import AsyncClient, Client
from cnnrelax_client._uploads import dataset_sha256

from conftest import PeakRss, ServerProcess, assert_problem, wait_job

UPLOADS = "/v1/datasets/uploads"


def _data(seed: int, n: int = 130, d: int = 8, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d // k)
    return X, np.maximum(X.reshape(n, k, d // k) @ w, 0).sum(axis=1)


def _npz(X: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue()


def _body(X: np.ndarray, y: np.ndarray, index: int, part_rows: int) -> bytes:
    """Part ``index``: its rows of X, then their labels, little-endian float64 (written independently of the client)."""
    rows = slice(index * part_rows, (index + 1) * part_rows)
    return X[rows].astype("<f8").tobytes(order="C") + y[rows].astype("<f8").tobytes()


def _digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _put(http: httpx.Client, upload_id: str, index: int, body: bytes | Iterator[bytes],
         digest: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/octet-stream"}
    headers["content-digest"] = digest if digest is not None else _digest(body)  # type: ignore[arg-type]
    return http.put(f"{UPLOADS}/{upload_id}/parts/{index}", content=body, headers=headers)


def _create(http: httpx.Client, n: int, d: int, part_rows: int, **more: Any) -> dict[str, Any]:
    answer = http.post(UPLOADS, json={"n": n, "d": d, "dtype": "float64", "part_rows": part_rows, **more})
    assert answer.status_code == 201, answer.text
    upload = answer.json()
    assert answer.headers["location"] == f"{UPLOADS}/{upload['id']}"
    return upload


def _solve(http: httpx.Client, dataset_id: str) -> dict[str, Any]:
    job = wait_job(http, http.post("/v1/solves", json={"dataset_id": dataset_id, "k": 2, "trials": 3, "seed": 1})
                   .headers["location"])
    assert job["status"] == "succeeded", job
    return job["result"]


def test_parts_in_any_order_make_the_dataset_of_one_body(http: httpx.Client) -> None:
    X, y = _data(seed=1)
    upload = _create(http, 130, 8, 30)
    assert (upload["parts"], upload["part_bytes"], upload["status"]) == (5, 30 * 9 * 8, "receiving")
    assert upload["missing_parts"] == [0, 1, 2, 3, 4] and "dataset_id" not in upload
    for index in (3, 0, 4, 2):
        answer = _put(http, upload["id"], index, _body(X, y, index, 30))
        assert answer.status_code == 201, answer.text
        first = index * 30
        assert answer.json() == {"upload_id": upload["id"], "index": index, "first_row": first,
                                 "rows": min(30, 130 - first), "size_bytes": min(30, 130 - first) * 72,
                                 "sha256": hashlib.sha256(_body(X, y, index, 30)).hexdigest()}
    status = http.get(f"{UPLOADS}/{upload['id']}").json()
    assert (status["received_parts"], status["missing_parts"]) == (4, [1])
    assert upload["id"] in {item["id"] for item in http.get(UPLOADS).json()["items"]}
    assert _put(http, upload["id"], 1, _body(X, y, 1, 30)).status_code == 201
    done = http.post(f"{UPLOADS}/{upload['id']}/complete")
    assert done.status_code == 201, done.text
    dataset = done.json()
    assert (dataset["n"], dataset["d"], dataset["source"]) == (130, 8, "parts")
    assert dataset["id"] == dataset_digest(X, y)  # the content address of exactly these numbers
    assert done.headers["location"] == f"/v1/datasets/{dataset['id']}"
    again = http.post(f"{UPLOADS}/{upload['id']}/complete")  # completing twice: the same dataset
    assert again.status_code == 200 and again.json()["id"] == dataset["id"]
    assert http.get(f"{UPLOADS}/{upload['id']}").json()["status"] == "completed"
    one_body = http.post("/v1/datasets", content=_npz(X, y), headers={"content-type": "application/x-npz"})
    assert one_body.status_code == 200 and one_body.json()["id"] == dataset["id"]  # the same content, stored before
    with np.load(io.BytesIO(http.get(f"/v1/datasets/{dataset['id']}/data.npz").content)) as archive:
        np.testing.assert_array_equal(archive["X"], X)
        np.testing.assert_array_equal(archive["y"], y)
    # (a solve on a dataset made of parts: test_a_crash_between_parts_loses_no_acknowledged_part)


def test_a_part_sent_again_is_idempotent_with_its_bytes_and_a_conflict_with_others(http: httpx.Client) -> None:
    X, y = _data(seed=2, n=40)
    upload = _create(http, 40, 8, 20)
    body = _body(X, y, 0, 20)
    assert _put(http, upload["id"], 0, body).status_code == 201
    repeated = _put(http, upload["id"], 0, body)
    assert repeated.status_code == 200 and repeated.json()["sha256"] == hashlib.sha256(body).hexdigest()
    other = _body(2 * X, y, 0, 20)
    conflict = assert_problem(_put(http, upload["id"], 0, other), 409)
    assert conflict["parameter"] == "index" and hashlib.sha256(body).hexdigest() in conflict["detail"]
    assert _put(http, upload["id"], 1, _body(X, y, 1, 20)).status_code == 201
    done = http.post(f"{UPLOADS}/{upload['id']}/complete")
    assert done.status_code == 201 and done.json()["id"] == dataset_digest(X, y)  # the first bytes were kept
    assert_problem(_put(http, upload["id"], 1, _body(X, y, 1, 20)), 409)  # a completed upload takes no part


def test_completing_with_a_part_missing_names_it(http: httpx.Client) -> None:
    X, y = _data(seed=3, n=100)
    upload = _create(http, 100, 8, 25)
    for index in (0, 1, 3):
        assert _put(http, upload["id"], index, _body(X, y, index, 25)).status_code == 201
    problem = assert_problem(http.post(f"{UPLOADS}/{upload['id']}/complete"), 409)
    assert problem["missing_parts"] == [2] and problem["parameter"] == "parts" and "(2)" in problem["detail"]
    assert_problem(http.get(f"/v1/datasets/{dataset_digest(X, y)}"), 404)  # no dataset yet
    assert _put(http, upload["id"], 2, _body(X, y, 2, 25)).status_code == 201
    assert http.post(f"{UPLOADS}/{upload['id']}/complete").status_code == 201


def test_a_part_over_its_size_is_refused_before_and_while_it_is_read(http: httpx.Client) -> None:
    X, y = _data(seed=4, n=60)
    upload = _create(http, 60, 8, 20)
    body = _body(X, y, 0, 20)
    # by its Content-Length, before a byte is read
    problem = assert_problem(_put(http, upload["id"], 0, body + b"\0" * 8), 413)
    assert problem["parameter"] == "body" and problem["limit"] == len(body)
    # streamed without a length (chunked): refused once it passes the part's size

    def chunks() -> Iterator[bytes]:
        yield body
        yield b"\0" * 1024

    problem = assert_problem(_put(http, upload["id"], 0, chunks(), _digest(body)), 413)
    assert problem["limit"] == len(body)
    assert_problem(_put(http, upload["id"], 0, body[:-8]), 422)  # short: the whole part is needed
    # the last part is shorter (60 = 3 x 20: none here; the upload below has one of 10 rows)
    assert http.get(f"{UPLOADS}/{upload['id']}").json()["missing_parts"] == [0, 1, 2]  # nothing was kept
    assert _put(http, upload["id"], 0, body).status_code == 201
    tail = _create(http, 50, 8, 20)
    assert_problem(_put(http, tail["id"], 2, _body(X, y, 2, 20)), 413)  # 20 rows where part 2 holds 10
    assert _put(http, tail["id"], 2, _body(X[:50], y[:50], 2, 20)).status_code == 201
    assert_problem(_put(http, tail["id"], 3, _body(X, y, 0, 20)), 422)  # no part 3
    wrong_type = http.put(f"{UPLOADS}/{tail['id']}/parts/0", content=body,
                          headers={"content-type": "application/json", "content-digest": _digest(body)})
    assert assert_problem(wrong_type, 415)["parameter"] == "Content-Type"


def test_uploads_are_priced_whole_before_anything_is_stored(http: httpx.Client, live_server: ServerProcess) -> None:
    before = set((live_server.data_dir / "datasets" / "uploads").glob("*"))
    over_entries = assert_problem(http.post(UPLOADS, json={"n": 10_000_000, "d": 3, "part_rows": 1000}), 422)
    assert over_entries["parameter"] == "n" and over_entries["setting"] == "CNNRELAX_MAX_MATRIX_ENTRIES"
    too_many_parts = assert_problem(http.post(UPLOADS, json={"n": 20_001, "d": 3, "part_rows": 2}), 422)
    assert too_many_parts["parameter"] == "part_rows" and "10000" in too_many_parts["detail"]
    big_part = assert_problem(http.post(UPLOADS, json={"n": 2_000_000, "d": 9, "part_rows": 1_000_000}), 413)
    assert big_part["parameter"] == "part_rows" and big_part["setting"] == "CNNRELAX_MAX_BODY_BYTES"
    unknown = assert_problem(http.post(UPLOADS, json={"n": 10, "d": 3, "part_rows": 5, "dtype": "float32"}), 422)
    assert "dtype" in unknown["detail"]
    # more rows a part than any integer JSON, the store or a client reads exactly (found by schemathesis: a 500)
    huge = assert_problem(http.post(UPLOADS, json={"n": 1, "d": 1204, "part_rows": 32589158477190044729}), 422)
    assert "part_rows" in huge["detail"]
    at_most = http.post(UPLOADS, json={"n": 1, "d": 3, "part_rows": 2**53 - 1})  # the largest taken: one part
    assert at_most.status_code == 201, at_most.text
    assert http.delete(at_most.headers["location"]).status_code in (200, 204)
    assert set((live_server.data_dir / "datasets" / "uploads").glob("*")) == before


def test_digests_are_checked_per_part_and_for_the_whole(http: httpx.Client) -> None:
    X, y = _data(seed=5, n=40)
    body = _body(X, y, 0, 20)
    upload = _create(http, 40, 8, 20, sha256="0" * 64)
    damaged = assert_problem(_put(http, upload["id"], 0, body, _digest(body[:-1] + b"\1")), 422)
    assert damaged["parameter"] == "Content-Digest"
    assert_problem(_put(http, upload["id"], 0, body, "md5=:AAAA:"), 422)
    missing = assert_problem(http.put(f"{UPLOADS}/{upload['id']}/parts/0", content=body,
                                      headers={"content-type": "application/octet-stream"}), 422)
    assert "Content-Digest" in missing["detail"]
    for index in (0, 1):
        assert _put(http, upload["id"], index, _body(X, y, index, 20)).status_code == 201
    wrong = assert_problem(http.post(f"{UPLOADS}/{upload['id']}/complete"), 422)
    assert wrong["parameter"] == "sha256" and dataset_digest(X, y) in wrong["detail"]
    assert http.delete(f"{UPLOADS}/{upload['id']}").status_code == 204  # abort: the upload and its parts go
    assert_problem(http.get(f"{UPLOADS}/{upload['id']}"), 404)
    right = _create(http, 40, 8, 20, sha256=dataset_digest(X, y))
    bad = X.copy()
    bad[25, 3] = np.inf
    for index in (0, 1):
        assert _put(http, right["id"], index, _body(bad, y, index, 20)).status_code == 201
    infinite = assert_problem(http.post(f"{UPLOADS}/{right['id']}/complete"), 422)
    assert infinite["parameter"] == "X" and "row 25 (part 1)" in infinite["detail"]
    assert http.get(f"{UPLOADS}/{right['id']}").json()["missing_parts"] == [1]  # dropped: to be sent again
    assert _put(http, right["id"], 1, _body(X, y, 1, 20)).status_code == 201
    assert http.post(f"{UPLOADS}/{right['id']}/complete").json()["id"] == dataset_digest(X, y)


def test_expired_uploads_are_purged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    kept = store.create_upload("a", 10, 2, 5, None, expires_at=time.time() + 60)
    gone = store.create_upload("a", 10, 2, 5, None, expires_at=time.time() - 1)
    assert store.record_upload_part(gone.id, 0, "ab" * 32, 120, time.time() - 1) == (True, None)
    assert store.purge_uploads(time.time()) == [gone.id]
    assert store.get_upload(gone.id) is None and not store.upload_files(gone).folder.exists()
    assert store.get_upload(kept.id) is not None and store.upload_files(kept).exists()
    store.close()


def test_the_client_uploads_a_memory_mapped_array_in_parts_and_resumes(live_server: ServerProcess,
                                                                       tmp_path: Path) -> None:
    X, y = _data(seed=8, n=200)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    assert dataset_sha256(mapped, y) == dataset_digest(X, y)  # the client's digest is the server's address
    sent: list[str] = []

    def record(request: httpx.Request) -> None:
        if request.method == "PUT":
            sent.append(request.url.path.rsplit("/", 1)[1])

    with Client(live_server.url, timeout=30) as client:
        client._http.event_hooks["request"].append(record)
        with httpx.Client(base_url=live_server.url) as http:  # an upload cut short after parts 0 and 2 of 4
            upload = _create(http, 200, 8, 50)
            for index in (0, 2):
                assert _put(http, upload["id"], index, _body(X, y, index, 50)).status_code == 201
        dataset = client.upload_large(mapped, y, upload_id=upload["id"])
        assert sorted(sent) == ["1", "3"] and dataset.id == dataset_digest(X, y) and dataset.source == "parts"
        sent.clear()
        fresh = client.upload_large(mapped, 2 * y, part_rows=64)
        assert sorted(sent) == ["0", "1", "2", "3"] and fresh.id == dataset_digest(X, 2 * y)


class DropsOnePart(httpx.HTTPTransport):
    """A real transport that loses the connection once, on the first PUT of part ``index`` (after the server
    stored it or not: ``stored`` says which)."""

    def __init__(self, index: int, stored: bool) -> None:
        super().__init__()
        self.index, self.stored, self.dropped = index, stored, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.dropped and request.method == "PUT" and request.url.path.endswith(f"/parts/{self.index}"):
            self.dropped = True
            if self.stored:
                super().handle_request(request).close()
            raise httpx.ConnectError("connection lost", request=request)
        return super().handle_request(request)


def test_the_client_resumes_after_a_lost_connection(live_server: ServerProcess) -> None:
    X, y = _data(seed=12, n=90)
    for stored in (False, True):
        transport = DropsOnePart(index=1, stored=stored)
        with Client(live_server.url, timeout=30, transport=transport) as client:
            dataset = client.upload_large(X, y + stored, part_rows=30)
        assert transport.dropped and dataset.id == dataset_digest(X, y + stored)


async def test_the_async_client_uploads_in_parts(live_server: ServerProcess) -> None:
    X, y = _data(seed=9, n=70)
    async with AsyncClient(live_server.url, timeout=30) as client:
        dataset = await client.upload_large(X, y, part_rows=16)
    assert (dataset.id, dataset.n, dataset.d) == (dataset_digest(X, y), 70, 8)


# -- one server of its own (settings of its own, a data dir from before the .npy layout), killed last ----------
MiB = 1024 * 1024
#: Incomplete uploads one key may hold on that server: 100 MiB.
QUOTA = 100 * MiB
#: Its two API keys (tenants).
ALICE, BOB = "alice-uploads-key", "bob-uploads-key"


def _keyed(server: ServerProcess, key: str = ALICE) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": key})


@dataclass
class Legacy:
    """A dataset stored as the store wrote them before the .npy layout: one <id>.npz and its rows."""

    X: np.ndarray
    y: np.ndarray
    id: str
    #: An upload cut short in its completion (its id, its dataset's id): :func:`_half_completed_upload`.
    half_done: tuple[str, str] = ("", "")


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Legacy]]:
    """A server with two API keys, an 8 MiB body-memory budget and a 100 MiB upload quota, on a data dir that holds
    a dataset stored before datasets were directories (its <id>.npz, its rows, as the store wrote them) and an
    upload whose completion a crash cut short."""
    data_dir = tmp_path_factory.mktemp("own") / "data"
    Store(data_dir).close()
    X, y = _data(seed=7, n=90)
    legacy = Legacy(X, y, dataset_digest(X, y))
    np.savez_compressed(data_dir / "datasets" / f"{legacy.id}.npz", X=X, y=y)
    db = sqlite3.connect(data_dir / "cnnrelax.sqlite3")
    with db:
        db.execute("INSERT INTO datasets (id, n, d, size_bytes, source, created_at, y_min, y_min_index) "
                   "VALUES (?, 90, 8, 1, 'npz', ?, ?, ?)", (legacy.id, time.time(), float(y.min()), int(y.argmin())))
        db.execute("INSERT INTO dataset_owners (dataset_id, owner, created_at, last_used_at) "
                   "VALUES (?, ?, ?, ?)", (legacy.id, owner_id(ALICE), time.time(), time.time()))
    db.close()
    half_done = _half_completed_upload(data_dir)
    server = ServerProcess(data_dir, workers=1, env={"CNNRELAX_MAX_BODY_MEMORY_BYTES": str(8 * MiB),
                                                     "CNNRELAX_MAX_UPLOAD_BYTES_PER_KEY": str(QUOTA),
                                                     "CNNRELAX_API_KEYS": f"{ALICE},{BOB}"}).start()
    yield server, Legacy(X, y, legacy.id, half_done)
    server.stop()


def _half_completed_upload(data_dir: Path) -> tuple[str, str]:
    """An upload whose completion was cut short by a crash right after its files became the dataset's directory
    (verified, renamed; no dataset row yet): made with the store's own calls. Its id and its dataset's."""
    store = Store(data_dir)
    X, y = _data(seed=11, n=50)
    upload = store.create_upload(owner_id(ALICE), 50, 8, 25, None, expires_at=time.time() + 600)
    files = store.upload_files(upload)
    for index in (0, 1):
        body = _body(X, y, index, 25)
        with files.sink(25 * index, 25) as sink:
            sink.write(body)
            store.record_upload_part(upload.id, index, sink.finish(), len(body), time.time() + 600)
    dataset_id = dataset_digest(X, y)
    store.verify_upload(upload.id, dataset_id)
    adopt_dataset_dir(files.folder, data_dir / "datasets" / dataset_id)
    store.close()
    return upload.id, dataset_id


def test_datasets_stored_as_npz_before_still_load(own_server: tuple[ServerProcess, Legacy]) -> None:
    """A data dir from before the .npy layout: its <id>.npz is read as it is (no migration), solved, downloaded;
    dataset_array_paths writes its .npy files once when a chunked reader asks."""
    server, legacy = own_server
    with _keyed(server) as http:
        assert http.get(f"/v1/datasets/{legacy.id}").json()["n"] == 90
        with np.load(io.BytesIO(http.get(f"/v1/datasets/{legacy.id}/data.npz").content)) as archive:
            np.testing.assert_array_equal(archive["X"], legacy.X)
        result = _solve(http, legacy.id)
    reference = solve(make_problem(legacy.X, legacy.y, k=2), SolveOptions(trials=3, seed=1))
    np.testing.assert_allclose(result["w"], reference.w, rtol=1e-9, atol=1e-12)
    paths = dataset_array_paths(server.data_dir, legacy.id)
    mapped = np.load(paths.X, mmap_mode="r")
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, legacy.X)
    np.testing.assert_array_equal(np.load(paths.y), legacy.y)
    assert (server.data_dir / "datasets" / f"{legacy.id}.npz").exists()  # kept until the dataset is deleted


def test_a_completion_cut_short_by_a_crash_completes_again(own_server: tuple[ServerProcess, Legacy]) -> None:
    server, legacy = own_server
    upload_id, dataset_id = legacy.half_done
    with _keyed(server) as http:
        assert_problem(http.get(f"/v1/datasets/{dataset_id}"), 404)  # its files are there, its row is not
        done = http.post(f"{UPLOADS}/{upload_id}/complete")
        assert done.status_code == 201, done.text
        assert done.json()["id"] == dataset_id and done.json()["source"] == "parts"
        X, y = _data(seed=11, n=50)
        with np.load(io.BytesIO(http.get(f"/v1/datasets/{dataset_id}/data.npz").content)) as archive:
            np.testing.assert_array_equal(archive["X"], X)
            np.testing.assert_array_equal(archive["y"], y)


def test_an_upload_is_its_keys_alone(own_server: tuple[ServerProcess, Legacy]) -> None:
    server, _ = own_server
    X, y = _data(seed=13, n=40)
    with _keyed(server, ALICE) as alice, _keyed(server, BOB) as bob:
        upload = _create(alice, 40, 8, 20)
        path = f"{UPLOADS}/{upload['id']}"
        assert assert_problem(bob.get(path), 404)["parameter"] == "upload_id"
        assert_problem(_put(bob, upload["id"], 0, _body(X, y, 0, 20)), 404)
        assert_problem(bob.post(f"{path}/complete"), 404)
        assert_problem(bob.delete(path), 404)
        assert upload["id"] not in {item["id"] for item in bob.get(UPLOADS).json()["items"]}
        for index in (0, 1):
            assert _put(alice, upload["id"], index, _body(X, y, index, 20)).status_code == 201
        dataset = alice.post(f"{path}/complete").json()
        assert alice.get(f"/v1/datasets/{dataset['id']}").status_code == 200
        assert_problem(bob.get(f"/v1/datasets/{dataset['id']}"), 404)  # the dataset is Alice's too
        assert_problem(httpx.get(f"{server.url}{UPLOADS}"), 401)


def test_parts_stream_to_disk_in_bounded_memory_and_are_charged_a_buffer(
        own_server: tuple[ServerProcess, Legacy]) -> None:
    """Two 32 MiB parts at once, one of them chunked and held open while the other is sent: the body budget (8 MiB
    here) charges each a fixed buffer, not five times its length (which would refuse the second with a 503 and
    the chunked one as it grew), and the API's resident memory rises by far less than one part."""
    server, _ = own_server
    d, part_rows = 15, 32 * MiB // 128
    rng = np.random.default_rng(10)
    X, y = rng.standard_normal((2 * part_rows, d)), rng.standard_normal(2 * part_rows)
    bodies = [_body(X, y, index, part_rows) for index in (0, 1)]
    other_answered = threading.Event()

    def held_open() -> Iterator[bytes]:  # part 0, chunked: half now, the rest once part 1 was answered
        half = len(bodies[0]) // 2
        yield bodies[0][:half]
        other_answered.wait(30)
        for start in range(half, len(bodies[0]), MiB):
            yield bodies[0][start:start + MiB]

    with _keyed(server) as http:
        upload = _create(http, 2 * part_rows, d, part_rows)
        answers: dict[int, httpx.Response] = {}

        def send_first() -> None:
            with _keyed(server) as other:
                answers[0] = _put(other, upload["id"], 0, held_open(), _digest(bodies[0]))

        assert server.process is not None
        with PeakRss(server.process.pid) as memory:
            first = threading.Thread(target=send_first)
            first.start()
            time.sleep(0.5)
            answers[1] = _put(http, upload["id"], 1, bodies[1])
            other_answered.set()
            first.join(60)
        assert answers[1].status_code == 201, answers[1].text
        assert answers[0].status_code == 201, answers[0].text
        assert memory.rise < 12 * MiB, f"the API's RSS rose by {memory.rise / MiB:.1f} MiB for two 32 MiB parts"
        done = http.post(f"{UPLOADS}/{upload['id']}/complete")
        assert done.status_code == 201 and done.json()["id"] == dataset_digest(X, y)


def test_a_crash_between_parts_loses_no_acknowledged_part(own_server: tuple[ServerProcess, Legacy]) -> None:
    X, y = _data(seed=6, n=120)
    server, _ = own_server
    with _keyed(server) as http:
        upload = _create(http, 120, 8, 30)
        for index in (2, 0):
            assert _put(http, upload["id"], index, _body(X, y, index, 30)).status_code == 201
        over_quota = http.post(UPLOADS, json={"n": 1_500_000, "d": 8, "part_rows": 10_000})  # 108 MB more
        problem = assert_problem(over_quota, 429)
        assert problem["setting"] == "CNNRELAX_MAX_UPLOAD_BYTES_PER_KEY" and problem["limit"] == QUOTA
        assert "retry-after" in over_quota.headers
    server.kill()  # SIGKILL: no shutdown, nothing flushed on the way out
    server.start()
    with _keyed(server) as http:
        status = http.get(f"{UPLOADS}/{upload['id']}").json()
        assert (status["status"], status["missing_parts"]) == ("receiving", [1, 3])
        assert _put(http, upload["id"], 2, _body(X, y, 2, 30)).status_code == 200  # as acknowledged before
        for index in status["missing_parts"]:
            assert _put(http, upload["id"], index, _body(X, y, index, 30)).status_code == 201
        dataset = http.post(f"{UPLOADS}/{upload['id']}/complete").json()
        assert dataset["id"] == dataset_digest(X, y)
        result = _solve(http, dataset["id"])
    reference = solve(make_problem(X, y, k=2), SolveOptions(trials=3, seed=1))  # what one body solves to
    np.testing.assert_allclose(result["w"], reference.w, rtol=1e-9, atol=1e-12)
