"""Where jobs run: an :class:`Executor` (local worker processes by default) fed by a :class:`Dispatcher`.

The mathematics runs in one place for every executor: :func:`execute_job` (top-level, picklable) takes a
:class:`JobTicket` and a :class:`JobControl` (cancellation, time limit, progress) and returns a
:class:`JobOutcome`. :class:`LocalProcessExecutor` runs it in a ``ProcessPoolExecutor`` (spawn) with a
control that polls the job's SQLite row.

A Dask executor (:class:`cnnrelax.dask_executor.DaskExecutor`, loaded by ``cnnrelax.api.service.build_executor``
when ``CNNRELAX_DASK_SCHEDULER`` is set) subclasses :class:`Executor` and runs the same
:func:`execute_job` as a Dask task with a control of its own (a Dask Event for cancel requests, a Dask
Variable for progress, which the web process copies into the store), so its workers need none of the
API's files: tickets sent there carry their dataset's arrays.

The dispatcher (a thread of the web process) claims queued jobs from the store while the executor has a
free slot, records each outcome under the attempt it belongs to, enforces time limits (a worker that does
not stop within a grace period after its limit is killed), and requeues jobs whose worker process died.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from .jobs import classify_outcome, run_job
from .problem import InvalidParameterError
from .store import JobRecord, JobRunView, Store, load_dataset_file

log = logging.getLogger("cnnrelax.executor")

#: A job whose runs were interrupted this many times (its worker or the server died) ends ``failed``.
MAX_ATTEMPTS = 5
#: How often a worker looks at its job's row for a cancel request (seconds).
CANCEL_POLL_S = 0.2
#: Worker processes run at this lower priority, so the API answers at once even when every core solves.
WORKER_NICENESS = 10
#: How often a worker writes progress to the store (seconds).
PROGRESS_WRITE_S = 0.25


@dataclass(frozen=True)
class JobTicket:
    """Everything a worker needs to run one attempt of one job (picklable)."""

    job_id: str
    attempt: int
    kind: str
    payload: dict[str, Any]
    time_limit_s: float
    dataset_path: str | None = None
    arrays: tuple[Any, Any] | None = None
    resume: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt ended: a terminal status, the result as JSON text, an error sentence."""

    status: str
    result_json: str | None
    error: str | None
    run_time_s: float


class JobControl(Protocol):
    """The worker side of a job's control: stop requests, the time limit, progress reports."""

    stop_reason: str | None

    def should_stop(self) -> bool: ...

    def progress(self, done: int, total: int, partial_state: dict) -> None: ...


def execute_job(ticket: JobTicket, control: JobControl) -> JobOutcome:
    """Run a ticket's job through :func:`cnnrelax.jobs.run_job` and classify how it ended (never raises)."""
    start = time.monotonic()

    def outcome(status: str, result: dict | None, error: str | None) -> JobOutcome:
        text = None if result is None else json.dumps(result, separators=(",", ":"), allow_nan=False)
        return JobOutcome(status, text, error, time.monotonic() - start)

    try:
        arrays = ticket.arrays
        if arrays is None and ticket.dataset_path is not None:
            arrays = load_dataset_file(ticket.dataset_path)
        result = run_job(ticket.kind, ticket.payload, arrays, should_stop=control.should_stop,
                         progress=control.progress, resume=ticket.resume, time_limit_s=ticket.time_limit_s)
    except InvalidParameterError as exc:
        return outcome("failed", None, f"Invalid {exc.parameter}: {exc.message}")
    except FileNotFoundError:
        return outcome("failed", None, "The job's dataset is no longer stored.")
    except Exception as exc:  # noqa: BLE001 - a job's failure is reported, never raised into the pool
        if type(exc).__name__ == "ExperimentCancelled":
            return outcome(*_stopped(control, ticket))
        log.exception("job %s failed", ticket.job_id, extra={"job_id": ticket.job_id})
        return outcome("failed", None, f"The job failed unexpectedly ({type(exc).__name__}: {exc}).")
    status, error = classify_outcome(ticket.kind, result)
    if status == "cancelled":
        status, _, error = _stopped(control, ticket)
    return outcome(status, result, error)


def _stopped(control: JobControl, ticket: JobTicket) -> tuple[str, None, str]:
    """Why a job stopped early: a time limit or a lost server (failed), else a cancel request."""
    if control.stop_reason == "time_limit":
        return "failed", None, f"The job exceeded its time limit of {ticket.time_limit_s:g} s."
    if control.stop_reason == "orphaned":
        return "failed", None, "The server that started the job went away."
    return "cancelled", None, "The job was cancelled."


