"""The solve's `activation` over real HTTP: accepted where the activation reaches the labels, refused (422
problem+json naming the parameter) where it cannot, and passed through by the thin client and the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from conftest import assert_problem, wait_job

PLANTED = {"n": 60, "d": 6, "k": 2, "seed": 1}


def _leaky_data(slope: float) -> tuple[np.ndarray, np.ndarray]:
    """A planted leaky-ReLU problem drawn here (not by the server): its labels include negative ones."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 6))
    w = rng.standard_normal(3)
    pre = X.reshape(60, 2, 3) @ w
    y = np.where(pre > 0, pre, slope * pre).sum(axis=1)
    assert (y < 0).any()
    return X, y


def test_leaky_relu_accepts_negative_labels_and_recovers_the_filter(http: httpx.Client) -> None:
    X, y = _leaky_data(0.1)
    body = {"data": {"X": X.tolist(), "y": y.tolist()}, "k": 2, "activation": "leaky_relu", "negative_slope": 0.1,
            "trials": 4}
    answer = http.post("/v1/solves", json=body)
    assert answer.status_code == 202, answer.text
    job = wait_job(http, answer.headers["location"])
    assert job["status"] == "succeeded", job
    assert job["result"]["loss"] <= 1e-8 * float(y @ y)
    predicted = np.where(X.reshape(60, 2, 3) @ np.array(job["result"]["w"]) > 0, 1.0, 0.1)
    assert np.allclose((predicted * (X.reshape(60, 2, 3) @ np.array(job["result"]["w"]))).sum(axis=1), y, atol=1e-6)


def test_relu_refuses_the_same_negative_labels(http: httpx.Client) -> None:
    X, y = _leaky_data(0.1)
    problem = assert_problem(http.post("/v1/solves", json={"data": {"X": X.tolist(), "y": y.tolist()}, "k": 2}), 422)
    assert problem["parameter"] == "y" and "negative" in problem["detail"]


def test_softplus_with_a_negative_label_is_422_naming_y(http: httpx.Client) -> None:
    body = {"data": {"X": [[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]], "y": [1.0, -0.25, 2.0]}, "activation": "softplus"}
    problem = assert_problem(http.post("/v1/solves", json=body), 422)
    assert problem["parameter"] == "y"
    assert "y[1] = -0.25" in problem["detail"] and "softplus" in problem["detail"]
    assert "qp" in problem["detail"]  # the remedy


def test_a_stored_datasets_labels_are_checked_without_decoding_it(http: httpx.Client) -> None:
    """The dataset's smallest label is recorded at upload; a softplus LP on it is refused at once."""
    X = np.arange(12.0).reshape(6, 2)
    y = np.array([1.0, 2.0, 3.0, -4.0, 5.0, 6.0])
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    answer = http.post("/v1/datasets", content=buffer.getvalue(), headers={"content-type": "application/x-npz"})
    assert answer.status_code in (200, 201), answer.text
    dataset_id = answer.json()["id"]
    problem = assert_problem(http.post("/v1/solves", json={"dataset_id": dataset_id, "activation": "softplus"}), 422)
    assert problem["parameter"] == "y" and "y[3] = -4" in problem["detail"]
    accepted = http.post("/v1/solves", json={"dataset_id": dataset_id, "activation": "leaky_relu", "trials": 1})
    assert accepted.status_code == 202, accepted.text


@pytest.mark.parametrize("body", [
    {"planted": PLANTED, "activation": "tanh"},
    {"planted": PLANTED, "activation": ""},
    {"planted": PLANTED, "activation": 1},
], ids=["unknown", "empty", "not-a-string"])
def test_an_unknown_activation_is_422(http: httpx.Client, body: dict) -> None:
    problem = assert_problem(http.post("/v1/solves", json=body), 422)
    assert problem["parameter"] == "activation", problem


@pytest.mark.parametrize("slope", [0, 1, -0.5, 1.5])
def test_negative_slope_outside_0_1_is_422(http: httpx.Client, slope: float) -> None:
    body = {"planted": PLANTED, "activation": "leaky_relu", "negative_slope": slope}
    problem = assert_problem(http.post("/v1/solves", json=body), 422)
    assert problem["parameter"] == "negative_slope", problem


def test_planted_labels_are_drawn_with_the_activation(http: httpx.Client) -> None:
    """absolute: recovery is up to sign, so the result reports the sign (null for relu)."""
    results = {}
    for activation in ("relu", "absolute"):
        answer = http.post("/v1/solves", json={"planted": PLANTED, "activation": activation, "trials": 4})
        assert answer.status_code == 202, answer.text
        job = wait_job(http, answer.headers["location"])
        assert job["status"] == "succeeded", job
        results[activation] = job["result"]
    assert results["relu"]["recovery_sign"] is None
    assert results["absolute"]["recovery_sign"] in (1, -1)
    assert results["absolute"]["recovery_error"] < 1e-6


def test_the_client_passes_activation_through(live_server) -> None:
    from cnnrelax_client import Client, CnnrelaxError

    with Client(live_server.url) as client:
        result = client.solve_planted(60, 6, 2, seed=1, activation="absolute", trials=4, timeout=60)
        assert result.recovery_sign in (1, -1)
        X, y = _leaky_data(0.1)
        fitted = client.solve(X, y, k=2, activation="leaky_relu", negative_slope=0.1, trials=4, timeout=60)
        assert fitted.loss is not None and fitted.loss <= 1e-8 * float(y @ y)
        with pytest.raises(CnnrelaxError) as info:
            client.submit(X, y, k=2, activation="softplus")
        assert info.value.status == 422 and "y[" in info.value.detail


@pytest.mark.parametrize("where", ["service", "in-process"])
def test_the_cli_passes_activation_through(live_server, where: str) -> None:
    command = [sys.executable, "-m", "cnnrelax.cli", "solve", "--planted", "n=60,d=6,k=2,seed=1",
               "--activation", "absolute", "--trials", "4", "--json"]
    if where == "service":
        command += ["--url", live_server.url, "--timeout", "60"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["recovery_sign"] in (1, -1) and result["recovery_error"] < 1e-6
    refused = [*command[:6], "--activation", "leaky_relu", "--negative-slope", "1.5", *command[8:]]
    bad = subprocess.run(refused, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "negative_slope" in bad.stderr, bad.stderr
