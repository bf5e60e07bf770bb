"""``/v1/datasets/uploads``: a dataset larger than one request body, uploaded in parts (resumable, each part priced).

1. ``POST /v1/datasets/uploads`` declares ``n``, ``d``, ``dtype`` (float64), ``part_rows`` and optionally the
   content digest; the whole upload is priced before anything is stored (``n d`` against
   ``CNNRELAX_MAX_MATRIX_ENTRIES``: 422; a full part's body against ``CNNRELAX_MAX_BODY_BYTES``: 413; the key's
   incomplete uploads against ``CNNRELAX_MAX_UPLOAD_BYTES_PER_KEY``: 429; free space: 507). ``X.npy`` and
   ``y.npy`` are then preallocated (:class:`cnnrelax.dataset_files.UploadFiles`).
2. ``PUT /v1/datasets/uploads/{id}/parts/{index}``, body ``application/octet-stream``: the part's rows of ``X``
   then their labels, raw little-endian float64, with ``Content-Digest: sha-256=:<base64>:`` (RFC 9530). A body
   longer than the part is refused with 413 before it is read (``Content-Length``) or as soon as it passes the
   part's size; it streams to its place in the files a buffer at a time (bounded memory: the body-memory budget
   charges such a body :data:`STREAMED_BODY_MEMORY_BYTES`, not a multiple of its length), is fsynced, then
   recorded (SQLite) and acknowledged, so a part acknowledged survives a crash. The same part again with the same
   bytes answers 200 again; with other bytes 409. Parts come in any order.
3. ``GET /v1/datasets/uploads/{id}`` lists the missing parts (resume from it); ``DELETE`` aborts.
4. ``POST /v1/datasets/uploads/{id}/complete`` checks every part arrived (409 naming the missing ones), reads the
   files once in chunks (the content digest, finiteness, the smallest label), checks the declared digest (422),
   and makes the dataset (``source: parts``), which solves name by ``dataset_id`` as any other.

Uploads that receive no part for ``CNNRELAX_UPLOAD_EXPIRY_S`` are deleted by the purge.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from fastapi import APIRouter, Header, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from ..dataset_files import PartSink, PartTooLarge, dataset_stored, row_bytes, scan_dataset
from ..specs import LimitExceeded
from ..store import UPLOAD_COMPLETED, DatasetRecord, Store, UploadQuotaFull, UploadRecord
from .dependencies import ServiceDep, Tenant, TenantDep
from .problems import ApiError
from .schemas import DatasetOut
from .schemas_uploads import (
    MAX_UPLOAD_PARTS,
    UPLOAD_ID_PATTERN,
    UploadCreate,
    UploadOut,
    UploadPage,
    UploadPartOut,
)
from .service import Service
from .views import dataset_view

router = APIRouter(prefix="/v1/datasets/uploads", tags=["uploads"])

UPLOAD_ID = Path(description="The upload's id (POST /v1/datasets/uploads answered it).", pattern=UPLOAD_ID_PATTERN)
PART_INDEX = Path(ge=0, lt=MAX_UPLOAD_PARTS, description="The part's index: it holds rows [index part_rows, "
                                                         "min(n, (index + 1) part_rows)).")
#: The media type of a part's body.
PART_MEDIA_TYPE = "application/octet-stream"
#: Bytes of a part's body gathered before they are written (one write, hash and copy a buffer).
STREAM_BUFFER_BYTES = 1024 * 1024
#: What a part's body is charged against CNNRELAX_MAX_BODY_MEMORY_BYTES, whatever its length: the buffer, the
#: bytes joined into it, and what the protocol holds before it pauses reading.
STREAMED_BODY_MEMORY_BYTES = 3 * STREAM_BUFFER_BYTES
#: A part's route (what the body-memory budget charges as streamed to disk).
PART_PATH = re.compile(r"^/v1/datasets/uploads/[^/]+/parts/[^/]+$")
#: Seconds a client is asked to wait when its uploads hold their quota.
QUOTA_RETRY_AFTER_S = 60

PART_BODY = {
    "required": True,
    "description": "The part's rows of X (C order: row after row, d numbers each) followed by their labels y, every "
                   "number little-endian IEEE 754 binary64: exactly rows (d + 1) 8 bytes.",
    "content": {PART_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}
#: ``Content-Digest`` (RFC 9530) as a part takes it: one ``sha-256`` member, the 32 bytes in base64 (RFC 8941).
CONTENT_DIGEST_PATTERN = r"^sha-256=:([A-Za-z0-9+/]{43}=):$"
DIGEST_HEADER = Header(alias="Content-Digest", pattern=CONTENT_DIGEST_PATTERN,
                       description="The SHA-256 of the body (RFC 9530): `sha-256=:<base64 of the 32 bytes>:`.")


def streamed_body_cost(scope: dict[str, Any]) -> int | None:
    """What the body-memory budget charges a request's body: :data:`STREAMED_BODY_MEMORY_BYTES` for a part (streamed
    to disk a buffer at a time), ``None`` (the usual multiple of its length) for anything else."""
    if scope.get("method") == "PUT" and PART_PATH.match(scope.get("path", "")):
        return STREAMED_BODY_MEMORY_BYTES
    return None


# -- parts received now (one request a part: two never write the same rows at once) -----------------------
class _Claims:
    """Keys held by requests of this process: a part being received, an upload being completed."""

    def __init__(self) -> None:
        self._held: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: tuple[str, ...], busy: str) -> Iterator[None]:
        with self._lock:
            if key in self._held:
                raise ApiError(409, busy, title="Busy", headers={"Retry-After": "1"})
            self._held.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(key)


CLAIMS = _Claims()


# -- answers ----------------------------------------------------------------------------------------
def _when(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=timezone.utc)


def upload_view(upload: UploadRecord, received: dict[int, str]) -> UploadOut:
    return UploadOut(id=upload.id, n=upload.n, d=upload.d, dtype="float64", part_rows=upload.part_rows,
                     sha256=upload.sha256,
                     status="completed" if upload.status == UPLOAD_COMPLETED else "receiving", parts=upload.parts,
                     part_bytes=upload.part_bytes(0), received_parts=len(received),
                     missing_parts=[] if upload.status == UPLOAD_COMPLETED else
                     [index for index in range(upload.parts) if index not in received],
                     dataset_id=upload.dataset_id if upload.status == UPLOAD_COMPLETED else None,
                     created_at=_when(upload.created_at), expires_at=_when(upload.expires_at))


def upload_not_found(upload_id: str) -> ApiError:
    return ApiError(404, f"No upload {upload_id} is in progress for this API key (it expired, was aborted, or never "
                         "existed); start one with POST /v1/datasets/uploads.", title="Upload not found",
                    parameter="upload_id")


def _owned_upload(store: Store, upload_id: str, tenant: Tenant) -> UploadRecord:
    upload = store.get_upload(upload_id, owner=tenant.sees)
    if upload is None:
        raise upload_not_found(upload_id)
    return upload


# -- create -----------------------------------------------------------------------------------------
def price_upload(service: Service, request: UploadCreate, owner: str) -> None:
    """Refuse an upload the server will not take, before anything is stored: 422, 413, 429 or 507."""
    settings = service.settings
    parts = -(-request.n // request.part_rows)
    if parts > MAX_UPLOAD_PARTS:
        raise ApiError(422, f"part_rows = {request.part_rows} cuts n = {request.n} rows into {parts} parts, more than "
                            f"the {MAX_UPLOAD_PARTS} an upload may have; send at least "
                            f"{-(-request.n // MAX_UPLOAD_PARTS)} rows a part.", title="Invalid parameter",
                       parameter="part_rows", limit=MAX_UPLOAD_PARTS)
    entries = request.n * request.d
    if entries > settings.max_matrix_entries:
        raise LimitExceeded("n", f"The upload declares n = {request.n} rows of d = {request.d} ({entries} numbers in "
                                 "X), more than this server takes in one dataset.",
                            limit=settings.max_matrix_entries, setting="CNNRELAX_MAX_MATRIX_ENTRIES")
    row = row_bytes(request.d)
    part_bytes = min(request.part_rows, request.n) * row
    if part_bytes > settings.max_body_bytes:
        raise ApiError(413, f"part_rows = {request.part_rows} makes a part's body {part_bytes} bytes ((d + 1) 8 = "
                            f"{row} a row), more than this server takes in one body ({settings.max_body_bytes} "
                            f"bytes, CNNRELAX_MAX_BODY_BYTES); send at most {settings.max_body_bytes // row} "
                            "rows a part.", title="Part too large", parameter="part_rows",
                       limit=settings.max_body_bytes, setting="CNNRELAX_MAX_BODY_BYTES")
    size = request.n * row
    store = service.require_store()
    held = store.uploads_held_bytes(owner)
    if held + size > settings.max_upload_bytes_per_key:
        raise quota_error(UploadQuotaFull(held, size, settings.max_upload_bytes_per_key))
    service.require_space(size)


def quota_error(exc: UploadQuotaFull) -> ApiError:
    return ApiError(429, f"This API key's incomplete uploads declare {exc.held} bytes; this one ({exc.needed} bytes: "
                         f"n (d + 1) 8) would pass the {exc.limit} one key may hold "
                         "(CNNRELAX_MAX_UPLOAD_BYTES_PER_KEY); complete or abort an upload first, or send a smaller "
                         "one.", title="Too many upload bytes", headers={"Retry-After": str(QUOTA_RETRY_AFTER_S)},
                    parameter="n", limit=exc.limit, setting="CNNRELAX_MAX_UPLOAD_BYTES_PER_KEY")


@router.post("", status_code=201, response_model=UploadOut, summary="Start an upload in parts",
             response_model_exclude_none=True,  # no dataset_id before completion, no sha256 undeclared
             responses={201: {"headers": {"Location": {"description": "The upload's URL.",
                                                       "schema": {"type": "string"}}}}})
def create_upload(request: UploadCreate, response: Response, service: ServiceDep, tenant: TenantDep) -> UploadOut:
    """Declare a dataset to send in parts: priced whole before anything is stored; its files are preallocated."""
    price_upload(service, request, tenant.owner)
    store = service.require_store()
    try:
        upload = store.create_upload(tenant.owner, request.n, request.d, request.part_rows, request.sha256,
                                     time.time() + service.settings.upload_expiry_s,
                                     service.settings.max_upload_bytes_per_key)
    except UploadQuotaFull as exc:
        raise quota_error(exc) from None
    response.headers["Location"] = f"{router.prefix}/{upload.id}"
    return upload_view(upload, {})


@router.get("", response_model=UploadPage, summary="List uploads in parts", response_model_exclude_none=True)
def list_uploads(service: ServiceDep, tenant: TenantDep) -> UploadPage:
    store = service.require_store()
    return UploadPage(items=[upload_view(upload, store.upload_part_digests(upload.id))
                             for upload in store.list_uploads(owner=tenant.sees)])


@router.get("/{upload_id}", response_model=UploadOut, summary="An upload in parts, with its missing parts",
            response_model_exclude_none=True)
def get_upload(service: ServiceDep, tenant: TenantDep, upload_id: str = UPLOAD_ID) -> UploadOut:
    """The upload: the parts received and those missing (send these to resume)."""
    store = service.require_store()
    upload = _owned_upload(store, upload_id, tenant)
    return upload_view(upload, store.upload_part_digests(upload.id))


@router.delete("/{upload_id}", status_code=204, response_class=Response, summary="Abort an upload in parts")
def abort_upload(service: ServiceDep, tenant: TenantDep, upload_id: str = UPLOAD_ID) -> Response:
    """Delete the upload and every part received (a completed upload's dataset stays)."""
    if not service.require_store().delete_upload(upload_id, owner=tenant.sees):
        raise upload_not_found(upload_id)
    return Response(status_code=204)


# -- parts ------------------------------------------------------------------------------------------
def part_digest(header: str) -> str:
    """The hex SHA-256 a ``Content-Digest`` header states; 422 naming the header when it states none."""
    match = re.fullmatch(CONTENT_DIGEST_PATTERN, header)
    raw = b""
    if match is not None:
        with contextlib.suppress(binascii.Error, ValueError):
            raw = base64.b64decode(match.group(1), validate=True)
    if len(raw) != 32:
        shown = header[:80]
        raise ApiError(422, f"The Content-Digest header ({shown!r}) states no SHA-256 of the body; send "
                            "`Content-Digest: sha-256=:<base64 of the body's 32-byte SHA-256>:` (RFC 9530).",
                       title="Invalid parameter", parameter="Content-Digest")
    return raw.hex()


def _part_answer(upload: UploadRecord, index: int, digest: str) -> UploadPartOut:
    first, rows = upload.part_span(index)
    return UploadPartOut(upload_id=upload.id, index=index, first_row=first, rows=rows,
                         size_bytes=upload.part_bytes(index), sha256=digest)


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def _receive(request: Request, sink: PartSink, index: int) -> str:
    """Stream the body into ``sink`` a buffer at a time; its SHA-256 once it is whole and durable."""
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= STREAM_BUFFER_BYTES:
                await run_in_threadpool(sink.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await run_in_threadpool(sink.write, bytes(buffer))
    except PartTooLarge as exc:
        raise ApiError(413, f"The body of part {index} passed its {exc.expected} bytes (its rows times (d + 1) 8); a "
                            "part's body is exactly that long.", title="Part too large", parameter="body",
                       limit=exc.expected) from None
    if sink.received != sink.expected:
        raise ApiError(422, f"The body of part {index} holds {sink.received} bytes; the part is {sink.expected} bytes "
                            "(its rows of X, then their labels, float64): send the whole part.",
                       title="Invalid parameter", parameter="body")
    return await run_in_threadpool(sink.finish)


@router.put("/{upload_id}/parts/{index}", status_code=201, response_model=UploadPartOut,
            openapi_extra={"requestBody": PART_BODY}, summary="Send one part of an upload",
            responses={200: {"model": UploadPartOut, "description": "The same part was received before, with the "
                                                                     "same bytes."}})
async def put_upload_part(request: Request, response: Response, service: ServiceDep, tenant: TenantDep,
                          upload_id: str = UPLOAD_ID, index: int = PART_INDEX, content_digest: str = DIGEST_HEADER
                         ) -> UploadPartOut:
    """Store part `index` (201; 200 when the same bytes arrived before; 409 when other bytes did)."""
    store = service.require_store()
    upload = await run_in_threadpool(_owned_upload, store, upload_id, tenant)
    if upload.status == UPLOAD_COMPLETED:
        raise ApiError(409, f"The upload {upload_id} is completed (dataset {upload.dataset_id}); it takes no more "
                            "parts.", title="Upload completed", parameter="upload_id")
    if index >= upload.parts:
        raise ApiError(422, f"Part {index} does not exist: the upload has {upload.parts} parts, 0 to "
                            f"{upload.parts - 1}.", title="Invalid parameter", parameter="index")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != PART_MEDIA_TYPE:
        raise ApiError(415, f"A part's body is raw float64 bytes sent as {PART_MEDIA_TYPE}, got Content-Type "
                            f"{media or 'missing'}.", title="Unsupported media type", parameter="Content-Type")
    digest = part_digest(content_digest)
    first, rows = upload.part_span(index)
    expected = upload.part_bytes(index)
    declared = _declared_length(request)
    if declared is not None and declared > expected:
        raise ApiError(413, f"Part {index} holds {rows} rows, {expected} bytes ((d + 1) 8 a row); the body declares "
                            f"{declared} (Content-Length). Send exactly the part's rows of X, then their labels.",
                       title="Part too large", parameter="body", limit=expected)
    if declared is not None and declared < expected:
        raise ApiError(422, f"Part {index} holds {rows} rows, {expected} bytes ((d + 1) 8 a row); the body declares "
                            f"only {declared} (Content-Length): send the whole part.", title="Invalid parameter",
                       parameter="body")
    with CLAIMS.hold((str(store.path), upload_id, str(index)),
                     f"Part {index} of upload {upload_id} is being received on another request; retry once it "
                     "is answered."):
        before = await run_in_threadpool(store.upload_part_digest, upload_id, index)
        if before is not None and before != digest:
            raise ApiError(409, f"Part {index} was received before with other bytes (SHA-256 {before}, this one "
                                f"{digest}); a part cannot change. Abort the upload (DELETE) to start over.",
                           title="Part conflict", parameter="index")
        if before is None:
            service.require_space(expected)
        sink = PartSink(store.upload_files(upload), first, rows, write=before is None)
        try:
            received = await _receive(request, sink, index)
        finally:
            sink.close()
        if received != digest:
            raise ApiError(422, f"The body of part {index} has SHA-256 {received}, not the {digest} its Content-Digest "
                                "states: it was damaged on its way; send it again.", title="Digest mismatch",
                           parameter="Content-Digest")
        alive, recorded = await run_in_threadpool(store.record_upload_part, upload_id, index, digest, expected,
                                                  time.time() + service.settings.upload_expiry_s)
    if not alive:
        raise ApiError(409, f"The upload {upload_id} was completed or aborted while part {index} arrived.",
                       title="Upload closed", parameter="upload_id")
    response.status_code = 201 if recorded is None else 200
    return _part_answer(upload, index, digest)


# -- complete ---------------------------------------------------------------------------------------
def _make_dataset(service: Service, upload: UploadRecord) -> tuple[DatasetOut, bool]:
    store = service.require_store()
    received = store.upload_part_digests(upload.id)
    missing = [index for index in range(upload.parts) if index not in received]
    if missing:
        shown = ", ".join(str(index) for index in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ApiError(409, f"{len(missing)} of the {upload.parts} parts have not arrived ({shown}); send them "
                            "(PUT .../parts/{index}), then complete again.", title="Parts missing",
                       parameter="parts", missing_parts=missing)
    files = store.upload_files(upload)
    known = None if upload.dataset_id is None else store.get_dataset(upload.dataset_id)
    if not files.exists() and known is not None:  # verified and stored before a crash: only the grant is left
        stored, created = store.complete_upload(upload, dataclasses.replace(known, source="parts"))
        return dataset_view(stored), created
    if files.exists():
        folder = files.folder
    elif upload.dataset_id is not None and dataset_stored(store.dataset_dir, upload.dataset_id):
        folder = store.dataset_path(upload.dataset_id)  # verified, and moved before a crash: finish the rest
    else:
        raise ApiError(409, f"The files of upload {upload.id} are gone; abort it and upload again.",
                       title="Upload lost", parameter="upload_id")
    scan = scan_dataset(folder)
    for name, row in (("X", scan.bad_x_row), ("y", scan.bad_y_row)):
        if row is not None:
            part = row // upload.part_rows
            store.forget_upload_part(upload.id, part)
            raise ApiError(422, f"{name} holds NaN or an infinity at row {row} (part {part}); part {part} was "
                                "dropped: send it again with finite numbers, then complete again.",
                           title="Invalid parameter", parameter=name)
    if upload.sha256 is not None and upload.sha256 != scan.digest:
        raise ApiError(422, f"The content's digest is {scan.digest}, not the declared sha256 {upload.sha256}: a part "
                            "holds other rows than meant. Abort the upload and send it again (or complete it without "
                            "declaring a digest).", title="Digest mismatch", parameter="sha256")
    store.verify_upload(upload.id, scan.digest)
    record = DatasetRecord(scan.digest, upload.n, upload.d, 0, "parts", time.time(), scan.y_min, scan.y_min_index)
    stored, created = store.complete_upload(upload, record)
    return dataset_view(stored), created


@router.post("/{upload_id}/complete", status_code=201, response_model=DatasetOut, summary="Complete an upload",
             responses={200: {"model": DatasetOut, "description": "Completed before, or this key stored the same "
                                                                  "content before."}})
def complete_upload(response: Response, service: ServiceDep, tenant: TenantDep, upload_id: str = UPLOAD_ID
                   ) -> DatasetOut:
    """Check every part arrived, the content's digest and finiteness; the upload becomes a dataset (201)."""
    store = service.require_store()
    upload = _owned_upload(store, upload_id, tenant)
    if upload.status == UPLOAD_COMPLETED and upload.dataset_id is not None:
        record = store.get_dataset(upload.dataset_id, owner=tenant.sees)
        if record is None:
            raise ApiError(404, f"The upload {upload_id} became dataset {upload.dataset_id}, which was deleted since.",
                           title="Dataset not found", parameter="upload_id")
        dataset, created = dataset_view(record), False
    else:
        with CLAIMS.hold((str(store.path), upload_id, "complete"),
                         f"The upload {upload_id} is being completed on another request; retry once it is answered."):
            service.require_space()
            dataset, created = _make_dataset(service, upload)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset

