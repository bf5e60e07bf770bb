"""The typed experiment specs: one definition per default and check, the API's requests are these types, the stored
JSON reads back as the same spec, and rows stored as normalised dicts before the types existed still load and run
(a real store, a real server that picks them up)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import typing
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import pytest

from cnnrelax.api.schemas_experiments import PhaseTransitionRequest
from cnnrelax.core.planted import DISTRIBUTIONS
from cnnrelax.experiments import parse_experiment_spec, run_experiment
from cnnrelax.experiments.specs import (
    PhaseTransitionSpec,
    RotatedDigitsRequest,
    RotatedDigitsSpec,
    load_experiment_spec,
)
from cnnrelax.jobs import load_spec
from cnnrelax.specs import LimitExceeded, Limits, price_experiment
from cnnrelax.store import Store
from cnnrelax.types import JobKind

from conftest import ServerProcess, database_snapshot, wait_job

IMAGES = (np.arange(12 * 4 * 4).reshape(12, 4, 4) % 7).astype(float).tolist()
#: Rows as the service stored them before the typed specs: the normalised dicts of the old hand-written validate
#: (written out from that code's output for these requests).
OLD_PHASE_TRANSITION = {
    "kind": "phase_transition", "k": 1, "d": [6], "n": [40], "repetitions": 2, "methods": ["relaxation",
    "pseudo_inverse"], "trials": 1, "seed": 4, "relaxation": "lp", "beta": 0.0001, "gd_iterations": 2000,
    "gd_step": None, "gd_tol": 1e-12, "recovery_tol": 0.0001, "distribution": "gaussian", "polish": True,
    "activation": "relu", "negative_slope": 0.01}
OLD_DIGITS = {
    "kind": "rotated_digits", "seed": 0, "seeds": 1, "angles_per_image": 2, "angle_range": 45.0,
    "filter_shapes": [[2, 2]], "filters": 1, "beta": 0.1, "max_images": None, "fit_samples": 10,
    "train_fraction": 0.6, "validation_fraction": 0.2, "alphas": [0.1, 10.0], "source": "user images",
    "image_shape": [4, 4], "angles_given": False, "images": IMAGES}
REQUESTS = {
    "phase_transition": {"kind": "phase_transition", "k": 1, "d": [6], "n": [40], "repetitions": 2,
                         "methods": ["relaxation", "pseudo_inverse"], "seed": 4},
    "rotated_digits": {"kind": "rotated_digits", "seeds": 1, "images": IMAGES, "filter_shapes": [[2, 2]],
                       "filters": 1, "fit_samples": 10, "alphas": [0.1, 10.0]},
}


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "time" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_the_api_requests_are_the_experiment_specs() -> None:
    """One definition: the API's request types are (or share the fields of) the specs the worker runs."""
    assert issubclass(PhaseTransitionRequest, PhaseTransitionSpec)
    shared = set(RotatedDigitsRequest.model_fields) & set(RotatedDigitsSpec.model_fields)
    assert set(RotatedDigitsRequest.model_fields) == shared
    for name in shared - {"images", "angles"}:
        wire, spec = RotatedDigitsRequest.model_fields[name], RotatedDigitsSpec.model_fields[name]
        assert (wire.default, wire.metadata) == (spec.default, spec.metadata), name
    assert typing.get_args(typing.get_type_hints(PhaseTransitionSpec)["distribution"]) == DISTRIBUTIONS


@pytest.mark.parametrize(("kind", "old"), [("phase_transition", OLD_PHASE_TRANSITION), ("rotated_digits", OLD_DIGITS)])
def test_old_rows_read_back_as_the_typed_spec_of_their_request(kind: str, old: dict[str, Any]) -> None:
    spec = parse_experiment_spec(REQUESTS[kind])
    loaded = load_spec(JobKind.experiment, json.dumps(old))
    assert type(loaded) is type(spec)
    assert loaded.model_dump_json() == spec.model_dump_json()
    assert load_experiment_spec(spec.model_dump_json()).model_dump_json() == spec.model_dump_json()


def test_the_memory_price_is_read_from_the_typed_spec() -> None:
    """The largest cell's n*d bounds memory; the time a sweep takes is the cost model's (tests/test_pricing.py)."""
    spec = parse_experiment_spec({"kind": "phase_transition", "d": [10, 20], "n": [40, 80], "repetitions": 3})
    assert price_experiment(spec, Limits()) == 80 * 20
    with pytest.raises(LimitExceeded) as info:
        price_experiment(spec, Limits(max_matrix_entries=80 * 20 - 1))
    assert info.value.parameter == "n" and info.value.setting == "CNNRELAX_MAX_MATRIX_ENTRIES"
    assert price_experiment(parse_experiment_spec({"kind": "rotated_digits"}), Limits()) == 0


def test_old_rows_in_a_data_dir_run_on_a_new_server(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    """Experiment jobs queued as normalised dicts (stored as the old code stored them) are picked up, read back
    once as typed specs, run, and shown; their results equal the in-process runs of their requests."""
    store = Store(tmp_path)
    ids = {}
    for kind, old in (("phase_transition", OLD_PHASE_TRANSITION), ("rotated_digits", OLD_DIGITS)):
        job, _ = store.create_job("experiment", old, progress_total=2)
        ids[kind] = job.id
    store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "cnnrelax.sqlite3")) as db:  # as the old code wrote it
        stored = dict(db.execute("SELECT id, request FROM jobs").fetchall())
    assert json.loads(stored[ids["rotated_digits"]])["images"] == IMAGES
    server = start_server(data_dir=tmp_path)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for kind, job_id in ids.items():
            done = wait_job(http, f"/v1/experiments/{job_id}", timeout=180)
            assert done["status"] == "succeeded", done
            local = run_experiment(REQUESTS[kind], progress=lambda *a: None, should_stop=lambda: False)
            assert _without_times(done["result"]["cells"]) == _without_times(local["cells"])
            assert done["spec"]["kind"] == kind
        digits = http.get(f"/v1/experiments/{ids['rotated_digits']}").json()
        assert digits["spec"]["images"] == {"shape": [12, 4, 4]} and "angles" not in digits["spec"]


def test_a_posted_experiment_is_stored_as_its_typed_spec(http: httpx.Client, live_server: ServerProcess,
                                                         tmp_path: Path) -> None:
    """The API stores the typed spec's JSON (defaults filled in, grids sorted); the worker runs it."""
    body = {**REQUESTS["phase_transition"], "n": [40, 30, 40]}
    answer = http.post("/v1/experiments", json=body)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    with contextlib.closing(database_snapshot(live_server.data_dir, tmp_path / "snapshot")) as db:
        (request,) = db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert request == parse_experiment_spec(body).model_dump_json()
    assert json.loads(request)["n"] == [30, 40] and json.loads(request)["gd_iterations"] == 2000
    done = wait_job(http, answer.headers["location"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["spec"]["n"] == [30, 40] and done["progress"] == {"done": 4, "total": 4}