class LocalJobControl:
    """Control of a job running in a local worker process: polls the job's SQLite row every 0.2 s."""

    def __init__(self, database_path: str, ticket: JobTicket, parent_pid: int) -> None:
        self.view = JobRunView(database_path, ticket.job_id, ticket.attempt)
        self.deadline = time.monotonic() + ticket.time_limit_s
        self.parent_pid = parent_pid
        self.stop_reason: str | None = None
        self._next_poll = time.monotonic() + CANCEL_POLL_S
        self._next_write = time.monotonic() + PROGRESS_WRITE_S

    def should_stop(self) -> bool:
        if self.stop_reason is not None:
            return True
        now = time.monotonic()
        if now >= self.deadline:
            self.stop_reason = "time_limit"
        elif now >= self._next_poll:
            self._next_poll = now + CANCEL_POLL_S
            if os.getppid() != self.parent_pid:
                self.stop_reason = "orphaned"
            elif self.view.stop_requested():
                self.stop_reason = "cancelled"
        return self.stop_reason is not None

    def progress(self, done: int, total: int, partial_state: dict) -> None:
        now = time.monotonic()
        if now >= self._next_write:
            self._next_write = now + PROGRESS_WRITE_S
            self.view.write_progress(done, total, partial_state or None)

    def close(self) -> None:
        self.view.close()


def run_local_ticket(ticket: JobTicket, database_path: str, parent_pid: int) -> JobOutcome:
    """The task a local worker process runs: :func:`execute_job` with a SQLite-polling control."""
    control = LocalJobControl(database_path, ticket, parent_pid)
    try:
        return execute_job(ticket, control)
    finally:
        control.close()


def _init_worker(parent_pid: int, log_level: str) -> None:
    """In a worker process: JSON logs, a lower priority than the API process, and a watch on the parent."""
    from .api.log_format import configure_logging

    configure_logging(log_level)
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass
    _watch_parent(parent_pid)


def _watch_parent(parent_pid: int) -> None:
    """In a worker process: exit as soon as the server process that started it is gone (e.g. SIGKILLed)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="cnnrelax-parent-watch", daemon=True).start()


def _warm_worker() -> int:
    """Import the core and solve a tiny problem once, so a worker's first real job pays no start-up."""
    from .jobs import run_solve_job

    run_solve_job({"planted": {"n": 40, "d": 4, "k": 2, "seed": 0}, "trials": 1}, None, None)
    return os.getpid()


class Executor(abc.ABC):
    """Runs tickets somewhere; the dispatcher needs nothing more than this."""

    #: How many jobs may run at once.
    capacity: int

    @abc.abstractmethod
    def start(self) -> None:
        """Get ready to run (start processes, connect to a cluster)."""

    @abc.abstractmethod
    def submit(self, ticket: JobTicket) -> cf.Future[JobOutcome]:
        """Start one ticket; the future resolves to its outcome (or raises if the worker died)."""

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop (local workers read the flag from the store; nothing else to do)."""

    @abc.abstractmethod
    def healthy(self) -> bool:
        """True when jobs can run."""

    @abc.abstractmethod
    def restart(self) -> None:
        """Stop every running job at once (their futures fail) and be ready again."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop for good, without waiting for running jobs (they are requeued at the next start)."""


class LocalProcessExecutor(Executor):
    """A ``ProcessPoolExecutor`` of ``workers`` spawned processes, warmed up at start."""

    def __init__(self, database_path: str, workers: int, log_level: str = "info") -> None:
        self.database_path = str(database_path)
        self.log_level = log_level
        self.capacity = workers
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._broken = False
        self.warm = threading.Event()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        pool = cf.ProcessPoolExecutor(max_workers=self.capacity, mp_context=self._context,
                                      initializer=_init_worker, initargs=(os.getpid(), self.log_level))
        with _single_threaded_math():  # the processes start now, with these variables set
            warmups = [pool.submit(_warm_worker) for _ in range(self.capacity)]
        self.warm.clear()

        def warmed(_: cf.Future[int]) -> None:
            if all(f.done() for f in warmups):
                self.warm.set()

        for future in warmups:
            future.add_done_callback(warmed)
        return pool

    def start(self) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
                self._broken = False

    def submit(self, ticket: JobTicket) -> cf.Future[JobOutcome]:
        with self._lock:
            if self._pool is None:
                raise RuntimeError("the executor is not started")
            future = self._pool.submit(run_local_ticket, ticket, self.database_path, os.getpid())
        future.add_done_callback(self._watch)
        return future

    def _watch(self, future: cf.Future[JobOutcome]) -> None:
        if not future.cancelled() and isinstance(future.exception(), cf.process.BrokenProcessPool):
            self._broken = True

    def healthy(self) -> bool:
        with self._lock:
            pool = self._pool
            if pool is None or self._broken:
                return False
            processes = getattr(pool, "_processes", None) or {}
            return all(p.is_alive() for p in processes.values())

    def restart(self) -> None:
        with self._lock:
            old, self._pool = self._pool, None
            if old is not None:
                _kill_pool(old)
            self._pool = self._new_pool()
            self._broken = False

    def shutdown(self) -> None:
        with self._lock:
            old, self._pool = self._pool, None
        if old is not None:
            _kill_pool(old)


