"""``openapi.json`` at the repository root is exactly what the app serves; the export script rewrites it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def test_checked_in_openapi_equals_the_regenerated_one(tmp_path: Path) -> None:
    output = tmp_path / "openapi.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "export_openapi.py"), "--output", str(output)], check=True,
                   capture_output=True)
    assert output.read_text() == (ROOT / "openapi.json").read_text(), \
        "openapi.json is out of date: run python scripts/export_openapi.py"


def test_the_served_schema_is_the_checked_in_one(http: httpx.Client) -> None:
    assert http.get("/openapi.json").json() == json.loads((ROOT / "openapi.json").read_text())


def test_the_fixed_contract_names_are_in_the_schema() -> None:
    schema = json.loads((ROOT / "openapi.json").read_text())
    assert {"/v1/solves", "/v1/solves/{job_id}", "/healthz", "/v1/datasets", "/v1/experiments"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["SolveRequest"]["properties"]
    assert {"data", "dataset_id", "planted", "k", "relaxation", "beta", "trials", "seed", "output_weights",
            "stop_on_certificate", "polish"} <= set(request)
    post = schema["paths"]["/v1/solves"]["post"]["responses"]
    assert "202" in post and "application/problem+json" in post["422"]["content"]
