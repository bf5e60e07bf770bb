"""The one storage module: a SQLite file (WAL) of jobs and dataset metadata, dataset arrays as files.

Jobs move ``queued -> running -> succeeded | failed | cancelled``. A claim is one atomic UPDATE that
bumps ``attempts``; a worker's writes (progress, result) name the attempt they belong to, so a run from
before a restart can never finish a job a second time. On start, jobs left ``running`` by a killed
server go back to ``queued``.

Datasets are content-addressed: the id is the sha256 of the canonical float64 ``X`` and ``y``; the
arrays live in ``<data_dir>/datasets/<id>/X.npy`` and ``y.npy``, uncompressed and memory-mappable
(:mod:`cnnrelax.dataset_files`; a dataset stored before that layout is one zip-deflated ``<id>.npz``, still read).
Uploads in parts keep their rows here (tables ``uploads`` and ``upload_parts``), their bytes in
``<data_dir>/datasets/uploads/<upload_id>/``.

Tenants: every job and every dataset grant carries an ``owner``, the id of the API key that made it
(:func:`owner_id`, a SHA-256 prefix: the key itself is never stored; ``"anonymous"`` when keys are off).
Reads take an ``owner`` (``None``: every tenant, for admin keys). The next queued job is claimed round-robin
between owners (the owner claimed from longest ago goes first), and each owner has its own queue cap.

Retention: :meth:`Store.purge` deletes finished jobs and unused datasets past their time to live.

Faults (a full disk, a read-only or immutable file): the database is opened with SQLite's ``unix-excl`` VFS,
so WAL's index lives in this process's heap, not in a memory-mapped ``-shm`` file (a write to a mapped page
that cannot be backed - a full tmpfs, an immutable file - kills the process with SIGBUS; a failed write to a
file is an error). The price: one process opens the database, the server; its worker processes reach their
job's row through it (:mod:`cnnrelax.executors.local`). A write that fails for want of space or permission is
a :class:`StoreFault` (:func:`store_fault`); the store remembers the last one until a write succeeds again
(:attr:`Store.fault`, :meth:`Store.writable` probes), and after a read-only or I/O error every thread opens a
fresh connection.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .dataset_files import (
    UploadFiles,
    adopt_dataset_dir,
    dataset_digest,
    dataset_location,
    dataset_stored,
    remove_dataset_files,
    remove_temporary,
    row_bytes,
    stored_size_bytes,
    write_dataset_dir,
)
from .dataset_files import load_dataset_file as load_dataset_file  # where the executors import it from
from .types import TERMINAL_STATUSES, JobStatus

#: Every status, in the order a job passes through them.
JOB_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    request          TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    idempotency_key  TEXT,
    dataset_id       TEXT,
    time_limit_s     REAL,
    result           TEXT,
    error            TEXT,
    progress_done    INTEGER,
    progress_total   INTEGER,
    partial_state    TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    updated_at       REAL NOT NULL,
    owner            TEXT NOT NULL DEFAULT 'anonymous'
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_kind ON jobs (kind, seq);
CREATE INDEX IF NOT EXISTS jobs_dataset ON jobs (dataset_id) WHERE dataset_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS datasets (
    id          TEXT PRIMARY KEY,
    n           INTEGER NOT NULL,
    d           INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL,
    source      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    y_min       REAL,
    y_min_index INTEGER
);
CREATE TABLE IF NOT EXISTS dataset_owners (
    dataset_id   TEXT NOT NULL,
    owner        TEXT NOT NULL,
    created_at   REAL NOT NULL,
    last_used_at REAL NOT NULL,
    PRIMARY KEY (dataset_id, owner)
);
CREATE TABLE IF NOT EXISTS tenants (
    owner      TEXT PRIMARY KEY,
    last_claim INTEGER NOT NULL
);
"""

#: Run after ``_SCHEMA`` and the column migration: indexes that name ``owner``.
_OWNER_SCHEMA = """
DROP INDEX IF EXISTS jobs_idempotency;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_owner_idempotency ON jobs (owner, kind, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_owner_kind ON jobs (owner, kind, seq);
CREATE INDEX IF NOT EXISTS jobs_status_owner ON jobs (status, owner, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
INSERT OR IGNORE INTO dataset_owners (dataset_id, owner, created_at, last_used_at)
    SELECT id, 'anonymous', created_at, created_at FROM datasets
    WHERE id NOT IN (SELECT dataset_id FROM dataset_owners);
"""

#: The columns of a :class:`DatasetRecord` (as a tenant sees it: its own upload time).
_DATASET_COLUMNS = "id, n, d, size_bytes, source, created_at, y_min, y_min_index, image_shape, angles_given"
_OWNED_DATASET_COLUMNS = ("d.id, d.n, d.d, d.size_bytes, coalesce(o.source, d.source), o.created_at, d.y_min, "
                          "d.y_min_index, d.image_shape, d.angles_given")

#: The owner of everything made while API keys are off.
ANONYMOUS = "anonymous"
#: Largest ``seq`` a cursor may name (SQLite integers are signed 64-bit).
MAX_SEQ = 2**63 - 1


def owner_id(api_key: str) -> str:
    """The tenant id stored for an API key: the first 16 hex digits of its SHA-256 (never the key)."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


#: How long a write waits for another writer's lock (seconds).
BUSY_TIMEOUT_S = 30.0
#: How long opening a store waits for a data dir another process holds before refusing it (seconds).
OPEN_TIMEOUT_S = 5.0


class StoreInUse(RuntimeError):
    """Another process holds the data directory's database (a second server on the same data dir)."""


class QueueFull(Exception):
    """The queue already holds ``max_queue_depth`` jobs (``per_owner``: this owner's ``max_queued_per_owner``)."""

    def __init__(self, depth: int, per_owner: bool = False) -> None:
        super().__init__(f"The queue is full ({depth} jobs waiting).")
        self.depth = depth
        self.per_owner = per_owner


class QueuedWorkFull(Exception):
    """An owner's queued jobs already hold ``queued_cpu_s`` estimated CPU-seconds; another ``needed`` would pass
    ``limit``."""

    def __init__(self, queued_cpu_s: float, needed: float, limit: float) -> None:
        super().__init__(f"{queued_cpu_s:.0f} s of work queued; {needed:.0f} s more passes {limit:.0f} s.")
        self.queued_cpu_s = queued_cpu_s
        self.needed = needed
        self.limit = limit


