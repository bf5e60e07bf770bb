"""Schemathesis against the served OpenAPI schema, over real HTTP, as an API tester runs it.

The command line runs every check (``--checks all``: no server error, status codes, media types, headers,
response schemas, schema-valid requests accepted, schema-invalid ones refused, ``Allow`` of 405s, missing
headers, authentication, use after delete, ...) in every phase (examples, coverage, fuzzing and the stateful
phase, which follows the schema's links from each POST to the GET and DELETE of what it made). The run must
end with no failure. ``tests/schemathesis.toml`` holds the one configuration (413 is a refusal);
``tests/schemathesis_hooks.py`` drops a refused schema-valid request only when a rule JSON Schema cannot
state (e.g. ``d`` divisible by ``k``) is recomputed and found broken.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ServerProcess

TESTS = Path(__file__).resolve().parent
LIMITS = {"CNNRELAX_MAX_MATRIX_ENTRIES": "4000", "CNNRELAX_MAX_TRIALS": "8", "CNNRELAX_JOB_TIME_LIMIT_S": "2",
          "CNNRELAX_MAX_QUEUE_DEPTH": "20", "CNNRELAX_MAX_BODY_BYTES": "200000"}
MAX_EXAMPLES = int(os.environ.get("CNNRELAX_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with small limits, so that whatever the fuzzer gets accepted runs briefly."""
    server = ServerProcess(tmp_path_factory.mktemp("fuzzed"), workers=1,
                           env={**LIMITS, "CNNRELAX_LOG_LEVEL": "warning"})
    server.start()
    yield server
    server.stop()


def test_schemathesis_all_checks_all_phases_clean(fuzzed_server: ServerProcess, tmp_path: Path) -> None:
    env = {**os.environ, **LIMITS, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "NO_COLOR": "1"}
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(TESTS / "schemathesis.toml"), "run",
               f"{fuzzed_server.url}/openapi.json", "--checks", "all",
               "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES),
               "--seed", "1", "--workers", "1", "--request-timeout", "30", "--continue-on-failure",
               "--report", "junit", "--report-dir", str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-12000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # each phase ran, and found nothing
        assert f"✅ {phase}" in output, output[-3000:]
    assert "unhandled error" not in fuzzed_server.log_tail(2_000_000)
