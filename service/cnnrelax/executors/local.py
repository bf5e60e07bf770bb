"""Local worker processes: :class:`LocalProcessExecutor` and the control of a job running in one.

``workers`` spawned processes, each running one job at a time (:func:`~.worker.execute_job`), each
stoppable alone. A worker's control (:class:`LocalJobControl`) reads a shared stop flag the web process
sets and polls its parent's pid. A worker never opens the SQLite store (only the server process does, see
:mod:`cnnrelax.store`): what it writes to its job's row (progress, events) goes through its pipe
(:class:`ForwardedRunView`), and the web process writes it with a :class:`~cnnrelax.store.JobRunView`; a
progress write that finds the run no longer current (cancelled, or a newer attempt) raises the stop flag.
Worker processes die with the web process (``PR_SET_PDEATHSIG``, and a watch on the parent's pid).

- Cancel and time limit are cooperative first (the job's ``should_stop`` turns true), and hard after
  ``STOP_GRACE_S``: the slot kills that job's worker process only and starts a fresh one in its place.
- Memory: each worker process runs under ``CNNRELAX_WORKER_MEMORY_LIMIT_MB`` (its data segment is capped
  with ``RLIMIT_DATA``, and the web process watches its resident size as a fallback). A job past the limit
  ends ``failed`` once and its worker is replaced; it is not retried.
- A worker that dies for another reason costs an attempt to the job it was running, and to no other job.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator

from ..store import JobRunView
from ..types import StopReason
from .base import MIB, BaseJobControl, Executor, JobOutcome, JobTicket, WorkerDied, hard_stop_outcome
from .worker import apply_memory_limit, execute_job, init_worker, warm_worker

log = logging.getLogger("cnnrelax.executor")

#: How often the web process looks at a busy local worker's resident memory (seconds).
MEMORY_POLL_S = 0.1
#: How long a new local worker process may take to import the core and warm up (seconds).
SPAWN_TIMEOUT_S = 120.0
#: Values of a local worker's stop flag (shared memory the web process writes).
_FLAG_NONE, _FLAG_CANCEL = 0, 1


#: The message tag of a call a worker forwards to its run's :class:`~cnnrelax.store.JobRunView`.
_VIEW_CALL = "view"


class ForwardedRunView:
    """The worker side of its job's row: every call is sent down the worker's pipe, and the web process makes
    it on the run's :class:`~cnnrelax.store.JobRunView` (any of its writing methods: progress, events).

    One-way: the worker never waits for the database, and a write that fails (a full disk) costs the job
    nothing; the calls arrive in order, before the run's outcome.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)

        def forward(*args: Any) -> None:
            with self._lock:
                self._conn.send((_VIEW_CALL, name, args))

        return forward

    def close(self) -> None:
        """Nothing to close on the worker's side."""


class LocalJobControl(BaseJobControl):
    """Control of a job running in a local worker process.

    On every call the worker's shared stop flag (the web process sets it when the job is cancelled, or when
    the run is no longer the job's current run); every ``CANCEL_POLL_S`` whether the server that started it
    is still there. Progress and events go to the job's row and event log through the web process
    (:class:`ForwardedRunView`).
    """

    def __init__(self, view: ForwardedRunView, ticket: JobTicket, parent_pid: int, stop_flag: Any = None) -> None:
        super().__init__(ticket.time_limit_s)
        self.view = view
        self.parent_pid = parent_pid
        self.stop_flag = stop_flag

    def stop_now(self) -> StopReason | None:
        flag = self.stop_flag.value if self.stop_flag is not None else _FLAG_NONE
        return "cancelled" if flag == _FLAG_CANCEL else None

    def poll(self) -> StopReason | None:
        return "orphaned" if os.getppid() != self.parent_pid else None

    def publish_progress(self, done: int, total: int, partial_state: dict[str, Any]) -> None:
        self.view.write_progress(done, total, partial_state or None)

    def publish_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.view.append_events(events)

    def close(self) -> None:
        self.view.close()


def run_local_ticket(ticket: JobTicket, conn: Any, parent_pid: int, stop_flag: Any = None) -> JobOutcome:
    """The task a local worker process runs: :func:`~.worker.execute_job`, its writes forwarded down ``conn``."""
    control = LocalJobControl(ForwardedRunView(conn), ticket, parent_pid, stop_flag)
    try:
        return execute_job(ticket, control)
    finally:
        control.close()


