"""What every executor shares: the ticket in, the outcome out, the job control, the executor interface.

A :class:`JobTicket` is one attempt of one job (its typed spec as stored JSON, its limit, its dataset); a
:class:`JobOutcome` is how it ended. The worker side of a run is a :class:`BaseJobControl`: it owns the
deadline, the polling cadence of stop requests and the cadence of progress writes; an executor's control
says only where it looks (:meth:`BaseJobControl.poll`) and where progress goes
(:meth:`BaseJobControl.publish_progress`). The dispatcher talks to an :class:`Executor` and nothing more.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..types import JobKind, JobStatus, StopReason

#: A job whose runs were interrupted this many times (its worker or the server died) ends ``failed``.
MAX_ATTEMPTS = 5
#: How often a worker looks for a cancel request (its job's row, a Dask Event) (seconds).
CANCEL_POLL_S = 0.2
#: How often a worker publishes progress and events (seconds).
PROGRESS_WRITE_S = 0.25
#: ``log`` events (working-set rounds) one run publishes at most; past it one ``log`` event says they were capped.
MAX_LOG_EVENTS = 2000
#: A run asked to stop (cancel, or past its time limit) that is still running this long after is stopped hard.
STOP_GRACE_S = 1.0
#: A run the executor cannot say has started is timed from its submission, with this much slack (seconds).
UNSTARTED_SLACK_S = 60.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class JobTicket:
    """Everything a worker needs to run one attempt of one job (picklable).

    ``spec_json`` is the job's typed spec as the store keeps it (``SolveSpec.model_dump_json()`` for a
    solve); the worker reads it once (:func:`cnnrelax.jobs.load_spec`). A ticket sent to a cluster carries
    its dataset's ``arrays``; a local one its ``dataset_path``.
    """

    job_id: str
    attempt: int
    kind: JobKind
    spec_json: str
    time_limit_s: float
    dataset_path: str | None = None
    arrays: tuple[Any, Any] | None = None
    resume: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt ended: a terminal status, the result as JSON text, an error sentence.

    ``memory_exceeded`` marks a run that hit its worker's memory limit (the worker is then replaced).
    """

    status: JobStatus
    result_json: str | None
    error: str | None
    run_time_s: float
    memory_exceeded: bool = False


