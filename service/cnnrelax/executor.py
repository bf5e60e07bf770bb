"""Where jobs run: an :class:`Executor` (local worker processes by default) fed by a :class:`Dispatcher`.

The mathematics runs in one place for every executor: :func:`execute_job` (top-level, picklable) takes a
:class:`JobTicket` and a :class:`JobControl` (cancellation, time limit, progress) and returns a
:class:`JobOutcome`. :class:`LocalProcessExecutor` runs it in worker processes of its own (spawned), one
job per process at a time, with a control that polls the job's SQLite row and a stop flag the web process
sets.

A Dask executor (:class:`cnnrelax.dask_executor.DaskExecutor`, loaded by ``cnnrelax.api.service.build_executor``
when ``CNNRELAX_DASK_SCHEDULER`` is set) subclasses :class:`Executor` and runs the same
:func:`execute_job` as a Dask task with a control of its own (a Dask Event for cancel requests, a Dask
Variable for progress, which the web process copies into the store), so its workers need none of the
API's files: tickets sent there carry their dataset's arrays.

The dispatcher (a thread of the web process) claims queued jobs from the store while the executor has a
free slot, records each outcome under the attempt it belongs to, and requeues a job whose worker died.

A job's limits touch only that job:

- Cancel and time limit are cooperative first (the job's ``should_stop`` turns true; the solver loops look at
  it), and hard after ``STOP_GRACE_S``: the dispatcher asks the executor to stop that one run
  (:meth:`Executor.hard_stop`); a local executor kills that job's worker process only and starts a fresh
  one in its place. No other job is interrupted, requeued or charged an attempt.
- Memory (local workers): each worker process runs under ``CNNRELAX_WORKER_MEMORY_LIMIT_MB`` (its data
  segment is capped with ``RLIMIT_DATA``, so a too-large allocation raises ``MemoryError`` in the job, and
  the web process watches its resident size as a fallback). A job past the limit ends ``failed`` once,
  "exceeded the memory limit of N MiB", and its worker is replaced; it is not retried.
- A worker that dies for another reason costs an attempt to the job it was running, and to no other job.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import contextlib
import functools
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
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
#: A run asked to stop (cancel, or past its time limit) that is still running this long after is stopped hard.
STOP_GRACE_S = 1.0
#: How often the web process looks at a busy local worker's resident memory (seconds).
MEMORY_POLL_S = 0.1
#: How long a new local worker process may take to import the core and warm up (seconds).
SPAWN_TIMEOUT_S = 120.0
#: A run the executor cannot say has started is timed from its submission, with this much slack (seconds).
UNSTARTED_SLACK_S = 60.0
MIB = 1024 * 1024

#: The memory limit of this worker process (bytes), set by the local worker's start-up; None: no limit.
_worker_memory_limit: int | None = None


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
    """How one attempt ended: a terminal status, the result as JSON text, an error sentence.

    ``memory_exceeded`` marks a run that hit its worker's memory limit (the worker is then replaced).
    """

    status: str
    result_json: str | None
    error: str | None
    run_time_s: float
    memory_exceeded: bool = False


class JobControl(Protocol):
    """The worker side of a job's control: stop requests, the time limit, progress reports."""

    stop_reason: str | None

    def should_stop(self) -> bool: ...

    def progress(self, done: int, total: int, partial_state: dict) -> None: ...


def memory_limit_sentence(limit_bytes: int | None) -> str:
    """The error of a job that went past its worker's memory limit (``limit_bytes``; None: no limit set)."""
    if limit_bytes:
        return (f"The job exceeded the memory limit of {limit_bytes // MIB} MiB per worker "
                "(CNNRELAX_WORKER_MEMORY_LIMIT_MB) and was stopped; submit a smaller problem or raise the limit.")
    return "The job ran out of memory and was stopped; submit a smaller problem."


def hard_stop_outcome(reason: str, ticket: JobTicket, how: str, run_time_s: float,
                      memory_limit_bytes: int | None = None) -> JobOutcome:
    """The outcome of a run stopped from outside (``reason``: cancelled, time_limit or memory); ``how`` says how."""
    if reason == "cancelled":
        return JobOutcome("cancelled", None, f"The job was cancelled; it did not stop within {STOP_GRACE_S:g} s, so "
                                             f"{how}.", run_time_s)
    if reason == "memory":
        return JobOutcome("failed", None, memory_limit_sentence(memory_limit_bytes), run_time_s, memory_exceeded=True)
    return JobOutcome("failed", None, f"The job exceeded its time limit of {ticket.time_limit_s:g} s and did not "
                                      f"stop within {STOP_GRACE_S:g} s, so {how}.", run_time_s)


def execute_job(ticket: JobTicket, control: JobControl) -> JobOutcome:
    """Run a ticket's job through :func:`cnnrelax.jobs.run_job` and classify how it ended (never raises)."""
    start = time.monotonic()

    def outcome(status: str, result: dict | None, error: str | None, memory: bool = False) -> JobOutcome:
        text = None if result is None else json.dumps(result, separators=(",", ":"), allow_nan=False)
        return JobOutcome(status, text, error, time.monotonic() - start, memory)

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
    except MemoryError:
        log.warning("job %s exceeded the memory limit", ticket.job_id, extra={"job_id": ticket.job_id})
        return outcome("failed", None, memory_limit_sentence(_worker_memory_limit), True)
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


#: Values of a local worker's stop flag (shared memory the web process writes).
_FLAG_NONE, _FLAG_CANCEL = 0, 1


