"""The worker entry point, the same for every executor: a ticket in, the job function run, an outcome out.

:func:`execute_job` reads the ticket's typed spec once (:func:`cnnrelax.jobs.load_spec`), loads its dataset
if it names one, runs :func:`cnnrelax.jobs.run_job` under the ticket's :class:`~.base.JobControl` (its
progress and events flushed before the outcome is returned), and classifies how it ended; it never raises.
The helpers below set up a worker process (logs, priority, a watch on the parent, a warm-up solve, a
memory cap).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

from ..errors import InvalidParameterError
from ..jobs import classify_outcome, load_spec, run_job, run_solve_job
from ..specs import SolveSpec
from ..store import load_dataset_file
from ..types import JobStatus
from .base import JobControl, JobOutcome, JobTicket, memory_limit_sentence

log = logging.getLogger("cnnrelax.executor")

#: Worker processes run at this lower priority, so the API answers at once even when every core solves.
WORKER_NICENESS = 10
#: The memory limit of this worker process (bytes), set by the local worker's start-up; None: no limit.
_worker_memory_limit: int | None = None
#: The warm-up job: a tiny planted solve.
WARM_UP_SPEC = SolveSpec.model_validate({"planted": {"n": 40, "d": 4, "k": 2, "seed": 0}, "trials": 1})


def execute_job(ticket: JobTicket, control: JobControl) -> JobOutcome:
    """Run a ticket's job through :func:`cnnrelax.jobs.run_job` and classify how it ended (never raises).

    Parameters
    ----------
    ticket : JobTicket
        The attempt to run.
    control : JobControl
        Its stop requests, time limit and progress.

    Returns
    -------
    JobOutcome
        The terminal status, the result as JSON text, the error sentence.
    """
    start = time.monotonic()

    def outcome(status: JobStatus, result: dict[str, Any] | None, error: str | None,
                memory: bool = False) -> JobOutcome:
        text = None if result is None else json.dumps(result, separators=(",", ":"), allow_nan=False)
        return JobOutcome(status, text, error, time.monotonic() - start, memory)

    try:
        spec = load_spec(ticket.kind, ticket.spec_json)
        arrays = ticket.arrays
        if arrays is None and ticket.dataset_path is not None:
            arrays = load_dataset_file(ticket.dataset_path)
        try:
            result = run_job(ticket.kind, spec, arrays, should_stop=control.should_stop, progress=control.progress,
                             resume=ticket.resume, time_limit_s=ticket.time_limit_s, events=control.event)
        finally:  # what the pacing held back reaches the job before its outcome (and its ``end`` event) does
            control.flush()
    except InvalidParameterError as exc:
        return outcome(JobStatus.failed, None, f"Invalid {exc.parameter}: {exc.message}")
    except FileNotFoundError:
        return outcome(JobStatus.failed, None, "The job's dataset is no longer stored.")
    except MemoryError:
        log.warning("job %s exceeded the memory limit", ticket.job_id, extra={"job_id": ticket.job_id})
        return outcome(JobStatus.failed, None, memory_limit_sentence(_worker_memory_limit), True)
    except Exception as exc:  # noqa: BLE001 - a job's failure is reported, never raised into the pool
        if type(exc).__name__ == "ExperimentCancelled":
            return outcome(*stopped(control, ticket))
        log.exception("job %s failed", ticket.job_id, extra={"job_id": ticket.job_id})
        return outcome(JobStatus.failed, None, f"The job failed unexpectedly ({type(exc).__name__}: {exc}).")
    status, error = classify_outcome(ticket.kind, result)
    if status == JobStatus.cancelled:
        status, _, error = stopped(control, ticket)
    return outcome(status, result, error)


def stopped(control: JobControl, ticket: JobTicket) -> tuple[JobStatus, None, str]:
    """Why a job stopped early: a time limit or a lost server (failed), else a cancel request."""
    if control.stop_reason == "time_limit":
        return JobStatus.failed, None, f"The job exceeded its time limit of {ticket.time_limit_s:g} s."
    if control.stop_reason == "orphaned":
        return JobStatus.failed, None, "The server that started the job went away."
    return JobStatus.cancelled, None, "The job was cancelled."


def init_worker(parent_pid: int, log_level: str) -> None:
    """In a worker process: die with the parent, JSON logs, a lower priority than the API process, a watch on
    the parent."""
    from ..log_format import configure_logging

    die_with_parent(parent_pid)
    configure_logging(log_level)
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass
    batch_scheduling()
    watch_parent(parent_pid)


def batch_scheduling() -> bool:
    """In a worker process: Linux's ``SCHED_BATCH`` policy (a CPU-bound process that never preempts another
    on waking), so that a request thread of the API that wakes takes a core from a solving worker at once.

    Still a fair share (with the worker's niceness) against everything else; allowed without privileges.
    Returns False where the policy does not exist.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True


#: ``prctl`` option: the signal the kernel sends this process when the thread that started it exits (Linux).
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """In a worker process: ask the kernel to SIGKILL it when its parent goes (``prctl(PR_SET_PDEATHSIG)``).

    The kernel acts even while the worker is deep in a solve that holds the GIL (where :func:`watch_parent`'s
    thread cannot run). Linux only: elsewhere, and if the parent is already gone, it returns False (and the
    worker exits at once in the second case). The signal follows the parent *thread* that spawned the
    worker: the local executor spawns each worker from its slot's thread, which lives as long as the pool.
    """
    if sys.platform != "linux":
        return False
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(0)
    return True


def watch_parent(parent_pid: int) -> None:
    """In a worker process: exit as soon as the server process that started it is gone (e.g. SIGKILLed)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="cnnrelax-parent-watch", daemon=True).start()


def warm_worker() -> int:
    """Import the core and solve a tiny problem once, so a worker's first real job pays no start-up."""
    run_solve_job(WARM_UP_SPEC, None, None)
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


