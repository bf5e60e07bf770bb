"""The face of the OpenAPI document: operation ids, the errors each operation can answer, request examples, and
the ``X-Request-ID`` every answer carries.

- **Operation ids** are the route functions' names (``submit_solve``, ``get_solve``, ``list_solves``,
  ``cancel_solve`` ...): what a generated client calls its methods.
- **Error answers** are listed where they can happen, not everywhere. An operation lists what its route
  declares, and what follows from its shape:

  ======  ====================================================================================
  status  listed for
  ======  ====================================================================================
  400     operations with a request body (malformed JSON)
  401     operations behind the API key (only when keys are configured)
  404     operations with a path parameter, or whose body names a stored dataset (``*dataset_id``)
  409     job submissions (an ``Idempotency-Key`` reused with another body)
  413     operations with a request body (past ``CNNRELAX_MAX_BODY_BYTES``)
  415     operations with a request body (another media type, or a ``Content-Encoding``)
  422     operations with a parameter or a body
  429     job submissions (queue full, or the key's queued jobs at their limit)
  500     every operation but ``/healthz`` (which answers a constant)
  503     ``/v1/`` operations (the store is starting or stopping), and what the route declares
  507     ``POST`` and ``PUT /v1/`` operations (they store something; the disk may be full)
  ======  ====================================================================================

  Statuses answered before routing, for any request (an HTTP edge's 408, 414, 431), go in
  :data:`ANY_REQUEST_ERRORS` and are listed on every operation.
  Job submissions are the operations that take an ``Idempotency-Key`` header. Statuses only a route knows it
  answers (409 when a figure is not made yet, or a dataset is in use; 503 from ``/readyz``) are declared by
  the route (``responses=``) or in :data:`DECLARED_ERRORS`.
- **Request examples**: one per alternative (a planted problem, inline data, a stored dataset; each
  experiment kind), so Swagger UI's "Try it out" starts from a body that the server accepts as it comes.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from .problems import PROBLEM_MEDIA_TYPE
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import MAX_LENGTH as REQUEST_ID_MAX_LENGTH

ERROR_DESCRIPTIONS = {
    "400": "Malformed request body (e.g. invalid JSON).",
    "401": "Missing or invalid X-API-Key (only when keys are configured).",
    "404": "No such resource (or it belongs to another API key).",
    "409": "Conflict: an Idempotency-Key reused with another body.",
    "413": "Request body too large (past CNNRELAX_MAX_BODY_BYTES).",
    "415": "Unsupported media type or Content-Encoding.",
    "422": "Invalid parameter: the problem document names it.",
    "429": "Too many queued jobs: retry after Retry-After seconds.",
    "500": "Internal error (logged with a reference; no details are sent).",
    "503": "Not ready, or busy (connections, requests in flight, body memory): retry after Retry-After seconds.",
    "507": "The server's disk is full: nothing was stored.",
}
_NO_FIGURE = {"409": "The experiment has not succeeded (yet): there is no figure."}
_NO_FILTER = {"409": "The solve has not succeeded (yet), or it produced no filter."}
#: Error statuses routes answer that their shape does not show, by operation id (with what they mean there).
DECLARED_ERRORS: dict[str, dict[str, str]] = {
    "readyz": {"503": "Not ready: the problem document's `checks` say which check failed."},
    "experiment_figure": _NO_FIGURE,
    "experiment_figure_svg": _NO_FIGURE,
    "experiment_figure_pdf": _NO_FIGURE,
    "download_filter": _NO_FILTER,
    "download_result": _NO_FILTER,
    "download_model": _NO_FILTER,
    "delete_dataset": {"409": "Queued or running jobs still use the dataset."},
    # -- uploads in parts (cnnrelax.api.uploads)
    "create_upload": {"413": "A full part's body would pass CNNRELAX_MAX_BODY_BYTES: send fewer rows a part.",
                      "429": "This key's incomplete uploads would pass CNNRELAX_MAX_UPLOAD_BYTES_PER_KEY."},
    "put_upload_part": {"409": "The part arrived before with other bytes, is being received now, or the upload is "
                               "completed.",
                        "413": "The body is longer than the part (by Content-Length, or as it streams in)."},
    "complete_upload": {"409": "Parts are missing (`missing_parts` lists them), or the upload is being completed."},
}
#: Statuses answered for any request before it reaches a route (an HTTP edge in front of the app: e.g. 408 for a
#: slow request, 414 for a long URL, 431 for large headers), listed on every operation; none from the app itself.
ANY_REQUEST_ERRORS: dict[str, str] = {
    "408": "The request's headers or body arrived too slowly (the edge's timeouts; the connection is closed).",
    "414": "The URL is longer than the server takes in one header line.",
    "431": "Request headers too large (one line, all of them, or too many lines).",
}
#: Operations the edge always serves, even past its connection and in-flight caps (see cnnrelax.edge).
PROBE_OPERATIONS = ("healthz", "readyz")
#: Operations that answer a constant (no store, no computation): they list no error of their own.
CONSTANT_OPERATIONS = ("healthz",)
#: Members of a request body that name a stored dataset (a missing one answers 404).
STORED_REFERENCE_SUFFIX = "dataset_id"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

REQUEST_ID_RESPONSE_HEADER = {
    "description": f"The request's id: the {REQUEST_ID_HEADER} sent, when it is a token of 1 to "
                   f"{REQUEST_ID_MAX_LENGTH} letters, digits or `._:-`; otherwise a new one. Log lines name it.",
    "required": True,
    "schema": {"type": "string", "pattern": f"^[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX_LENGTH}}}$"},
}

#: A planted problem a solve recovers in well under a second.
PLANTED_EXAMPLE = {"planted": {"n": 200, "d": 10, "k": 1, "seed": 0}, "trials": 4, "seed": 0}
#: Request examples by (path, method, media type): name -> (summary, value). The first is Swagger UI's default.
REQUEST_EXAMPLES: dict[tuple[str, str, str], dict[str, tuple[str, Any]]] = {
    ("/v1/solves", "post", "application/json"): {
        "planted": ("A planted problem, drawn from its seed", PLANTED_EXAMPLE),
        "data": ("Inline data: X (n x d) and labels y, here y = X w > 0 with w = (1, 0.5)", {
            "data": {"X": [[1.0, 2.0], [2.0, 1.0], [1.0, -1.0], [1.0, 1.0], [0.5, 0.5], [3.0, 1.0]],
                     "y": [2.0, 2.5, 0.5, 1.5, 0.75, 3.5]},
            "k": 1, "trials": 4}),
        "dataset": ("A stored dataset (put the id POST /v1/datasets answered)", {
            "dataset_id": "0" * 64, "k": 1, "trials": 4}),
    },
    ("/v1/experiments", "post", "application/json"): {
        "phase_transition": ("A small phase transition (paper Fig. 1)", {
            "kind": "phase_transition", "k": 1, "d": [4], "n": [8, 32], "repetitions": 2, "trials": 2,
            "methods": ["relaxation"]}),
        "rotated_digits": ("A small rotated-digits regression (paper Table 1) on scikit-learn's digits", {
            "kind": "rotated_digits", "seeds": 1, "filters": 1, "filter_shapes": [[3, 3]], "max_images": 100,
            "fit_samples": 50, "angles_per_image": 1}),
    },
    ("/v1/datasets", "post", "application/json"): {
        "json": ("A small dataset as JSON", {"X": [[1.0, 2.0], [2.0, 1.0], [1.0, -1.0]], "y": [2.0, 2.5, 0.5]}),
    },
}


def operation_id(route: APIRoute) -> str:
    """A route's operation id: its function's name (``submit_solve``), which generated clients use as is."""
    return route.name


def _resolve(schema: dict[str, Any], node: Any) -> Any:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        return target
    return node


def _names_stored_resource(schema: dict[str, Any], node: Any, depth: int = 0) -> bool:
    """Does a body schema have (at its top, or in an alternative) a member naming a stored dataset?"""
    node = _resolve(schema, node)
    if depth > 3 or not isinstance(node, dict):
        return False
    if any(name.endswith(STORED_REFERENCE_SUFFIX) for name in node.get("properties", {})):
        return True
    return any(_names_stored_resource(schema, option, depth + 1)
               for key in ("oneOf", "anyOf", "allOf") for option in node.get(key, []))


def _error_statuses(schema: dict[str, Any], path: str, method: str, operation: dict[str, Any]) -> set[str]:
    """The error statuses an operation can answer, from its shape (see the module's table)."""
    if operation.get("operationId") in CONSTANT_OPERATIONS:
        return set(ANY_REQUEST_ERRORS)
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody")
    submits_job = any(parameter.get("in") == "header" and parameter.get("name", "").lower() == "idempotency-key"
                      for parameter in parameters)
    statuses = {"500", *ANY_REQUEST_ERRORS}
    if body is not None:
        statuses |= {"400", "413", "415", "422"}
        if any(_names_stored_resource(schema, media.get("schema")) for media in body.get("content", {}).values()):
            statuses.add("404")
    if parameters:
        statuses.add("422")
    if any(parameter.get("in") == "path" for parameter in parameters):
        statuses.add("404")
    if "security" in operation:
        statuses.add("401")
    if submits_job:
        statuses |= {"409", "429"}
    if operation.get("operationId") not in PROBE_OPERATIONS:
        statuses.add("503")  # the edge's caps and the body memory budget answer any other request so
    if path.startswith("/v1/"):
        if method in ("post", "put"):
            statuses.add("507")
    return statuses


def document_errors(schema: dict[str, Any]) -> None:
    """List on each operation the error answers it can give, each an ``application/problem+json`` document.

    A status the route declared keeps its description; the others get the generic one.
    """
    problem_content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            declared = {code: answer.get("description") for code, answer in responses.items()
                        if code.isdigit() and int(code) >= 400}
            declared.pop("422", None)  # FastAPI adds its own 422 to every route with parameters: ours replaces it
            declared.update(DECLARED_ERRORS.get(operation.get("operationId", ""), {}))
            for code in declared:
                responses.pop(code, None)
            for code in sorted(_error_statuses(schema, path, method, operation) | set(declared)):
                description = (declared.get(code) or ERROR_DESCRIPTIONS.get(code)
                               or ANY_REQUEST_ERRORS.get(code, "Error."))
                responses[code] = {"description": description, "content": problem_content}


def document_request_id(schema: dict[str, Any]) -> None:
    """State on every answer of every operation that it carries ``X-Request-ID``."""
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for answer in operation.get("responses", {}).values():
                answer.setdefault("headers", {})[REQUEST_ID_HEADER] = dict(REQUEST_ID_RESPONSE_HEADER)


def document_examples(schema: dict[str, Any]) -> None:
    """Put :data:`REQUEST_EXAMPLES` on the request bodies they are for (those the app has)."""
    paths = schema.get("paths", {})
    for (path, method, media_type), examples in REQUEST_EXAMPLES.items():
        body = paths.get(path, {}).get(method, {}).get("requestBody", {})
        media = body.get("content", {}).get(media_type)
        if media is not None:
            media["examples"] = {name: {"summary": summary, "value": value}
                                 for name, (summary, value) in examples.items()}
