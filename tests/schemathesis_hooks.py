"""Schemathesis hooks for tests/test_api_schemathesis.py: the request rules JSON Schema cannot state.

``openapi.json`` states every constraint on one member (enums, bounds, lengths, patterns, one-of sources).
A few rules tie members together (``d`` divisible by ``k``, ``n*d`` under the server's limit, vector lengths
that must equal the filter length ``m`` ...) or depend on stored state (a ``dataset_id`` must name a stored
dataset); no JSON Schema keyword can say them. A schema-valid request refused for one of them is not a
contract violation, but only when the refusal is explained: the hook below recomputes the rules from the
request itself, independently of the service's code, and drops a "schema-valid request rejected" failure
only when the 422 names a member whose rule the request does break. Any other refusal still fails the run.

One more rule is the API's own: DELETE of a *running* job asks it to stop (202), so the job is still there
afterwards; a "deleted resource still available" failure is dropped for a GET that answers that very job with
its cancel requested. DELETE of a queued or finished job, and of a dataset, removes it: those keep the check.

A solve priced past the job time limit (``setting: CNNRELAX_JOB_TIME_LIMIT_S``) is refused whatever its schema
says: the refusal is explained when the package's cost model (``cnnrelax.pricing``, its calibrated data) prices
the request past the server's limit.

Loaded by the schemathesis CLI through ``SCHEMATHESIS_HOOKS=schemathesis_hooks``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from typing import Any

import httpx
import numpy as np
import schemathesis

MAX_ENTRIES = int(os.environ.get("CNNRELAX_MAX_MATRIX_ENTRIES", "20000000"))
LIMIT_S = float(os.environ.get("CNNRELAX_JOB_TIME_LIMIT_S", "3600"))
JOB_PATHS = ("/v1/solves/", "/v1/experiments/")
PATCHING = ("patch_size", "stride", "image_shape", "filter_shape")
CONSTRAINT_VECTORS = ("lower", "upper")
CONSTRAINT_PAIRS = ("equality", "inequality")
#: Members of the filter's length m: a warm start, and the filter and direction of a certification.
FILTER_VECTORS = ("w_init", "w", "r")
#: The operations whose bodies describe a problem as a solve does (the rules below apply to both).
PROBLEM_BODIES = (("POST", "/v1/solves"), ("POST", "/v1/certificates"))
#: Experiment requests are being typed per kind (api/schemas_experiments.py); until that lands their schema
#: is one free-form object, so refusals of schema-valid specs are not checked. Set False when it lands.
EXPERIMENT_REQUESTS_UNTYPED = True


def _patches(body: dict[str, Any], d: int, k: int) -> tuple[set[str], int | None, int | None]:
    """Members whose patching rule ``body`` breaks, and (patches, filter length) when it breaks none."""
    if body.get("image_shape") is not None or body.get("filter_shape") is not None:
        image, kernel = body.get("image_shape"), body.get("filter_shape")
        if image is None or kernel is None:
            return {"image_shape", "filter_shape"}, None, None
        if image[0] * image[1] != d:
            return {"image_shape"}, None, None
        if not (kernel[0] <= image[0] and kernel[1] <= image[1]):
            return {"filter_shape"}, None, None
        stride = body.get("stride") or 1
        count = ((image[0] - kernel[0]) // stride + 1) * ((image[1] - kernel[1]) // stride + 1)
        return set(), count, kernel[0] * kernel[1]
    if body.get("patch_size") is not None:
        size = body["patch_size"]
        if size > d:
            return {"patch_size"}, None, None
        stride = body.get("stride") or size
        return set(), (d - size) // stride + 1, size
    if body.get("stride") is not None:
        return {"stride"}, None, None
    if d % k:
        return {"k"}, None, None
    return set(), k, d // k


def _constraints(constraints: dict[str, Any] | None, m: int) -> set[str]:
    """Constraint members whose shape does not match the filter length ``m`` (or that contradict)."""
    broken: set[str] = set()
    if not constraints:
        return broken
    bounds = {}
    for name in CONSTRAINT_VECTORS:
        value = constraints.get(name)
        if isinstance(value, list):
            if len(value) != m:
                broken.add(name)
                continue
            bounds[name] = np.array(value, dtype=float)
        elif value is not None:
            bounds[name] = np.full(m, float(value))
    if constraints.get("nonnegative") and "lower" in bounds:
        bounds["lower"] = np.maximum(bounds["lower"], 0.0)
    elif constraints.get("nonnegative"):
        bounds["lower"] = np.zeros(m)
    if "lower" in bounds and "upper" in bounds and (bounds["lower"] > bounds["upper"]).any():
        broken.update({"lower", "upper"})
    for name in CONSTRAINT_PAIRS:
        matrix, vector = constraints.get(f"{name}_matrix"), constraints.get(f"{name}_vector")
        if matrix is None and vector is None:
            continue
        if matrix is None or vector is None or not matrix or any(len(row) != m for row in matrix) \
                or len(vector) != len(matrix):
            broken.update({f"{name}_matrix", f"{name}_vector"})
    if broken:
        broken.add("constraints")  # the request model's own check names the object, the core names the member
    return broken


def _ragged(constraints: Any) -> set[str]:
    """Constraint matrices whose rows differ in length, or whose row count differs from their vector's: refused
    by the request model before anything else (the dataset's existence included), whatever ``m`` is."""
    broken: set[str] = set()
    if isinstance(constraints, dict):
        for name in CONSTRAINT_PAIRS:
            matrix, vector = constraints.get(f"{name}_matrix"), constraints.get(f"{name}_vector")
            if isinstance(matrix, list) and len({len(row) for row in matrix if isinstance(row, list)}) > 1:
                broken |= {f"{name}_matrix", "constraints"}
            if isinstance(matrix, list) and isinstance(vector, list) and len(matrix) != len(vector):
                broken |= {f"{name}_matrix", f"{name}_vector", "constraints"}
    return broken


def _integers(value: Any) -> Any:
    """JSON Schema's integers may come as ``3.0``: make them ``int`` (recursively) before computing."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**62:
        return int(value)
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


def broken_rules(body: dict[str, Any], dataset_shape: tuple[int, int] | None) -> set[str]:
    """Members of a schema-valid solve request whose cross-member rule the request breaks."""
    broken: set[str] = set()
    body = {key: _integers(value) if key not in ("data", "constraints") else value for key, value in body.items()}
    planted, data = body.get("planted"), body.get("data")
    if planted is not None:
        n, d, k = planted["n"], planted["d"], planted.get("k", 1)
        source = "planted"
        if d % k:  # the planted model's own patches, whatever the patching option
            broken.add("k")
        if body.get("output_weights") is not None:
            broken.add("output_weights")
        if body.get("k") is not None and not any(body.get(name) is not None for name in PATCHING) \
                and body["k"] != k:
            broken.add("k")
    elif data is not None:
        n, d, k, source = len(data["X"]), len(data["X"][0]), body.get("k") or 1, "data"
        if len({len(row) for row in data["X"]}) > 1:
            broken.add("X")
        if len(data["y"]) != n:
            broken.add("y")
        if body.get("relaxation", "lp") == "lp" and any(_out_of_range(body, value) for value in data["y"]):
            broken.add("y")
    elif dataset_shape is None:
        return {"dataset_id"} | _ragged(body.get("constraints"))
    else:
        (n, d), k, source = dataset_shape, body.get("k") or 1, "data"
        smallest = UPLOADED_MIN_LABEL.get(body["dataset_id"], 1.0)
        if body.get("relaxation", "lp") == "lp" and _out_of_range(body, smallest):
            broken.add("y")
    if n * d > MAX_ENTRIES:
        broken.add(source)
    if body.get("relaxation") == "qp" and body.get("beta", 1e-4) == 0:
        broken.add("beta")
    patch_broken, count, m = _patches(body, d, k)
    broken |= patch_broken
    if count is not None and m is not None:
        weights = body.get("output_weights")
        if weights is not None and planted is None and len(weights) != count:
            broken.add("output_weights")
        broken |= _constraints(body.get("constraints"), m)
        broken |= {name for name in FILTER_VECTORS if body.get(name) is not None and len(body[name]) != m}
    return broken | _ragged(body.get("constraints"))


def _out_of_range(body: dict[str, Any], label: float) -> bool:
    """A label the LP limit refuses for the request's activation: below 0, or at 0 for softplus (whose sums are
    positive); leaky ReLU takes every real."""
    activation = body.get("activation", "relu")
    if activation == "leaky_relu":
        return False
    return label <= 0 if activation == "softplus" else label < 0


#: Smallest label of each dataset this run uploaded, by id (recorded by ``after_call``).
UPLOADED_MIN_LABEL: dict[str, float] = {}


def _labels(body: Any) -> np.ndarray | None:
    """The labels ``y`` of an upload body (JSON, .npy or .npz), or ``None`` when it has none readable."""
    try:
        if isinstance(body, dict):
            return np.asarray(body["y"], dtype=float)
        loaded = np.load(io.BytesIO(body if isinstance(body, bytes) else str(body).encode()), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return np.asarray(loaded[:, -1], dtype=float)
        with loaded:
            return np.asarray(loaded["y"], dtype=float)
    except (ValueError, TypeError, KeyError, IndexError, OSError, EOFError, zipfile.BadZipFile):
        return None


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Remember the labels of every dataset stored, to recompute the LP's ``y >= 0`` rule for its solves."""
    if (case.operation.method.upper(), case.operation.path) == ("POST", "/v1/datasets") \
            and response.status_code in (200, 201):
        labels = _labels(case.body)
        if labels is not None and labels.size:
            UPLOADED_MIN_LABEL[json.loads(response.content)["id"]] = float(labels.min())