class JobControl(Protocol):
    """The worker side of a job's control: stop requests, the time limit, progress reports, events."""

    stop_reason: StopReason | None

    def should_stop(self) -> bool: ...

    def progress(self, done: int, total: int, partial_state: dict[str, Any]) -> None: ...

    def event(self, name: str, data: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


class BaseJobControl:
    """The deadline, the polling of stop requests and the pacing of progress, for every executor.

    ``should_stop`` is true once a stop reason is known: at every call :meth:`stop_now` (a cheap local
    look, e.g. a shared flag), then the deadline (``time_limit``), then at most every ``CANCEL_POLL_S``
    :meth:`poll` (the store, the scheduler). ``progress`` hands at most one report every
    ``PROGRESS_WRITE_S`` to :meth:`publish_progress`, ``event`` the events queued meanwhile to
    :meth:`publish_events`; :meth:`flush` publishes what the pacing held back (the worker calls it before it
    returns the run's outcome). Subclasses override those four hooks only.

    Parameters
    ----------
    time_limit_s : float
        The run's time limit, counted from now.
    """

    def __init__(self, time_limit_s: float) -> None:
        now = time.monotonic()
        self.deadline = now + time_limit_s
        self.stop_reason: StopReason | None = None
        self._next_poll = now + CANCEL_POLL_S
        self._next_write = now + PROGRESS_WRITE_S
        self._next_events = now + PROGRESS_WRITE_S
        self._unpublished_progress: tuple[int, int, dict[str, Any]] | None = None
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._log_events = 0

    def should_stop(self) -> bool:
        if self.stop_reason is not None:
            return True
        now = time.monotonic()
        reason = self.stop_now()
        if reason is None and now >= self.deadline:
            reason = "time_limit"
        elif reason is None and now >= self._next_poll:
            self._next_poll = now + CANCEL_POLL_S
            reason = self.poll()
        self.stop_reason = reason
        return reason is not None

    def progress(self, done: int, total: int, partial_state: dict[str, Any]) -> None:
        now = time.monotonic()
        if now < self._next_write:
            self._unpublished_progress = (done, total, partial_state)
            return
        self._next_write = now + PROGRESS_WRITE_S
        self._unpublished_progress = None
        self.publish_progress(done, total, partial_state)

    def event(self, name: str, data: dict[str, Any]) -> None:
        """Queue one event of this run (``trial``, ``cell``, ``log``); published at most every ``PROGRESS_WRITE_S``.

        ``log`` events stop after ``MAX_LOG_EVENTS``, with one last ``log`` event saying so.
        """
        if name == "log":
            self._log_events += 1
            if self._log_events > MAX_LOG_EVENTS + 1:
                return
            if self._log_events == MAX_LOG_EVENTS + 1:
                data = {"note": f"log events capped at {MAX_LOG_EVENTS} for this run; later rounds are not "
                                "logged (trial and status events continue)."}
        self._events.append((name, data))
        now = time.monotonic()
        if now >= self._next_events:
            self._next_events = now + PROGRESS_WRITE_S
            self._publish_queued_events()

    def flush(self) -> None:
        """Publish the progress and events held back by the pacing (at the end of a run, before its outcome)."""
        if self._unpublished_progress is not None:
            progress, self._unpublished_progress = self._unpublished_progress, None
            self.publish_progress(*progress)
        self._publish_queued_events()

    def _publish_queued_events(self) -> None:
        events, self._events = self._events, []
        if events:
            self.publish_events(events)

    # -- hooks ----------------------------------------------------------------------------------------
    def stop_now(self) -> StopReason | None:
        """A stop reason known without a round trip (looked at on every call); default none."""
        return None

    def poll(self) -> StopReason | None:
        """A stop reason from afar (a cancel request, the server gone), at most every ``CANCEL_POLL_S``."""
        return None

    def publish_progress(self, done: int, total: int, partial_state: dict[str, Any]) -> None:
        """Make progress visible to the web process (paced by :meth:`progress`)."""

    def publish_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Append events, in order, to the job's event log (paced by :meth:`event`)."""


def memory_limit_sentence(limit_bytes: int | None) -> str:
    """The error of a job that went past its worker's memory limit (``limit_bytes``; None: no limit set)."""
    if limit_bytes:
        return (f"The job exceeded the memory limit of {limit_bytes // MIB} MiB per worker "
                "(CNNRELAX_WORKER_MEMORY_LIMIT_MB) and was stopped; submit a smaller problem or raise the limit.")
    return "The job ran out of memory and was stopped; submit a smaller problem."


def hard_stop_outcome(reason: StopReason, ticket: JobTicket, how: str, run_time_s: float,
                      memory_limit_bytes: int | None = None) -> JobOutcome:
    """The outcome of a run stopped from outside (``reason``: cancelled, time_limit or memory); ``how`` says how."""
    if reason == "cancelled":
        return JobOutcome(JobStatus.cancelled, None, f"The job was cancelled; it did not stop within "
                                                     f"{STOP_GRACE_S:g} s, so {how}.", run_time_s)
    if reason == "memory":
        return JobOutcome(JobStatus.failed, None, memory_limit_sentence(memory_limit_bytes), run_time_s,
                          memory_exceeded=True)
    return JobOutcome(JobStatus.failed, None, f"The job exceeded its time limit of {ticket.time_limit_s:g} s and "
                                              f"did not stop within {STOP_GRACE_S:g} s, so {how}.", run_time_s)


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

    def hard_stop(self, job_id: str, reason: StopReason) -> bool:
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
