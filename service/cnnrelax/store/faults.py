"""What a failed write of the storage means (issue 16): a full volume (answered 507) or a read-only, immutable or
failing one (503), told apart by SQLite's result code or the OS's errno (:func:`store_fault`); anything else is
not a fault of the storage."""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass

#: A fault found by a probe write stays the answer this long before the next probe (seconds).
PROBE_INTERVAL_S = 1.0
#: A full disk counts as cleared by a probe once this much more space is free than when the fault began.
FREED_BYTES = 1024 * 1024


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
