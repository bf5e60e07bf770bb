"""``cnnrelax experiment digits --images F.npz --url ...`` on an MNIST-sized set at the default settings: the
CLI uploads the file as a stored image set (``POST /v1/datasets``, ``application/x-npz``) and submits the
experiment with ``images_dataset_id``, where sending 6000 images of 28x28 inline would be refused
(``CNNRELAX_MAX_EXPERIMENT_NUMBERS``). Its result equals the in-process run of the same file. And the thin
client's ``upload_images`` (sync and async), from a path or from arrays. Real HTTP over loopback against a
live server (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnrelax.cli import app
from cnnrelax.experiments import run_experiment
from cnnrelax.experiments.rotated_digits import upsampled_digits
from cnnrelax.settings import Settings
from cnnrelax_client import AsyncClient, Client

from conftest import ServerProcess

runner = CliRunner()
#: A quick rotated-digits run (one seed, one 3x3 filter) on a seeded subset of the stored images.
QUICK = ("--seeds", "1", "--filters", "1", "--set", "filter_shapes=[[3, 3]]", "--set", "fit_samples=60",
         "--set", "max_images=60")
QUICK_SPEC = {"kind": "rotated_digits", "seed": 0, "seeds": 1, "filters": 1, "filter_shapes": [[3, 3]],
              "fit_samples": 60, "max_images": 60}


@pytest.fixture(scope="module")
def mnist_sized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """6000 synthetic 28x28 digits (scikit-learn's digits upsampled, seeded) as ``uint8`` in an ``.npz``."""
    images = upsampled_digits(6000, seed=5).astype(np.uint8)
    path = tmp_path_factory.mktemp("mnist") / "mnist_images.npz"
    np.savez(path, images=images)
    return path, images


@pytest.fixture()
def client(live_server: ServerProcess) -> Iterator[Client]:
    with Client(live_server.url) as c:
        yield c


def run_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_the_set_is_past_the_inline_limit_at_the_default_settings(mnist_sized: tuple[Path, np.ndarray]) -> None:
    """What makes the test below meaningful: inline, these images would be refused by default."""
    assert mnist_sized[1].size > Settings().max_experiment_numbers


def test_cli_uploads_an_mnist_sized_set_and_runs_on_its_id(live_server: ServerProcess, client: Client,
                                                           mnist_sized: tuple[Path, np.ndarray]) -> None:
    path, images = mnist_sized
    done = run_json("experiment", "digits", "--images", str(path), *QUICK, "--url", live_server.url,
                    "--timeout", "120")
    dataset_id = done["spec"]["images_dataset_id"]
    assert "images" not in done["spec"]  # nothing sent inline
    stored = client.get_dataset(dataset_id)
    assert (stored.n, stored.d, stored.image_shape, stored.angles_given) == (6000, 784, [28, 28], False)
    experiment = client.get_experiment(done["id"])
    assert experiment.status == "succeeded"
    assert experiment.raw["spec"]["images_dataset_id"] == dataset_id
    assert experiment.raw["spec"]["image_count"] == 6000
    result = done["result"]
    assert result["images"] == 60 and result["source"] == f"dataset {dataset_id}"
    # The same run in this process on the file itself (an independent path: no upload, no service).
    local = run_experiment({**QUICK_SPEC, "images_path": str(path)}, progress=lambda *a: None,
                           should_stop=lambda: False)
    assert result["rmse_raw_per_seed"] == pytest.approx(local["rmse_raw_per_seed"], rel=1e-9)
    assert result["rmse_filter"] == pytest.approx(local["rmse_filter"], rel=1e-6)
    # Uploading the same file again names the same stored set (content-addressed): no second copy.
    assert client.upload_images(path).id == dataset_id


def test_cli_in_process_and_over_http_agree_on_a_file_with_angles(live_server: ServerProcess,
                                                                  tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "small.npz"
    np.savez(path, images=rng.random((70, 10, 9)), angles=rng.uniform(-40, 40, size=70))
    quick = ("--seeds", "1", "--filters", "1", "--set", "filter_shapes=[[3, 3]]", "--set", "fit_samples=40")
    remote = run_json("experiment", "digits", "--images", str(path), *quick, "--url", live_server.url,
                      "--timeout", "120")
    local = run_json("experiment", "digits", "--images", str(path), *quick)
    assert remote["spec"]["images_dataset_id"] and local["spec"]["images"] == {"shape": [70, 10, 9]}
    assert sum(remote["result"]["samples"].values()) == 70  # angles given: one sample an image, none rotated
    assert remote["result"]["rmse_raw_per_seed"] == pytest.approx(local["result"]["rmse_raw_per_seed"], rel=1e-9)


@pytest.mark.parametrize("content", ["npy", "no-images"])
def test_a_file_without_images_exits_2_before_any_upload(live_server: ServerProcess, client: Client,
                                                         tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.npz"
    if content == "npy":
        with path.open("wb") as file:
            np.save(file, np.zeros((20, 8, 8)))
    else:
        np.savez(path, pictures=np.zeros((20, 8, 8)))
    before = len(client.list_datasets().items)
    result = runner.invoke(app, ["experiment", "digits", "--images", str(path), "--url", live_server.url, "--quiet"])
    assert result.exit_code == 2
    assert "--images" in result.output and "'images'" in result.output
    assert len(client.list_datasets().items) == before


def test_client_upload_images_from_arrays_and_from_a_path(live_server: ServerProcess, client: Client,
                                                          tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    images = (rng.random((40, 12, 10)) * 255).astype(np.uint8)
    angles = rng.uniform(-30, 30, size=40)
    from_arrays = client.upload_images(images, angles)
    assert (from_arrays.n, from_arrays.d, from_arrays.image_shape, from_arrays.angles_given) == (40, 120, [12, 10],
                                                                                                   True)
    path = tmp_path / "set.npz"
    np.savez(path, images=images, angles=angles)
    assert client.upload_images(path).id == from_arrays.id  # same content, same id (compressed or not)
    assert client.upload_images(str(path)).id == from_arrays.id
    without_angles = client.upload_images(images)
    assert without_angles.angles_given is False and without_angles.id != from_arrays.id
    with pytest.raises(ValueError, match="angles"):
        client.upload_images(path, angles)

    async def upload_async() -> tuple[str, str]:
        async with AsyncClient(live_server.url) as async_client:
            return (await async_client.upload_images(images, angles)).id, (await async_client.upload_images(path)).id

    assert asyncio.run(upload_async()) == (from_arrays.id, from_arrays.id)
