"""The job event log (GET /v1/solves/{id}/events, GET /v1/experiments/{id}/events; docs/events.md).

One table of events, each with a global increasing ``id`` (so the ids of one job's events increase too and a
reader resumes after the last id it saw). ``status`` and ``end`` events are written by SQLite triggers
(:mod:`.schema`) in the same transaction as the job's change of status (every executor, every path: claim, finish,
requeue, cancel), so the ``end`` event is always the last of a job's log; a job's events go when the job row goes
(retention, DELETE). A worker appends ``trial``, ``cell`` and ``log`` events of its own run only (the attempt
guard)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any, Sequence

from .base import StoreBase
from .connection import Transaction
from .records import JobEvent


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
    with Transaction(db, lock):
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


class EventsMixin(StoreBase):
    """The store's reads and writes of the event log."""

    def append_events(self, job_id: str, attempt: int, events: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Append a run's ``(name, data)`` events to its job's log (:func:`append_job_events`)."""
        return append_job_events(self._connection(), job_id, attempt, events, self._write_lock)

    def read_events(self, job_id: str | None, after_id: int = 0, limit: int = 100) -> list[JobEvent]:
        """Up to ``limit`` events of a job (``None``: of every job) after ``after_id`` (:func:`read_job_events`)."""
        return read_job_events(self._connection(), job_id, after_id, limit)

    def last_event_id(self) -> int:
        """The id of the newest event of any job (0: none yet): where a reader of every job's events starts."""
        return int(self._connection().execute("SELECT coalesce(max(id), 0) FROM job_events").fetchone()[0])
