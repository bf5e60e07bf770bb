"""The published contract is what the service sends: real responses of every route, over real HTTP.

Each exchange below is sent to a live server; its answer is looked up in the served ``openapi.json`` (the
operation its path and method name, the documented status, the documented media type) and its JSON is
validated against that response schema with ``additionalProperties: false`` forced on every object that
lists its properties. An undeclared member anywhere fails; so does an undocumented status or media type.
Adding a route to the walk is one line in ``EXCHANGES``; an operation of the schema that no exchange
reaches fails the coverage test unless it is listed in ``NOT_WALKED`` with the reason.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from conftest import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
PROBLEM_MEDIA = "application/problem+json"
DATASET = {"X": [[1.0, 0.5, -0.2, 0.3], [0.1, -1.0, 0.4, 2.0], [0.7, 0.2, 0.9, -0.4], [-0.3, 0.8, 0.1, 0.6],
                 [0.5, 0.5, -1.0, 0.2], [1.2, -0.4, 0.3, 0.1]],
           "y": [1.1, 2.0, 0.9, 0.7, 0.4, 1.3]}
PLANTED = {"planted": {"n": 60, "d": 4, "k": 2, "seed": 0}, "trials": 3, "stop_on_certificate": False}
TOO_FEW_SAMPLES = {"planted": {"n": 3, "d": 12, "k": 1, "seed": 1}, "trials": 2}   # the LP is unbounded
PHASE = {"kind": "phase_transition", "k": 1, "d": [4], "n": [12, 24], "repetitions": 2,
         "activation": "leaky_relu", "negative_slope": 0.1}
DIGITS = {"kind": "rotated_digits", "seeds": 1, "filter_shapes": [[3, 3]], "filters": 1, "fit_samples": 20,
          "max_images": 60}
CERTIFY = {"planted": {"n": 60, "d": 4, "k": 2, "seed": 0}}
#: Over the default CNNRELAX_CERTIFY_INLINE_ENTRIES (500,000 patch entries): queued as a job.
CERTIFY_LARGE = {"planted": {"n": 51_000, "d": 10, "k": 1, "seed": 0}, "w": [0.1] * 10, "coverage_samples": 0}
#: Operations of the schema no exchange reaches yet, with the reason.
NOT_WALKED: dict[tuple[str, str], str] = {}


@dataclass
class Walk:
    """What the exchanges remember between them (ids they created), and every answer checked."""

    http: httpx.Client
    ids: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def submit(self, body: dict[str, Any], name: str) -> httpx.Response:
        """Submit a solve; remember its id under ``name``."""
        answer = self.http.post("/v1/solves", json=body)
        assert answer.status_code == 202, answer.text
        self.ids[name] = answer.json()["id"]
        return answer

    def experiment(self, body: dict[str, Any], name: str) -> httpx.Response:
        """Submit an experiment, wait for it to end, remember its id under ``name``; return its final GET."""
        answer = self.http.post("/v1/experiments", json=body)
        assert answer.status_code == 202, answer.text
        self.ids[name] = answer.json()["id"]
        deadline = time.monotonic() + 180
        while True:
            answer = self.http.get(f"/v1/experiments/{self.ids[name]}", params={"wait": 5})
            assert answer.status_code == 200, answer.text
            if answer.json()["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                return answer

    def certification(self) -> httpx.Response:
        """Queue a large certification; remember its id under ``certify``."""
        answer = self.http.post("/v1/certificates", json=CERTIFY_LARGE)
        assert answer.status_code == 202, answer.text
        self.ids["certify"] = answer.json()["id"]
        return answer

    def upload(self, name: str) -> httpx.Response:
        """Start an upload in parts of ``DATASET`` (3 rows a part); remember its id under ``name``."""
        answer = self.http.post("/v1/datasets/uploads", json={"n": 6, "d": 4, "part_rows": 3})
        assert answer.status_code == 201, answer.text
        self.ids[name] = answer.json()["id"]
        return answer

    def part(self, name: str, index: int, scale: float = 1.0) -> httpx.Response:
        """PUT part ``index`` of upload ``name``: its 3 rows of ``DATASET``'s X (times ``scale``), then their y."""
        rows = slice(3 * index, 3 * index + 3)
        body = struct.pack("<15d", *(scale * v for row in DATASET["X"][rows] for v in row), *DATASET["y"][rows])
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        return self.http.put(f"/v1/datasets/uploads/{self.ids[name]}/parts/{index}", content=body,
                             headers={"content-type": "application/octet-stream", "content-digest": digest})

    def job(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Submit a solve and wait for it to end; remember its id under ``name``."""
        self.submit(body, name)
        deadline = time.monotonic() + 60
        while True:
            answer = self.http.get(f"/v1/solves/{self.ids[name]}", params={"wait": 5})
            assert answer.status_code == 200, f"GET of the {name} job answered {answer.status_code}: {answer.text}"
            job = answer.json()
            if job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                return job


Exchange = Callable[[Walk], httpx.Response]
#: (what it shows, the request). Each request's answer is checked against the schema.
EXCHANGES: list[tuple[str, Exchange]] = [
    ("liveness", lambda w: w.http.get("/healthz")),
    ("readiness", lambda w: w.http.get("/readyz")),
    ("metrics", lambda w: w.http.get("/metrics")),
    ("submit a planted solve", lambda w: w.http.post("/v1/solves", json=PLANTED)),
    ("a planted solve, done", lambda w: (w.job(PLANTED, "planted"), w.http.get(f"/v1/solves/{w.ids['planted']}"))[1]),
    ("an unbounded solve, done", lambda w: (w.job(TOO_FEW_SAMPLES, "unbounded"),
                                            w.http.get(f"/v1/solves/{w.ids['unbounded']}"))[1]),
    ("inline data, QP", lambda w: (w.job({"data": DATASET, "k": 2, "relaxation": "qp", "trials": 2,
                                          "constraints": {"l2_bound": 10.0}}, "inline"),
                                   w.http.get(f"/v1/solves/{w.ids['inline']}"))[1]),
    # downloads and certificates (issue 18 item 3, issue 19)
    ("its filter (.npy)", lambda w: w.http.get(f"/v1/solves/{w.ids['planted']}/filter.npy")),
    ("its arrays (.npz)", lambda w: w.http.get(f"/v1/solves/{w.ids['planted']}/result.npz")),
    ("its model (.onnx)", lambda w: w.http.get(f"/v1/solves/{w.ids['planted']}/model.onnx")),
    ("certify a filter at once", lambda w: w.http.post("/v1/certificates", json={**CERTIFY, "w": [0.3, -0.2]})),
    ("certify a large problem, queued", lambda w: w.certification()),
    ("the certification job", lambda w: w.http.get(f"/v1/certificates/{w.ids['certify']}", params={"wait": 10})),
    ("cancel the certification", lambda w: w.http.delete(f"/v1/certificates/{w.ids['certify']}")),
    ("a running job", lambda w: w.submit({"planted": {"n": 400, "d": 40, "k": 1, "seed": 3}, "trials": 50,
                                          "stop_on_certificate": False}, "running")),
    ("cancel it", lambda w: w.http.delete(f"/v1/solves/{w.ids['running']}")),
    ("cancel a finished job", lambda w: w.http.delete(f"/v1/solves/{w.ids['planted']}")),
    ("list solves", lambda w: w.http.get("/v1/solves", params={"limit": 2})),
    ("list solves, next page", lambda w: w.http.get("/v1/solves", params={
        "limit": 2, "cursor": w.http.get("/v1/solves", params={"limit": 2}).json()["next_cursor"]})),
    ("list succeeded solves", lambda w: w.http.get("/v1/solves", params={"status": "succeeded"})),
    ("upload a JSON dataset", lambda w: w.http.post("/v1/datasets", json=DATASET)),
    ("upload it again", lambda w: w.http.post("/v1/datasets", json=DATASET)),
    ("list datasets", lambda w: w.http.get("/v1/datasets")),
    ("get a dataset", lambda w: w.http.get(w.http.post("/v1/datasets", json=DATASET).headers["location"])),
    ("solve a dataset", lambda w: (w.job({"dataset_id": w.http.post("/v1/datasets", json=DATASET).json()["id"],
                                          "k": 2, "trials": 2}, "dataset"),
                                   w.http.get(f"/v1/solves/{w.ids['dataset']}"))[1]),
    ("download a dataset (.npz)", lambda w: w.http.get(
        f"/v1/datasets/{w.http.post('/v1/datasets', json=DATASET).json()['id']}/data.npz")),
    ("delete a dataset", lambda w: w.http.delete(w.http.post("/v1/datasets", json=DATASET).headers["location"])),
    ("404: no such job", lambda w: w.http.get("/v1/solves/" + "0" * 32)),
    ("404: no such dataset", lambda w: w.http.get("/v1/datasets/" + "0" * 64)),
    ("404: no such path", lambda w: w.http.get("/v1/nothing")),
    ("400: malformed JSON", lambda w: w.http.post("/v1/solves", content=b"{",
                                                  headers={"content-type": "application/json"})),
    ("422: invalid members", lambda w: w.http.post("/v1/solves", json={"planted": {"n": 0, "d": 4}, "trails": 3})),
    ("422: core refusal", lambda w: w.http.post("/v1/solves", json={"planted": {"n": 10, "d": 5, "k": 2}})),
    ("422: invalid cursor", lambda w: w.http.get("/v1/solves", params={"cursor": "nonsense"})),
    ("422: invalid dataset", lambda w: w.http.post("/v1/datasets", json={"X": [[1.0]], "y": [1.0, 2.0]})),
    ("405: method not allowed", lambda w: w.http.put("/v1/datasets")),
    ("409: Idempotency-Key reused", lambda w: (
        w.http.post("/v1/solves", json=PLANTED, headers={"Idempotency-Key": "contract-walk"}),
        w.http.post("/v1/solves", json=TOO_FEW_SAMPLES, headers={"Idempotency-Key": "contract-walk"}))[1]),
    ("a phase transition (leaky ReLU), done", lambda w: w.experiment(PHASE, "phase")),
    ("a rotated-digits experiment, done", lambda w: w.experiment(DIGITS, "digits")),
    ("its figure", lambda w: w.http.get(f"/v1/experiments/{w.ids['phase']}/figure.png")),
    ("its events, ended", lambda w: w.http.get(f"/v1/experiments/{w.ids['phase']}/events")),
    ("a solve's events, ended", lambda w: w.http.get(f"/v1/solves/{w.ids['planted']}/events")),
    ("its figure as SVG", lambda w: w.http.get(f"/v1/experiments/{w.ids['phase']}/figure.svg")),
    ("its figure as PDF at 50 dpi", lambda w: w.http.get(f"/v1/experiments/{w.ids['phase']}/figure.pdf",
                                                         params={"dpi": 50})),
    ("list experiments", lambda w: w.http.get("/v1/experiments", params={"limit": 1})),
    ("list experiments, next page", lambda w: w.http.get("/v1/experiments", params={
        "limit": 1, "cursor": w.http.get("/v1/experiments", params={"limit": 1}).json()["next_cursor"]})),
    ("delete a finished experiment", lambda w: w.http.delete(f"/v1/experiments/{w.ids['digits']}")),
    ("404: no such experiment", lambda w: w.http.get("/v1/experiments/" + "0" * 32)),
    ("422: invalid experiment", lambda w: w.http.post("/v1/experiments", json={"kind": "phase_transition", "k": 2,
                                                                                "d": [5]})),
    ("a softplus solve, done", lambda w: (w.job({"planted": {"n": 40, "d": 4, "k": 2, "seed": 1},
                                                 "activation": "softplus", "trials": 2}, "softplus"),
                                          w.http.get(f"/v1/solves/{w.ids['softplus']}"))[1]),
    ("an absolute-value solve (recovery up to sign), done", lambda w: (
        w.job({"planted": {"n": 60, "d": 4, "k": 2, "seed": 2}, "activation": "absolute", "trials": 4}, "absolute"),
        w.http.get(f"/v1/solves/{w.ids['absolute']}"))[1]),
    # uploads in parts (docs/uploads.md)
    ("start an upload in parts", lambda w: w.upload("parts")),
    ("send a part", lambda w: w.part("parts", 1)),
    ("send it again, the same bytes", lambda w: w.part("parts", 1)),
    ("409: the part with other bytes", lambda w: w.part("parts", 1, scale=2.0)),
    ("409: complete with a part missing", lambda w: w.http.post(f"/v1/datasets/uploads/{w.ids['parts']}/complete")),
    ("get an upload", lambda w: w.http.get(f"/v1/datasets/uploads/{w.ids['parts']}")),
    ("list uploads", lambda w: w.http.get("/v1/datasets/uploads")),
    ("complete an upload", lambda w: (w.part("parts", 0), w.http.post(
        f"/v1/datasets/uploads/{w.ids['parts']}/complete"))[1]),
    ("abort an upload", lambda w: (w.upload("aborted"), w.http.delete(
        f"/v1/datasets/uploads/{w.ids['aborted']}"))[1]),
    ("422: an upload too large", lambda w: w.http.post("/v1/datasets/uploads", json={
        "n": 10**9, "d": 4, "part_rows": 10**6})),
    ("413: body too large", lambda w: w.http.post("/v1/datasets", content=b"{" + b" " * 8_000 + b"}",
                                                  headers={"content-type": "application/json"})),
]


def _closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object schema that lists its properties."""
    if isinstance(schema, dict):
        out = {key: _closed(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


class Contract:
    """The served schema, and the check of one answer against it."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.components = _closed(schema.get("components", {}))
        self.templates = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
                          for path in schema["paths"]]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for pattern, template in self.templates:
            if pattern.match(path) and method.lower() in self.schema["paths"][template]:
                return template, self.schema["paths"][template][method.lower()]
        return None

    def check(self, answer: httpx.Response) -> tuple[str, str]:
        """Fail unless ``answer`` is documented and its JSON declares every member; return the operation."""
        method, path = answer.request.method, answer.request.url.path
        assert answer.status_code < 500, f"{method} {path} answered {answer.status_code}: {answer.text[:500]}"
        found = self.operation(method, path)
        if found is None:  # no such operation (nothing to document it on): the answer must be a problem document
            assert answer.status_code in (404, 405), (method, path, answer.status_code)
            problem = {PROBLEM_MEDIA: {"schema": {"$ref": "#/components/schemas/Problem"}}}
            template, responses = path, {str(answer.status_code): {"content": problem}}
        else:
            template, operation = found
            responses = operation["responses"]
        status = str(answer.status_code)
        assert status in responses, f"{method} {template} answered {status}, not documented ({sorted(responses)})"
        for name, header in responses[status].get("headers", {}).items():  # documented headers are sent, as stated
            assert name in answer.headers or not header.get("required"), f"{method} {template} {status}: no {name}"
            if name in answer.headers and "pattern" in header.get("schema", {}):
                assert re.search(header["schema"]["pattern"], answer.headers[name]), (name, answer.headers[name])
        media = answer.headers.get("content-type", "").split(";")[0].strip()
        content = responses[status].get("content")
        if not content:
            assert not answer.content, f"{method} {template} {status} has a body the schema does not document"
            return method, template
        assert media in content, f"{method} {template} {status} sent {media}, documented {sorted(content)}"
        schema = content[media].get("schema", {})
        if media.endswith("json"):
            document = {"components": self.components, **_closed(copy.deepcopy(schema))}
            errors = sorted(jsonschema.Draft202012Validator(document).iter_errors(answer.json()),
                            key=lambda error: list(error.absolute_path))
            assert not errors, (f"{method} {template} {status}: " + "; ".join(
                f"at {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}" for error in errors[:10]))
        return method, template


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("contract"), workers=2,
                           env={"CNNRELAX_MAX_BODY_BYTES": "4096", "CNNRELAX_LOG_LEVEL": "warning"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def walked(contract_server: ServerProcess) -> Iterator[tuple[Contract, Walk, list[tuple[str, httpx.Response]]]]:
    with httpx.Client(base_url=contract_server.url, timeout=60) as http:
        contract = Contract(http.get("/openapi.json").json())
        walk = Walk(http)
        answers = [(name, exchange(walk)) for name, exchange in EXCHANGES]
        yield contract, walk, answers


@pytest.mark.parametrize("name", [name for name, _ in EXCHANGES])
def test_every_answer_is_declared_in_the_schema(walked: Any, name: str) -> None:
    contract, _, answers = walked
    answer = dict(answers)[name]
    contract.check(answer)


def test_the_walk_reaches_every_operation(walked: Any) -> None:
    contract, _, answers = walked
    reached = {contract.check(answer) for _, answer in answers}
    operations = {(method.upper(), path) for path, item in contract.schema["paths"].items() for method in item}
    assert operations - reached - set(NOT_WALKED) == set()
    assert not (set(NOT_WALKED) & reached), "an operation in NOT_WALKED is walked now: drop it from NOT_WALKED"


def test_the_walk_saw_the_rich_results(walked: Any) -> None:
    """The solves walked produced what the checks above must cover: planted evidence, no-filter results."""
    _, walk, answers = walked
    planted = dict(answers)["a planted solve, done"].json()["result"]
    assert planted["w_star"] is not None and planted["trials"][0]["recovered"] is not None
    # NotStarted: a cone membership decided the selected trial, no sub-problem solved (core/solver/shortcut.py)
    assert planted["certificate"]["solver"]["clarabel_status"] in ("Solved", "AlmostSolved", "NotStarted")
    unbounded = dict(answers)["an unbounded solve, done"].json()["result"]
    assert unbounded["status"] == "unbounded" and unbounded["w"] is None
    assert dict(answers)["cancel it"].status_code in (200, 202)


def test_an_undeclared_member_is_caught() -> None:
    """The check fails on a member the schema does not declare, at any depth (the walk can fail)."""
    schema = json.loads((ROOT / "openapi.json").read_text())
    contract = Contract(schema)
    request = httpx.Request("GET", "http://127.0.0.1/v1/datasets")
    body = {"items": [{"id": "a" * 64, "n": 1, "d": 1, "size_bytes": 8, "source": "json",
                       "created_at": "2026-01-01T00:00:00Z"}]}
    sent = {"X-Request-ID": "walk-1"}
    contract.check(httpx.Response(200, json=body, request=request, headers=sent))
    with pytest.raises(AssertionError, match="X-Request-ID"):  # a documented required header left out is caught
        contract.check(httpx.Response(200, json=body, request=request))
    body["items"][0]["shape"] = [1, 1]
    with pytest.raises(AssertionError, match="shape"):
        contract.check(httpx.Response(200, json=body, request=request, headers=sent))


def test_security_is_declared_as_the_server_is_configured(start_server: Callable[..., ServerProcess]) -> None:
    """Keys off (the checked-in schema): no scheme, no requirement. Keys on: both, and a 401 that matches."""
    open_schema = json.loads((ROOT / "openapi.json").read_text())
    assert "securitySchemes" not in open_schema["components"]
    assert all("security" not in op and "401" not in op["responses"]
               for item in open_schema["paths"].values() for op in item.values())
    server = start_server(env={"CNNRELAX_API_KEYS": "k1", "CNNRELAX_LOG_LEVEL": "warning"}, workers=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        keyed = http.get("/openapi.json").json()
        assert keyed["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
        submit = keyed["paths"]["/v1/solves"]["post"]
        assert submit["security"] == [{"APIKeyHeader": []}] and "401" in submit["responses"]
        assert "security" not in keyed["paths"]["/healthz"]["get"]
        Contract(keyed).check(http.post("/v1/solves", json=PLANTED))
        assert http.get("/healthz").status_code == 200


def test_one_version_string() -> None:
    """VERSION at the root is the one place: both packages' metadata, the served schema and the User-Agent."""
    import cnnrelax
    import cnnrelax_client
    from cnnrelax_client._client import USER_AGENT

    written = (ROOT / "VERSION").read_text().strip()
    assert (ROOT / "clients" / "python" / "VERSION").resolve() == (ROOT / "VERSION").resolve()
    assert cnnrelax.__version__ == cnnrelax_client.__version__ == written
    assert USER_AGENT == f"cnnrelax-client/{written}"
    assert json.loads((ROOT / "openapi.json").read_text())["info"]["version"] == written
    for pyproject in (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml"):
        assert re.search(r'^dynamic = \["version"\]', pyproject.read_text(), re.M), pyproject


# ---------------------------------------------------------------------------------------------------
# The thin client's models against openapi.json
# ---------------------------------------------------------------------------------------------------

def _client_models() -> dict[type, tuple[str, bool, dict[str, str]]]:
    """Client dataclass -> (its component in openapi.json, whether it must read every property, renames)."""
    from cnnrelax_client import _models as m

    return {
        m.ConeCertificate: ("ConeCertificateOut", True, {}),
        m.Coverage: ("CoverageOut", True, {}),
        m.SolverStats: ("SolverStatsOut", True, {}),
        m.Certificate: ("CertificateOut", True, {}),
        m.KKT: ("KKTOut", True, {}),
        m.Trial: ("TrialOut", True, {}),
        m.SolveResult: ("SolveResultOut", True, {}),
        m.Progress: ("ProgressOut", True, {}),
        m.Job: ("JobOut", True, {}),
        m.JobPage: ("JobPage", True, {}),
        m.ExperimentPage: ("ExperimentPage", True, {}),
        m.DatasetPage: ("DatasetPage", True, {}),
        m.Dataset: ("DatasetOut", True, {}),
        # Experiment specs and results are being typed per kind: only what the client reads is checked.
        m.Experiment: ("ExperimentOut", False, {}),
    }


CLIENT_ONLY = {"raw", "extra"}  # the JSON as received, and members a newer server may add
ALSO_READS = {"Job": {"JobSummary"}, "Experiment": {"JobSummary"}}  # listings: summaries read as jobs


def _annotation_types(annotation: Any) -> tuple[set[str], bool, Any]:
    """JSON types a client annotation takes, whether it takes null, and the dataclass it holds (if any)."""
    import dataclasses
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds: set[str] = set()
        nullable, held = False, None
        for arg in args:
            if arg is type(None):
                nullable = True
                continue
            more, null, inner = _annotation_types(arg)
            kinds |= more
            nullable |= null
            held = held or inner
        return kinds, nullable, held
    if origin is typing.Literal:
        return {"string"}, False, None
    if annotation is bool:
        return {"boolean"}, False, None
    if annotation is int:
        return {"integer"}, False, None
    if annotation is float:
        return {"number", "integer"}, False, None
    if annotation is str:
        return {"string"}, False, None
    if origin in (list, tuple) or (origin is not None and getattr(origin, "__name__", "") == "ndarray"):
        held = next((arg for arg in args if dataclasses.is_dataclass(arg)), None)
        return {"array"}, False, held
    if annotation is dict or origin is dict:
        return {"object"}, False, None
    if dataclasses.is_dataclass(annotation):
        return {"object"}, False, annotation
    raise AssertionError(f"no JSON type known for the client annotation {annotation!r}")


def _schema_types(schema: dict[str, Any], components: dict[str, Any]) -> tuple[set[str], bool, set[str]]:
    """JSON types a schema property takes, whether null is one, and the components it refers to."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if "enum" in components.get(name, {}):  # a named enum (JobStatus): its values are strings
            return {components[name].get("type", "string")}, False, set()
        return {"object"}, False, {name}
    kinds: set[str] = set()
    nullable, refs = False, set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        more, null, inner = _schema_types(option, components)
        kinds |= more
        nullable |= null
        refs |= inner
    declared = schema.get("type")
    for kind in ([declared] if isinstance(declared, str) else declared or []):
        if kind == "null":
            nullable = True
        else:
            kinds.add(kind)
    if "items" in schema:
        refs |= _schema_types(schema["items"], components)[2]
    for value in schema.get("enum", []) + ([schema["const"]] if "const" in schema else []):
        kinds.add({bool: "boolean", int: "integer", float: "number"}.get(type(value), "string"))
    return kinds, nullable, refs


def test_the_client_models_match_the_schema() -> None:
    """Every member the client reads is in the schema with a type it can hold; it reads every member sent."""
    import dataclasses
    import typing

    schema = json.loads((ROOT / "openapi.json").read_text())
    components = schema["components"]["schemas"]
    models = _client_models()
    problems: list[str] = []
    for model, (component, complete, renames) in models.items():
        declared = components[component]
        properties, required = declared["properties"], set(declared.get("required", []))
        hints = typing.get_type_hints(model)
        fields = {f.name for f in dataclasses.fields(model)} - CLIENT_ONLY
        wire = {renames.get(name, name) for name in fields}
        if complete and set(properties) - wire:
            problems.append(f"{model.__name__} does not read {sorted(set(properties) - wire)} of {component}")
        for name in sorted(fields):
            member = renames.get(name, name)
            if member not in properties:
                problems.append(f"{model.__name__}.{name} reads {member}, which {component} does not declare")
                continue
            kinds, nullable, held = _annotation_types(hints[name])
            sent, sent_null, refs = _schema_types(properties[member], components)
            where = f"{model.__name__}.{name}", f"{component}.{member}"
            if not sent <= kinds:
                problems.append(f"{where[0]} takes {sorted(kinds)}; {where[1]} is {sorted(sent)}")
            if (sent_null or member not in required) and not nullable:
                problems.append(f"{where[0]} cannot be None; {where[1]} may be null or absent")
            accepted = {models[held][0]} | ALSO_READS.get(held.__name__, set()) if held in models else set()
            if held is not None and held in models and not refs & accepted:
                problems.append(f"{where[0]} holds {held.__name__}; {where[1]} is {sorted(refs)}")
    from cnnrelax_client import Job

    assert set(components["JobSummary"]["properties"]) <= {f.name for f in dataclasses.fields(Job)}
    assert problems == []


def test_the_client_reads_a_real_solve_whole(walked: Any) -> None:
    """Parsed by the client, a real solve leaves nothing in ``extra``, and every member sent is read."""
    from cnnrelax_client import Job

    _, _, answers = walked
    data = dict(answers)["a planted solve, done"].json()
    job = Job.from_dict(data)
    assert job.result is not None and job.result.certificate.solver is not None
    assert job.result.certificate.solver.extra == {} and all(trial.solver.extra == {} for trial in job.result.trials)
    assert job.result.certificate.solver.clarabel_status == data["result"]["certificate"]["solver"]["clarabel_status"]
    assert job.result.trials[0].raw_loss == data["result"]["trials"][0]["raw_loss"]
    assert job.created_at == data["created_at"] and job.attempts == data["attempts"]