#: The most parts an upload in parts may have (docs/uploads.md).
MAX_UPLOAD_PARTS = 10_000


def upload_broken_rules(body: Any) -> set[str]:
    """Members of a schema-valid upload declaration whose cross-member rule it breaks: ``n d`` over the server's
    limit (named ``n``), more than 10,000 parts of ``part_rows`` rows (named ``part_rows``)."""
    if not isinstance(body, dict):
        return set()
    body = _integers(body)
    n, d, part_rows = body.get("n"), body.get("d"), body.get("part_rows")
    if not all(isinstance(value, int) for value in (n, d, part_rows)):
        return set()
    broken = set()
    if n * d > MAX_ENTRIES:
        broken.add("n")
    if -(-n // part_rows) > MAX_UPLOAD_PARTS:
        broken.add("part_rows")
    return broken


def part_refusal_explained(case: Any, problem: dict[str, Any], base: str) -> bool:
    """Is a refused part really not the part (recomputed here): a digest other than its body's SHA-256, a body of
    another length than the part's rows make, an index past the upload's parts?"""
    body = case.body if isinstance(case.body, bytes) else str(case.body or "").encode()
    parameter = problem.get("parameter")
    if parameter == "Content-Digest":
        header = {key.lower(): value for key, value in (case.headers or {}).items()}.get("content-digest", "")
        return header != "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    found = httpx.get(f"{base}/v1/datasets/uploads/{case.path_parameters['upload_id']}",
                      headers=dict(case.headers or {}))
    if found.status_code != 200 or parameter not in ("body", "index"):
        return False
    upload, index = found.json(), int(case.path_parameters["index"])
    if parameter == "index":
        return index >= upload["parts"]
    rows = min(upload["part_rows"], upload["n"] - index * upload["part_rows"])
    return len(body) != rows * (upload["d"] + 1) * 8


