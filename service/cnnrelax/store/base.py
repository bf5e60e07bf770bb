"""The store's common ground: one data directory, its database opened once per thread, the write transaction under
the process's write lock, the memory of the last fault (issue 16: remembered until a write succeeds, probed for
``/readyz``), the background checkpointer, and the removal at start of what a cut-short write left. Every concern
of the store (:mod:`.jobs`, :mod:`.events`, :mod:`.datasets`, :mod:`.uploads`, :mod:`.retention`) is a mixin
of :class:`StoreBase`."""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from ..dataset_files import remove_temporary
from .connection import BUSY_TIMEOUT_S, OPEN_TIMEOUT_S, Transaction, connect
from .exceptions import StoreInUse
from .faults import FREED_BYTES, PROBE_INTERVAL_S, StoreFault, store_fault
from .schema import create_schema

log = logging.getLogger("cnnrelax.store")


class StoreBase:
    """One data directory's database: connections, write transactions, faults. Thread-safe: one SQLite connection
    per thread."""

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
        create_schema(db)
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

    def _transaction(self) -> "Transaction":
        """A write transaction; this process's writers queue on a lock rather than on SQLite's busy back-off."""
        return Transaction(self._connection(), self._write_lock, self._write_ended)

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
            with Transaction(self._connection(), self._write_lock, functools.partial(self._write_ended, probe=True)) \
                    as db:
                db.execute("INSERT INTO store_probe (id, at) VALUES (1, ?) "
                           "ON CONFLICT (id) DO UPDATE SET at = excluded.at", (time.time(),))
        except (sqlite3.Error, OSError) as exc:
            return store_fault(exc) or StoreFault("read_only", f"the job store cannot be written ({exc})")
        return self._fault

    def writable(self, max_age_s: float = PROBE_INTERVAL_S) -> StoreFault | None:
        """The store's fault now: the last write's, or a probe's when the last probe is older than ``max_age_s``.

        ``/readyz`` asks this, so a store made read-only while nothing writes is noticed too, and a fault that
        cleared is noticed within ``max_age_s`` (a probe writes one row at most every ``max_age_s``). A full disk
        that has freed :data:`FREED_BYTES` since its fault is probed at once (one ``statvfs``): a probe that ran
        just before the space returned does not hold the store unwritable for another ``max_age_s``.
        """
        fault = self._fault
        freed = fault is not None and fault.full and self._free_bytes() >= self._free_at_fault + FREED_BYTES
        if freed or time.monotonic() - self._probed_at >= max_age_s:
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

    def remove_temporary_files(self) -> int:
        """Delete ``*.tmp`` files and directories that a write cut short (a crash, a full disk) left in the data
        dir."""
        return sum(remove_temporary(folder) for folder in (self.dataset_dir, self.data_dir / "figures"))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
