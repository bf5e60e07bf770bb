"""Schemathesis against the app's own OpenAPI schema, over real HTTP: no 5xx, and every answer conforms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_headers_conformance, response_schema_conformance,
    status_code_conformance,
)

from conftest import ServerProcess

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with small limits, so that whatever the fuzzer gets accepted runs briefly."""
    server = ServerProcess(tmp_path_factory.mktemp("fuzzed"), workers=1, env={
        "CNNRELAX_MAX_MATRIX_ENTRIES": "4000", "CNNRELAX_MAX_TRIALS": "2", "CNNRELAX_JOB_TIME_LIMIT_S": "2",
        "CNNRELAX_MAX_QUEUE_DEPTH": "20", "CNNRELAX_MAX_BODY_BYTES": "200000", "CNNRELAX_LOG_LEVEL": "warning"})
    server.start()
    yield server
    server.stop()
    assert "Traceback" not in server.log_tail(200_000) or "unhandled error" not in server.log_tail(200_000)


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: ServerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_answers_match_the_schema(case: schemathesis.Case) -> None:
    if case.query and "wait" in case.query:
        case.query["wait"] = min(float(case.query["wait"] or 0), 0.2) if isinstance(case.query["wait"], (int, float)) \
            else case.query["wait"]
    case.call_and_validate(checks=CHECKS, timeout=30)
