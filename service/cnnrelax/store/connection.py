"""Opening the database and writing to it: one connection per thread in autocommit mode, WAL under SQLite's
``unix-excl`` VFS (WAL's index in this process's heap: no memory-mapped ``-shm`` file, so a write the volume
cannot back is an error, never a SIGBUS), and the write transaction that reports how it ended."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable

#: How long a write waits for another writer's lock (seconds).
BUSY_TIMEOUT_S = 30.0
#: How long opening a store waits for a data dir another process holds before refusing it (seconds).
OPEN_TIMEOUT_S = 5.0


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


class Transaction:
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