def local_worker_main(conn: Any, stop_flag: Any, parent_pid: int, log_level: str,
                      memory_limit_bytes: int | None) -> None:
    """A local worker process: warm up, cap its memory, then run the tickets the web process sends, one at a time."""
    init_worker(parent_pid, log_level)
    try:
        warm_worker()
    except Exception:  # noqa: BLE001 - a failed warm-up only costs the first job some time
        log.exception("warm-up of a worker process failed")
    apply_memory_limit(memory_limit_bytes)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            ticket = conn.recv()
        except (EOFError, OSError):
            return
        if ticket is None:
            return
        outcome = run_local_ticket(ticket, conn, parent_pid, stop_flag)
        conn.send(outcome)
        if outcome.memory_exceeded:
            return  # a fresh process takes the next job (this one's heap may be fragmented)


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


_spawn_lock = threading.Lock()


def _resident_bytes(pid: int) -> int | None:
    """The resident memory of process ``pid`` that is its own (bytes), or None when it cannot be read.

    ``resident - shared`` of ``/proc/<pid>/statm``: the pages of a memory-mapped dataset are file pages the kernel
    can drop at any time, so a solve that streams an 8 GB ``X.npy`` is not charged 8 GB.
    """
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            fields = handle.read().split()
            return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil  # type: ignore[import-untyped]  # no stubs installed; only a fallback off Linux

            return int(psutil.Process(pid).memory_info().rss)
        except Exception:  # noqa: BLE001 - the process is gone
            return None


