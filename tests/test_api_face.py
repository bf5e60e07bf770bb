"""The API's face, over real HTTP: operation ids, the error answers each operation lists, request examples that
the server accepts as they come, ``X-Request-ID``, CORS (off by default, on for the listed origins), ``/metrics``
described as it is."""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from cnnrelax.api.request_id import current_request_id, install_log_field

from conftest import ServerProcess, assert_problem

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "openapi.json").read_text())
OPERATIONS = {(method, path): operation for path, item in SCHEMA["paths"].items()
              for method, operation in item.items()}
BODY_ERRORS = {"400", "413", "415"}
APP_ORIGIN = "https://app.example.org"


def _errors(method: str, path: str) -> set[str]:
    return {code for code in OPERATIONS[(method, path)]["responses"] if int(code) >= 400}


def test_operation_ids_are_the_route_names() -> None:
    ids = {operation["operationId"]: (method, path) for (method, path), operation in OPERATIONS.items()}
    assert len(ids) == len(OPERATIONS)  # unique
    assert {"submit_solve": ("post", "/v1/solves"), "get_solve": ("get", "/v1/solves/{job_id}"),
            "list_solves": ("get", "/v1/solves"), "cancel_solve": ("delete", "/v1/solves/{job_id}"),
            "upload_dataset": ("post", "/v1/datasets"), "submit_experiment": ("post", "/v1/experiments"),
            "healthz": ("get", "/healthz")}.items() <= ids.items()
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", operation_id) and "_v1_" not in operation_id, operation_id


def test_errors_are_listed_only_where_they_can_happen() -> None:
    edge = {"408", "414", "431"}  # answered by the HTTP edge (cnnrelax.edge) before any route, probes included
    assert _errors("get", "/healthz") == edge
    assert _errors("get", "/readyz") == edge | {"500", "503"}
    for (method, path), operation in OPERATIONS.items():
        errors = _errors(method, path)
        if "requestBody" not in operation:  # no body: nothing to be malformed, too large or of another type
            assert not errors & BODY_ERRORS, (method, path, errors)
        if not path.startswith("/v1/") or method not in ("post", "put"):  # nothing stored: no disk can be full
            assert "507" not in errors, (method, path)
        if method == "get":  # reading never queues a job
            assert "429" not in errors, (method, path)
        if "{" not in path and method == "get":  # a listing has nothing to miss
            assert "404" not in errors, (method, path)
        for code in errors:  # each a problem document
            assert "application/problem+json" in operation["responses"][code]["content"], (method, path, code)
    assert {"400", "404", "409", "413", "415", "422", "429", "507"} <= _errors("post", "/v1/solves")


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"components": copy.deepcopy(SCHEMA["components"]), **schema})


def _examples() -> list[tuple[str, str, str, dict[str, Any]]]:
    found = []
    for (_, path), operation in OPERATIONS.items():
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            for name, example in media.get("examples", {}).items():
                found.append((path, name, media_type, {**example, "schema": media["schema"]}))
    return found


def test_each_alternative_has_an_example_valid_against_its_schema() -> None:
    examples = _examples()
    names = {(path, name) for path, name, _, _ in examples}
    assert {("/v1/solves", "planted"), ("/v1/solves", "data"), ("/v1/solves", "dataset"),
            ("/v1/experiments", "phase_transition"), ("/v1/experiments", "rotated_digits")} <= names
    for path, name, _, example in examples:
        errors = list(_validator(example["schema"]).iter_errors(example["value"]))
        assert errors == [], (path, name, [error.message for error in errors])
        if path == "/v1/solves":  # one source each, never data, dataset_id and planted together
            assert len({"data", "dataset_id", "planted"} & set(example["value"])) == 1, name
    first = next(iter(OPERATIONS[("post", "/v1/solves")]["requestBody"]["content"]["application/json"]["examples"]))
    assert first == "planted"  # Swagger UI's default body


def test_the_examples_are_accepted_as_they_come(http: httpx.Client) -> None:
    for path, name, media_type, example in _examples():
        answer = http.post(path, content=json.dumps(example["value"]), headers={"Content-Type": media_type})
        if name == "dataset":  # a placeholder id: refused as a missing dataset, naming dataset_id
            assert answer.status_code in (404, 422) and answer.json().get("parameter") in ("dataset_id", None), \
                answer.text
            assert "dataset" in answer.json()["detail"].lower()
            continue
        assert answer.status_code in (200, 201, 202), (path, name, answer.text)
        if answer.status_code == 202:  # a job: it was accepted; no need to spend the CPU on it
            http.delete(answer.headers["location"])


