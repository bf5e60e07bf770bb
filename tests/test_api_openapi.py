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


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_every_ref_resolves() -> None:
    schema = json.loads((ROOT / "openapi.json").read_text())
    for ref in _refs(schema):
        assert ref.startswith("#/"), ref
        node = schema
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def test_each_post_links_to_the_get_and_delete_of_what_it_created() -> None:
    schema = json.loads((ROOT / "openapi.json").read_text())
    operation_ids = {op["operationId"]: (method, path) for path, item in schema["paths"].items()
                     for method, op in item.items()}
    for post, created, targets in (("/v1/solves", "202", {("get", "/v1/solves/{job_id}"),
                                                          ("delete", "/v1/solves/{job_id}")}),
                                   ("/v1/datasets", "201", {("get", "/v1/datasets/{dataset_id}"),
                                                            ("delete", "/v1/datasets/{dataset_id}")}),
                                   ("/v1/experiments", "202", {("get", "/v1/experiments/{job_id}"),
                                                               ("delete", "/v1/experiments/{job_id}")})):
        links = schema["paths"][post]["post"]["responses"][created]["links"]
        linked = {operation_ids[link["operationId"]] for link in links.values()}
        assert targets <= linked, (post, linked)
        for link in links.values():
            assert list(link["parameters"].values()) == ["$response.body#/id"]


def test_405_names_every_method_of_the_path(http: httpx.Client) -> None:
    schema = json.loads((ROOT / "openapi.json").read_text())
    for path, concrete in (("/v1/datasets", "/v1/datasets"), ("/v1/solves", "/v1/solves"),
                           ("/v1/solves/{job_id}", "/v1/solves/" + "0" * 32),
                           ("/v1/datasets/{dataset_id}", "/v1/datasets/" + "0" * 64), ("/healthz", "/healthz")):
        answer = http.request("PATCH", concrete)
        assert answer.status_code == 405
        allowed = {method.strip() for method in answer.headers["allow"].split(",")}
        assert allowed == {method.upper() for method in schema["paths"][path]}, (path, allowed)
        assert answer.headers["content-type"].startswith("application/problem+json")