class _WorkerSlot:
    """One worker process and the thread of the web process that feeds it one ticket at a time.

    The thread starts the process (again, after it died or was stopped), sends it a ticket, and waits for
    the outcome while watching the process: its death, a hard stop asked for by the dispatcher, and its
    resident memory against the limit. Stopping a run kills this process only.
    """

    def __init__(self, executor: "LocalProcessExecutor", index: int) -> None:
        self.executor = executor
        self.index = index
        self.process: Any = None
        self.conn: Any = None
        self.stop_flag: Any = None
        self.job: tuple[JobTicket, cf.Future[JobOutcome]] | None = None
        self.sent_at: float | None = None
        self.stop_request: StopReason | None = None
        self.spawn_failures = 0
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._serve, name=f"cnnrelax-worker-slot-{index}", daemon=True)

    # -- the process ------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def _spawn(self) -> bool:
        executor = self.executor
        context = executor.context
        parent_conn, child_conn = context.Pipe()
        flag = context.RawValue("b", _FLAG_NONE)
        process = context.Process(
            target=local_worker_main, name=f"cnnrelax-worker-{self.index}", daemon=True,
            args=(child_conn, flag, os.getpid(), executor.log_level, executor.memory_limit_bytes))
        with _spawn_lock, _single_threaded_math():  # the process starts now, with these variables set
            process.start()
        child_conn.close()
        deadline = time.monotonic() + SPAWN_TIMEOUT_S
        while time.monotonic() < deadline and not executor.closed.is_set():
            if parent_conn.poll(0.1):
                try:
                    message = parent_conn.recv()
                except (EOFError, OSError):
                    break
                if isinstance(message, tuple) and message[:1] == ("ready",):
                    self.process, self.conn, self.stop_flag = process, parent_conn, flag
                    self.spawn_failures = 0
                    return True
            if not process.is_alive():
                break
        log.error("a worker process did not start (exit code %s)", process.exitcode)
        self._kill(process)
        parent_conn.close()
        self.spawn_failures += 1
        return False

    @staticmethod
    def _kill(process: Any) -> None:
        if process is not None and process.is_alive():
            process.kill()
        if process is not None:
            process.join(timeout=5)

    def retire(self) -> None:
        """Kill this slot's process (the next ticket gets a fresh one)."""
        process, conn = self.process, self.conn
        self.process = self.conn = None
        self._kill(process)
        if conn is not None:
            conn.close()

    # -- the thread -------------------------------------------------------------------------------
    def _serve(self) -> None:
        closed = self.executor.closed
        while not closed.is_set():
            try:
                if not self.alive():
                    self.retire()
                    if not self._spawn():
                        closed.wait(min(30.0, 0.5 * 2 ** min(self.spawn_failures, 6)))
                        continue
                self.wake.wait(0.5)
                self.wake.clear()
                job = self.job
                if job is not None and not closed.is_set():
                    self._run(*job)
            except Exception:  # noqa: BLE001 - the slot must outlive a bad moment
                log.exception("worker slot %d step failed", self.index)
                closed.wait(0.5)
        self.retire()

    def _run(self, ticket: JobTicket, future: cf.Future[JobOutcome]) -> None:
        executor = self.executor
        limit = executor.memory_limit_bytes
        with executor.lock:  # (the stop flag and request were reset when the job was assigned)
            self.sent_at = time.monotonic()
        start = self.sent_at
        process, conn = self.process, self.conn
        result: JobOutcome | BaseException | None = None
        try:
            conn.send(ticket)
        except (OSError, ValueError) as exc:
            result = WorkerDied(f"the worker process could not take the job ({type(exc).__name__})")
        next_memory_look = start
        resident: int | None = None
        view = JobRunView(executor.database_path, ticket.job_id, ticket.attempt)
        write_failed = False
        while result is None:
            multiprocessing.connection.wait([conn, process.sentinel], timeout=0.05)
            while result is None and conn.poll():  # what the worker sent, in order: forwarded writes, the outcome
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    break  # the process died: below
                if isinstance(message, tuple) and message[:1] == (_VIEW_CALL,):
                    write_failed = self._forwarded(view, ticket, message[1], message[2], write_failed)
                else:
                    result = message
            if result is not None:
                break
            if not process.is_alive():
                process.join(timeout=1)
                code = process.exitcode
                if limit and code == -signal.SIGKILL and resident is not None and resident >= 0.9 * limit:
                    # Killed near its limit (the kernel's OOM killer): this job's memory, not a crash to retry.
                    result = hard_stop_outcome("memory", ticket, "", time.monotonic() - start, limit)
                    break
                cause = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                result = WorkerDied(f"its worker process died ({cause})")
                break
            now = time.monotonic()
            with executor.lock:
                request = self.stop_request
            if request is None and limit and now >= next_memory_look:
                next_memory_look = now + MEMORY_POLL_S
                resident = _resident_bytes(process.pid) or resident
                if resident is not None and resident > limit:
                    request = "memory"
            if request is not None:
                self.retire()
                log.warning("worker process stopped", extra={"job_id": ticket.job_id, "reason": request})
                result = hard_stop_outcome(request, ticket, "its worker process was stopped", now - start, limit)
        view.close()
        if isinstance(result, JobOutcome) and result.memory_exceeded:
            self.retire()  # the process exits by itself; do not wait for it to be noticed
        if isinstance(result, WorkerDied):
            self.retire()
        with executor.lock:
            self.job = None
            self.sent_at = None
            self.stop_request = None
        if future.done():  # the executor was shut down meanwhile
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
        executor.slot_freed()


    def _forwarded(self, view: JobRunView, ticket: JobTicket, name: str, args: tuple[Any, ...],
                   failed_before: bool) -> bool:
        """Make a call the worker forwarded (:class:`ForwardedRunView`) on its run's view of the job's row;
        return whether a write of this run has failed (this one or one before).

        A progress write that finds the run no longer current raises the worker's stop flag. A write that
        fails (a full disk, a read-only store) costs the job nothing and is logged once a run; the view's
        connection is dropped, so the next call opens a fresh one.
        """
        method = None if name.startswith("_") else getattr(view, name, None)
        if method is None:
            log.error("a worker forwarded an unknown call %r", name, extra={"job_id": ticket.job_id})
            return failed_before
        try:
            answer = method(*args)
        except Exception as exc:  # noqa: BLE001 - a progress or event write is not worth the job
            view.close()
            if not failed_before:
                log.warning("a run's write to the store failed", extra={
                    "job_id": ticket.job_id, "call": name, "error": f"{type(exc).__name__}: {exc}"})
            return True
        if name == "write_progress" and answer is False:  # cancelled, or a newer attempt: stop this run
            with self.executor.lock:
                if self.stop_flag is not None and self.job is not None and self.job[0] is ticket:
                    self.stop_flag.value = _FLAG_CANCEL
        return failed_before


