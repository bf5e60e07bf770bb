"""The typed solve spec: defaults written once, checked from shapes as the core would refuse, stored and read back,
and the API deciding a dataset's solve from its metadata alone (its file is never read at submission)."""

from __future__ import annotations

import io
import json
import shutil
import typing

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from cnnrelax import PlantedSpec, SolveOptions
from cnnrelax.api.schemas import SolveRequest
from cnnrelax.core.activations import ACTIVATIONS
from cnnrelax.core.relaxations import REGISTRY
from cnnrelax.errors import InvalidParameterError
from cnnrelax.jobs import load_spec, run_solve_job
from cnnrelax.specs import UNLIMITED, DataShape, LimitExceeded, Limits, SolveSpec
from cnnrelax.types import JobKind

from conftest import assert_problem, wait_job


def test_names_and_defaults_are_the_cores() -> None:
    assert typing.get_args(typing.get_type_hints(SolveSpec)["relaxation"]) == tuple(REGISTRY)
    assert typing.get_args(typing.get_type_hints(SolveSpec)["activation"]) == ACTIVATIONS
    core, spec, wire = SolveOptions(), SolveSpec(), SolveRequest(planted={"n": 4, "d": 2})
    for name in ("relaxation", "beta", "trials", "seed", "stop_on_certificate", "polish", "recovery_tol",
                 "coverage_samples"):
        assert getattr(spec, name) == getattr(core, name) == getattr(wire, name), name
    planted = SolveSpec.model_validate({"planted": {"n": 4, "d": 2}}).planted
    assert planted == PlantedSpec(n=4, d=2)


def test_the_stored_json_reads_back_as_the_same_spec_and_old_rows_still_load() -> None:
    spec = SolveSpec.model_validate({"planted": {"n": 30, "d": 6, "k": 2, "seed": 4}, "activation": "leaky_relu",
                                     "negative_slope": 0.2, "trials": 2, "constraints": {"lower": -1.0}})
    assert spec.planted is not None and spec.planted.activation == "leaky_relu"  # labels drawn with it
    assert spec.planted.negative_slope == 0.2
    assert load_spec(JobKind.solve, spec.model_dump_json()) == spec
    old_row = json.dumps({"planted": {"n": 30, "d": 6, "k": 2, "seed": 4}, "trials": 2, "seed": 0})  # before specs
    assert load_spec("solve", old_row) == SolveSpec.model_validate({"planted": {"n": 30, "d": 6, "k": 2, "seed": 4},
                                                                     "trials": 2})


def test_the_price_is_the_patch_tensor_the_worker_builds() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((100, 50)), rng.random(100)
    for members in ({"patch_size": 10, "stride": 5}, {"k": 5}, {"image_shape": [5, 10], "filter_shape": [2, 3]}):
        spec = SolveSpec.model_validate({**members, "trials": 1})
        entries = spec.check(DataShape(100, 50, labels=y), Limits())
        problem, _ = spec.build_problem((X, y))
        assert entries == problem.patches.size, members
    with pytest.raises(LimitExceeded) as info:
        SolveSpec(patch_size=2, stride=1).check(DataShape(100, 50), Limits(max_patch_entries=4799))
    assert info.value.parameter == "patch_size" and info.value.setting == "CNNRELAX_MAX_PATCH_ENTRIES"


REFUSED = [
    pytest.param({"k": 4}, "k", id="d-not-divisible-by-k"),
    pytest.param({"k": 2, "output_weights": [1.0]}, "output_weights", id="weights-length"),
    pytest.param({"k": 2, "output_weights": [1.0, -1.0]}, "output_weights", id="negative-weight"),
    pytest.param({"k": 2, "output_weights": [1.0, 2.0], "activation": "softplus", "relaxation": "qp"},
                 "output_weights", id="softplus-weights"),
    pytest.param({"image_shape": [2, 2], "filter_shape": [1, 1]}, "image_shape", id="image-shape"),
    pytest.param({"patch_size": 7}, "patch_size", id="patch-too-long"),
    pytest.param({"stride": 2}, "stride", id="stride-alone"),
    pytest.param({"constraints": {"lower": [0.0, 0.0]}}, "lower", id="bound-length"),
    pytest.param({"relaxation": "qp", "beta": 0.0}, "beta", id="qp-beta"),
    pytest.param({"activation": "leaky_relu", "negative_slope": 1.0}, "negative_slope", id="slope"),
    pytest.param({"y": [1.0, 2.0, -0.5, 1.0]}, "y", id="negative-label"),
    pytest.param({"y": [1.0, 0.0, 3.0, 1.0], "activation": "softplus"}, "y", id="softplus-zero-label"),
]


