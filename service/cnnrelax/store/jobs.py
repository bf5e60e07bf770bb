"""Jobs: created (idempotency, queue caps, queued work per owner), claimed round-robin between owners (one atomic
UPDATE that bumps ``attempts``), written under their attempt (progress, the end: a run from before a restart can
never finish a job a second time), cancelled, requeued, listed a page at a time (opaque cursors over ``seq``)."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
import uuid
from typing import Any

from ..types import TERMINAL_STATUSES
from .base import StoreBase
from .exceptions import IdempotencyConflict, QueuedWorkFull, QueueFull
from .records import ANONYMOUS, JobRecord, job_record

#: Largest ``seq`` a cursor may name (SQLite integers are signed 64-bit).
MAX_SEQ = 2**63 - 1

_COLUMNS_WITHOUT_REQUEST = (
    "seq, id, kind, status, '{}' AS request, request_hash, idempotency_key, dataset_id, time_limit_s, result, "
    "error, progress_done, progress_total, partial_state, cancel_requested, attempts, created_at, started_at, "
    "finished_at, updated_at, owner, estimated_cpu_s")


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


class JobsMixin(StoreBase):
    """The store's jobs."""

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
                    existing = job_record(row)
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
        return job_record(row), True

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
        return None if row is None else job_record(row)

    def get_job(self, job_id: str, kind: str | None = None, *, owner: str | None = None,
                with_request: bool = True) -> JobRecord | None:
        """The job, if it is of ``kind`` and belongs to ``owner`` (``None``: any owner).

        ``with_request=False`` leaves the request (which may be large) out: ``request_json`` is ``"{}"``.
        """
        columns = "*" if with_request else _COLUMNS_WITHOUT_REQUEST
        row = self._connection().execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = job_record(row)
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
        jobs = [job_record(row) for row in rows[:limit]]
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
        return None if row is None else job_record(row)

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
        return None if row is None else job_record(row)

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
