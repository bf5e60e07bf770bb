"""What one run sees of its own job's row, opened in the server process (local workers reach it through their
pipe: :mod:`cnnrelax.executors.local`): the stop request, and progress and events written under the run's
attempt."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Sequence

from .connection import Transaction, connect
from .events import append_job_events


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
        with Transaction(db):
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