@pytest.mark.parametrize(("members", "parameter"), REFUSED)
def test_the_boundary_refuses_what_the_core_refuses_naming_the_same_parameter(members: dict, parameter: str) -> None:
    """``check`` sees shapes only; building and solving the problem with the core refuses the same request."""
    members = dict(members)
    y = np.array(members.pop("y", [1.0, 2.0, 0.5, 1.0]))
    X = np.arange(24.0).reshape(4, 6) / 10
    with pytest.raises((InvalidParameterError, ValidationError)) as at_boundary:
        SolveSpec.model_validate(members).check(DataShape(4, 6, labels=y), UNLIMITED)
    try:
        spec = SolveSpec.model_validate({**members, "trials": 1})
    except ValidationError:  # refused by the spec's own bounds (SolveOptionsBase): the core, past them, too
        spec = SolveSpec.model_construct(**{**dict(SolveSpec()), **members, "trials": 1})
    with pytest.raises(InvalidParameterError) as in_core:
        run_solve_job(spec, (X, y), None)
    named = at_boundary.value.errors()[0]["loc"][0] if isinstance(at_boundary.value, ValidationError) \
        else at_boundary.value.parameter
    assert named == in_core.value.parameter == parameter
    minimum = int(np.argmin(y))
    if parameter == "y":  # a stored dataset: its smallest label alone, as recorded at upload
        with pytest.raises(InvalidParameterError) as stored:
            SolveSpec.model_validate(members).check(DataShape(4, 6, float(y[minimum]), minimum), UNLIMITED)
        assert stored.value.message == in_core.value.message


def test_a_datasets_solve_is_decided_without_reading_its_file(live_server) -> None:
    """The API checks a solve on a stored dataset from its metadata: with the file gone, a good request is still
    accepted (the worker then reports the file missing) and a bad one still refused."""
    X = np.random.default_rng(3).standard_normal((40, 6))
    y = np.abs(X[:, :3].sum(axis=1))
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        answer = http.post("/v1/datasets", content=buffer.getvalue(), headers={"content-type": "application/x-npz"})
        dataset_id = answer.json()["id"]
        shutil.rmtree(live_server.data_dir / "datasets" / dataset_id)  # its X.npy and y.npy (cnnrelax.dataset_files)
        problem = assert_problem(http.post("/v1/solves", json={"dataset_id": dataset_id, "k": 4}), 422)
        assert problem["parameter"] == "k"
        accepted = http.post("/v1/solves", json={"dataset_id": dataset_id, "k": 2, "trials": 1})
        assert accepted.status_code == 202, accepted.text
        job = wait_job(http, accepted.headers["location"])
        assert job["status"] == "failed" and "no longer stored" in job["error"]


def test_a_data_dir_from_before_recorded_minima_opens_and_its_datasets_are_checked_by_the_worker(tmp_path) -> None:
    import sqlite3

    from cnnrelax.store import Store

    store = Store(tmp_path)
    X, y = np.arange(8.0).reshape(4, 2), np.array([1.0, -2.0, 3.0, 4.0])
    record, _ = store.put_dataset(X, y, "npz")
    assert (record.y_min, record.y_min_index) == (-2.0, 1)
    store.close()
    with sqlite3.connect(tmp_path / "cnnrelax.sqlite3") as db:  # the table as it was before y_min
        db.execute("ALTER TABLE datasets DROP COLUMN y_min")
        db.execute("ALTER TABLE datasets DROP COLUMN y_min_index")
    store = Store(tmp_path)
    old = store.get_dataset(record.id)
    assert old is not None and (old.y_min, old.y_min_index) == (None, None)
    spec = SolveSpec(dataset_id=record.id)
    spec.check(DataShape(old.n, old.d, old.y_min, old.y_min_index), Limits())  # unknown labels pass the boundary
    with pytest.raises(InvalidParameterError) as failed:  # and the worker refuses them when it builds the problem
        run_solve_job(spec, store.load_dataset(record.id), None)
    assert failed.value.parameter == "y" and "y[1] = -2" in failed.value.message
    store.close()
