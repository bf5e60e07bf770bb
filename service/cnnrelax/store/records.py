"""The store's rows as values: a job, a dataset (as one tenant holds it), an upload in parts, a job event; the
columns each is read from and the function that reads it; the owner (tenant) ids they carry."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..dataset_files import row_bytes
from ..types import TERMINAL_STATUSES, JobStatus

#: Every status, in the order a job passes through them.
JOB_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)

#: The owner of everything made while API keys are off.
ANONYMOUS = "anonymous"


def owner_id(api_key: str) -> str:
    """The tenant id stored for an API key: the first 16 hex digits of its SHA-256 (never the key)."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table, JSON columns decoded lazily."""

    seq: int
    id: str
    kind: str
    status: str
    request_json: str
    request_hash: str
    idempotency_key: str | None
    dataset_id: str | None
    time_limit_s: float | None
    result_json: str | None
    error: str | None
    progress_done: int | None
    progress_total: int | None
    partial_state_json: str | None
    cancel_requested: bool
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    owner: str = ANONYMOUS
    estimated_cpu_s: float | None = None

    @property
    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = json.loads(self.request_json)
        return request

    @property
    def result(self) -> dict[str, Any] | None:
        return None if self.result_json is None else json.loads(self.result_json)

    @property
    def partial_state(self) -> dict[str, Any] | None:
        return None if self.partial_state_json is None else json.loads(self.partial_state_json)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class DatasetRecord:
    """Metadata of a stored dataset."""

    id: str
    n: int
    d: int
    size_bytes: int
    source: str
    created_at: float
    #: The smallest label and its index, recorded at upload (None for a dataset stored before they were), so
    #: that a solve's label check needs no decode.
    y_min: float | None = None
    y_min_index: int | None = None
    #: An image set (an ``.npz`` of ``images``, optional ``angles``): ``(H, W)``, its rows the flattened images,
    #: ``y`` the angles when ``angles_given`` (else zeros). ``None`` for a dataset of ``X`` and ``y``.
    image_shape: tuple[int, int] | None = None
    angles_given: bool = False


#: An upload's states: parts are taken while ``receiving``; ``completed`` once its dataset exists.
UPLOAD_RECEIVING = "receiving"
UPLOAD_COMPLETED = "completed"


@dataclass(frozen=True)
class UploadRecord:
    """One upload in parts: its declared shape, its part size in rows, the declared content digest (optional), its
    state, the dataset it became (``dataset_id``: the verified content digest, set before the dataset is made)."""

    id: str
    owner: str
    n: int
    d: int
    part_rows: int
    parts: int
    sha256: str | None
    status: str
    dataset_id: str | None
    created_at: float
    updated_at: float
    expires_at: float

    @property
    def size_bytes(self) -> int:
        """The bytes of the whole upload: ``X`` and ``y`` as float64."""
        return self.n * row_bytes(self.d)

    def part_span(self, index: int) -> tuple[int, int]:
        """The first row and the number of rows of part ``index``."""
        first = index * self.part_rows
        return first, min(self.part_rows, self.n - first)

    def part_bytes(self, index: int) -> int:
        """The length of part ``index``'s body."""
        return self.part_span(index)[1] * row_bytes(self.d)


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's log: its increasing ``id``, its name and its data (JSON text)."""

    id: int
    job_id: str
    event: str
    data_json: str
    created_at: float


#: The columns of a :class:`DatasetRecord` (as a tenant sees it: its own upload time).
DATASET_COLUMNS = "id, n, d, size_bytes, source, created_at, y_min, y_min_index, image_shape, angles_given"
OWNED_DATASET_COLUMNS = ("d.id, d.n, d.d, d.size_bytes, coalesce(o.source, d.source), o.created_at, d.y_min, "
                         "d.y_min_index, d.image_shape, d.angles_given")

#: The columns of an :class:`UploadRecord`, in the order of its fields.
UPLOAD_COLUMNS = ("id, owner, n, d, part_rows, parts, sha256, status, dataset_id, created_at, updated_at, "
                  "expires_at")


def job_record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        seq=row["seq"], id=row["id"], kind=row["kind"], status=row["status"], request_json=row["request"],
        request_hash=row["request_hash"], idempotency_key=row["idempotency_key"], dataset_id=row["dataset_id"],
        time_limit_s=row["time_limit_s"], result_json=row["result"], error=row["error"],
        progress_done=row["progress_done"], progress_total=row["progress_total"],
        partial_state_json=row["partial_state"], cancel_requested=bool(row["cancel_requested"]),
        attempts=row["attempts"], created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], updated_at=row["updated_at"], owner=row["owner"],
        estimated_cpu_s=row["estimated_cpu_s"],
    )


def dataset_record(row: sqlite3.Row) -> DatasetRecord:
    """A datasets row (the columns of ``DATASET_COLUMNS``) as its record; ``image_shape`` is stored as ``"HxW"``."""
    (dataset_id, n, d, size_bytes, source, created_at, y_min, y_min_index, image_shape, angles_given) = tuple(row)
    shape = None
    if image_shape is not None:
        height, width = str(image_shape).split("x")
        shape = (int(height), int(width))
    return DatasetRecord(dataset_id, n, d, size_bytes, source, created_at, y_min, y_min_index, shape,
                         bool(angles_given))


def upload_record(row: sqlite3.Row) -> UploadRecord:
    return UploadRecord(*tuple(row))