def dataset_refusal_explained(body: Any, media_type: str | None) -> bool:
    """Is a refused dataset upload really unreadable as the documented formats (recomputed here)?"""
    if isinstance(body, (dict, list)) or (media_type or "").endswith("json"):
        try:
            data = body if isinstance(body, dict) else json.loads(body)
            X, y = np.array(data["X"], dtype=float), np.array(data["y"], dtype=float)
        except (ValueError, TypeError, KeyError):
            return True
        return X.ndim != 2 or X.size == 0 or y.ndim != 1 or len(y) != len(X) or X.size > MAX_ENTRIES
    raw = body if isinstance(body, bytes) else str(body).encode()
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return True
    if isinstance(loaded, np.ndarray):
        return loaded.ndim != 2 or loaded.shape[1] < 2 or loaded.dtype.kind not in "biuf"
    with loaded:
        return not {"X", "y"} <= set(loaded.files)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure except a 422 on a schema-valid body that breaks a rule recomputed above."""
    keep = _keep(failure, case, response)
    if not keep and os.environ.get("CNNRELAX_DROPPED_LOG"):
        with open(os.environ["CNNRELAX_DROPPED_LOG"], "a") as log:
            log.write(f"{case.operation.method.upper()} {case.operation.path} {response.content[:300]!r}\n")
    return keep


def _keep(failure: Any, case: Any, response: Any) -> bool:
    if getattr(failure, "code", None) == "ST301" and case.operation.path.startswith(JOB_PATHS):
        # DELETE of a running job asks it to stop: the job stays, its cancel requested, and GET answers it.
        answered = json.loads(response.content) if response.status_code == 200 else {}
        return not (answered.get("id") == case.path_parameters.get("job_id") and answered.get("cancel_requested"))
    if getattr(failure, "code", None) != "ST202" or response.status_code != 422:
        return True
    operation = (case.operation.method.upper(), case.operation.path)
    problem = json.loads(response.content or b"{}")
    if operation == ("POST", "/v1/experiments") and EXPERIMENT_REQUESTS_UNTYPED:
        return False
    if operation == ("POST", "/v1/datasets"):
        return not dataset_refusal_explained(case.body, case.media_type)
    if operation == ("POST", "/v1/datasets/uploads"):
        return str(problem.get("parameter")) not in upload_broken_rules(case.body)
    if operation == ("PUT", "/v1/datasets/uploads/{upload_id}/parts/{index}"):
        return not part_refusal_explained(case, problem, str(response.request.url).split("/v1/")[0])
    if operation not in PROBLEM_BODIES or not isinstance(case.body, dict):
        return True
    shape = None
    if case.body.get("dataset_id") is not None:
        base = str(response.request.url).split("/v1/")[0]
        found = httpx.get(f"{base}/v1/datasets/{case.body['dataset_id']}", headers=dict(case.headers or {}))
        shape = (found.json()["n"], found.json()["d"]) if found.status_code == 200 else None
    named = str(problem.get("parameter") or "").split(".")[-1].split("[")[0]
    if problem.get("setting") == "CNNRELAX_JOB_TIME_LIMIT_S":
        return not priced_past_the_limit(case.body, shape)
    return named not in broken_rules(case.body, shape)


def priced_past_the_limit(body: dict[str, Any], dataset_shape: tuple[int, int] | None) -> bool:
    """Does the cost model price this solve past the server's job time limit?"""
    from cnnrelax.pricing import estimate_cost
    from cnnrelax.specs import DataShape, SolveSpec

    try:
        spec = SolveSpec.model_validate({key: _integers(value) for key, value in body.items() if key != "data"})
        data = body.get("data")
        shape = (DataShape(len(data["X"]), len(data["X"][0])) if data is not None
                 else None if dataset_shape is None else DataShape(*dataset_shape))
        return estimate_cost(spec, spec.size(shape)).cpu_s > LIMIT_S
    except ValueError:
        return False
