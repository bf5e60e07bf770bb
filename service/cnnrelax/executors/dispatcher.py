"""The dispatcher: a thread of the web process between the store's queue and an :class:`~.base.Executor`.

It claims queued jobs while the executor has a free slot and hands each over as a :class:`~.base.JobTicket`
(the stored spec's JSON text as it is: no decode, no re-encode), records each outcome under the attempt it
belongs to, requeues a job whose worker died (up to ``MAX_ATTEMPTS``), and stops hard, one by one, the runs
still going ``STOP_GRACE_S`` after a cancel request or their time limit.

A run's end is written at once by the thread that saw it (the future's callback); if the store refuses it,
nothing is raised there (where an exception would only be logged and the job stay ``running``): the end is
queued as an :class:`_Ending` that the dispatcher's thread writes with retries and back-off while the store
refuses writes (a full disk, a read-only file). Past
``write_retry_s``, a result that still cannot be written gives way to a short ``failed`` record that says why;
either is tried until one is written, so a job ends within seconds of the store taking writes again. While
the store refuses writes nothing new is claimed (a probe write each second tells when it takes them again).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..store import PROBE_INTERVAL_S, JobRecord, Store, store_fault
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

#: How long the end of a run is retried while the store refuses it before a result gives way to ``failed`` (s).
WRITE_RETRY_S = 30.0
#: The first and the longest pause between two tries of a write the store refused (seconds).
FIRST_RETRY_S, LONGEST_RETRY_S = 0.05, 2.0
#: A cancel request for a job not yet handed to the executor is remembered this long (seconds).
EARLY_CANCEL_TTL_S = 60.0


@dataclass
class _InFlight:
    job: JobRecord
    ticket: JobTicket
    future: cf.Future[JobOutcome]
    started: float = field(default_factory=time.monotonic)
    cancel_at: float | None = None
    hard_stopped: bool = False


@dataclass
class _Ending:
    """The end of a run still to be written to the store: its ``outcome``, or None when its worker died
    (``cause`` says how: the job is requeued, or given up after ``MAX_ATTEMPTS``)."""

    job: JobRecord
    outcome: JobOutcome | None
    run_time_s: float
    cause: str = ""
    since: float = field(default_factory=time.monotonic)
    next_try: float = 0.0
    tries: int = 0


class Dispatcher:
    """Moves jobs from the store's queue to the executor and their outcomes back to the store."""

    def __init__(self, store: Store, executor: Executor, *, default_time_limit_s: float,
                 kill_grace_s: float = STOP_GRACE_S, write_retry_s: float = WRITE_RETRY_S) -> None:
        self.store = store
        self.executor = executor
        self.default_time_limit_s = default_time_limit_s
        self.kill_grace_s = kill_grace_s
        self.write_retry_s = write_retry_s
        self.on_finished: list[FinishedHook] = []
        self.on_started: list[Callable[[JobRecord], None]] = []
        self._in_flight: dict[str, _InFlight] = {}
        self._endings: list[_Ending] = []
        self._early_cancels: dict[str, float] = {}
        self._next_probe = 0.0
        self._last_refusal = ""
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
        """Stop claiming, stop the executor, write what can be written (the rest is requeued at the next start)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.shutdown()
        self._write_endings(final=True)
        with self._lock:
            in_flight = list(self._in_flight.values())
            self._in_flight.clear()
        for item in in_flight:
            try:
                self.store.requeue(item.job.id, item.job.attempts)
            except Exception as exc:  # noqa: BLE001 - left running: the next start requeues it
                log.warning("a running job could not be requeued at shutdown",
                            extra={"job_id": item.job.id, "error": f"{type(exc).__name__}: {exc}"})

    def wake(self) -> None:
        """Look at the queue now (a job was submitted)."""
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Pass a cancel request on to the executor (the store already holds the flag).

        A job claimed but not yet handed over is remembered, and cancelled as it is handed over.
        """
        with self._lock:
            item = self._in_flight.get(job_id)
            if item is not None and item.cancel_at is None:
                item.cancel_at = time.monotonic()
            elif item is None:
                self._early_cancels[job_id] = time.monotonic()
        if item is not None:
            self.executor.cancel(job_id)
            self._wake.set()

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._in_flight)

    @property
    def unwritten(self) -> int:
        """Runs that ended but whose end the store has not taken yet."""
        with self._lock:
            return len(self._endings)

    def refused(self) -> tuple[int, str]:
        """How many runs' ends the store refused at their last try, and the last refusal's reason ("": none)."""
        with self._lock:
            count = sum(1 for ending in self._endings if ending.tries > 0)
        return count, (self._last_refusal if count else "")

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    # -- the loop ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        restarting = False
        while not self._stopping.is_set():
            try:
                self._write_endings()
                if not self.executor.healthy() and self.running == 0:
                    if not restarting:  # once per outage (a Dask executor stays unhealthy while its scheduler is down)
                        log.warning("restarting the worker pool")
                    restarting = True
                    self.executor.restart()
                else:
                    restarting = False
                if self._store_takes_writes():
                    self._fill()
                self._enforce_limits()
                self._forget_early_cancels()
            except Exception as exc:  # noqa: BLE001 - the dispatcher must outlive a bad moment
                if store_fault(exc) is None:  # (a store fault is logged by the store, once per fault)
                    log.exception("dispatcher step failed")
                time.sleep(0.5)
            self._wake.wait(0.1 if self.running or self.unwritten else 0.25)
            self._wake.clear()

    def _store_takes_writes(self) -> bool:
        """False while the store refuses writes; a probe write each ``PROBE_INTERVAL_S`` tells when it stops."""
        if self.store.fault is None:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + PROBE_INTERVAL_S
        return self.store.probe_write() is None

    def _forget_early_cancels(self) -> None:
        horizon = time.monotonic() - EARLY_CANCEL_TTL_S
        with self._lock:
            for job_id in [job_id for job_id, at in self._early_cancels.items() if at < horizon]:
                del self._early_cancels[job_id]

    def _fill(self) -> None:
        while not self._stopping.is_set() and self.running < self.executor.capacity:
            job = self.store.claim_next()
            if job is None:
                return
            if job.attempts > MAX_ATTEMPTS:
                error = (f"The job was interrupted {MAX_ATTEMPTS} times (its worker or the server died); "
                         "it was given up.")
                self._end(_Ending(job, JobOutcome(JobStatus.failed, None, error, 0.0), 0.0))
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
                except Exception as exc:
                    self._endings.append(_Ending(job, None, 0.0, f"{type(exc).__name__}: {exc}"))
                    raise
                item = _InFlight(job, ticket, future)
                if self._early_cancels.pop(job.id, None) is not None:
                    item.cancel_at = time.monotonic()
                self._in_flight[job.id] = item
            if item.cancel_at is not None:
                self.executor.cancel(job.id)
            future.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, future: cf.Future[JobOutcome]) -> None:
        """A run ended (a future's callback): write its end at once; if the store refuses it, queue it for the
        dispatcher's thread to retry. Nothing raises out of here."""
        try:
            with self._lock:
                item = self._in_flight.pop(job_id, None)
            if item is None:
                return
            run_time = time.monotonic() - item.started
            try:
                ending = _Ending(item.job, future.result(), run_time)
            except BaseException as exc:  # noqa: BLE001 - a dead worker: requeue, or give up after MAX_ATTEMPTS
                ending = _Ending(item.job, None, run_time, f"{type(exc).__name__}: {exc}")
            try:
                self._write(ending, time.monotonic())
            except Exception as exc:  # noqa: BLE001 - retried by the dispatcher's thread
                self._retry_later(ending, exc, time.monotonic())
                self._end(ending)
                return
            self._wake.set()  # a slot is free: claim the next job
        except Exception:  # noqa: BLE001 - never raise into the executor's callback machinery
            log.exception("a run's end could not be written or queued", extra={"job_id": job_id})

    def _end(self, ending: _Ending) -> None:
        with self._lock:
            self._endings.append(ending)
        self._wake.set()

    # -- writing ends ---------------------------------------------------------------------------------
    def _write_endings(self, final: bool = False) -> None:
        """Write the ends that are due (all of them, once, when ``final``); keep those the store refuses."""
        now = time.monotonic()
        with self._lock:
            due = [ending for ending in self._endings if final or ending.next_try <= now]
        for ending in due:
            try:
                self._write(ending, now)
            except Exception as exc:  # noqa: BLE001 - tried again after a pause; the job is never dropped
                self._retry_later(ending, exc, now)
                continue
            with self._lock:
                self._endings.remove(ending)

    def _write(self, ending: _Ending, now: float) -> None:
        """Write one run's end: its outcome, or a requeue (or ``failed`` after ``MAX_ATTEMPTS``) if its worker died."""
        job, store = ending.job, self.store
        if ending.outcome is None:
            if self._stopping.is_set():
                store.requeue(job.id, job.attempts)
            elif job.attempts >= MAX_ATTEMPTS:
                error = (f"The job was interrupted {job.attempts} times (its worker process died: "
                         f"{ending.cause}); it was given up.")
                if store.finish_job(job.id, job.attempts, JobStatus.failed, error=error):
                    self._finished(job, JobStatus.failed, ending.run_time_s)
            else:
                if ending.tries == 0:
                    log.warning("worker died; requeueing", extra={"job_id": job.id, "error": ending.cause})
                store.requeue(job.id, job.attempts)
            return
        outcome = ending.outcome
        try:
            written = store.finish_job(job.id, job.attempts, outcome.status, result_json=outcome.result_json,
                                       error=outcome.error)
        except Exception as exc:
            if outcome.result_json is None or now - ending.since < self.write_retry_s:
                raise
            # Past the bound, the result gives way to a short record that says why (it may fit where it did not).
            fault = store_fault(exc)
            reason = fault.reason if fault is not None else f"{type(exc).__name__}: {exc}"
            error = (f"The job ended {outcome.status.value} but its result could not be stored within "
                     f"{self.write_retry_s:g} s ({reason}); submit it again once the server's store takes writes.")
            outcome = replace(outcome, status=JobStatus.failed, result_json=None, error=error)
            written = store.finish_job(job.id, job.attempts, outcome.status, error=error)
        if written:
            log.info("job finished", extra={"job_id": job.id, "status": outcome.status,
                                            "run_time_s": round(outcome.run_time_s, 6)})
            self._finished(job, outcome.status, outcome.run_time_s)

    def _retry_later(self, ending: _Ending, exc: Exception, now: float) -> None:
        fault = store_fault(exc)
        self._last_refusal = fault.reason if fault is not None else f"{type(exc).__name__}: {exc}"
        ending.tries += 1
        ending.next_try = now + min(LONGEST_RETRY_S, FIRST_RETRY_S * 2 ** (ending.tries - 1))
        if ending.tries > 1:
            return
        if fault is not None:
            log.warning("the end of a job could not be written; retrying until the store takes it",
                        extra={"job_id": ending.job.id, "error": fault.reason})
        else:
            log.error("the end of a job could not be written; retrying", exc_info=exc,
                      extra={"job_id": ending.job.id})

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
            self._end(_Ending(item.job, outcome, now - item.started))
