"""The store: a SQLite file (WAL) of jobs and dataset metadata, dataset arrays as files.

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

The package, one concern a module (imports point down this list): :mod:`.records` (the rows as values),
:mod:`.exceptions`, :mod:`.faults` (what a failed write means), :mod:`.connection` (opening, the VFS, the write
transaction), :mod:`.schema` (tables, triggers, migrations), :mod:`.base` (one data directory: connections,
fault memory, checkpointer), then one mixin a concern: :mod:`.events`, :mod:`.jobs`, :mod:`.datasets`,
:mod:`.uploads`, :mod:`.retention`; :mod:`.run_view` (a run's view of its job's row) and :mod:`.facade`
(:class:`Store`). This module is its public face: import from ``cnnrelax.store``.
"""

from __future__ import annotations

from ..dataset_files import dataset_digest, load_dataset_file  # where the API's and executors' callers find them
from .connection import BUSY_TIMEOUT_S, OPEN_TIMEOUT_S, connect
from .events import append_job_events, read_job_events
from .exceptions import DatasetInUse, IdempotencyConflict, QueuedWorkFull, QueueFull, StoreInUse, UploadQuotaFull
from .facade import Store
from .faults import FREED_BYTES, PROBE_INTERVAL_S, StoreFault, store_fault
from .jobs import MAX_SEQ, decode_cursor, encode_cursor, request_hash
from .records import (
    ANONYMOUS,
    JOB_STATUSES,
    UPLOAD_COMPLETED,
    UPLOAD_RECEIVING,
    DatasetRecord,
    JobEvent,
    JobRecord,
    UploadRecord,
    owner_id,
)
from .retention import ORPHAN_GRACE_S
from .run_view import JobRunView

__all__ = [
    "ANONYMOUS",
    "BUSY_TIMEOUT_S",
    "DatasetInUse",
    "DatasetRecord",
    "FREED_BYTES",
    "IdempotencyConflict",
    "JOB_STATUSES",
    "JobEvent",
    "JobRecord",
    "JobRunView",
    "MAX_SEQ",
    "OPEN_TIMEOUT_S",
    "ORPHAN_GRACE_S",
    "PROBE_INTERVAL_S",
    "QueueFull",
    "QueuedWorkFull",
    "Store",
    "StoreFault",
    "StoreInUse",
    "UPLOAD_COMPLETED",
    "UPLOAD_RECEIVING",
    "UploadQuotaFull",
    "UploadRecord",
    "append_job_events",
    "connect",
    "dataset_digest",
    "decode_cursor",
    "encode_cursor",
    "load_dataset_file",
    "owner_id",
    "read_job_events",
    "request_hash",
    "store_fault",
]