def test_x_request_id_is_echoed_generated_and_bounded(live_server: ServerProcess, http: httpx.Client) -> None:
    kept = http.get("/healthz", headers={"X-Request-ID": "face-test-1234"})
    assert kept.headers["x-request-id"] == "face-test-1234"
    fresh = http.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    assert fresh.headers["x-request-id"] != http.get("/healthz").headers["x-request-id"]
    for bad in ("has space", "x" * 129, "<script>", "a/b", ""):
        replaced = http.get("/healthz", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"]), bad
    assert http.get("/healthz", headers={"X-Request-ID": "y" * 128}).headers["x-request-id"] == "y" * 128
    missing = http.get("/v1/solves/" + "0" * 32, headers={"X-Request-ID": "face-test-404"})
    assert_problem(missing, 404)
    assert missing.headers["x-request-id"] == "face-test-404"  # error answers carry it too
    deadline = time.monotonic() + 10  # the access line is written once the answer has been sent
    while True:
        logged = [json.loads(line) for line in live_server.log_tail(2_000_000).splitlines() if line.startswith("{")]
        if any(entry.get("request_id") == "face-test-404" and entry.get("status") == 404 for entry in logged):
            break
        assert time.monotonic() < deadline, "no log line names the request face-test-404"
        time.sleep(0.1)
    assert not any(entry.get("request_id") == "has space" for entry in logged)


def test_cors_is_off_by_default(http: httpx.Client) -> None:
    preflight = http.options("/v1/solves", headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    simple = http.get("/v1/solves", headers={"Origin": APP_ORIGIN})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_cors_answers_the_listed_origins_only(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(env={"CNNRELAX_CORS_ORIGINS": f"{APP_ORIGIN}, https://other.example.org"}, workers=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        preflight = http.options("/v1/solves", headers={
            "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type, idempotency-key"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "access-control-allow-credentials" not in preflight.headers  # keys travel in a header, not cookies
        refused = http.options("/v1/solves", headers={"Origin": "https://evil.example.com",
                                                      "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in refused.headers
        simple = http.get("/v1/solves", headers={"Origin": APP_ORIGIN})
        assert simple.headers["access-control-allow-origin"] == APP_ORIGIN
        exposed = {name.strip().lower() for name in simple.headers["access-control-expose-headers"].split(",")}
        assert {"location", "retry-after", "x-request-id"} <= exposed
        assert "x-request-id" in simple.headers


@pytest.fixture()
def metric_families(http: httpx.Client) -> set[str]:
    """The metric families served (without prometheus_client's ``*_created`` companions of counters and histograms)."""
    text = http.get("/metrics").text
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ") and "cnnrelax_" in line}
    companions = {name for name in families if name.endswith("_created")
                  and {name.removesuffix("_created"), name.removesuffix("_created") + "_total"} & families}
    return families - companions


def test_metrics_are_documented_as_served(metric_families: set[str]) -> None:
    description = OPERATIONS[("get", "/metrics")]["description"]
    guide = (ROOT / "docs" / "api-face.md").read_text()
    assert metric_families >= {"cnnrelax_jobs", "cnnrelax_queue_depth", "cnnrelax_job_run_seconds"}
    for family in metric_families:
        assert family in description, family
        assert family in guide, family
    assert "/metrics" in guide


def test_the_log_filter_names_the_request_and_leaves_an_explicit_id() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]  # a handler that keeps what reaches it
    logger = logging.getLogger("cnnrelax.test_request_id")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        install_log_field(logger)
        install_log_field(logger)  # idempotent: one filter
        assert len(handler.filters) == 1
        logger.warning("outside a request")
        token = current_request_id.set("req-1")
        try:
            logger.warning("inside")
            logger.warning("explicit", extra={"request_id": "given"})  # no KeyError, the given id kept
        finally:
            current_request_id.reset(token)
    finally:
        logger.removeHandler(handler)
    assert [getattr(record, "request_id", None) for record in records] == [None, "req-1", "given"]


def test_statuses_of_any_request_are_listed_on_every_operation(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """An edge's statuses (answered before routing) land on every operation, /healthz included, and only there."""
    from cnnrelax.api import create_app, openapi_face
    from cnnrelax.settings import Settings

    monkeypatch.setattr(openapi_face, "ANY_REQUEST_ERRORS", {"431": "Request headers too large."})
    schema = create_app(Settings(data_dir=tmp_path)).openapi()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation["responses"]["431"]["description"] == "Request headers too large.", (method, path)
    healthz = schema["paths"]["/healthz"]["get"]["responses"]
    assert {code for code in healthz if int(code) >= 400} == {"431"}