class IdempotencyConflict(Exception):
    """An Idempotency-Key was used before with another request body."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


class DatasetInUse(Exception):
    """A dataset cannot be deleted while queued or running jobs read it."""

    def __init__(self, job_ids: list[str]) -> None:
        super().__init__(", ".join(job_ids))
        self.job_ids = job_ids


# -- faults: a full disk, a read-only store (issue 16) ------------------------------------------------
#: A fault found by a probe write stays the answer this long before the next probe (seconds).
PROBE_INTERVAL_S = 1.0
#: A full disk counts as cleared by a probe once this much more space is free than when the fault began.
FREED_BYTES = 1024 * 1024

#: The one-row table that :meth:`Store.probe_write` writes to learn whether the store takes writes.
_FAULT_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
"""

log = logging.getLogger("cnnrelax.store")


@dataclass(frozen=True)
class StoreFault:
    """Why the store cannot take writes now.

    ``kind`` is ``full`` (no space: answered 507) or ``read_only`` (a read-only or immutable file or volume,
    or a write the operating system refused: answered 503); ``reason`` is a sentence part naming the error.
    """

    kind: str
    reason: str

    @property
    def full(self) -> bool:
        return self.kind == "full"


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG})


def store_fault(exc: BaseException) -> StoreFault | None:
    """The :class:`StoreFault` an exception of a write stands for, or None (not a fault of the storage)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        text = str(exc)
        if primary == sqlite3.SQLITE_FULL or "disk is full" in text:
            return StoreFault("full", f"the data volume is full ({text})")
        if primary == sqlite3.SQLITE_READONLY or "readonly database" in text:
            return StoreFault("read_only", f"the job store is read-only ({text})")
        if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN) or "disk I/O error" in text:
            return StoreFault("read_only", f"the job store's files cannot be written ({text})")
        return None
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return StoreFault("full", f"the data volume is full ({os.strerror(exc.errno)})")
    if isinstance(exc, OSError) and exc.errno in _READ_ONLY_ERRNOS:
        return StoreFault("read_only", f"the data directory cannot be written ({os.strerror(exc.errno or 0)})")
    return None


# -- records ------------------------------------------------------------------------------------------
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


# -- uploads in parts (POST /v1/datasets/uploads; docs/uploads.md) -----------------------------------
_UPLOADS_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    n           INTEGER NOT NULL,
    d           INTEGER NOT NULL,
    part_rows   INTEGER NOT NULL,
    parts       INTEGER NOT NULL,
    sha256      TEXT,
    status      TEXT NOT NULL,
    dataset_id  TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_owner ON uploads (owner, status);
CREATE INDEX IF NOT EXISTS uploads_expiry ON uploads (expires_at);
CREATE TABLE IF NOT EXISTS upload_parts (
    upload_id   TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (upload_id, idx)
);
CREATE TRIGGER IF NOT EXISTS upload_parts_gone AFTER DELETE ON uploads BEGIN
    DELETE FROM upload_parts WHERE upload_id = OLD.id;
END;
"""

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


class UploadQuotaFull(Exception):
    """An owner's incomplete uploads already hold ``held`` bytes; another ``needed`` would pass ``limit``."""

    def __init__(self, held: int, needed: int, limit: int) -> None:
        super().__init__(f"{held} bytes of uploads held; {needed} more pass {limit}.")
        self.held, self.needed, self.limit = held, needed, limit


def _upload(row: sqlite3.Row) -> UploadRecord:
    return UploadRecord(*tuple(row))


_UPLOAD_COLUMNS = ("id, owner, n, d, part_rows, parts, sha256, status, dataset_id, created_at, updated_at, "
                   "expires_at")


