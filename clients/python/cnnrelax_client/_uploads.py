"""The flow of an upload in parts (sans-I/O, as :mod:`._flows`): a dataset larger than one request body.

``POST /v1/datasets/uploads`` declares it, each part is ``PUT`` as raw little-endian float64 (its rows of ``X``,
then their labels) with its ``Content-Digest``, and ``POST .../complete`` makes the dataset. ``X`` and ``y`` may be
memory-mapped (``numpy.load(path, mmap_mode="r")``): one part is read and held at a time. After a connection
failure the flow asks the upload which parts are missing and sends those (a part sent twice is answered 200).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np

from ._errors import CnnrelaxConnectionError
from ._flows import Flow, HttpRequest, Sleep, request_flow
from ._models import Dataset

#: The bytes a part's body aims at when ``part_rows`` is not given (well under the server's default body limit).
DEFAULT_PART_BYTES = 16 * 1024 * 1024
#: The most parts an upload may have (the server's limit).
MAX_PARTS = 10_000
#: Rows of ``X`` read at a time while computing the content digest.
DIGEST_CHUNK_BYTES = 8 * 1024 * 1024
UPLOADS_PATH = "/v1/datasets/uploads"
FLOAT64 = np.dtype("<f8")


def default_part_rows(n: int, d: int) -> int:
    """Rows a part such that a part's body is about :data:`DEFAULT_PART_BYTES` and the upload has at most
    :data:`MAX_PARTS` parts."""
    return max(1, DEFAULT_PART_BYTES // ((d + 1) * 8), -(-n // MAX_PARTS))


def dataset_sha256(X: Any, y: Any) -> str:
    """The service's content address of ``X`` and ``y`` (the dataset id): sha256 of ``cnnrelax-dataset-v1:{n}x{d}:``,
    then ``X``'s float64 bytes row after row, then ``y``'s; read in chunks (a memory-mapped ``X`` is not loaded)."""
    digest = hashlib.sha256(f"cnnrelax-dataset-v1:{X.shape[0]}x{X.shape[1]}:".encode())
    rows = max(1, DIGEST_CHUNK_BYTES // (8 * max(int(X.shape[1]), 1)))
    for array in (X, y):
        for start in range(0, array.shape[0], rows):
            digest.update(np.ascontiguousarray(array[start:start + rows], dtype=FLOAT64).tobytes())
    return digest.hexdigest()


def part_body(X: Any, y: Any, first: int, rows: int) -> bytes:
    """The body of the part holding rows ``[first, first + rows)``: those rows of ``X``, then their labels."""
    return (np.ascontiguousarray(X[first:first + rows], dtype=FLOAT64).tobytes()
            + np.ascontiguousarray(y[first:first + rows], dtype=FLOAT64).tobytes())


def content_digest(body: bytes) -> str:
    """The ``Content-Digest`` header of a body (RFC 9530, SHA-256)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _checked(X: Any, y: Any) -> tuple[int, int]:
    if getattr(X, "ndim", None) != 2 or getattr(y, "ndim", None) != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be an n x d array and y a vector of n labels; got shapes "
                         f"{getattr(X, 'shape', None)} and {getattr(y, 'shape', None)}.")
    return int(X.shape[0]), int(X.shape[1])


def upload_large(X: Any, y: Any, *, part_rows: int | None, upload_id: str | None, verify: bool, max_retries: int,
                 resume_attempts: int) -> Flow[Dataset]:
    """Upload ``X`` and ``y`` in parts and complete the upload; return the dataset.

    Parameters
    ----------
    X, y : array_like
        ``n x d`` and ``n``; numpy arrays (memory-mapped ones are read a part at a time).
    part_rows : int, optional
        Rows a part (default: :func:`default_part_rows`).
    upload_id : str, optional
        An upload started before (by this method, cut short): only its missing parts are sent.
    verify : bool
        Declare the content digest (computed here in one pass over ``X``), so the server checks the whole.
    max_retries : int
        Retries of a 429/503 answer.
    resume_attempts : int
        How many times a connection failure is followed by asking for the missing parts and sending them.
    """
    n, d = _checked(X, y)
    if upload_id is None:
        declared: dict[str, Any] = {"n": n, "d": d, "dtype": "float64",
                                    "part_rows": part_rows or default_part_rows(n, d)}
        if verify:
            declared["sha256"] = dataset_sha256(X, y)
        created = yield from request_flow(HttpRequest("POST", UPLOADS_PATH, json=declared), max_retries=max_retries)
        upload: dict[str, Any] = created.json()
    else:
        upload = yield from _status(upload_id, max_retries)
        if (upload["n"], upload["d"]) != (n, d):
            raise ValueError(f"The upload {upload_id} declares n={upload['n']}, d={upload['d']}; X is {n} x {d}.")
    path = f"{UPLOADS_PATH}/{upload['id']}"
    failures = 0
    while upload["missing_parts"]:
        try:
            for index in upload["missing_parts"]:
                first = index * upload["part_rows"]
                body = part_body(X, y, first, min(upload["part_rows"], n - first))
                yield from request_flow(HttpRequest("PUT", f"{path}/parts/{index}", content=body, headers={
                    "Content-Type": "application/octet-stream", "Content-Digest": content_digest(body)}),
                    max_retries=max_retries)
            upload = yield from _status(upload["id"], max_retries)
        except CnnrelaxConnectionError:
            failures += 1
            if failures > resume_attempts:
                raise
            yield Sleep(min(0.5 * 2 ** failures, 10.0))
            upload = yield from _resumed_status(upload["id"], max_retries, resume_attempts - failures)
    done = yield from request_flow(HttpRequest("POST", f"{path}/complete"), max_retries=max_retries)
    return Dataset.from_dict(done.json())


def _status(upload_id: str, max_retries: int) -> Flow[dict[str, Any]]:
    response = yield from request_flow(HttpRequest("GET", f"{UPLOADS_PATH}/{upload_id}"), max_retries=max_retries)
    status: dict[str, Any] = response.json()
    return status


def _resumed_status(upload_id: str, max_retries: int, attempts: int) -> Flow[dict[str, Any]]:
    """The upload's status once the service answers again (after a connection failure), trying ``attempts`` more
    times with back-off."""
    for attempt in range(attempts + 1):
        try:
            return (yield from _status(upload_id, max_retries))
        except CnnrelaxConnectionError:
            if attempt == attempts:
                raise
            yield Sleep(min(0.5 * 2 ** (attempt + 1), 10.0))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