class LocalJobControl:
    """Control of a job running in a local worker process.

    ``should_stop`` reads the worker's shared stop flag on every call (the web process sets it when the job
    is cancelled), the time limit, and every 0.2 s the job's SQLite row (a cancel request, or this run no
    longer being the job's current run) and whether the server that started it is still there.
    """

    def __init__(self, database_path: str, ticket: JobTicket, parent_pid: int, stop_flag: Any = None) -> None:
        self.view = JobRunView(database_path, ticket.job_id, ticket.attempt)
        self.deadline = time.monotonic() + ticket.time_limit_s
        self.parent_pid = parent_pid
        self.stop_flag = stop_flag
        self.stop_reason: str | None = None
        self._next_poll = time.monotonic() + CANCEL_POLL_S
        self._next_write = time.monotonic() + PROGRESS_WRITE_S

    def should_stop(self) -> bool:
        if self.stop_reason is not None:
            return True
        now = time.monotonic()
        flag = self.stop_flag.value if self.stop_flag is not None else _FLAG_NONE
        if flag == _FLAG_CANCEL:
            self.stop_reason = "cancelled"
        elif now >= self.deadline:
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


def run_local_ticket(ticket: JobTicket, database_path: str, parent_pid: int, stop_flag: Any = None) -> JobOutcome:
    """The task a local worker process runs: :func:`execute_job` with a SQLite-polling control."""
    control = LocalJobControl(database_path, ticket, parent_pid, stop_flag)
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


def apply_memory_limit(limit_bytes: int | None) -> None:
    """In a worker process: cap its data segment at ``limit_bytes`` (``RLIMIT_DATA``; None: no limit).

    Past the cap an allocation fails at once (numpy raises ``MemoryError``), before the machine is short of
    memory; :func:`execute_job` reports it as the job exceeding the memory limit.
    """
    global _worker_memory_limit
    _worker_memory_limit = limit_bytes
    if not limit_bytes:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


def _local_worker_main(conn: Any, stop_flag: Any, parent_pid: int, log_level: str, database_path: str,
                       memory_limit_bytes: int | None) -> None:
    """A local worker process: warm up, cap its memory, then run the tickets the web process sends, one at a time."""
    _init_worker(parent_pid, log_level)
    try:
        _warm_worker()
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
        outcome = run_local_ticket(ticket, database_path, parent_pid, stop_flag)
        conn.send(outcome)
        if outcome.memory_exceeded:
            return  # a fresh process takes the next job (this one's heap may be fragmented)


class WorkerDied(RuntimeError):
    """The worker process running a job died (the job is requeued, charged one attempt)."""


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

    def cancel(self, job_id: str) -> None:  # noqa: B027 (a no-op by default: the store's flag is polled anyway)
        """Ask a running job to stop cooperatively (local workers also read the flag from the store)."""

    def hard_stop(self, job_id: str, reason: str) -> bool:
        """Stop one run now, whatever it is doing, and resolve its future with the matching outcome.

        Parameters
        ----------
        job_id : str
            The job whose run to stop; no other run may be touched.
        reason : str
            ``"cancelled"`` or ``"time_limit"``.

        Returns
        -------
        bool
            False when this executor cannot stop a single run (the dispatcher then records the outcome itself
            and forgets the run).
        """
        return False

    def started_at(self, job_id: str) -> float | None:
        """When (``time.monotonic()``) the job's run began on a worker; None if unknown or not yet."""
        return None

    @abc.abstractmethod
    def healthy(self) -> bool:
        """True when jobs can run."""

    @abc.abstractmethod
    def restart(self) -> None:
        """Called when the executor is unhealthy and nothing runs: be ready again (reconnect, respawn)."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop for good, without waiting for running jobs (they are requeued at the next start)."""


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
    """The resident memory of process ``pid`` (bytes), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil  # type: ignore[import-untyped]

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
        self.stop_request: str | None = None
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
            target=_local_worker_main, name=f"cnnrelax-worker-{self.index}", daemon=True,
            args=(child_conn, flag, os.getpid(), executor.log_level, executor.database_path,
                  executor.memory_limit_bytes))
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
        while result is None:
            ready = multiprocessing.connection.wait([conn, process.sentinel], timeout=0.05)
            if conn in ready:
                try:
                    result = conn.recv()
                    break
                except (EOFError, OSError):
                    pass  # the process died: below
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
            future.set_result(result)  # type: ignore[arg-type]
        executor.slot_freed()


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
        if memory_limit_bytes == "settings":
            from .settings import Settings

            memory_limit_bytes = Settings().worker_memory_limit_mb * MIB
        self.memory_limit_bytes: int | None = int(memory_limit_bytes) or None  # type: ignore[arg-type]
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

    def hard_stop(self, job_id: str, reason: str) -> bool:
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


FinishedHook = Callable[[JobRecord, str, float], None]


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
                error = (f"The job was interrupted {job.attempts} times (its worker process died: "
                         f"{type(exc).__name__}); it was given up.")
                if self.store.finish_job(job.id, job.attempts, "failed", error=error):
                    self._finished(job, "failed", time.monotonic() - item.started)
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

    def _finished(self, job: JobRecord, status: str, run_time_s: float) -> None:
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
        due: list[tuple[_InFlight, str]] = []
        with self._lock:
            items = [item for item in self._in_flight.values() if not item.hard_stopped]
        for item in items:
            reason = None
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