@contextlib.contextmanager
def _single_threaded_math() -> Iterator[None]:
    """One BLAS/OpenMP thread per worker process (the pool is the parallelism), unless the user chose otherwise."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    added = [name for name in names if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _kill_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Kill a pool's processes now (the pool has no public way to stop a running task)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


FinishedHook = Callable[[JobRecord, str, float], None]


@dataclass
class _InFlight:
    job: JobRecord
    ticket: JobTicket
    future: cf.Future[JobOutcome]
    started: float = field(default_factory=time.monotonic)


class Dispatcher:
    """Moves jobs from the store's queue to the executor and their outcomes back to the store."""

    def __init__(self, store: Store, executor: Executor, *, default_time_limit_s: float,
                 kill_grace_s: float = 5.0) -> None:
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
            running = job_id in self._in_flight
        if running:
            self.executor.cancel(job_id)

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
                self._enforce_time_limits()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive a bad moment
                log.exception("dispatcher step failed")
                time.sleep(0.5)
            self._wake.wait(0.25)
            self._wake.clear()

    def _fill(self) -> None:
        while not self._stopping.is_set() and self.running < self.executor.capacity:
            job = self.store.claim_next()
            if job is None:
                return
            if job.attempts > MAX_ATTEMPTS:
                self.store.finish_job(job.id, job.attempts, "failed",
                                      error=f"The job was interrupted {MAX_ATTEMPTS} times (its worker or the server "
                                            "died); it was given up.")
                self._finished(job, "failed", 0.0)
                continue
            limit = min(job.time_limit_s or self.default_time_limit_s, self.default_time_limit_s)
            ticket = JobTicket(
                job_id=job.id, attempt=job.attempts, kind=job.kind, payload=job.request, time_limit_s=limit,
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
                error = (f"The job was interrupted {job.attempts} times (its worker process died: {type(exc).__name__}); "
                         "it was given up.")
                if self.store.finish_job(job.id, job.attempts, "failed", error=error):
                    self._finished(job, "failed", time.monotonic() - item.started)
            else:
                log.warning("worker died; requeueing", extra={"job_id": job.id, "error": type(exc).__name__})
                self.store.requeue(job.id, job.attempts)
            self._wake.set()
            return
        if self.store.finish_job(job.id, job.attempts, outcome.status, result_json=outcome.result_json,
                                 error=outcome.error):
            log.info("job finished", extra={"job_id": job.id, "status": outcome.status,
                                            "run_time_s": round(outcome.run_time_s, 6)})
            self._finished(job, outcome.status, outcome.run_time_s)
        self._wake.set()

    def _finished(self, job: JobRecord, status: str, run_time_s: float) -> None:
        for hook in self.on_finished:
            try:
                hook(job, status, run_time_s)
            except Exception:  # noqa: BLE001
                log.exception("finish hook failed", extra={"job_id": job.id})

    def _enforce_time_limits(self) -> None:
        now = time.monotonic()
        with self._lock:
            overdue = [item for item in self._in_flight.values()
                       if now - item.started > item.ticket.time_limit_s + self.kill_grace_s]
        if not overdue:
            return
        for item in overdue:
            error = (f"The job exceeded its time limit of {item.ticket.time_limit_s:g} s and did not stop; "
                     "its worker was killed.")
            if self.store.finish_job(item.job.id, item.job.attempts, "failed", error=error):
                log.warning("job killed after its time limit", extra={"job_id": item.job.id})
                self._finished(item.job, "failed", now - item.started)
        self.executor.restart()
