"""The database's shape: every table, index and trigger, and the migrations of a data directory made by an older
version (columns added in place), run in one order by :func:`create_schema` when the store opens."""

from __future__ import annotations

import sqlite3

from .records import ANONYMOUS

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

#: The one-row table that :meth:`Store.probe_write` writes to learn whether the store takes writes.
_FAULT_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
"""

#: The job event log (:mod:`.events`): its table, and the triggers that write ``status`` and ``end`` events in the
#: same transaction as a job's change of status, and delete a job's events with its row.
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

#: Uploads in parts (POST /v1/datasets/uploads; docs/uploads.md).
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


def create_schema(db: sqlite3.Connection) -> None:
    """Create what is missing and migrate a data directory from before (each step is idempotent)."""
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