def request_hash(request: Any) -> str:
    """sha256 of the canonical JSON of a request (keys sorted, no whitespace)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The ``seq`` a cursor stands for; ``ValueError`` when it is not one of ours."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor") from exc
    if not text.startswith("seq:") or not text[4:].isdigit():
        raise ValueError("not a cursor")
    seq = int(text[4:])
    if seq > MAX_SEQ:
        raise ValueError("not a cursor")
    return seq


class Store:
    """Jobs and datasets of one data directory. Thread-safe: one SQLite connection per thread."""

    def __init__(self, data_dir: Path | str, *, database_name: str = "cnnrelax.sqlite3") -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.dataset_dir = self.data_dir / "datasets"
        self.dataset_dir.mkdir(exist_ok=True)
        self.path = self.data_dir / database_name
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_stop = threading.Event()
        # faults (issue 16): the last write's fault, the connections' generation, the last probe
        self._fault: StoreFault | None = None
        self._free_at_fault = 0
        self._generation = 0
        self._probed_at = float("-inf")
        db = self._open_first()
        db.executescript(_SCHEMA)
        db.executescript(_FAULT_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        if "owner" not in columns:  # a data dir from before tenants: everything in it was anonymous
            db.execute(f"ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '{ANONYMOUS}'")
        db.executescript(_OWNER_SCHEMA)
        if "estimated_cpu_s" not in columns:  # -- pricing: a job's estimated CPU-seconds (null before pricing)
            db.execute("ALTER TABLE jobs ADD COLUMN estimated_cpu_s REAL")
        dataset_columns = {row[1] for row in db.execute("PRAGMA table_info(datasets)")}
        for column, kind in (("y_min", "REAL"), ("y_min_index", "INTEGER"),  # from before label checks at upload
                             ("image_shape", "TEXT"), ("angles_given", "INTEGER")):  # -- pricing: image sets
            if column not in dataset_columns:
                db.execute(f"ALTER TABLE datasets ADD COLUMN {column} {kind}")
        db.executescript(_EVENTS_SCHEMA)
        db.executescript(_UPLOADS_SCHEMA)  # -- uploads in parts
        grant_columns = {row[1] for row in db.execute("PRAGMA table_info(dataset_owners)")}
        if "source" not in grant_columns:  # from before each tenant's upload kept its own format (NULL: the first's)
            db.execute("ALTER TABLE dataset_owners ADD COLUMN source TEXT")
        self.remove_temporary_files()

    # -- connections ------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection; a fresh one after a read-only or I/O fault (one opened while the file could
        not be written stays read-only for good)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and getattr(self._local, "generation", 0) != self._generation:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            db = None
        if db is None:
            generation = self._generation
            db = connect(self.path)
            self._local.db = db
            self._local.generation = generation
        return db

    def _open_first(self) -> sqlite3.Connection:
        """This thread's connection, opened the first time: a data dir another process holds is refused soon."""
        try:
            db = connect(self.path, busy_timeout_s=OPEN_TIMEOUT_S)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            raise StoreInUse(f"The data directory {self.data_dir} is in use by another process (its database "
                             f"{self.path.name} is locked): stop the other server, or give this one another "
                             "data directory.") from exc
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._local.db, self._local.generation = db, self._generation
        return db

    def _transaction(self) -> "_Transaction":
        """A write transaction; this process's writers queue on a lock rather than on SQLite's busy back-off."""
        return _Transaction(self._connection(), self._write_lock, self._write_ended)

    # -- faults (issue 16) --------------------------------------------------------------------------
    @property
    def fault(self) -> StoreFault | None:
        """Why the last write failed, until a write succeeds again (None: the store takes writes)."""
        return self._fault

    def note_write_error(self, exc: BaseException) -> None:
        """Record a failed write outside a transaction (a dataset file); faults of the storage only."""
        self._write_ended(exc)

    def _write_ended(self, error: BaseException | None, probe: bool = False) -> None:
        """Called at the end of every write transaction: a success clears the fault, a fault is remembered.

        A probe's success does not clear a full disk unless space was freed meanwhile (``FREED_BYTES``): a small
        row may fit where a job's result did not.
        """
        if error is None:
            fault = self._fault
            if fault is None:
                return
            if probe and fault.full and self._free_bytes() < self._free_at_fault + FREED_BYTES:
                return
            self._fault = None
            if not fault.full:
                self._generation += 1  # connections opened during the fault are read-only for good: reopen them
            log.warning("the job store takes writes again")
            return
        fault = store_fault(error)
        if fault is None:
            return
        if self._fault != fault:
            log.warning("the job store cannot be written: %s", fault.reason, extra={"fault": fault.kind})
            if fault.full:
                self._free_at_fault = self._free_bytes()
        self._fault = fault
        if not fault.full:
            self._generation += 1  # every thread reconnects at its next use

    def _free_bytes(self) -> int:
        try:
            return int(shutil.disk_usage(self.data_dir).free)
        except OSError:
            return 0

    def probe_write(self) -> StoreFault | None:
        """Write one small row (a real write through the same path as any other); return the fault, if any."""
        self._probed_at = time.monotonic()
        try:
            with _Transaction(self._connection(), self._write_lock, functools.partial(self._write_ended, probe=True)) \
                    as db:
                db.execute("INSERT INTO store_probe (id, at) VALUES (1, ?) "
                           "ON CONFLICT (id) DO UPDATE SET at = excluded.at", (time.time(),))
        except (sqlite3.Error, OSError) as exc:
            return store_fault(exc) or StoreFault("read_only", f"the job store cannot be written ({exc})")
        return self._fault

    def writable(self, max_age_s: float = PROBE_INTERVAL_S) -> StoreFault | None:
        """The store's fault now: the last write's, or a probe's when the last probe is older than ``max_age_s``.

        ``/readyz`` asks this, so a store made read-only while nothing writes is noticed too, and a fault that
        cleared is noticed within ``max_age_s`` (a probe writes one row at most every ``max_age_s``).
        """
        if time.monotonic() - self._probed_at >= max_age_s:
            self.probe_write()
        return self._fault

    def start_checkpointer(self, interval_s: float = 1.0) -> None:
        """Copy the WAL into the database every ``interval_s`` in a background thread (PASSIVE: blocks no writer).

        Automatic checkpoints are off on every connection, so that no request waits for a checkpoint's fsync.
        """
        if self._checkpointer is not None:
            return
        self._checkpoint_stop.clear()

        def run() -> None:
            db = connect(self.path)
            try:
                while not self._checkpoint_stop.wait(interval_s):
                    try:
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error:
                        pass  # tried again at the next interval
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()

        self._checkpointer = threading.Thread(target=run, name="cnnrelax-checkpointer", daemon=True)
        self._checkpointer.start()

    def stop_checkpointer(self) -> None:
        if self._checkpointer is not None:
            self._checkpoint_stop.set()
            self._checkpointer.join(timeout=10)
            self._checkpointer = None

    def ping(self) -> bool:
        """True when the database answers a query."""
        return bool(self._connection().execute("SELECT 1").fetchone()[0] == 1)

    # -- jobs -------------------------------------------------------------------------------------
    def create_job(
        self,
        kind: str,
        request: dict[str, Any] | str,
        *,
        idempotency_key: str | None = None,
        dataset_id: str | None = None,
        time_limit_s: float | None = None,
        max_queue_depth: int | None = None,
        progress_total: int | None = None,
        owner: str = ANONYMOUS,
        max_queued_per_owner: int | None = None,
        estimated_cpu_s: float | None = None,
        max_queued_cpu_s_per_owner: float | None = None,
    ) -> tuple[JobRecord, bool]:
        """Insert a queued job of ``owner``; return it and whether it is new.

        ``estimated_cpu_s`` is kept with the job; past ``max_queued_cpu_s_per_owner`` estimated CPU-seconds in
        this owner's queued jobs (this one included), :class:`QueuedWorkFull`.

        With an ``idempotency_key`` this owner already used for this ``kind``: the same request returns the
        first job (``created == False``), another request raises :class:`IdempotencyConflict` (keys of other
        owners are separate). Past ``max_queue_depth`` queued jobs in all, or ``max_queued_per_owner`` of this
        owner, :class:`QueueFull`.
        """
        if isinstance(request, str):  # a typed spec's JSON text (its fields in a fixed order): stored as it is
            body, digest = request, hashlib.sha256(request.encode()).hexdigest()
        else:
            body, digest = json.dumps(request, separators=(",", ":")), request_hash(request)
        now = time.time()
        with self._transaction() as db:
            if idempotency_key is not None:
                row = db.execute("SELECT * FROM jobs WHERE owner = ? AND kind = ? AND idempotency_key = ?",
                                 (owner, kind, idempotency_key)).fetchone()
                if row is not None:
                    existing = _job(row)
                    if existing.request_hash != digest:
                        raise IdempotencyConflict(existing.id)
                    return existing, False
            if max_queue_depth is not None:
                depth = db.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
                if depth >= max_queue_depth:
                    raise QueueFull(depth)
            if max_queued_per_owner is not None:
                depth = db.execute("SELECT count(*) FROM jobs WHERE status = 'queued' AND owner = ?",
                                   (owner,)).fetchone()[0]
                if depth >= max_queued_per_owner:
                    raise QueueFull(depth, per_owner=True)
            if max_queued_cpu_s_per_owner is not None and estimated_cpu_s is not None:
                queued = self._queued_cpu_s(db, owner)
                if queued + estimated_cpu_s > max_queued_cpu_s_per_owner:
                    raise QueuedWorkFull(queued, estimated_cpu_s, max_queued_cpu_s_per_owner)
            job_id = uuid.uuid4().hex
            row = db.execute(  # the row comes back with the insert: no second round trip (issue 16)
                "INSERT INTO jobs (id, kind, status, request, request_hash, idempotency_key, dataset_id, "
                "time_limit_s, progress_done, progress_total, created_at, updated_at, owner, estimated_cpu_s) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (job_id, kind, body, digest, idempotency_key, dataset_id, time_limit_s,
                 0 if progress_total is not None else None, progress_total, now, now, owner, estimated_cpu_s),
            ).fetchone()
            if dataset_id is not None:
                db.execute("UPDATE dataset_owners SET last_used_at = ? WHERE dataset_id = ? AND owner = ?",
                           (now, dataset_id, owner))
        return _job(row), True

    # -- pricing: queued work and deletion ------------------------------------------------------------
    @staticmethod
    def _queued_cpu_s(db: sqlite3.Connection, owner: str) -> float:
        return float(db.execute("SELECT coalesce(sum(estimated_cpu_s), 0) FROM jobs WHERE status = 'queued' "
                                "AND owner = ?", (owner,)).fetchone()[0])

    def queued_cpu_s(self, owner: str) -> float:
        """The sum of the estimated CPU-seconds of ``owner``'s queued jobs."""
        return self._queued_cpu_s(self._connection(), owner)

    def delete_job(self, job_id: str) -> JobRecord | None:
        """Delete a queued or finished job (its row, request and result); return it as it was, else ``None``.

        A running job is not deleted (``None``: ask it to stop instead). The dataset it read is the caller's to
        release (:meth:`release_inline_dataset`); its figures are the caller's too.
        """
        with self._transaction() as db:
            row = db.execute("DELETE FROM jobs WHERE id = ? AND status != 'running' RETURNING *",
                             (job_id,)).fetchone()
        return None if row is None else _job(row)

    def release_inline_dataset(self, dataset_id: str, owner: str) -> bool:
        """Drop ``owner``'s hold on a dataset made from a solve's inline ``data`` once no job of theirs names it.

        Only a dataset whose record says ``inline`` is released (an upload is the owner's to delete); the file
        goes with its last holder (:meth:`delete_dataset`). Return whether the hold was dropped.
        """
        db = self._connection()
        record = self.get_dataset(dataset_id, owner=owner)
        if record is None or record.source != "inline":
            return False
        if db.execute("SELECT 1 FROM jobs WHERE dataset_id = ? AND owner = ? LIMIT 1",
                      (dataset_id, owner)).fetchone() is not None:
            return False
        try:
            return self.delete_dataset(dataset_id, owner=owner)
        except DatasetInUse:
            return False

    def get_job(self, job_id: str, kind: str | None = None, *, owner: str | None = None,
                with_request: bool = True) -> JobRecord | None:
        """The job, if it is of ``kind`` and belongs to ``owner`` (``None``: any owner).

        ``with_request=False`` leaves the request (which may be large) out: ``request_json`` is ``"{}"``.
        """
        columns = "*" if with_request else _COLUMNS_WITHOUT_REQUEST
        row = self._connection().execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = _job(row)
        if (kind is not None and job.kind != kind) or (owner is not None and job.owner != owner):
            return None
        return job

    def get_job_status(self, job_id: str, kind: str | None = None, *, owner: str | None = None) -> str | None:
        """Only the job's status (what a long-poll re-reads), ``None`` when it is not there for this owner."""
        row = self._connection().execute("SELECT kind, owner, status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or (kind is not None and row[0] != kind) or (owner is not None and row[1] != owner):
            return None
        return str(row[2])

    def list_jobs(self, *, kind: str | None = None, status: str | None = None, limit: int = 50,
                  before_seq: int | None = None, owner: str | None = None) -> tuple[list[JobRecord], int | None]:
        """Newest first; return the page and the ``seq`` to continue before (``None`` at the end)."""
        clauses: list[str] = []
        params: list[Any] = []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = _COLUMNS_WITHOUT_REQUEST.replace("result, ", "NULL AS result, ").replace(
            "partial_state, ", "NULL AS partial_state, ")
        rows = self._connection().execute(
            f"SELECT {columns} FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*params, limit + 1)).fetchall()
        jobs = [_job(row) for row in rows[:limit]]
        return jobs, (jobs[-1].seq if len(rows) > limit else None)

    def claim_next(self, kinds: tuple[str, ...] | None = None) -> JobRecord | None:
        """Atomically move the next queued job to ``running`` (``attempts += 1``) and return it.

        Fair between tenants: of each owner's oldest queued job, the one whose owner was claimed from
        longest ago (or never) goes first, so owners take turns (round-robin) whatever their queue lengths;
        within one owner, oldest first.
        """
        now = time.time()
        kind_clause = ""
        params: tuple[Any, ...] = ()
        if kinds:
            kind_clause = f"AND kind IN ({', '.join('?' * len(kinds))})"
            params = tuple(kinds)
        with self._transaction() as db:
            row = db.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, updated_at = ? "
                "WHERE seq = (SELECT heads.seq FROM "
                f"(SELECT owner, min(seq) AS seq FROM jobs WHERE status = 'queued' {kind_clause} GROUP BY owner) "
                "AS heads LEFT JOIN tenants ON tenants.owner = heads.owner "
                "ORDER BY coalesce(tenants.last_claim, 0), heads.seq LIMIT 1) "
                "RETURNING *", (now, now, *params)).fetchone()
            if row is not None:
                db.execute("INSERT INTO tenants (owner, last_claim) "
                           "VALUES (?, (SELECT coalesce(max(last_claim), 0) + 1 FROM tenants)) "
                           "ON CONFLICT (owner) DO UPDATE SET last_claim = excluded.last_claim", (row["owner"],))
        return None if row is None else _job(row)

    def finish_job(self, job_id: str, attempt: int, status: str, *, result: dict[str, Any] | None = None,
                   result_json: str | None = None, error: str | None = None) -> bool:
        """Record the end of attempt ``attempt`` of a running job; ``False`` if that run is no longer current."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a terminal status")
        if result is not None and result_json is None:
            result_json = json.dumps(result, separators=(",", ":"), allow_nan=False)
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ?, updated_at = ?, "
                # A solve's progress stays the trials it ran (an early stop runs fewer than asked; the run's last
                # progress is written before its outcome); an experiment that succeeded ran every cell.
                "progress_done = CASE WHEN ? = 'succeeded' AND kind = 'experiment' THEN progress_total "
                "ELSE progress_done END "
                "WHERE id = ? AND status = 'running' AND attempts = ?",
                (status, result_json, error, now, now, status, job_id, attempt))
            return cursor.rowcount == 1

    def requeue(self, job_id: str, attempt: int) -> bool:
        """Put a running job back in the queue (its worker died); ``False`` if the run is no longer current."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL, updated_at = ? "
                "WHERE id = ? AND status = 'running' AND attempts = ?", (now, job_id, attempt))
            return cursor.rowcount == 1

    def recover_running(self) -> list[str]:
        """Jobs left ``running`` by a server that died go back to ``queued``; return their ids."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute("UPDATE jobs SET status = 'queued', started_at = NULL, updated_at = ? "
                              "WHERE status = 'running' RETURNING id", (now,)).fetchall()
        return [row[0] for row in rows]

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job at once; flag a running one (its worker stops soon). Return the job after."""
        now = time.time()
        with self._transaction() as db:
            db.execute("UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished_at = ?, updated_at = ?, "
                       "error = 'Cancelled before it started.' WHERE id = ? AND status = 'queued'",
                       (now, now, job_id))
            db.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND status = 'running'",
                       (now, job_id))
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def set_progress(self, job_id: str, attempt: int, done: int, total: int,
                     partial_state: dict[str, Any] | None = None) -> bool:
        """Record progress (and the state to resume from) of the current run of a job."""
        state = None if partial_state is None else json.dumps(partial_state, separators=(",", ":"))
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET progress_done = ?, progress_total = ?, "
                "partial_state = COALESCE(?, partial_state), updated_at = ? "
                "WHERE id = ? AND status = 'running' AND attempts = ?",
                (done, total, state, time.time(), job_id, attempt))
            return cursor.rowcount == 1

    # -- events (the job event log: see the events block at the end of this module) ---------------------
    def append_events(self, job_id: str, attempt: int, events: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Append a run's ``(name, data)`` events to its job's log (:func:`append_job_events`)."""
        return append_job_events(self._connection(), job_id, attempt, events, self._write_lock)

    def read_events(self, job_id: str | None, after_id: int = 0, limit: int = 100) -> list[JobEvent]:
        """Up to ``limit`` events of a job (``None``: of every job) after ``after_id`` (:func:`read_job_events`)."""
        return read_job_events(self._connection(), job_id, after_id, limit)

    def last_event_id(self) -> int:
        """The id of the newest event of any job (0: none yet): where a reader of every job's events starts."""
        return int(self._connection().execute("SELECT coalesce(max(id), 0) FROM job_events").fetchone()[0])

    def count_by_status(self, owner: str | None = None) -> dict[tuple[str, str], int]:
        """Jobs by ``(kind, status)``: of ``owner`` (``None``: of every owner)."""
        if owner is None:
            rows = self._connection().execute("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status")
        else:
            rows = self._connection().execute("SELECT kind, status, count(*) FROM jobs WHERE owner = ? "
                                              "GROUP BY kind, status", (owner,))
        return {(kind, status): count for kind, status, count in rows}

    def queue_depth(self) -> int:
        return int(self._connection().execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0])

    # -- datasets ---------------------------------------------------------------------------------
    def dataset_path(self, dataset_id: str) -> Path:
        """Where a dataset's arrays are: its directory of ``X.npy`` and ``y.npy``, or its ``.npz`` from before that
        layout (:func:`cnnrelax.dataset_files.load_dataset_file` reads either). ``KeyError`` for a malformed id."""
        return dataset_location(self.dataset_dir, dataset_id)

    def put_dataset(self, X: np.ndarray, y: np.ndarray, source: str, owner: str = ANONYMOUS, *,
                    image_shape: tuple[int, int] | None = None,
                    angles_given: bool = False) -> tuple[DatasetRecord, bool]:
        """Store ``X`` and ``y`` under their content address for ``owner``; return the record and whether it is new.

        An image set (``image_shape``) is stored the same way, one flattened image a row (see
        :attr:`DatasetRecord.image_shape`).

        The arrays are written as the dataset's directory of two uncompressed ``.npy`` files (a temporary name,
        fsync, rename: :func:`cnnrelax.dataset_files.write_dataset_dir`); a failed write (a full disk) leaves no
        temporary file behind and raises the ``OSError``.
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        dataset_id = dataset_digest(X, y, image_shape)
        existing = self.get_dataset(dataset_id)
        if existing is None or not dataset_stored(self.dataset_dir, dataset_id):
            try:
                write_dataset_dir(self.dataset_dir, dataset_id, X, y)
            except OSError as exc:
                self.note_write_error(exc)
                raise
            y_index = int(np.argmin(y)) if y.size else None
            self._insert_dataset(DatasetRecord(
                dataset_id, int(X.shape[0]), int(X.shape[1]), stored_size_bytes(self.dataset_path(dataset_id)),
                source, time.time(), None if y_index is None else float(y[y_index]), y_index, image_shape,
                angles_given))
        return self._grant_dataset(dataset_id, owner, source)

    def _insert_dataset(self, record: DatasetRecord) -> None:
        image_shape = record.image_shape
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO datasets (id, n, d, size_bytes, source, created_at, y_min, "
                       "y_min_index, image_shape, angles_given) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (record.id, record.n, record.d, record.size_bytes, record.source, record.created_at,
                        record.y_min, record.y_min_index,
                        None if image_shape is None else f"{image_shape[0]}x{image_shape[1]}",
                        int(record.angles_given)))

    def _grant_dataset(self, dataset_id: str, owner: str, source: str) -> tuple[DatasetRecord, bool]:
        """``owner``'s hold on a stored dataset (made, or its last use refreshed); the record and whether it is new."""
        now = time.time()
        with self._transaction() as db:
            created = db.execute("INSERT OR IGNORE INTO dataset_owners (dataset_id, owner, created_at, last_used_at, "
                                 "source) VALUES (?, ?, ?, ?, ?)", (dataset_id, owner, now, now, source)).rowcount == 1
            if not created:
                db.execute("UPDATE dataset_owners SET last_used_at = ? WHERE dataset_id = ? AND owner = ?",
                           (now, dataset_id, owner))
        record = self.get_dataset(dataset_id, owner=owner)
        assert record is not None
        return record, created

    def get_dataset(self, dataset_id: str, *, owner: str | None = None) -> DatasetRecord | None:
        """The dataset's metadata, if ``owner`` holds it (``None``: whoever holds it)."""
        if owner is None:
            row = self._connection().execute(f"SELECT {_DATASET_COLUMNS} FROM datasets "
                                             "WHERE id = ?", (dataset_id,)).fetchone()
        else:
            row = self._connection().execute(
                f"SELECT {_OWNED_DATASET_COLUMNS} FROM datasets AS d "
                "JOIN dataset_owners AS o ON o.dataset_id = d.id WHERE d.id = ? AND o.owner = ?",
                (dataset_id, owner)).fetchone()
        return None if row is None else _dataset(row)

    def list_datasets(self, limit: int = 1000, *, owner: str | None = None) -> list[DatasetRecord]:
        if owner is None:
            rows = self._connection().execute(f"SELECT {_DATASET_COLUMNS} FROM datasets "
                                              "ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._connection().execute(
                f"SELECT {_OWNED_DATASET_COLUMNS} FROM datasets AS d "
                "JOIN dataset_owners AS o ON o.dataset_id = d.id WHERE o.owner = ? "
                "ORDER BY o.created_at DESC LIMIT ?", (owner, limit)).fetchall()
        return [_dataset(row) for row in rows]

    def load_dataset(self, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
        return load_dataset_file(self.dataset_path(dataset_id))

    def delete_dataset(self, dataset_id: str, *, owner: str | None = None) -> bool:
        """Remove ``owner``'s hold on a dataset (``None``: everyone's); the file goes with the last holder.

        :class:`DatasetInUse` while queued or running jobs of that owner (any owner, for ``None``) need it.
        """
        owner_clause, params = ("", ()) if owner is None else (" AND owner = ?", (owner,))
        with self._transaction() as db:
            active = [row[0] for row in db.execute(
                "SELECT id FROM jobs WHERE dataset_id = ? AND status IN ('queued', 'running')"
                f"{owner_clause} LIMIT 10", (dataset_id, *params))]
            if active:
                raise DatasetInUse(active)
            deleted = db.execute(f"DELETE FROM dataset_owners WHERE dataset_id = ?{owner_clause}",
                                 (dataset_id, *params)).rowcount >= 1
            remaining = db.execute("SELECT count(*) FROM dataset_owners WHERE dataset_id = ?",
                                   (dataset_id,)).fetchone()[0]
            busy = db.execute("SELECT count(*) FROM jobs WHERE dataset_id = ? AND status IN ('queued', 'running')",
                              (dataset_id,)).fetchone()[0]
            gone = remaining == 0 and busy == 0
            if gone:
                db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))
        if gone:
            remove_dataset_files(self.dataset_dir, dataset_id)
        return deleted

    # -- retention --------------------------------------------------------------------------------
    def purge(self, *, jobs_before: float, datasets_before: float) -> tuple[list[str], list[str]]:
        """Delete jobs that ended before ``jobs_before`` (with their results and requests), then datasets
        whose every holder last uploaded or used them before ``datasets_before`` and that no queued or running
        job needs. Return the ids of the jobs and of the datasets deleted (figures are the caller's).
        """
        with self._transaction() as db:
            jobs = [row[0] for row in db.execute(
                "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? "
                "AND status IN ('succeeded', 'failed', 'cancelled') RETURNING id", (jobs_before,))]
            db.execute("DELETE FROM dataset_owners WHERE last_used_at < ? AND dataset_id NOT IN "
                       "(SELECT dataset_id FROM jobs WHERE dataset_id IS NOT NULL "
                       "AND status IN ('queued', 'running'))", (datasets_before,))
            datasets = [row[0] for row in db.execute(
                "DELETE FROM datasets WHERE id NOT IN (SELECT dataset_id FROM dataset_owners) AND id NOT IN "
                "(SELECT dataset_id FROM jobs WHERE dataset_id IS NOT NULL AND status IN ('queued', 'running')) "
                "RETURNING id")]
        for dataset_id in datasets:
            with contextlib.suppress(OSError, KeyError):
                remove_dataset_files(self.dataset_dir, dataset_id)
        return jobs, datasets

    def remove_temporary_files(self) -> int:
        """Delete ``*.tmp`` files and directories that a write cut short (a crash, a full disk) left in the data
        dir."""
        return sum(remove_temporary(folder) for folder in (self.dataset_dir, self.data_dir / "figures"))

    # -- uploads in parts (the rows; the bytes: cnnrelax.dataset_files.UploadFiles) ----------------------
    def upload_files(self, upload: UploadRecord) -> UploadFiles:
        """The files of an upload."""
        return UploadFiles.under(self.dataset_dir, upload.id, upload.n, upload.d)

    @staticmethod
    def _uploads_held_bytes(db: sqlite3.Connection, owner: str) -> int:
        # UploadRecord.size_bytes, summed in SQL: n rows of (d + 1) float64
        return int(db.execute("SELECT coalesce(sum(n * (d + 1) * 8), 0) FROM uploads WHERE owner = ? AND status = ?",
                              (owner, UPLOAD_RECEIVING)).fetchone()[0])

    def uploads_held_bytes(self, owner: str) -> int:
        """Bytes of ``owner``'s uploads still receiving parts (their whole declared size)."""
        return self._uploads_held_bytes(self._connection(), owner)

    def create_upload(self, owner: str, n: int, d: int, part_rows: int, sha256: str | None, expires_at: float,
                      max_bytes_per_owner: int | None = None) -> UploadRecord:
        """A new upload of ``owner``, receiving; its files are made here (preallocated, fsynced) before its row.

        Past ``max_bytes_per_owner`` bytes in this owner's receiving uploads (this one included),
        :class:`UploadQuotaFull` and nothing is kept.
        """
        upload_id = uuid.uuid4().hex
        now = time.time()
        record = UploadRecord(upload_id, owner, n, d, part_rows, -(-n // part_rows), sha256, UPLOAD_RECEIVING, None,
                              now, now, expires_at)
        files = self.upload_files(record)
        try:
            files.create()
            with self._transaction() as db:
                if max_bytes_per_owner is not None:
                    held = self._uploads_held_bytes(db, owner)
                    if held + record.size_bytes > max_bytes_per_owner:
                        raise UploadQuotaFull(held, record.size_bytes, max_bytes_per_owner)
                db.execute(f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           tuple(record.__dict__.values()))
        except BaseException as exc:
            files.remove()
            if isinstance(exc, OSError):
                self.note_write_error(exc)
            raise
        return record

    def get_upload(self, upload_id: str, *, owner: str | None = None) -> UploadRecord | None:
        """The upload, if ``owner`` made it (``None``: whoever did)."""
        row = self._connection().execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = ?",
                                         (upload_id,)).fetchone()
        upload = None if row is None else _upload(row)
        return None if upload is None or (owner is not None and upload.owner != owner) else upload

    def list_uploads(self, *, owner: str | None = None, limit: int = 1000) -> list[UploadRecord]:
        """Uploads, newest first: of ``owner`` (``None``: of everyone)."""
        where, params = ("", ()) if owner is None else ("WHERE owner = ?", (owner,))
        rows = self._connection().execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads {where} "
                                          "ORDER BY created_at DESC LIMIT ?", (*params, limit)).fetchall()
        return [_upload(row) for row in rows]

    def upload_part_digests(self, upload_id: str) -> dict[int, str]:
        """The parts of an upload received so far: index -> SHA-256 (hex) of the part's body."""
        return {int(index): str(digest) for index, digest in self._connection().execute(
            "SELECT idx, sha256 FROM upload_parts WHERE upload_id = ?", (upload_id,))}

    def upload_part_digest(self, upload_id: str, index: int) -> str | None:
        row = self._connection().execute("SELECT sha256 FROM upload_parts WHERE upload_id = ? AND idx = ?",
                                         (upload_id, index)).fetchone()
        return None if row is None else str(row[0])

    def record_upload_part(self, upload_id: str, index: int, sha256: str, size_bytes: int,
                           expires_at: float) -> tuple[bool, str | None]:
        """Record that part ``index`` arrived (its bytes are already durable) and push the upload's expiry back.

        Returns whether the upload still receives parts, and the digest recorded for that part before (``None``:
        recorded now).
        """
        now = time.time()
        with self._transaction() as db:
            touched = db.execute("UPDATE uploads SET updated_at = ?, expires_at = max(expires_at, ?) WHERE id = ? "
                                 "AND status = ?", (now, expires_at, upload_id, UPLOAD_RECEIVING)).rowcount
            if not touched:
                return False, None
            before = db.execute("SELECT sha256 FROM upload_parts WHERE upload_id = ? AND idx = ?",
                                (upload_id, index)).fetchone()
            if before is not None:
                return True, str(before[0])
            db.execute("INSERT INTO upload_parts (upload_id, idx, sha256, size_bytes, received_at) "
                       "VALUES (?, ?, ?, ?, ?)", (upload_id, index, sha256, size_bytes, now))
        return True, None

    def forget_upload_part(self, upload_id: str, index: int) -> None:
        """Drop the record of a part (its bytes were found unusable at completion: it is to be sent again)."""
        with self._transaction() as db:
            db.execute("DELETE FROM upload_parts WHERE upload_id = ? AND idx = ?", (upload_id, index))

    def verify_upload(self, upload_id: str, dataset_id: str) -> None:
        """Note an upload's verified content digest (the id its dataset will have), before its files move."""
        with self._transaction() as db:
            db.execute("UPDATE uploads SET dataset_id = ?, updated_at = ? WHERE id = ?",
                       (dataset_id, time.time(), upload_id))

    def complete_upload(self, upload: UploadRecord, record: DatasetRecord) -> tuple[DatasetRecord, bool]:
        """Make a verified upload's files the dataset ``record`` describes (unless stored before: the same content),
        grant it to the upload's owner and mark the upload completed; return the owner's record and whether their
        hold is new. Safe to run again after a crash at any point (the upload's ``dataset_id`` says where it went).
        """
        files = self.upload_files(upload)
        target = self.dataset_dir / record.id
        try:
            if files.exists():
                if not dataset_stored(self.dataset_dir, record.id):
                    adopt_dataset_dir(files.folder, target)
                files.remove()
        except OSError as exc:
            self.note_write_error(exc)
            raise
        if self.get_dataset(record.id) is None:
            size = stored_size_bytes(self.dataset_path(record.id))
            self._insert_dataset(dataclasses.replace(record, size_bytes=size))
        granted = self._grant_dataset(record.id, upload.owner, record.source)
        with self._transaction() as db:
            db.execute("UPDATE uploads SET status = ?, dataset_id = ?, updated_at = ? WHERE id = ?",
                       (UPLOAD_COMPLETED, record.id, time.time(), upload.id))
        return granted

    def delete_upload(self, upload_id: str, *, owner: str | None = None) -> bool:
        """Abort an upload of ``owner`` (``None``: anyone's): its rows and its files go. Whether there was one."""
        upload = self.get_upload(upload_id, owner=owner)
        if upload is None:
            return False
        with self._transaction() as db:
            db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        self.upload_files(upload).remove()
        return True

    def purge_uploads(self, now: float) -> list[str]:
        """Delete uploads whose expiry passed (receiving ones with their files; completed ones' rows), and upload
        folders no row names (a crash between a folder and its row); return the ids of the uploads deleted."""
        with self._transaction() as db:
            gone = [_upload(row) for row in db.execute(
                f"DELETE FROM uploads WHERE expires_at < ? RETURNING {_UPLOAD_COLUMNS}", (now,))]
        for upload in gone:
            self.upload_files(upload).remove()
        folder = self.dataset_dir / "uploads"
        known = {row[0] for row in self._connection().execute("SELECT id FROM uploads")}
        for path in folder.iterdir() if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                if path.name not in known and path.stat().st_mtime < now - 3600:
                    shutil.rmtree(path, ignore_errors=True)
        return [upload.id for upload in gone]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def connect(path: Path | str, busy_timeout_s: float | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL, with a busy timeout (the server's threads; one process only).

    SQLite's ``unix-excl`` VFS keeps WAL's index in this process's heap (shared by its connections), never in
    a memory-mapped ``-shm`` file, and holds the file's lock while any connection is open: another process
    gets "database is locked" (a second server on the same data dir cannot start).
    """
    uri = f"file:{urllib.parse.quote(str(Path(path).absolute()))}?vfs=unix-excl"
    timeout = BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s
    db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run in Store's checkpointer thread, off every commit
    db.row_factory = sqlite3.Row
    return db


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on one connection, under an optional lock.

    A failed statement or ``COMMIT`` (a full disk, a read-only file) leaves no transaction open and raises its
    own error (SQLite may have rolled back already: a second ``ROLLBACK`` would only hide the first error).
    ``ended`` hears how every transaction ended (None: committed).
    """

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock | None = None,
                 ended: Callable[[BaseException | None], None] | None = None) -> None:
        self.db = db
        self.lock = lock
        self.ended = ended

    def __enter__(self) -> sqlite3.Connection:
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            self._rollback()
            if self.lock is not None:
                self.lock.release()
            self._report(exc)
            raise
        return self.db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        error: BaseException | None = exc
        try:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                except BaseException as failed:
                    error = failed
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            if self.lock is not None:
                self.lock.release()
            self._report(error)

    def _rollback(self) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    def _report(self, error: BaseException | None) -> None:
        if self.ended is not None:
            self.ended(error)


_COLUMNS_WITHOUT_REQUEST = (
    "seq, id, kind, status, '{}' AS request, request_hash, idempotency_key, dataset_id, time_limit_s, result, "
    "error, progress_done, progress_total, partial_state, cancel_requested, attempts, created_at, started_at, "
    "finished_at, updated_at, owner, estimated_cpu_s")


def _dataset(row: sqlite3.Row) -> DatasetRecord:
    """A datasets row (the columns of ``_DATASET_COLUMNS``) as its record; ``image_shape`` is stored as ``"HxW"``."""
    (dataset_id, n, d, size_bytes, source, created_at, y_min, y_min_index, image_shape, angles_given) = tuple(row)
    shape = None
    if image_shape is not None:
        height, width = str(image_shape).split("x")
        shape = (int(height), int(width))
    return DatasetRecord(dataset_id, n, d, size_bytes, source, created_at, y_min, y_min_index, shape,
                         bool(angles_given))


def _job(row: sqlite3.Row) -> JobRecord:
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


class JobRunView:
    """What a run sees of its own job's row: the cancel flag and where to write progress.

    Opened in the server process (a local worker process reaches it through its pipe, see
    :mod:`cnnrelax.executors.local`). It opens its connection lazily, so a short job never touches it.
    """

    def __init__(self, database_path: Path | str, job_id: str, attempt: int) -> None:
        self.database_path = str(database_path)
        self.job_id = job_id
        self.attempt = attempt
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(self.database_path)
        return self._db

    def stop_requested(self) -> bool:
        """True when the job was cancelled, or this run is no longer the job's current run."""
        row = self._connection().execute("SELECT status, attempts, cancel_requested FROM jobs WHERE id = ?",
                                         (self.job_id,)).fetchone()
        if row is None:
            return True
        return bool(row["cancel_requested"]) or row["status"] != "running" or row["attempts"] != self.attempt

    def write_progress(self, done: int, total: int, partial_state: dict[str, Any] | None) -> bool:
        """Record this run's progress; False when the run should stop: it is no longer the job's current run, or
        the job was cancelled."""
        state = None if partial_state is None else json.dumps(partial_state, separators=(",", ":"))
        db = self._connection()
        with _Transaction(db):
            cursor = db.execute("UPDATE jobs SET progress_done = ?, progress_total = ?, "
                                "partial_state = COALESCE(?, partial_state), updated_at = ? "
                                "WHERE id = ? AND status = 'running' AND attempts = ? AND cancel_requested = 0",
                                (done, total, state, time.time(), self.job_id, self.attempt))
            return cursor.rowcount == 1

    def append_events(self, events: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Append this run's events to its job's log (dropped once the run is no longer current)."""
        return append_job_events(self._connection(), self.job_id, self.attempt, events)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# ===================================================================================================
# The job event log (GET /v1/solves/{id}/events, GET /v1/experiments/{id}/events; docs/events.md)
#
# One table of events, each with a global increasing ``id`` (so the ids of one job's events increase too and a
# reader resumes after the last id it saw). ``status`` and ``end`` events are written by SQLite triggers in the
# same transaction as the job's change of status (every executor, every path: claim, finish, requeue, cancel),
# so the ``end`` event is always the last of a job's log; a job's events go when the job row goes (retention,
# DELETE). A worker appends ``trial``, ``cell`` and ``log`` events of its own run only (the attempt guard).
# ===================================================================================================

_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL,
    event      TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, id);
CREATE TRIGGER IF NOT EXISTS job_events_created AFTER INSERT ON jobs BEGIN
    INSERT INTO job_events (job_id, event, data, created_at)
        VALUES (NEW.id, 'status', json_object('status', NEW.status, 'attempt', NEW.attempts), NEW.created_at);
END;
CREATE TRIGGER IF NOT EXISTS job_events_status AFTER UPDATE OF status ON jobs
    WHEN NEW.status IS NOT OLD.status BEGIN
    INSERT INTO job_events (job_id, event, data, created_at)
        VALUES (NEW.id, 'status', json_object('status', NEW.status, 'attempt', NEW.attempts, 'error', NEW.error),
                NEW.updated_at);
    INSERT INTO job_events (job_id, event, data, created_at)
        SELECT NEW.id, 'end', json_object('status', NEW.status, 'error', NEW.error, 'done', NEW.progress_done,
                                          'total', NEW.progress_total), NEW.updated_at
        WHERE NEW.status IN ('succeeded', 'failed', 'cancelled');
END;
CREATE TRIGGER IF NOT EXISTS job_events_cancel_requested AFTER UPDATE OF cancel_requested ON jobs
    WHEN NEW.cancel_requested AND NOT OLD.cancel_requested AND NEW.status = 'running' BEGIN
    INSERT INTO job_events (job_id, event, data, created_at)
        VALUES (NEW.id, 'status', json_object('status', NEW.status, 'attempt', NEW.attempts,
                                              'cancel_requested', json('true')), NEW.updated_at);
END;
CREATE TRIGGER IF NOT EXISTS job_events_gone AFTER DELETE ON jobs BEGIN
    DELETE FROM job_events WHERE job_id = OLD.id;
END;
"""


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's log: its increasing ``id``, its name and its data (JSON text)."""

    id: int
    job_id: str
    event: str
    data_json: str
    created_at: float


def append_job_events(db: sqlite3.Connection, job_id: str, attempt: int,
                      events: Sequence[tuple[str, dict[str, Any]]], lock: threading.Lock | None = None) -> int:
    """Append ``(name, data)`` events of run ``attempt`` of a running job, in order; return how many.

    Nothing is written when that run is no longer the job's current run (the job ended, was requeued or
    deleted), so a late worker cannot write after the job's ``end`` event.
    """
    if not events:
        return 0
    now = time.time()
    rows = [(job_id, name, json.dumps(data, separators=(",", ":"), allow_nan=False), now) for name, data in events]
    with _Transaction(db, lock):
        current = db.execute("SELECT 1 FROM jobs WHERE id = ? AND status = 'running' AND attempts = ?",
                             (job_id, attempt)).fetchone()
        if current is None:
            return 0
        db.executemany("INSERT INTO job_events (job_id, event, data, created_at) VALUES (?, ?, ?, ?)", rows)
    return len(rows)


def read_job_events(db: sqlite3.Connection, job_id: str | None, after_id: int, limit: int) -> list[JobEvent]:
    """Up to ``limit`` events with ``id > after_id``, oldest first: of one job, or of every job (``None``)."""
    if job_id is None:
        rows = db.execute("SELECT id, job_id, event, data, created_at FROM job_events WHERE id > ? "
                          "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
    else:
        rows = db.execute("SELECT id, job_id, event, data, created_at FROM job_events WHERE job_id = ? AND id > ? "
                          "ORDER BY id LIMIT ?", (job_id, after_id, limit)).fetchall()
    return [JobEvent(*row) for row in rows]