class LocalProcessExecutor(Executor):
    """``workers`` spawned worker processes, each running one job at a time, each stoppable alone.

    Parameters
    ----------
    database_path : str
        The SQLite job store (workers poll their job's row for cancel requests and write progress to it).
    workers : int
        How many worker processes (jobs at once).
    log_level : str
        Logging level of the worker processes.
    memory_limit_bytes : int or None, optional
        The memory limit of each worker process; ``0`` or None: none. By default it is read from the settings
        (``CNNRELAX_WORKER_MEMORY_LIMIT_MB``).
    """

    def __init__(self, database_path: str, workers: int, log_level: str = "info", *,
                 memory_limit_bytes: int | None | str = "settings") -> None:
        self.database_path = str(database_path)
        self.log_level = log_level
        self.workers = workers
        if isinstance(memory_limit_bytes, str):  # "settings"
            from ..settings import Settings

            memory_limit_bytes = Settings().worker_memory_limit_mb * MIB
        self.memory_limit_bytes: int | None = int(memory_limit_bytes or 0) or None
        self.context = multiprocessing.get_context("spawn")
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self._slots: list[_WorkerSlot] = []
        self.warm = threading.Event()

    @property
    def capacity(self) -> int:  # type: ignore[override]  # a live figure, not a constant
        """Jobs that may be in flight: the slots with a started worker process (or a job already).

        A slot whose process is being replaced counts again once the new process is ready, so a job is never
        handed to a worker that is still starting (its time would run while the process imports the core).
        """
        return sum(1 for slot in self._slots if slot.job is not None or slot.alive())

    def start(self) -> None:
        with self.lock:
            if self._slots:
                return
            self.closed.clear()
            self._slots = [_WorkerSlot(self, index) for index in range(self.workers)]
        for slot in self._slots:
            slot.thread.start()
        threading.Thread(target=self._watch_warm, name="cnnrelax-warm-watch", daemon=True).start()

    def _watch_warm(self) -> None:
        while not self.closed.is_set() and not all(slot.alive() for slot in self._slots):
            self.closed.wait(0.1)
        self.warm.set()

    def _slot_of(self, job_id: str) -> _WorkerSlot | None:
        for slot in self._slots:
            if slot.job is not None and slot.job[0].job_id == job_id:
                return slot
        return None

    def submit(self, ticket: JobTicket) -> cf.Future[JobOutcome]:
        future: cf.Future[JobOutcome] = cf.Future()
        future.set_running_or_notify_cancel()
        with self.lock:
            if not self._slots or self.closed.is_set():
                raise RuntimeError("the executor is not started")
            free = [slot for slot in self._slots if slot.job is None]
            if not free:
                raise RuntimeError("no worker process is free")
            slot = min(free, key=lambda s: (not s.alive(), s.index))  # a warm process first
            slot.stop_request = None
            if slot.stop_flag is not None:
                slot.stop_flag.value = _FLAG_NONE
            slot.job = (ticket, future)
        slot.wake.set()
        return future

    def slot_freed(self) -> None:
        """A slot finished its job (hook for subclasses and tests)."""

    def cancel(self, job_id: str) -> None:
        """Raise the stop flag of the job's worker: its ``should_stop`` turns true at its next look."""
        with self.lock:
            slot = self._slot_of(job_id)
            if slot is not None and slot.stop_flag is not None:
                slot.stop_flag.value = _FLAG_CANCEL

    def hard_stop(self, job_id: str, reason: StopReason) -> bool:
        """Kill the worker process of this job only (its slot starts a fresh one) and resolve the job's run."""
        with self.lock:
            slot = self._slot_of(job_id)
            if slot is None:
                return True  # already over
            slot.stop_request = reason
        return True

    def started_at(self, job_id: str) -> float | None:
        with self.lock:
            slot = self._slot_of(job_id)
            return None if slot is None else slot.sent_at

    def healthy(self) -> bool:
        """True once started, while no worker process keeps failing to start."""
        with self.lock:
            return bool(self._slots) and not self.closed.is_set() and all(
                slot.spawn_failures < 3 for slot in self._slots)

    def restart(self) -> None:
        """Let slots whose processes failed to start try again at once (a live process is never touched)."""
        with self.lock:
            slots = list(self._slots)
        if not slots:
            self.start()
        for slot in slots:
            slot.spawn_failures = 0
            slot.wake.set()

    def shutdown(self) -> None:
        """Kill every worker process; runs in flight fail (the dispatcher requeues them)."""
        self.closed.set()
        with self.lock:
            slots, self._slots = self._slots, []
        for slot in slots:
            slot.wake.set()
        for slot in slots:
            slot.retire()
            job = slot.job
            if job is not None and not job[1].done():
                job[1].set_exception(WorkerDied("the service is shutting down"))
        for slot in slots:
            if slot.thread.is_alive() and slot.thread is not threading.current_thread():
                slot.thread.join(timeout=5)
