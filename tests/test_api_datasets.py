"""Datasets over HTTP: .npy, .npz and JSON uploads, content-addressed by sha256, reused by solves."""

from __future__ import annotations

import io

import httpx
import numpy as np

from cnnrelax import SolveOptions, make_problem, solve

from conftest import assert_problem, wait_job


def _data(seed: int = 3, n: int = 150, d: int = 8, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d // k)
    y = np.maximum(X.reshape(n, k, d // k) @ w, 0).sum(axis=1)
    return X, y


def _npz(X: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    return buffer.getvalue()


def _npy(X: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.column_stack([X, y]))
    return buffer.getvalue()


def test_the_same_data_in_three_formats_has_one_content_address(http: httpx.Client) -> None:
    X, y = _data()
    first = http.post("/v1/datasets", content=_npz(X, y), headers={"content-type": "application/x-npz"})
    assert first.status_code == 201, first.text
    dataset = first.json()
    assert first.headers["location"] == f"/v1/datasets/{dataset['id']}"
    assert (dataset["n"], dataset["d"], dataset["source"]) == (150, 8, "npz")
    assert len(dataset["id"]) == 64
    again = http.post("/v1/datasets", content=_npy(X, y), headers={"content-type": "application/x-npy"})
    assert again.status_code == 200 and again.json()["id"] == dataset["id"]
    as_json = http.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()})
    assert as_json.status_code == 200 and as_json.json()["id"] == dataset["id"]
    sniffed = http.post("/v1/datasets", content=_npz(X, y), headers={"content-type": "application/octet-stream"})
    assert sniffed.json()["id"] == dataset["id"]
    other = http.post("/v1/datasets", content=_npz(X, y + 1.0), headers={"content-type": "application/x-npz"})
    assert other.status_code == 201 and other.json()["id"] != dataset["id"]
    assert http.get(f"/v1/datasets/{dataset['id']}").json()["n"] == 150
    assert dataset["id"] in {item["id"] for item in http.get("/v1/datasets").json()["items"]}


def test_a_solve_on_a_dataset_equals_the_inline_solve_and_the_core(http: httpx.Client) -> None:
    X, y = _data(seed=5)
    dataset_id = http.post("/v1/datasets", content=_npz(X, y),
                           headers={"content-type": "application/x-npz"}).json()["id"]
    options = {"k": 2, "trials": 3, "seed": 1}
    by_id = wait_job(http, http.post("/v1/solves", json={"dataset_id": dataset_id, **options}).headers["location"])
    inline = wait_job(http, http.post("/v1/solves", json={"data": {"X": X.tolist(), "y": y.tolist()}, **options})
                      .headers["location"])
    assert by_id["status"] == inline["status"] == "succeeded"
    assert by_id["result"]["w"] == inline["result"]["w"]
    reference = solve(make_problem(X, y, k=2), SolveOptions(trials=3, seed=1))
    np.testing.assert_allclose(by_id["result"]["w"], reference.w, rtol=1e-9, atol=1e-12)
    # shape checks apply to datasets too
    assert_problem(http.post("/v1/solves", json={"dataset_id": dataset_id, "k": 3}), 422)


def test_delete_removes_the_dataset(http: httpx.Client) -> None:
    X, y = _data(seed=9)
    dataset_id = http.post("/v1/datasets", content=_npz(X, y),
                           headers={"content-type": "application/x-npz"}).json()["id"]
    assert http.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert_problem(http.get(f"/v1/datasets/{dataset_id}"), 404)
    assert_problem(http.delete(f"/v1/datasets/{dataset_id}"), 404)
    problem = assert_problem(http.post("/v1/solves", json={"dataset_id": dataset_id}), 404)  # a missing resource
    assert problem["parameter"] == "dataset_id"


def test_bad_uploads_are_problems(http: httpx.Client) -> None:
    X, y = _data()
    bad = X.copy()
    bad[3, 2] = np.nan
    cases = [
        (b"", "application/x-npz"),
        (b"hello there", "application/octet-stream"),
        (b"PK\x03\x04 not really a zip", "application/x-npz"),
        (_npz(bad, y), "application/x-npz"),
        (_npz(X, y[:-1]), "application/x-npz"),
        (_npy(X, y)[:40], "application/x-npy"),
        (b'{"X": [[1, 2], [3]], "y": [1, 2]}', "application/json"),
        (b'{"X": [[1, 2]], "y": [1, 2], "z": 3}', "application/json"),
        (b"{not json", "application/json"),
    ]
    buffer = io.BytesIO()
    np.savez(buffer, A=X)
    cases.append((buffer.getvalue(), "application/x-npz"))
    buffer = io.BytesIO()
    np.save(buffer, np.array(["a", "b"]))
    cases.append((buffer.getvalue(), "application/x-npy"))
    for body, media in cases:
        assert_problem(http.post("/v1/datasets", content=body, headers={"content-type": media}), 422)
    assert_problem(http.get("/v1/datasets/not-a-sha"), 422)
    assert http.get("/healthz").status_code == 200
