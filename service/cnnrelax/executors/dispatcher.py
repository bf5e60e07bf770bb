"""The dispatcher: a thread of the web process between the store's queue and an :class:`~.base.Executor`.

It claims queued jobs while the executor has a free slot and hands each over as a :class:`~.base.JobTicket`
(the stored spec's JSON text as it is: no decode, no re-encode), records each outcome under the attempt it
belongs to, requeues a job whose worker died (up to ``MAX_ATTEMPTS``), and stops hard, one by one, the runs
still going ``STOP_GRACE_S`` after a cancel request or their time limit.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..store import JobRecord, Store
from ..types import JobKind, JobStatus, StopReason
from .base import (
    MAX_ATTEMPTS,
    STOP_GRACE_S,
    UNSTARTED_SLACK_S,
    Executor,
    JobOutcome,
    JobTicket,
    hard_stop_outcome,
)

log = logging.getLogger("cnnrelax.executor")

FinishedHook = Callable[[JobRecord, JobStatus, float], None]


@dataclass
class _InFlight:
    job: JobRecord
    ticket: JobTicket
    future: cf.Future[JobOutcome]
    started: float = field(default_factory=time.monotonic)
    cancel_at: float | None = None
    hard_stopped: bool = False


class Dispatcher:
    """Moves jobs from the store's queue to the executor and their outcomes back to the store."""

    def __init__(self, store: Store, executor: Executor, *, default_time_limit_s: float,
                 kill_grace_s: float = STOP_GRACE_S) -> None:
        self.store = store
        self.executor = executor
        self.default_time_limit_s = default_time_limit_s
        self.kill_grace_s = kill_grace_s
        self.on_finished: list[FinishedHook] = []
        self.on_started: list[Callable[[JobRecord], None]] = []
        self._in_flight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        recovered = self.store.recover_running()
        if recovered:
            log.info("requeued %d job(s) left running by the previous server", len(recovered))
        self.executor.start()
        self._thread = threading.Thread(target=self._loop, name="cnnrelax-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.shutdown()
        with self._lock:
            in_flight = list(self._in_flight.values())
            self._in_flight.clear()
        for item in in_flight:
            self.store.requeue(item.job.id, item.job.attempts)

    def wake(self) -> None:
        """Look at the queue now (a job was submitted)."""
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Pass a cancel request on to the executor (the store already holds the flag)."""
        with self._lock:
            item = self._in_flight.get(job_id)
            if item is not None and item.cancel_at is None:
                item.cancel_at = time.monotonic()
        if item is not None:
            self.executor.cancel(job_id)
            self._wake.set()

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    # -- the loop ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        restarting = False
        while not self._stopping.is_set():
            try:
                if not self.executor.healthy() and self.running == 0:
                    if not restarting:  # once per outage (a Dask executor stays unhealthy while its scheduler is down)
                        log.warning("restarting the worker pool")
                    restarting = True
                    self.executor.restart()
                else:
                    restarting = False
                self._fill()
                self._enforce_limits()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive a bad moment
                log.exception("dispatcher step failed")
                time.sleep(0.5)
            self._wake.wait(0.1 if self.running else 0.25)
            self._wake.clear()

    def _fill(self) -> None:
        while not self._stopping.is_set() and self.running < self.executor.capacity:
            job = self.store.claim_next()
            if job is None:
                return
            if job.attempts > MAX_ATTEMPTS:
                self.store.finish_job(job.id, job.attempts, JobStatus.failed,
                                      error=f"The job was interrupted {MAX_ATTEMPTS} times (its worker or the server "
                                            "died); it was given up.")
                self._finished(job, JobStatus.failed, 0.0)
                continue
            limit = min(job.time_limit_s or self.default_time_limit_s, self.default_time_limit_s)
            ticket = JobTicket(
                job_id=job.id, attempt=job.attempts, kind=JobKind(job.kind), spec_json=job.request_json,
                time_limit_s=limit,
                dataset_path=None if job.dataset_id is None else str(self.store.dataset_path(job.dataset_id)),
                resume=job.partial_state,
            )
            log.info("job started", extra={"job_id": job.id, "attempt": job.attempts, "kind": job.kind})
            for hook in self.on_started:
                hook(job)
            with self._lock:
                try:
                    future = self.executor.submit(ticket)
                except Exception:
                    self.store.requeue(job.id, job.attempts)
                    raise
                self._in_flight[job.id] = _InFlight(job, ticket, future)
            future.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, future: cf.Future[JobOutcome]) -> None:
        with self._lock:
            item = self._in_flight.pop(job_id, None)
        if item is None:
            return
        job = item.job
        try:
            outcome = future.result()
        except BaseException as exc:  # noqa: BLE001 - a dead worker: requeue, or give up after MAX_ATTEMPTS
            if self._stopping.is_set():
                self.store.requeue(job.id, job.attempts)
            elif job.attempts >= MAX_ATTEMPTS:
                error = (f"The job was interrupted {job.attempts} times (its worker process died: "
                         f"{type(exc).__name__}); it was given up.")
                if self.store.finish_job(job.id, job.attempts, JobStatus.failed, error=error):
                    self._finished(job, JobStatus.failed, time.monotonic() - item.started)
            else:
                log.warning("worker died; requeueing",
                            extra={"job_id": job.id, "error": f"{type(exc).__name__}: {exc}"})
                self.store.requeue(job.id, job.attempts)
            self._wake.set()
            return
        if self.store.finish_job(job.id, job.attempts, outcome.status, result_json=outcome.result_json,
                                 error=outcome.error):
            log.info("job finished", extra={"job_id": job.id, "status": outcome.status,
                                            "run_time_s": round(outcome.run_time_s, 6)})
            self._finished(job, outcome.status, outcome.run_time_s)
        self._wake.set()

    def _finished(self, job: JobRecord, status: JobStatus, run_time_s: float) -> None:
        for hook in self.on_finished:
            try:
                hook(job, status, run_time_s)
            except Exception:  # noqa: BLE001 - a failing hook (metrics) must not lose the job's outcome
                log.exception("finish hook failed", extra={"job_id": job.id})

    def _enforce_limits(self) -> None:
        """Stop hard, one by one, the runs still going ``kill_grace_s`` after a cancel request or their time limit.

        The executor stops that run alone (a local executor kills its worker process and starts another);
        no other run is touched. An executor that cannot stop a single run leaves the dispatcher to record
        the outcome and forget the run (its worker finishes it in vain).
        """
        now = time.monotonic()
        due: list[tuple[_InFlight, StopReason]] = []
        with self._lock:
            items = [item for item in self._in_flight.values() if not item.hard_stopped]
        for item in items:
            reason: StopReason | None = None
            if item.cancel_at is not None and now - item.cancel_at >= self.kill_grace_s:
                reason = "cancelled"
            else:
                began = self.executor.started_at(item.job.id)
                if began is None and now - item.started > item.ticket.time_limit_s + UNSTARTED_SLACK_S:
                    began = item.started
                if began is not None and now - began >= item.ticket.time_limit_s + self.kill_grace_s:
                    reason = "time_limit"
            if reason is not None:
                item.hard_stopped = True
                due.append((item, reason))
        for item, reason in due:
            log.warning("stopping a run hard", extra={"job_id": item.job.id, "reason": reason})
            if self.executor.hard_stop(item.job.id, reason):
                continue
            with self._lock:
                self._in_flight.pop(item.job.id, None)
            outcome = hard_stop_outcome(reason, item.ticket, "its run was abandoned", now - item.started)
            if self.store.finish_job(item.job.id, item.job.attempts, outcome.status, error=outcome.error):
                self._finished(item.job, outcome.status, now - item.started)
