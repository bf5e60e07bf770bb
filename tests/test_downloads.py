"""Downloads over real HTTP: filter.npy, result.npz and model.onnx of a solve, data.npz of a dataset, an experiment's
figure as SVG and PDF; each equals the JSON it mirrors, parses as its format, and belongs to its tenant."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from cnnrelax.core.problem import make_patching, make_problem

from conftest import ServerProcess, assert_problem, wait_job

ALICE, BOB = "alice-key-downloads-01", "bob-key-downloads-02"
PHASE = {"kind": "phase_transition", "k": 1, "d": [4], "n": [20, 40], "repetitions": 1,
         "methods": ["relaxation"], "seed": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("downloads"), workers=1,
                            env={"CNNRELAX_API_KEYS": f"{ALICE},{BOB}"}).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": ALICE}) as client:
        yield client


@pytest.fixture(scope="module")
def bob(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": BOB}) as client:
        yield client


def _images(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4x5 images whose labels a 2x2 leaky-ReLU filter with stride 1 fits exactly."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((80, 20))
    w = rng.standard_normal(4)
    problem = make_problem(X, np.zeros(80), patching=make_patching(image_shape=(4, 5), filter_shape=(2, 2)),
                           activation="leaky_relu", negative_slope=0.2)
    return X, problem.predict(w), w


@pytest.fixture(scope="module")
def image_solve(alice: httpx.Client) -> tuple[dict, np.ndarray, np.ndarray]:
    X, y, _ = _images()
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    dataset = alice.post("/v1/datasets", content=buffer.getvalue(), headers={"Content-Type": "application/x-npz"})
    assert dataset.status_code in (200, 201), dataset.text
    answer = alice.post("/v1/solves", json={"dataset_id": dataset.json()["id"], "image_shape": [4, 5],
                                            "filter_shape": [2, 2], "activation": "leaky_relu",
                                            "negative_slope": 0.2, "trials": 4})
    assert answer.status_code == 202, answer.text
    job = wait_job(alice, answer.headers["location"])
    assert job["status"] == "succeeded", job
    return job, X, y


def test_filter_and_result_equal_the_json(alice: httpx.Client, image_solve: tuple[dict, np.ndarray, np.ndarray]
                                          ) -> None:
    job, _, _ = image_solve
    result = job["result"]
    answer = alice.get(f"/v1/solves/{job['id']}/filter.npy")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-npy"
    w = np.load(io.BytesIO(answer.content), allow_pickle=False)
    assert w.dtype == np.float64 and np.array_equal(w, np.asarray(result["w"]))
    answer = alice.get(f"/v1/solves/{job['id']}/result.npz")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-npz"
    with np.load(io.BytesIO(answer.content), allow_pickle=False) as archive:
        arrays = dict(archive)
    trials = result["trials"]
    assert np.array_equal(arrays["w"], result["w"]) and "w_star" not in arrays
    assert np.array_equal(arrays["r"], [t["r"] for t in trials])
    for key, member in (("trial_w", "w"), ("trial_w_polished", "w_polished")):
        for row, trial in zip(arrays[key], trials, strict=True):
            assert np.isnan(row).all() if trial[member] is None else np.array_equal(row, trial[member])
    for key, member in (("trial_loss", "loss"), ("trial_raw_loss", "raw_loss"), ("trial_objective", "objective")):
        assert np.array_equal(arrays[key], [np.nan if t[member] is None else t[member] for t in trials],
                              equal_nan=True)
    assert float(arrays["loss"]) == result["loss"]


def test_the_model_predicts_as_the_fitted_network(alice: httpx.Client,
                                                  image_solve: tuple[dict, np.ndarray, np.ndarray]) -> None:
    job, X, y = image_solve
    result = job["result"]
    assert result["network"]["patching"] == {"kind": "image", "height": 4, "width": 5, "filter_height": 2,
                                             "filter_width": 2, "stride": 1}
    answer = alice.get(f"/v1/solves/{job['id']}/model.onnx")
    assert answer.status_code == 200
    session = ort.InferenceSession(answer.content, providers=["CPUExecutionProvider"])
    problem = make_problem(X, y, patching=make_patching(image_shape=(4, 5), filter_shape=(2, 2)),
                           activation="leaky_relu", negative_slope=0.2)
    want = problem.predict(np.asarray(result["w"]))
    got = session.run(None, {"X": X})[0]
    assert np.max(np.abs(got - want)) <= 1e-6 * np.max(np.abs(want))


def test_a_planted_result_carries_w_star(alice: httpx.Client) -> None:
    answer = alice.post("/v1/solves", json={"planted": {"n": 60, "d": 6, "k": 2, "seed": 0}, "trials": 2})
    job = wait_job(alice, answer.headers["location"])
    with np.load(io.BytesIO(alice.get(f"/v1/solves/{job['id']}/result.npz").content)) as archive:
        assert np.array_equal(archive["w_star"], job["result"]["w_star"])


def test_the_dataset_download_is_the_upload(alice: httpx.Client, bob: httpx.Client) -> None:
    X, y, _ = _images(seed=11)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    dataset_id = alice.post("/v1/datasets", content=buffer.getvalue(),
                            headers={"Content-Type": "application/x-npz"}).json()["id"]
    answer = alice.get(f"/v1/datasets/{dataset_id}/data.npz")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-npz"
    # made from the stored X.npy and y.npy as it is sent (chunked: no Content-Length)
    assert int(answer.headers.get("content-length", len(answer.content))) == len(answer.content)
    with np.load(io.BytesIO(answer.content), allow_pickle=False) as archive:
        assert np.array_equal(archive["X"], X) and np.array_equal(archive["y"], y)
    assert_problem(bob.get(f"/v1/datasets/{dataset_id}/data.npz"), 404)


def test_downloads_belong_to_their_tenant(bob: httpx.Client, image_solve: tuple[dict, np.ndarray, np.ndarray]
                                          ) -> None:
    job_id = image_solve[0]["id"]
    for name in ("filter.npy", "result.npz", "model.onnx"):
        assert_problem(bob.get(f"/v1/solves/{job_id}/{name}"), 404)
    assert_problem(bob.get(f"/v1/solves/{'0' * 32}/filter.npy"), 404)


def test_figures_in_svg_and_pdf(alice: httpx.Client, bob: httpx.Client) -> None:
    answer = alice.post("/v1/experiments", json=PHASE)
    assert answer.status_code == 202, answer.text
    location = answer.headers["location"]
    assert wait_job(alice, location, timeout=120)["status"] == "succeeded"
    svg = alice.get(f"{location}/figure.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(list(root.iter())) > 50  # axes, ticks, labels: a drawing, not an empty document
    pdf = alice.get(f"{location}/figure.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.") and pdf.content.rstrip().endswith(b"%%EOF")
    assert b"/Type /Page" in pdf.content and b"startxref" in pdf.content[-200:]
    small = alice.get(f"{location}/figure.png", params={"dpi": 50})
    default = alice.get(f"{location}/figure.png")
    assert small.content[:8] == default.content[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(small.content[16:20], "big")
    assert width * 2 == int.from_bytes(default.content[16:20], "big")  # 50 dpi is half of the default 100
    for route in ("figure.png", "figure.svg", "figure.pdf"):
        body = assert_problem(alice.get(f"{location}/{route}", params={"dpi": 5000}), 422)
        assert "dpi" in str(body)
        assert_problem(bob.get(f"{location}/{route}"), 404)


def test_a_solve_without_a_filter_has_no_filter_or_model(alice: httpx.Client) -> None:
    answer = alice.post("/v1/solves", json={"planted": {"n": 3, "d": 12, "k": 1, "seed": 1}, "trials": 2})
    job = wait_job(alice, answer.headers["location"])
    assert job["status"] == "succeeded" and job["result"]["w"] is None  # the LP is unbounded: no filter
    for name in ("filter.npy", "model.onnx"):
        assert "no filter" in assert_problem(alice.get(f"/v1/solves/{job['id']}/{name}"), 409)["detail"]
    with np.load(io.BytesIO(alice.get(f"/v1/solves/{job['id']}/result.npz").content)) as archive:
        assert "w" not in archive.files and np.isnan(archive["trial_w"]).all() and archive["r"].shape == (2, 12)
