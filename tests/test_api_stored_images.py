"""Rotated digits on stored images, over real HTTP: an .npz of `images` (and optional `angles`) uploaded as a
dataset, referenced by `images_dataset_id`; the result equals the in-process run on the same file; MNIST-sized
sets are accepted at the default settings; a missing dataset is a 404, a dataset of X and y a 422."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cnnrelax.experiments import run_experiment
from cnnrelax.experiments.rotated_digits import upsampled_digits

from conftest import assert_problem, wait_job

FAST = {"kind": "rotated_digits", "seeds": 1, "filters": 1, "filter_shapes": [[3, 3]], "fit_samples": 60}


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def upload(http: httpx.Client, body: bytes) -> dict[str, Any]:
    answer = http.post("/v1/datasets", content=body, headers={"Content-Type": "application/x-npz"})
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json())


def test_rotated_digits_on_an_uploaded_image_set_equals_the_in_process_run(http: httpx.Client,
                                                                           tmp_path: Path) -> None:
    images = (np.random.default_rng(1).random((80, 12, 10)) * 255).astype(np.uint8)
    body = npz_bytes(images=images)
    dataset = upload(http, body)
    assert dataset["image_shape"] == [12, 10] and dataset["angles_given"] is False and dataset["n"] == 80
    answer = http.post("/v1/experiments", json={**FAST, "images_dataset_id": dataset["id"]})
    assert answer.status_code == 202, answer.text
    assert answer.json()["spec"]["image_shape"] == [12, 10] and answer.json()["spec"]["image_count"] == 80
    done = wait_job(http, answer.headers["location"], timeout=120)
    assert done["status"] == "succeeded", done
    path = tmp_path / "images.npz"
    path.write_bytes(body)
    local = run_experiment({**FAST, "images_path": str(path)}, progress=lambda *a: None, should_stop=lambda: False)
    assert done["result"]["images"] == 80 and done["result"]["source"] == f"dataset {dataset['id']}"
    assert done["result"]["rmse_raw_per_seed"] == pytest.approx(local["rmse_raw_per_seed"], rel=1e-9)
    assert done["result"]["rmse_filter"] == pytest.approx(local["rmse_filter"], rel=1e-6)
    assert http.delete(f"/v1/datasets/{dataset['id']}").status_code == 204  # the job is over: it may go


def test_stored_angles_are_used_as_given(http: httpx.Client) -> None:
    rng = np.random.default_rng(2)
    images = rng.random((60, 8, 8))
    angles = rng.uniform(-30, 30, size=60)
    dataset = upload(http, npz_bytes(images=images, angles=angles))
    assert dataset["angles_given"] is True and dataset["image_shape"] == [8, 8]
    answer = http.post("/v1/experiments", json={**FAST, "filter_shapes": [[3, 3]],
                                                "images_dataset_id": dataset["id"]})
    done = wait_job(http, answer.headers["location"], timeout=120)
    assert done["status"] == "succeeded" and done["spec"]["angles_given"] is True
    assert sum(done["result"]["samples"].values()) == 60  # one sample an image: nothing rotated


def test_an_mnist_sized_set_is_accepted_at_the_default_settings(http: httpx.Client) -> None:
    images = upsampled_digits(6000, seed=3).astype(np.uint8)
    dataset = upload(http, npz_bytes(images=images))
    assert dataset["n"] == 6000
    answer = http.post("/v1/experiments", json={"kind": "rotated_digits", "images_dataset_id": dataset["id"]})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["spec"]["image_count"] == 6000 and 0 < job["estimated_cpu_s"] < 3600
    assert_problem(http.delete(f"/v1/datasets/{dataset['id']}"), 409)  # in use while the job is queued or running
    assert http.delete(answer.headers["location"]).status_code in (200, 202)


def test_a_missing_dataset_is_404_and_a_dataset_of_x_and_y_is_422(http: httpx.Client) -> None:
    missing = "f" * 64
    problem = assert_problem(http.post("/v1/experiments", json={**FAST, "images_dataset_id": missing}), 404)
    assert problem["parameter"] == "images_dataset_id" and missing in problem["detail"]
    problem = assert_problem(http.post("/v1/solves", json={"dataset_id": missing}), 404)
    assert problem["parameter"] == "dataset_id"
    plain = upload(http, npz_bytes(X=np.eye(12), y=np.ones(12)))
    problem = assert_problem(http.post("/v1/experiments", json={**FAST, "images_dataset_id": plain["id"]}), 422)
    assert problem["parameter"] == "images_dataset_id" and "images" in problem["detail"]
    both = {**FAST, "images_dataset_id": plain["id"], "images": np.zeros((10, 4, 4)).tolist()}
    assert assert_problem(http.post("/v1/experiments", json=both), 422)["parameter"] == "images_dataset_id"
